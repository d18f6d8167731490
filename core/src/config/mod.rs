//! The pipeline configuration: `pipeline.toml`.
//!
//! ```toml
//! data_dir = "./data"            # checkpoints, buffers, stores (default ./data)
//! [api]
//! address = "127.0.0.1:8686"     # /health and /metrics
//! [sources.ID]
//! type = "stdin"
//! [transforms.ID]
//! type = "filter"
//! inputs = ["ID", "OTHER.OUTPUT"]
//! [sinks.ID]
//! type = "console"
//! inputs = ["ID"]
//! ```
//!
//! The file is parsed with the `toml` crate and each component's options with
//! serde (`deny_unknown_fields`) through `serde_path_to_error`, which names the
//! field of every error; the `config` crate was not used because it merges
//! layered sources into one value tree and loses which field of which component
//! an error is about. Loading checks everything and returns **every** error
//! (see [`ConfigError`]): unknown component types, unknown, missing and
//! mistyped options, and the graph ([`graph`]).

pub mod auth;
pub mod duration;
mod env;
pub mod graph;
mod options;
pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use auth::{AuthOptions, Credentials};
pub use env::interpolate;
pub use options::{parse_options, OptionError};
pub use tls::TlsOptions;

use crate::component::{Catalog, ComponentSpec, SinkConfig, SourceConfig, TransformConfig};
use crate::metrics::ComponentKind;

/// One problem in a configuration, naming the component and field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `sources.ID`, `transforms.ID` or `sinks.ID`; `None` for the file as a whole.
    pub component: Option<String>,
    /// The option's path within the component (or top-level key).
    pub field: Option<String>,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl ConfigError {
    fn file(message: impl Into<String>) -> ConfigError {
        ConfigError {
            component: None,
            field: None,
            message: message.into(),
        }
    }

    /// An error about a component's field.
    pub fn at(component: &str, field: Option<&str>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            component: Some(component.to_string()),
            field: field.filter(|f| !f.is_empty()).map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.component, &self.field) {
            (Some(component), Some(field)) => write!(f, "{component}.{field}: {}", self.message),
            (Some(component), None) => write!(f, "{component}: {}", self.message),
            (None, Some(field)) => write!(f, "{field}: {}", self.message),
            (None, None) => write!(f, "{}", self.message),
        }
    }
}

/// The `[api]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Where `/health` and `/metrics` are served.
    pub address: SocketAddr,
}

/// A component's checked configuration.
pub enum ComponentConfig {
    /// A source.
    Source(Box<dyn SourceConfig>),
    /// A transform (shared: a transform run on a source's decoding threads builds one instance per thread).
    Transform(Arc<dyn TransformConfig>),
    /// A sink.
    Sink(Box<dyn SinkConfig>),
}

/// One component as declared: id, type, inputs and checked options.
pub struct ComponentEntry {
    /// The id (the key of its table).
    pub id: String,
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The `type` option.
    pub type_name: String,
    /// The `inputs` option (empty for sources).
    pub inputs: Vec<String>,
    /// The checked options.
    pub config: ComponentConfig,
}

impl ComponentEntry {
    /// `sources.ID`, as errors name the component.
    pub fn key(&self) -> String {
        format!("{}.{}", self.kind.table(), self.id)
    }
}

/// A checked pipeline configuration, ready to run.
pub struct PipelineConfig {
    /// Where components keep state (checkpoints, buffers, stores).
    pub data_dir: PathBuf,
    /// The API server, if configured.
    pub api: Option<ApiConfig>,
    /// Every component, sources first, then transforms, then sinks.
    pub components: Vec<ComponentEntry>,
    /// Problems that do not stop the pipeline (a transform whose output nobody reads).
    pub warnings: Vec<String>,
}

impl PipelineConfig {
    /// A one-line summary: how many components of each kind.
    pub fn summary(&self) -> String {
        let count = |kind: ComponentKind, one: &str, many: &str| {
            let n = self.components.iter().filter(|c| c.kind == kind).count();
            format!("{n} {}", if n == 1 { one } else { many })
        };
        format!(
            "{}, {}, {}",
            count(ComponentKind::Source, "source", "sources"),
            count(ComponentKind::Transform, "transform", "transforms"),
            count(ComponentKind::Sink, "sink", "sinks")
        )
    }
}

/// A configuration that did not pass its checks: every error, and the warnings found on the way.
#[derive(Debug, Clone, Default)]
pub struct InvalidConfig {
    /// Every error found.
    pub errors: Vec<ConfigError>,
    /// Warnings found as well.
    pub warnings: Vec<String>,
}

