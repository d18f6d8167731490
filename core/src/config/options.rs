//! Checking a component's options table against its options struct.
//!
//! Options structs derive `Deserialize` with `deny_unknown_fields`. serde stops
//! at the first error, so [`parse_options`] removes the offending key and tries
//! again, collecting every unknown option and every value of the wrong type in
//! one pass, each with the path of its field (`tls.crt_file`).

use std::collections::HashSet;

use serde::de::DeserializeOwned;

/// A problem with one option of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option's path inside the component's table (`path`, `tls.crt_file`); empty for the table itself.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl OptionError {
    /// An error about one option.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> OptionError {
        OptionError {
            field: field.into(),
            message: message.into(),
        }
    }
}

const MAX_ATTEMPTS: usize = 64;

/// Deserializes an options table, reporting every unknown option and wrong type.
pub fn parse_options<T: DeserializeOwned>(table: &toml::Table) -> Result<T, Vec<OptionError>> {
    let mut table = table.clone();
    let mut errors = Vec::new();
    let mut removed = HashSet::new();
    for _ in 0..MAX_ATTEMPTS {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(options) if errors.is_empty() => return Ok(options),
            Ok(_) => return Err(errors),
            Err(error) => {
                let path: Vec<String> = error.path().iter().map(|s| s.to_string()).collect();
                let message = clean_message(&error.inner().to_string());
                if let Some(missing) = missing_field(&message) {
                    let field = join(&path, missing);
                    if !removed.contains(&field) {
                        errors.push(OptionError::new(
                            field,
                            format!("the option `{missing}` is required"),
                        ));
                    }
                    return Err(errors);
                }
                let field = path.join(".");
                let unknown = message.starts_with("unknown field");
                errors.push(OptionError::new(field.clone(), describe(&message, unknown)));
                if !remove_path(&mut table, &path) {
                    return Err(errors);
                }
                removed.insert(field);
            }
        }
    }
    Err(errors)
}

fn describe(message: &str, unknown: bool) -> String {
    if unknown {
        format!("unknown option: {message}")
    } else {
        message.to_string()
    }
}

fn join(path: &[String], last: &str) -> String {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    parts.push(last);
    parts.join(".")
}

/// The first line of a deserializer's message (toml adds a line naming the key, which the field already does).
fn clean_message(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Removes the key at `path`; returns whether something was removed.
fn remove_path(table: &mut toml::Table, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => match table.get_mut(first) {
            Some(toml::Value::Table(inner)) => remove_path(inner, rest),
            _ => table.remove(first).is_some(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tls {
        crt_file: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Options {
        path: String,
        #[serde(default)]
        rate: Option<u64>,
        #[serde(default)]
        tls: Option<Tls>,
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn valid_options_parse() {
        let options: Options = parse_options(&table("path = \"x\"\nrate = 5")).unwrap();
        assert_eq!(options.rate, Some(5));
    }

    #[test]
    fn every_error_is_reported_with_its_field() {
        let errors = parse_options::<Options>(&table(
            "path = \"x\"\nrate = \"fast\"\ncolour = 1\n[tls]\ncrt_file = 3\nkey = 1",
        ))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"rate"), "{errors:?}");
        assert!(fields.contains(&"colour"), "{errors:?}");
        assert!(fields.contains(&"tls.crt_file"), "{errors:?}");
        assert!(fields.contains(&"tls.key"), "{errors:?}");
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn missing_required_option_is_named() {
        let errors = parse_options::<Options>(&table("rate = 1")).unwrap_err();
        assert_eq!(errors[0].field, "path");
        assert!(errors[0].message.contains("required"));
    }
}
