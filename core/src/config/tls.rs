//! `tls = { ca_file, crt_file, key_file, key_pass, verify }`: the one shape of
//! the TLS options of every component that connects to a server (the Kafka
//! source and sink today; the store sinks as they come).
//!
//! - `ca_file`: the CA certificates (PEM) the server's certificate must chain
//!   to; without it, the system's roots;
//! - `crt_file` and `key_file`: a client certificate and its key (PEM), for
//!   servers that authenticate clients by certificate (mutual TLS); both or
//!   neither;
//! - `key_pass`: the key's passphrase, if it is encrypted (`${VAR}` keeps it
//!   out of the file);
//! - `verify`: check the server's certificate and name (default `true`; turn
//!   it off only against a test server).
//!
//! An empty table, `tls = {}`, turns TLS on with the defaults.

use std::path::PathBuf;

use serde::Deserialize;

use super::OptionError;

/// The TLS options of a client connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// CA certificates (PEM) to verify the server with, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (PEM), for mutual TLS.
    pub crt_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The private key's passphrase.
    pub key_pass: Option<String>,
    /// Whether the server's certificate and host name are checked.
    #[serde(default = "verify_by_default")]
    pub verify: bool,
}

fn verify_by_default() -> bool {
    true
}

impl TlsOptions {
    /// The CA certificates of `ca_file` (PEM), if it is set; an error names
    /// the option and the file.
    pub fn read_ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        use anyhow::Context as _;
        let Some(ca_file) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(ca_file)
            .with_context(|| format!("tls.ca_file: cannot read {}", ca_file.display()))?;
        Ok(Some(pem))
    }

    /// The client certificate followed by its key (PEM, one text, as the
    /// HTTP clients take an identity), if both are set; an error names the
    /// option and the file.
    pub fn read_identity_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        use anyhow::Context as _;
        let (Some(crt_file), Some(key_file)) = (&self.crt_file, &self.key_file) else {
            return Ok(None);
        };
        let mut pem = std::fs::read(crt_file)
            .with_context(|| format!("tls.crt_file: cannot read {}", crt_file.display()))?;
        pem.push(b'\n');
        pem.extend(
            std::fs::read(key_file)
                .with_context(|| format!("tls.key_file: cannot read {}", key_file.display()))?,
        );
        Ok(Some(pem))
    }

    /// For a client that takes only unencrypted keys (the HTTP sinks'):
    /// refuses `key_pass`, naming the way out.
    pub fn check_unencrypted_key(&self, field: &str, errors: &mut Vec<OptionError>) {
        if self.key_pass.is_some() {
            errors.push(OptionError::new(
                format!("{field}.key_pass"),
                "is not supported by this sink: give key_file as an unencrypted PEM key (openssl pkey -in KEY -out PLAIN)",
            ));
        }
    }

    /// Checks that the options go together; errors name `FIELD.OPTION` (`tls.key_file`).
    pub fn check(&self, field: &str, errors: &mut Vec<OptionError>) {
        match (&self.crt_file, &self.key_file) {
            (Some(_), None) => errors.push(OptionError::new(
                format!("{field}.key_file"),
                "is required with crt_file: the client certificate's private key (PEM)",
            )),
            (None, Some(_)) => errors.push(OptionError::new(
                format!("{field}.crt_file"),
                "is required with key_file: the client certificate (PEM)",
            )),
            _ => {}
        }
        if self.key_pass.is_some() && self.key_file.is_none() {
            errors.push(OptionError::new(
                format!("{field}.key_pass"),
                "is the passphrase of key_file, which is not set",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_options;

    #[test]
    fn an_empty_table_is_tls_with_verification() {
        let tls: TlsOptions = parse_options(&toml::Table::new()).unwrap();
        assert!(tls.verify);
        assert_eq!(tls.ca_file, None);
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let tls: TlsOptions = parse_options(&"crt_file = \"c.pem\"".parse().unwrap()).unwrap();
        let mut errors = Vec::new();
        tls.check("tls", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "tls.key_file");
    }
}