impl From<Vec<ConfigError>> for InvalidConfig {
    fn from(errors: Vec<ConfigError>) -> InvalidConfig {
        InvalidConfig {
            errors,
            warnings: Vec::new(),
        }
    }
}

/// Reads and checks a configuration file.
pub fn load_file(path: &Path, catalog: &Catalog) -> Result<PipelineConfig, InvalidConfig> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        vec![ConfigError::file(format!(
            "cannot read the configuration file {}: {error}",
            path.display()
        ))]
    })?;
    load_str(&text, catalog, &|name| std::env::var(name).ok())
}

/// Checks a configuration text, taking `${VAR}` values from `lookup`.
pub fn load_str(
    text: &str,
    catalog: &Catalog,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<PipelineConfig, InvalidConfig> {
    let mut root: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| vec![ConfigError::file(toml_error(&error))])?;
    let mut errors = Vec::new();
    interpolate_table(&mut root, "", lookup, &mut errors);
    let data_dir = take_data_dir(&mut root, &mut errors);
    let api = take_api(&mut root, &mut errors);
    let mut parsed = Vec::new();
    for kind in [
        ComponentKind::Source,
        ComponentKind::Transform,
        ComponentKind::Sink,
    ] {
        let table = root.remove(kind.table());
        parsed.extend(parse_components(kind, table, catalog, &mut errors));
    }
    for key in root.keys() {
        errors.push(ConfigError::file(format!(
            "unknown top-level key `{key}`; expected data_dir, api, sources, transforms or sinks"
        )));
    }
    let nodes: Vec<graph::Node> = parsed.iter().map(|p| p.node.clone()).collect();
    let warnings = graph::check(&nodes, &mut errors);
    let components: Vec<ComponentEntry> = parsed.into_iter().filter_map(|p| p.entry).collect();
    if errors.is_empty() {
        Ok(PipelineConfig {
            data_dir,
            api,
            components,
            warnings,
        })
    } else {
        Err(InvalidConfig { errors, warnings })
    }
}

fn toml_error(error: &toml::de::Error) -> String {
    format!(
        "the configuration is not valid TOML: {}",
        error.to_string().trim_end()
    )
}

fn interpolate_table(
    table: &mut toml::Table,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    for (key, value) in table.iter_mut() {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        interpolate_value(value, &here, lookup, errors);
    }
}

fn interpolate_value(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        toml::Value::String(text) => match interpolate(text, lookup) {
            Ok(done) => *text = done,
            Err(message) => errors.push(ConfigError {
                component: None,
                field: Some(path.to_string()),
                message,
            }),
        },
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{index}]"), lookup, errors);
            }
        }
        toml::Value::Table(inner) => interpolate_table(inner, path, lookup, errors),
        _ => {}
    }
}

fn take_data_dir(root: &mut toml::Table, errors: &mut Vec<ConfigError>) -> PathBuf {
    match root.remove("data_dir") {
        None => PathBuf::from("./data"),
        Some(toml::Value::String(dir)) if !dir.is_empty() => PathBuf::from(dir),
        Some(other) => {
            errors.push(ConfigError {
                component: None,
                field: Some("data_dir".into()),
                message: format!(
                    "expected a directory path string, found {}",
                    other.type_str()
                ),
            });
            PathBuf::from("./data")
        }
    }
}

fn take_api(root: &mut toml::Table, errors: &mut Vec<ConfigError>) -> Option<ApiConfig> {
    let value = root.remove("api")?;
    let field = |name: &str| Some(format!("api.{name}"));
    let toml::Value::Table(mut table) = value else {
        errors.push(ConfigError {
            component: None,
            field: field(""),
            message: "expected a table: [api] address = \"127.0.0.1:8686\"".into(),
        });
        return None;
    };
    let address = table.remove("address");
    for key in table.keys() {
        errors.push(ConfigError {
            component: None,
            field: field(key),
            message: "unknown option; [api] takes only `address`".into(),
        });
    }
    match address
        .as_ref()
        .and_then(toml::Value::as_str)
        .map(str::parse)
    {
        Some(Ok(address)) => Some(ApiConfig { address }),
        _ => {
            errors.push(ConfigError {
                component: None,
                field: field("address"),
                message: "expected an address such as \"127.0.0.1:8686\"".into(),
            });
            None
        }
    }
}

