//! Tests of the `file` source's options.

use super::*;

fn parse_toml(text: &str) -> Result<Box<dyn SourceConfig>, Vec<OptionError>> {
    let table: toml::Table = text.parse().expect("valid TOML");
    parse(&table)
}

fn errors(text: &str) -> Vec<OptionError> {
    match parse_toml(text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

#[test]
fn defaults_apply() {
    let table: toml::Table = r#"include = ["/var/log/audit/*.log"]"#.parse().expect("toml");
    let config: FileConfig = parse_options(&table).expect("valid");
    assert_eq!(config.read_from, ReadFrom::Beginning);
    assert_eq!(config.max_line_bytes, 4 * 1024 * 1024);
    assert_eq!(config.glob_interval, Duration::from_secs(1));
    assert_eq!(config.poll_interval, Duration::from_millis(250));
    assert_eq!(config.fingerprint.max_bytes, 4096);
    assert_eq!(config.ignore_older, None);
    assert!(config.exclude.is_empty());
}

#[test]
fn every_option_is_read() {
    let table: toml::Table = r#"
include = ["/a/*.log"]
exclude = ["/a/skip*.log"]
read_from = "end"
max_line_bytes = 1024
glob_interval = "500ms"
poll_interval = "50ms"
ignore_older = "7d"
fingerprint = { max_bytes = 256 }
"#
    .parse()
    .expect("toml");
    let config: FileConfig = parse_options(&table).expect("valid");
    assert_eq!(config.read_from, ReadFrom::End);
    assert_eq!(config.glob_interval, Duration::from_millis(500));
    assert_eq!(config.poll_interval, Duration::from_millis(50));
    assert_eq!(
        config.ignore_older,
        Some(Duration::from_secs(7 * 24 * 3600))
    );
    assert_eq!(config.fingerprint.max_bytes, 256);
    assert!(check(&config).is_empty());
}

#[test]
fn every_problem_is_named() {
    let found = errors(
        r#"
include = []
exclude = ["/a/[.log"]
max_line_bytes = 0
glob_interval = "0s"
fingerprint = { max_bytes = 0 }
"#,
    );
    let fields: Vec<&str> = found.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "include",
            "exclude[0]",
            "max_line_bytes",
            "fingerprint.max_bytes",
            "glob_interval"
        ]
    );
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    let found = errors(
        r#"
include = ["/a/*.log"]
poll_interval = "soon"
"#,
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, "poll_interval");
    assert!(
        found[0].message.contains("\"500ms\""),
        "{}",
        found[0].message
    );
}

#[test]
fn include_is_required_and_unknown_options_are_refused() {
    let missing = errors("read_from = \"end\"");
    assert_eq!(missing[0].field, "include");
    let unknown = errors("include = [\"/a\"]\nstart_at = \"end\"");
    assert_eq!(unknown[0].field, "start_at");
    let wrong = errors("include = [\"/a\"]\nread_from = \"middle\"");
    assert_eq!(wrong[0].field, "read_from");
}
