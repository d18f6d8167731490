#!/usr/bin/env bash
# Starts, stops and reports the real servers auditflow's tests talk to.
#
#   scripts/services.sh start NAME    install if missing, start, wait until ready (idempotent)
#   scripts/services.sh stop NAME     stop it (by the PID this script recorded)
#   scripts/services.sh status NAME   say whether it runs and answers
#
# Servers: alertmanager (127.0.0.1:9093), kafka (127.0.0.1:9092; SASL on 9094; TLS with
# client certificates on 9095, its test CA and certificates in target/services/kafka/tls),
# opensearch (127.0.0.1:9200, OpenSearch 2.19 in a JVM, security plugin off),
# loki (127.0.0.1:9428, VictoriaLogs: Loki's push API, built from the Go module proxy).
# Each server runs from target/services/NAME/: its data, its log (NAME.log) and its
# PID file (NAME.pid). To add a server, write NAME_install, NAME_launch (starts it in
# the background and prints nothing), NAME_ready (succeeds when it answers) and
# NAME_url, and list it in SERVICES.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES="alertmanager kafka opensearch loki"
RUN_ROOT="${AUDITFLOW_SERVICES_DIR:-$PWD/target/services}"
READY_TIMEOUT_SECONDS=60

die() { echo "services.sh: $*" >&2; exit 1; }

apt_install() {
  # Install packages; refresh the package lists only when the first attempt fails.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null
  fi
}

# --- alertmanager -------------------------------------------------------------------
ALERTMANAGER_ADDRESS="127.0.0.1:9093"

alertmanager_install() {
  command -v prometheus-alertmanager >/dev/null 2>&1 && return 0
  echo "services.sh: installing prometheus-alertmanager (apt)" >&2
  apt_install prometheus-alertmanager
  # The Debian package may start its own service (where systemd runs); ours is separate.
}

alertmanager_url() { echo "http://$ALERTMANAGER_ADDRESS"; }

alertmanager_launch() {
  local dir="$1"
  mkdir -p "$dir/data"
  nohup prometheus-alertmanager \
    --config.file="$PWD/scripts/services/alertmanager.yml" \
    --web.listen-address="$ALERTMANAGER_ADDRESS" \
    --cluster.listen-address= \
    --storage.path="$dir/data" \
    >>"$dir/alertmanager.log" 2>&1 </dev/null &
  echo $! >"$dir/alertmanager.pid"
}

alertmanager_ready() { curl -fsS -o /dev/null "$(alertmanager_url)/-/ready"; }

# --- kafka -------------------------------------------------------------------------
# Apache Kafka 4.1 in KRaft mode (one node, broker and controller), from Maven Central:
# the jars of scripts/services/kafka/pom.xml, run by the JVM (Java 17).
KAFKA_ADDRESS="127.0.0.1:9092"
KAFKA_CONFIG="$PWD/scripts/services/kafka"
# The SCRAM-SHA-256 user the SASL listener (9094) knows; PLAIN knows the same user.
KAFKA_SASL_USER="auditflow"
KAFKA_SASL_PASSWORD="auditflow-secret"

kafka_install() {
  command -v java >/dev/null 2>&1 || { echo "services.sh: installing Java 17 (apt)" >&2; apt_install openjdk-17-jre-headless; }
  command -v mvn >/dev/null 2>&1 || { echo "services.sh: installing Maven (apt)" >&2; apt_install maven; }
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  local lib="$RUN_ROOT/kafka/lib"
  [[ -f "$lib/.complete" ]] && return 0
  echo "services.sh: downloading Apache Kafka 4.1.0 (Maven Central)" >&2
  mkdir -p "$lib"
  mvn -q -B -Dstyle.color=never -f "$KAFKA_CONFIG/pom.xml" dependency:copy-dependencies -DoutputDirectory="$lib" >&2
  touch "$lib/.complete"
}

kafka_url() { echo "$KAFKA_ADDRESS"; }