fn parse_components(
    kind: ComponentKind,
    table: Option<toml::Value>,
    catalog: &Catalog,
    errors: &mut Vec<ConfigError>,
) -> Vec<ParsedComponent> {
    let table = match table {
        None => return Vec::new(),
        Some(toml::Value::Table(table)) => table,
        Some(_) => {
            errors.push(ConfigError::file(format!(
                "`{}` must be a table of components: [{}.ID]",
                kind.table(),
                kind.table()
            )));
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for (id, value) in table {
        let key = format!("{}.{id}", kind.table());
        entries.push(parse_component(kind, &id, &key, value, catalog, errors));
    }
    entries
}

/// A component as far as it could be checked: always its place in the graph, its
/// configuration only when every option is right.
pub(crate) struct ParsedComponent {
    pub(crate) node: graph::Node,
    pub(crate) entry: Option<ComponentEntry>,
}

fn parse_component(
    kind: ComponentKind,
    id: &str,
    key: &str,
    value: toml::Value,
    catalog: &Catalog,
    all_errors: &mut Vec<ConfigError>,
) -> ParsedComponent {
    let mut node = graph::Node {
        key: key.to_string(),
        id: id.to_string(),
        kind,
        inputs: Vec::new(),
        outputs: None,
    };
    let toml::Value::Table(mut options) = value else {
        all_errors.push(ConfigError::at(
            key,
            None,
            format!("expected a table: [{key}] with a `type`"),
        ));
        return ParsedComponent { node, entry: None };
    };
    let mut errors = Vec::new();
    let type_name = take_type(&mut options, kind, key, catalog, &mut errors);
    let inputs = take_inputs(&mut options, kind, key, &mut errors);
    node.inputs = inputs.clone();
    let spec = type_name
        .as_deref()
        .and_then(|name| catalog.get(kind, name));
    let config = spec.and_then(|spec| match check_options(spec, &options) {
        Ok(config) => Some(config),
        Err(option_errors) => {
            errors.extend(
                option_errors
                    .into_iter()
                    .map(|e| ConfigError::at(key, Some(&e.field), e.message)),
            );
            None
        }
    });
    node.outputs = match (kind, config.as_ref()) {
        (_, Some(config)) => Some(graph::Outputs::of(config)),
        // A source's and a sink's outputs do not depend on their options.
        (ComponentKind::Source, None) => Some(graph::Outputs::fixed(true)),
        (ComponentKind::Sink, None) => Some(graph::Outputs::fixed(false)),
        (ComponentKind::Transform, None) => None,
    };
    let entry = match (config, type_name) {
        (Some(config), Some(type_name)) if errors.is_empty() => Some(ComponentEntry {
            id: id.to_string(),
            kind,
            type_name,
            inputs,
            config,
        }),
        _ => None,
    };
    all_errors.append(&mut errors);
    ParsedComponent { node, entry }
}

fn check_options(
    spec: &ComponentSpec,
    options: &toml::Table,
) -> Result<ComponentConfig, Vec<OptionError>> {
    Ok(match spec {
        ComponentSpec::Source(parse) => ComponentConfig::Source(parse(options)?),
        ComponentSpec::Transform(parse) => ComponentConfig::Transform(Arc::from(parse(options)?)),
        ComponentSpec::Sink(parse) => ComponentConfig::Sink(parse(options)?),
    })
}

fn take_type(
    options: &mut toml::Table,
    kind: ComponentKind,
    key: &str,
    catalog: &Catalog,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let known = catalog.type_names(kind).join(", ");
    match options.remove("type") {
        Some(toml::Value::String(name)) if catalog.get(kind, &name).is_some() => Some(name),
        Some(toml::Value::String(name)) => {
            errors.push(ConfigError::at(
                key,
                Some("type"),
                format!(
                    "unknown {} type `{name}`; known types: {known}",
                    kind.as_str()
                ),
            ));
            None
        }
        _ => {
            errors.push(ConfigError::at(
                key,
                Some("type"),
                format!("the option `type` is required (one of: {known})"),
            ));
            None
        }
    }
}

fn take_inputs(
    options: &mut toml::Table,
    kind: ComponentKind,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let value = options.remove("inputs");
    if kind == ComponentKind::Source {
        if value.is_some() {
            errors.push(ConfigError::at(
                key,
                Some("inputs"),
                "a source has no inputs; remove this option",
            ));
        }
        return Vec::new();
    }
    let inputs: Option<Vec<String>> = value.as_ref().and_then(|v| {
        v.as_array()?
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect()
    });
    match inputs {
        Some(inputs) if !inputs.is_empty() => inputs,
        Some(_) => {
            errors.push(ConfigError::at(
                key,
                Some("inputs"),
                "`inputs` is empty; name at least one source or transform",
            ));
            Vec::new()
        }
        None => {
            errors.push(ConfigError::at(
                key,
                Some("inputs"),
                "the option `inputs` is required: a list of component ids, such as [\"in\"]",
            ));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;
