//! Kafka, through librdkafka (the `rdkafka` crate): the connection options and
//! client setup the `kafka` source and the `kafka` sink share.
//!
//! Both components take the same four connection options, checked here once:
//!
//! ```toml
//! bootstrap_servers = "kafka-0:9092,kafka-1:9092"
//! tls = { ca_file = "/etc/kafka/ca.crt" }                      # optional: TLS (see TlsOptions)
//! sasl = { mechanism = "SCRAM-SHA-512", username = "auditflow", password = "${KAFKA_PASSWORD}" }
//! librdkafka_options = { "socket.keepalive.enable" = "true" }  # anything else librdkafka takes
//! ```
//!
//! [`parse_with_connection`] takes them out of a component's table and parses
//! the rest as the component's own options; [`KafkaConnection::client_config`]
//! turns them into librdkafka properties (`security.protocol`, `ssl.*`,
//! `sasl.*`), then the component's, then `librdkafka_options`, which may
//! override anything but the properties the component's delivery guarantee
//! rests on (its [`Reserved`] list, refused when the options are checked).
//! Property names and values are checked by librdkafka itself, without
//! connecting anywhere, so `auditflow validate` names a misspelt one, and
//! [`KafkaConnection::check_client_config`] checks the whole client a
//! component's options make.
//!
//! [`ComponentLog`] sends librdkafka's own log lines and errors to `tracing`,
//! naming the component.

use std::collections::BTreeMap;
use std::sync::Arc;

use auditflow_core::config::{parse_options, OptionError, TlsOptions};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The options every Kafka component takes to connect.
pub const CONNECTION_OPTIONS: [&str; 4] =
    ["bootstrap_servers", "tls", "sasl", "librdkafka_options"];

/// How to reach and authenticate to a Kafka cluster.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConnection {
    /// `host:port` of one or more brokers, comma-separated.
    pub bootstrap_servers: String,
    /// TLS to the brokers; off when absent.
    pub tls: Option<TlsOptions>,
    /// SASL authentication; off when absent.
    pub sasl: Option<SaslOptions>,
    /// librdkafka properties, applied after every other one.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConnection {
    /// Shows where the client connects, never its secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("tls", &self.tls.is_some())
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|sasl| (sasl.mechanism, &sasl.username)),
            )
            .field(
                "librdkafka_options",
                &self.librdkafka_options.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `sasl = { mechanism, username, password }`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslOptions {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password (write `${VAR}` to keep it out of the file).
    pub password: String,
}

/// The SASL mechanisms auditflow's librdkafka is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// User and password in the clear (use it with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name librdkafka's `sasl.mechanism` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A librdkafka property a component sets itself, which `librdkafka_options`
/// may not override: the property, and what to write instead.
pub type Reserved = (&'static str, &'static str);

/// Parses a Kafka component's options table: the connection options
/// ([`KafkaConnection`], with `librdkafka_options` refused for the `reserved`
/// properties) and the component's own options `T`, every error of both.
pub fn parse_with_connection<T: DeserializeOwned>(
    options: &toml::Table,
    reserved: &[Reserved],
) -> Result<(KafkaConnection, T), Vec<OptionError>> {
    let mut own = options.clone();
    let mut connection = toml::Table::new();
    for name in CONNECTION_OPTIONS {
        if let Some(value) = own.remove(name) {
            connection.insert(name.to_string(), value);
        }
    }
    let connection = parse_options::<KafkaConnection>(&connection).and_then(|connection| {
        let errors = connection.check(reserved);
        if errors.is_empty() {
            Ok(connection)
        } else {
            Err(errors)
        }
    });
    match (connection, parse_options::<T>(&own)) {
        (Ok(connection), Ok(own)) => Ok((connection, own)),
        (connection, own) => {
            let mut errors = connection.err().unwrap_or_default();
            errors.extend(own.err().unwrap_or_default());
            Err(errors)
        }
    }
}

impl KafkaConnection {
    /// Checks what serde cannot: servers present, TLS options that go together,
    /// no `reserved` property in `librdkafka_options`, and every librdkafka
    /// property name and value, as librdkafka reads them.
    pub fn check(&self, reserved: &[Reserved]) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            errors.push(OptionError::new(
                "bootstrap_servers",
                "is empty; write one or more brokers as \"host:9092,host2:9092\"",
            ));
        }
        if let Some(tls) = &self.tls {
            tls.check("tls", &mut errors);
        }
        for (name, value) in &self.librdkafka_options {
            let field = format!("librdkafka_options.{name}");
            if let Some((_, instead)) = reserved.iter().find(|(property, _)| property == name) {
                errors.push(OptionError::new(
                    field,
                    format!("auditflow sets `{name}` itself (its delivery guarantee depends on it); {instead}"),
                ));
                continue;
            }
            let mut single = ClientConfig::new();
            single.set(name, value);
            if let Err(error) = single.create_native_config() {
                errors.push(OptionError::new(
                    field,
                    format!("librdkafka does not take `{name} = \"{value}\"`: {error}"),
                ));
            }
        }
        errors
    }

    /// The librdkafka properties of a client of component `component_id`: the
    /// connection's, then the component's `properties`, then `librdkafka_options`.
    pub fn client_config(&self, component_id: &str, properties: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", format!("auditflow-{component_id}"))
            .set("security.protocol", self.security_protocol())
            .set_log_level(RDKafkaLogLevel::Warning);
        if let Some(tls) = &self.tls {
            set_tls(&mut config, tls);
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        for (name, value) in properties {
            config.set(*name, value);
        }
        for (name, value) in &self.librdkafka_options {
            config.set(name, value);
        }
        config
    }

    /// Checks the whole configuration a component would create its client with
    /// (the properties it derives from its options included), without creating it.
    pub fn check_client_config(&self, properties: &[(&str, String)]) -> Result<(), OptionError> {
        self.client_config("validate", properties)
            .create_native_config()
            .map(|_| ())
            .map_err(|error| {
                OptionError::new(
                    "",
                    format!("librdkafka refuses the client these options make: {error}; check the batch, timeout and size options"),
                )
            })
    }

    fn security_protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }
}

