//! The TLS configuration of the webhook source: its certificate and, for mutual
//! TLS, the CA that client certificates must be signed by.
//!
//! rustls with the ring provider, TLS 1.2 and 1.3. With `client_ca_file` the
//! handshake fails for a client without a certificate or with one signed by
//! another CA (the kube-apiserver authenticates with a client certificate
//! named in its `--audit-webhook-config-file` kubeconfig).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::TlsOptions;

/// Loads the certificates and key, and builds the acceptor of TLS connections.
pub fn acceptor(options: &TlsOptions) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(ring::default_provider());
    let chain = load_certificates(&options.crt_file, "tls.crt_file")?;
    let key = PrivateKeyDer::from_pem_file(&options.key_file).with_context(|| {
        format!(
            "cannot read a private key from tls.key_file {}; it must be a PEM file with a PKCS#8, PKCS#1 or SEC1 key",
            options.key_file.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?;
    let builder = match &options.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in load_certificates(path, "tls.client_ca_file")? {
                roots.add(certificate).with_context(|| {
                    format!(
                        "tls.client_ca_file {} holds an invalid CA certificate",
                        path.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| {
                    format!(
                        "cannot verify clients with tls.client_ca_file {}",
                        path.display()
                    )
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "tls.key_file {} does not match the certificate of tls.crt_file {}",
            options.key_file.display(),
            options.crt_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load_certificates(path: &Path, option: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let unreadable = || format!("cannot read certificates from {option} {}", path.display());
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .with_context(unreadable)?;
    if certificates.is_empty() {
        anyhow::bail!(
            "{option} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certificates)
}