# A test CA, the broker's certificate (127.0.0.1 and localhost) and a client certificate, made
# once with openssl: the TLS listener (9095) requires a client certificate signed by the CA.
kafka_certificates() {
  local tls="$1"
  [[ -f "$tls/broker.pem" ]] && return 0
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=auditflow test CA"
    for name in broker client; do
      openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=auditflow-$name"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile <(printf "subjectAltName=IP:127.0.0.1,DNS:localhost") -out "$name.crt"
    done
    # Kafka's PEM keystore takes an encrypted PKCS#8 key followed by the certificate
    # (PBE-SHA1-3DES: Java 17 reads no PBES2 key).
    openssl pkcs8 -topk8 -in broker.key -passout pass:auditflow-test -v1 PBE-SHA1-3DES -out broker.p8
    cat broker.p8 broker.crt >broker.pem
  ) >>"$tls/openssl.log" 2>&1
}

kafka_launch() {
  local dir="$1"
  mkdir -p "$dir/data"
  kafka_certificates "$dir/tls"
  sed -e "s|@DATA_DIR@|$dir/data|" -e "s|@TLS_DIR@|$dir/tls|" "$KAFKA_CONFIG/server.properties" >"$dir/server.properties"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$dir/lib/*" kafka.tools.StorageTool random-uuid)"
    java -cp "$dir/lib/*" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$dir/server.properties" \
      --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
      >>"$dir/kafka.log" 2>&1
  fi
  touch "$dir/kafka.log"
  wc -c <"$dir/kafka.log" >"$dir/kafka.log-start"
  nohup java -Xms256m -Xmx512m -Dlog4j2.configurationFile="$KAFKA_CONFIG/log4j2.properties" \
    -cp "$dir/lib/*" kafka.Kafka "$dir/server.properties" \
    >>"$dir/kafka.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
}

# Ready when the port answers and, for a broker this script started, the log written
# since that start says the server started (the port opens a few seconds earlier).
kafka_ready() {
  (exec 3<>"/dev/tcp/${KAFKA_ADDRESS%:*}/${KAFKA_ADDRESS#*:}") 2>/dev/null || return 1
  local dir="$RUN_ROOT/kafka" start
  pid_of kafka >/dev/null || return 0
  start="$(cat "$dir/kafka.log-start" 2>/dev/null || echo 0)"
  tail -c "+$((start + 1))" "$dir/kafka.log" | grep -q "Kafka Server started"
}

# --- opensearch --------------------------------------------------------------------
# OpenSearch 2.19 as one node (single-node discovery, no security plugin), from Maven
# Central: the jars of scripts/services/opensearch/pom.xml and OsNode.java, which starts
# the node in a JVM (Java 17). Its data lives in target/services/opensearch/home.
OPENSEARCH_PORT=9200
OPENSEARCH_CONFIG="$PWD/scripts/services/opensearch"

opensearch_install() {
  command -v java >/dev/null 2>&1 || { echo "services.sh: installing Java 17 (apt)" >&2; apt_install openjdk-17-jdk-headless; }
  command -v javac >/dev/null 2>&1 || { echo "services.sh: installing the Java 17 compiler (apt)" >&2; apt_install openjdk-17-jdk-headless; }
  command -v mvn >/dev/null 2>&1 || { echo "services.sh: installing Maven (apt)" >&2; apt_install maven; }
  local dir="$RUN_ROOT/opensearch"
  if [[ ! -f "$dir/lib/.complete" ]]; then
    echo "services.sh: downloading OpenSearch 2.19.6 (Maven Central)" >&2
    mkdir -p "$dir/lib"
    mvn -q -B -Dstyle.color=never -f "$OPENSEARCH_CONFIG/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir/lib" >&2
    touch "$dir/lib/.complete"
  fi
  if [[ ! -f "$dir/classes/OsNode.class" || "$OPENSEARCH_CONFIG/OsNode.java" -nt "$dir/classes/OsNode.class" ]]; then
    mkdir -p "$dir/classes"
    javac -cp "$dir/lib/*" -d "$dir/classes" "$OPENSEARCH_CONFIG/OsNode.java"
  fi
}

opensearch_url() { echo "http://127.0.0.1:$OPENSEARCH_PORT"; }

opensearch_launch() {
  local dir="$1"
  mkdir -p "$dir/home"
  nohup java -Xms1g -Xmx1g -Dlog4j2.configurationFile="$OPENSEARCH_CONFIG/log4j2.properties" \
    -cp "$dir/classes:$dir/lib/*" OsNode "$dir/home" "$OPENSEARCH_PORT" \
    >>"$dir/opensearch.log" 2>&1 </dev/null &
  echo $! >"$dir/opensearch.pid"
}

# Ready when the cluster is at least yellow (a single node never places replicas).
opensearch_ready() {
  curl -fsS -o /dev/null "$(opensearch_url)/_cluster/health?wait_for_status=yellow&timeout=1s"
}

# --- loki ---------------------------------------------------------------------------
# The Loki push API as VictoriaLogs serves it (`/insert/loki/api/v1/push`, JSON and
# protobuf+snappy; read back with LogsQL): no Grafana Loki build installs here.
# Built once from the Go module proxy into target/services/loki/bin.
LOKI_ADDRESS="127.0.0.1:9428"
VICTORIALOGS_VERSION="v1.52.1"

loki_install() {
  local dir="$RUN_ROOT/loki"
  [[ -x "$dir/bin/victoria-logs" ]] && return 0
  command -v go >/dev/null 2>&1 || { echo "services.sh: installing Go (apt)" >&2; apt_install golang-go; }
  echo "services.sh: building VictoriaLogs $VICTORIALOGS_VERSION (Go module proxy; about 90 s)" >&2
  mkdir -p "$dir/bin"
  GOPATH="$dir/gopath" GOBIN="$dir/bin" GOFLAGS=-modcacherw \
    go install "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$VICTORIALOGS_VERSION" >&2
}

loki_url() { echo "http://$LOKI_ADDRESS"; }

loki_launch() {
  local dir="$1"
  mkdir -p "$dir/data"
  nohup "$dir/bin/victoria-logs" -storageDataPath="$dir/data" -httpListenAddr="$LOKI_ADDRESS" \
    -retentionPeriod=100y -loggerLevel=WARN \
    >>"$dir/loki.log" 2>&1 </dev/null &
  echo $! >"$dir/loki.pid"
}

loki_ready() { curl -fsS -o /dev/null "$(loki_url)/health"; }

# --- generic ------------------------------------------------------------------------
known() { [[ " $SERVICES " == *" $1 "* ]] || die "unknown server '$1' (known: $SERVICES)"; }

pid_of() {
  local pidfile="$RUN_ROOT/$1/$1.pid"
  [[ -s "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

start() {
  local name="$1" dir="$RUN_ROOT/$1"
  command -v curl >/dev/null 2>&1 || apt_install curl
  "${name}_install"
  mkdir -p "$dir"
  if pid="$(pid_of "$name")"; then
    echo "services.sh: $name already runs (pid $pid) at $("${name}_url")" >&2
  elif "${name}_ready" 2>/dev/null; then
    die "something else already answers at $("${name}_url"); stop it first (not started by this script, so it is left alone)"
  else
    echo "services.sh: starting $name (log: $dir/$name.log)" >&2
    "${name}_launch" "$dir"
  fi
  local waited=0
  until "${name}_ready" 2>/dev/null; do
    pid_of "$name" >/dev/null || { tail -n 20 "$dir/$name.log" >&2; die "$name exited during start-up; see $dir/$name.log"; }
    (( waited++ < READY_TIMEOUT_SECONDS * 5 )) || { tail -n 20 "$dir/$name.log" >&2; die "$name not ready after ${READY_TIMEOUT_SECONDS}s; see $dir/$name.log"; }
    sleep 0.2
  done
  echo "services.sh: $name ready at $("${name}_url")" >&2
}

stop() {
  local name="$1" dir="$RUN_ROOT/$1" pid
  if ! pid="$(pid_of "$name")"; then
    rm -f "$dir/$name.pid"
    echo "services.sh: $name is not running" >&2
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$dir/$name.pid"
  echo "services.sh: $name stopped (pid $pid)" >&2
}

status() {
  local name="$1" pid
  if pid="$(pid_of "$name")" && "${name}_ready" 2>/dev/null; then
    echo "$name: running (pid $pid), ready at $("${name}_url")"
  elif pid="$(pid_of "$name")"; then
    echo "$name: running (pid $pid), not ready"; return 1
  else
    echo "$name: stopped"; return 1
  fi
}

[[ $# -eq 2 ]] || die "usage: scripts/services.sh start|stop|status NAME (known: $SERVICES)"
known "$2"
case "$1" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  status) status "$2" ;;
  *) die "unknown command '$1': use start, stop or status" ;;
esac
