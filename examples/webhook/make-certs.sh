#!/usr/bin/env bash
# Makes a CA, a server certificate for auditflow and a client certificate for
# the kube-apiserver, with openssl, for trying the webhook source with mutual TLS.
#
#   ./make-certs.sh [DIR]          (default: ./certs)
#
# The server certificate is valid for 127.0.0.1, localhost and $AUDITFLOW_DNS_NAME
# (default auditflow.auditflow.svc: the Service name the apiserver would use in a
# cluster). The keys are unencrypted: these certificates are for trying things
# out; in production use your cluster's PKI (cert-manager, your CA).
set -euo pipefail
dir="${1:-certs}"
dns_name="${AUDITFLOW_DNS_NAME:-auditflow.auditflow.svc}"
days=365
mkdir -p "$dir"
cd "$dir"

# The CA that signs both certificates (auditflow trusts it for client certificates,
# the apiserver trusts it for auditflow's server certificate).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.crt -days "$days" -subj "/CN=auditflow webhook CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# $1: name, $2: subject CN, $3: extensions
issue() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out "$1.crt" -days "$days" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

issue server auditflow "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$dns_name"

issue apiserver kube-apiserver "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

chmod 600 ./*.key
echo "in $(pwd):"
echo "  ca.crt                       the CA (auditflow: tls.client_ca_file; kubeconfig: certificate-authority)"
echo "  server.crt, server.key       auditflow's certificate (tls.crt_file, tls.key_file)"
echo "  apiserver.crt, apiserver.key the apiserver's client certificate (kubeconfig: client-certificate, client-key)"
echo "try it: curl --cacert ca.crt --cert apiserver.crt --key apiserver.key \\"
echo "  -H 'Content-Type: application/json' --data-binary @event-list.json https://127.0.0.1:8443/"