fn set_tls(config: &mut ClientConfig, tls: &TlsOptions) {
    let path = |path: &std::path::PathBuf| path.display().to_string();
    if let Some(ca) = &tls.ca_file {
        config.set("ssl.ca.location", path(ca));
    }
    if let Some(crt) = &tls.crt_file {
        config.set("ssl.certificate.location", path(crt));
    }
    if let Some(key) = &tls.key_file {
        config.set("ssl.key.location", path(key));
    }
    if let Some(pass) = &tls.key_pass {
        config.set("ssl.key.password", pass);
    }
    config
        .set(
            "enable.ssl.certificate.verification",
            if tls.verify { "true" } else { "false" },
        )
        .set(
            "ssl.endpoint.identification.algorithm",
            if tls.verify { "https" } else { "none" },
        );
}

/// Logs librdkafka's messages and errors through `tracing`, naming the component.
#[derive(Debug, Clone)]
pub struct ComponentLog {
    component_id: Arc<str>,
}

impl ComponentLog {
    /// The log of component `component_id`.
    pub fn new(component_id: Arc<str>) -> ComponentLog {
        ComponentLog { component_id }
    }

    /// The component id.
    pub fn component_id(&self) -> &Arc<str> {
        &self.component_id
    }

    /// One of librdkafka's log lines.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let id = &*self.component_id;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component_id = %id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component_id = %id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(component_id = %id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(component_id = %id, facility, "librdkafka: {message}")
            }
        }
    }

    /// A client-level error librdkafka reports (a broker down, authentication failed).
    pub fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(component_id = %self.component_id, "Kafka: {reason} ({error})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[serde(default)]
        #[allow(dead_code)]
        topic: Option<String>,
    }

    const RESERVED: [Reserved; 1] = [("acks", "the sink always waits for every in-sync replica")];

    fn split(text: &str) -> Result<KafkaConnection, Vec<OptionError>> {
        parse_with_connection::<Own>(&text.parse().expect("test options are TOML"), &RESERVED)
            .map(|(connection, _)| connection)
    }

    #[test]
    fn the_connection_options_are_taken_out_and_the_rest_left() {
        let connection = split(
            "bootstrap_servers = \"k:9092\"\ntopic = \"t\"\nsasl = { mechanism = \"SCRAM-SHA-256\", username = \"u\", password = \"secret\" }",
        )
        .expect("valid connection options");
        let config = connection.client_config("out", &[("linger.ms", "5".to_string())]);
        assert_eq!(config.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(config.get("client.id"), Some("auditflow-out"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert!(
            !format!("{connection:?}").contains("secret"),
            "secrets are not shown"
        );
        let errors = parse_with_connection::<Own>(
            &"bootstrap_servers = \"k:9092\"\ncolour = 1"
                .parse()
                .expect("TOML"),
            &RESERVED,
        )
        .expect_err("an unknown option of the component");
        assert_eq!(errors[0].field, "colour");
    }

    #[test]
    fn tls_sets_the_ssl_properties_and_librdkafka_options_come_last() {
        let connection = split(
            "bootstrap_servers = \"k:9093\"\ntls = { ca_file = \"/ca.pem\", verify = false }\nlibrdkafka_options = { \"security.protocol\" = \"ssl\", \"socket.keepalive.enable\" = \"true\" }",
        );
        let config = connection.expect("valid").client_config("in", &[]);
        assert_eq!(config.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(
            config.get("enable.ssl.certificate.verification"),
            Some("false")
        );
        assert_eq!(
            config.get("ssl.endpoint.identification.algorithm"),
            Some("none")
        );
        assert_eq!(config.get("socket.keepalive.enable"), Some("true"));
    }

    #[test]
    fn bad_connection_options_are_named() {
        let errors = split(
            "bootstrap_servers = \" \"\ntls = { crt_file = \"c.pem\" }\nlibrdkafka_options = { \"linger.msec\" = \"5\", \"acks\" = \"1\", \"batch.size\" = \"-1\" }",
        )
        .expect_err("invalid options");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "bootstrap_servers",
                "tls.key_file",
                "librdkafka_options.acks",
                "librdkafka_options.batch.size",
                "librdkafka_options.linger.msec"
            ],
            "{errors:?}"
        );
        assert!(
            errors[2].message.contains("sets `acks` itself"),
            "{errors:?}"
        );
        let errors = split("sasl = { mechanism = \"GSSAPI\", username = \"u\", password = \"p\" }")
            .expect_err("invalid options");
        assert!(
            errors.iter().any(|e| e.field == "sasl.mechanism"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_whole_client_configuration_is_checked() {
        let connection = split("bootstrap_servers = \"k:9092\"").expect("valid");
        assert!(connection
            .check_client_config(&[("linger.ms", "5".into())])
            .is_ok());
        let error = connection
            .check_client_config(&[("batch.num.messages", "2000000".into())])
            .expect_err("out of librdkafka's range");
        assert!(
            error.message.contains("batch.num.messages"),
            "{}",
            error.message
        );
    }
}
