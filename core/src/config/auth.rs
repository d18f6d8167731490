//! `auth = { strategy, user, password, token }`: the one shape of the
//! credentials of every component that logs in to an HTTP server (the
//! `elasticsearch` sink today; the other store sinks as they come).
//!
//! - `strategy = "basic"`: `user` and `password` (HTTP basic authentication);
//! - `strategy = "bearer"`: `token`, sent as `Authorization: Bearer TOKEN`;
//! - `strategy = "api_key"`: `token`, an Elasticsearch API key in its encoded
//!   form (base64 of `id:key`, what the create-API-key call answers as
//!   `encoded`), sent as `Authorization: ApiKey TOKEN`.
//!
//! Write secrets as `${VAR}` so they stay out of the file.

use serde::Deserialize;

use super::OptionError;

/// How a component authenticates to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStrategy {
    /// HTTP basic authentication with `user` and `password`.
    Basic,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: ApiKey <token>` (Elasticsearch and OpenSearch API keys).
    ApiKey,
}

/// The credentials of a client connection.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthOptions {
    /// Which credentials are sent.
    pub strategy: AuthStrategy,
    /// The user name (`basic`).
    pub user: Option<String>,
    /// The password (`basic`).
    pub password: Option<String>,
    /// The token (`bearer`, `api_key`).
    pub token: Option<String>,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("strategy", &self.strategy)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// Credentials checked to be complete for their strategy.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// User and password.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
    /// An encoded API key.
    ApiKey(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, (hidden))"),
            Credentials::Bearer(_) => f.write_str("Bearer((hidden))"),
            Credentials::ApiKey(_) => f.write_str("ApiKey((hidden))"),
        }
    }
}

impl Credentials {
    /// The value of the `Authorization` header that carries them.
    pub fn authorization(&self) -> String {
        use base64::Engine as _;
        match self {
            Credentials::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            Credentials::Bearer(token) => format!("Bearer {token}"),
            Credentials::ApiKey(token) => format!("ApiKey {token}"),
        }
    }
}

impl AuthOptions {
    /// The credentials, or errors naming `FIELD.OPTION` (`auth.password`) for
    /// what the strategy needs and is missing, or what it does not take.
    pub fn credentials(&self, field: &str) -> Result<Credentials, Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut require = |name: &str, value: &Option<String>, why: &str| match value {
            Some(value) if !value.is_empty() => value.clone(),
            _ => {
                errors.push(OptionError::new(format!("{field}.{name}"), why));
                String::new()
            }
        };
        let credentials = match self.strategy {
            AuthStrategy::Basic => Credentials::Basic {
                user: require("user", &self.user, "is required with strategy = \"basic\""),
                password: require(
                    "password",
                    &self.password,
                    "is required with strategy = \"basic\" (write it as \"${VAR}\")",
                ),
            },
            AuthStrategy::Bearer => Credentials::Bearer(require(
                "token",
                &self.token,
                "is required with strategy = \"bearer\" (write it as \"${VAR}\")",
            )),
            AuthStrategy::ApiKey => Credentials::ApiKey(require(
                "token",
                &self.token,
                "is required with strategy = \"api_key\": the encoded API key (write it as \"${VAR}\")",
            )),
        };
        let unused: &[(&str, bool)] = match self.strategy {
            AuthStrategy::Basic => &[("token", self.token.is_some())],
            AuthStrategy::Bearer | AuthStrategy::ApiKey => &[
                ("user", self.user.is_some()),
                ("password", self.password.is_some()),
            ],
        };
        for (name, _) in unused.iter().filter(|(_, given)| *given) {
            errors.push(OptionError::new(
                format!("{field}.{name}"),
                "is not used by this strategy; remove it or change auth.strategy",
            ));
        }
        if errors.is_empty() {
            Ok(credentials)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_options;

    fn auth(text: &str) -> AuthOptions {
        parse_options(&text.parse::<toml::Table>().unwrap()).unwrap()
    }

    #[test]
    fn basic_needs_a_user_and_a_password() {
        let credentials = auth("strategy = \"basic\"\nuser = \"u\"\npassword = \"p\"")
            .credentials("auth")
            .unwrap();
        assert!(
            credentials
                == Credentials::Basic {
                    user: "u".into(),
                    password: "p".into()
                }
        );
        let errors = auth("strategy = \"basic\"\nuser = \"u\"\ntoken = \"t\"")
            .credentials("auth")
            .err()
            .unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["auth.password", "auth.token"]);
    }

    #[test]
    fn tokens_are_required_and_hidden_from_debug() {
        let options = auth("strategy = \"api_key\"\ntoken = \"c2VjcmV0\"");
        assert!(options.credentials("auth").unwrap() == Credentials::ApiKey("c2VjcmV0".into()));
        assert!(!format!("{options:?}").contains("c2VjcmV0"));
        let errors = auth("strategy = \"bearer\"")
            .credentials("x.auth")
            .err()
            .unwrap();
        assert_eq!(errors[0].field, "x.auth.token");
    }
}
