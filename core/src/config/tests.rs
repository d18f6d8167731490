//! Tests of configuration loading, with a catalog of one source and one sink type.

use serde::Deserialize;

use super::*;
use crate::component::{ComponentTask, SinkContext, SourceContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestOptions {
    // Only there to be accepted as an option; never read.
    #[allow(dead_code)]
    #[serde(default)]
    path: Option<String>,
}

impl SourceConfig for TestOptions {
    fn can_end(&self) -> bool {
        true
    }

    fn build(&self, _context: SourceContext) -> anyhow::Result<ComponentTask> {
        Ok(Box::pin(async { Ok(()) }))
    }
}

impl SinkConfig for TestOptions {
    fn build(&self, _context: SinkContext) -> anyhow::Result<ComponentTask> {
        Ok(Box::pin(async { Ok(()) }))
    }
}

fn catalog() -> Catalog {
    let mut catalog = Catalog::new();
    catalog.register(
        "test",
        ComponentSpec::Source(|t| Ok(Box::new(parse_options::<TestOptions>(t)?))),
    );
    catalog.register(
        "test",
        ComponentSpec::Sink(|t| Ok(Box::new(parse_options::<TestOptions>(t)?))),
    );
    catalog
}

fn env(name: &str) -> Option<String> {
    (name == "OUT").then(|| "/var/out".to_string())
}

#[test]
fn defaults_and_interpolation() {
    let text = r#"
[sources.in]
type = "test"
[sinks.out]
type = "test"
inputs = ["in"]
path = "${OUT}/audit-${SUFFIX:-x}.ndjson"
"#;
    let config = load_str(text, &catalog(), &env).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert!(config.api.is_none());
    assert_eq!(config.summary(), "1 source, 0 transforms, 1 sink");
    assert_eq!(config.components[1].key(), "sinks.out");
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let invalid = load_str("[sources.in\ntype = 1", &catalog(), &env)
        .err()
        .unwrap();
    assert_eq!(invalid.errors.len(), 1);
    let message = invalid.errors[0].to_string();
    assert!(
        message.contains("not valid TOML") && message.contains("line 1"),
        "{message}"
    );
}

#[test]
fn api_table_is_checked() {
    let text = "[api]\naddress = \"127.0.0.1:1\"\nport = 2\n[sources.in]\ntype = \"test\"\n[sinks.out]\ntype = \"test\"\ninputs = [\"in\"]";
    let invalid = load_str(text, &catalog(), &env).err().unwrap();
    assert_eq!(invalid.errors.len(), 1);
    assert_eq!(invalid.errors[0].field.as_deref(), Some("api.port"));
}
