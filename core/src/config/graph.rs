//! Checks of the pipeline graph: ids, inputs, outputs and cycles.
//!
//! An input is `ID` (the component's default output) or `ID.OUTPUT` (a named
//! output, or `errors`; a sink has only `errors`, the events it refused for good). Errors: an id that is not a plain name, the same id
//! used twice, an input naming no component, a sink, or an output the
//! component does not have, a cycle, and a source nobody reads. Warning: a
//! transform none of whose outputs is read.

use std::collections::{BTreeMap, BTreeSet};

use super::{ComponentConfig, ConfigError};
use crate::component::ERRORS_OUTPUT;
use crate::metrics::ComponentKind;

/// A reference to one output of a component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputRef {
    /// The component id.
    pub component: String,
    /// The output name; `None` for the default output.
    pub output: Option<String>,
}

impl OutputRef {
    /// Splits an input string: `ID` or `ID.OUTPUT`.
    pub fn parse(input: &str) -> OutputRef {
        match input.split_once('.') {
            Some((component, output)) => OutputRef {
                component: component.to_string(),
                output: Some(output.to_string()),
            },
            None => OutputRef {
                component: input.to_string(),
                output: None,
            },
        }
    }
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.output {
            Some(output) => write!(f, "{}.{output}", self.component),
            None => write!(f, "{}", self.component),
        }
    }
}

/// The outputs of a component: whether it has a default one, and its named ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// Whether `ID` alone names an output.
    pub has_default: bool,
    /// The names of `ID.NAME` outputs (besides `errors`).
    pub named: Vec<String>,
}

impl Outputs {
    /// The outputs of a checked component.
    pub fn of(config: &ComponentConfig) -> Outputs {
        let (has_default, named) = match config {
            ComponentConfig::Source(_) => (true, Vec::new()),
            ComponentConfig::Transform(transform) => {
                (transform.has_default_output(), transform.named_outputs())
            }
            ComponentConfig::Sink(_) => (false, Vec::new()),
        };
        Outputs { has_default, named }
    }

    /// Outputs without named ones: a source's (`has_default`) or a sink's (none).
    pub fn fixed(has_default: bool) -> Outputs {
        Outputs {
            has_default,
            named: Vec::new(),
        }
    }
}

/// A component's place in the graph, known even when its options have errors.
#[derive(Debug, Clone)]
pub struct Node {
    /// `sources.ID`, as errors name it.
    pub key: String,
    /// The id.
    pub id: String,
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// Its `inputs`.
    pub inputs: Vec<String>,
    /// Its outputs, when its options could be checked.
    pub outputs: Option<Outputs>,
}

/// Checks the graph; pushes errors and returns warnings.
pub fn check(components: &[Node], errors: &mut Vec<ConfigError>) -> Vec<String> {
    check_ids(components, errors);
    check_inputs(components, errors);
    check_cycles(components, errors);
    check_readers(components, errors)
}

fn check_ids(components: &[Node], errors: &mut Vec<ConfigError>) {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    for entry in components {
        let valid = !entry.id.is_empty()
            && entry
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            errors.push(ConfigError::at(
                &entry.key,
                None,
                "a component id may hold only letters, digits, `_` and `-` (a `.` separates an output name)",
            ));
        }
        if let Some(first) = seen.insert(&entry.id, entry.key.clone()) {
            errors.push(ConfigError::at(
                &entry.key,
                None,
                format!("the id `{}` is already used by {first}; ids must be unique across sources, transforms and sinks", entry.id),
            ));
        }
    }
}

fn check_inputs(components: &[Node], errors: &mut Vec<ConfigError>) {
    let outputs: BTreeMap<&str, (ComponentKind, Option<&Outputs>)> = components
        .iter()
        .map(|node| (node.id.as_str(), (node.kind, node.outputs.as_ref())))
        .collect();
    for entry in components {
        for input in &entry.inputs {
            if let Err(message) = resolve(&outputs, &OutputRef::parse(input)) {
                errors.push(ConfigError::at(
                    &entry.key,
                    Some("inputs"),
                    format!("input `{input}`: {message}"),
                ));
            }
        }
    }
}

type OutputsById<'a> = BTreeMap<&'a str, (ComponentKind, Option<&'a Outputs>)>;

fn resolve(outputs: &OutputsById<'_>, input: &OutputRef) -> Result<(), String> {
    let Some((kind, known)) = outputs.get(input.component.as_str()) else {
        return Err(format!(
            "no source or transform has the id `{}`",
            input.component
        ));
    };
    if *kind == ComponentKind::Sink {
        return match &input.output {
            Some(name) if name == ERRORS_OUTPUT => Ok(()),
            _ => Err(format!(
                "`{}` is a sink, whose one output is `{}.{ERRORS_OUTPUT}` (the events it refused for good)",
                input.component, input.component
            )),
        };
    }
    // A component whose options have errors: its outputs are unknown, so say nothing more.
    let Some(Outputs { has_default, named }) = known else {
        return Ok(());
    };
    match &input.output {
        None if *has_default => Ok(()),
        None => Err(format!(
            "`{}` has only named outputs: {}",
            input.component,
            list_outputs(&input.component, named)
        )),
        Some(name) if name == ERRORS_OUTPUT || named.contains(name) => Ok(()),
        Some(name) => Err(format!(
            "`{}` has no output `{name}`; its outputs are: {}",
            input.component,
            list_outputs(&input.component, named)
        )),
    }
}

fn list_outputs(id: &str, named: &[String]) -> String {
    let mut names: Vec<String> = named.iter().map(|n| format!("{id}.{n}")).collect();
    names.push(format!("{id}.{ERRORS_OUTPUT}"));
    names.join(", ")
}

fn check_cycles(components: &[Node], errors: &mut Vec<ConfigError>) {
    let upstream: BTreeMap<&str, Vec<String>> = components
        .iter()
        .map(|e| {
            let inputs = e
                .inputs
                .iter()
                .map(|i| OutputRef::parse(i).component)
                .collect();
            (e.id.as_str(), inputs)
        })
        .collect();
    let mut reported = BTreeSet::new();
    for entry in components {
        if let Some(path) = find_cycle(&entry.id, &upstream) {
            let members: BTreeSet<String> = path.iter().cloned().collect();
            if reported.insert(members) {
                errors.push(ConfigError::at(
                    &entry.key,
                    Some("inputs"),
                    format!("the inputs form a cycle: {}", path.join(" -> ")),
                ));
            }
        }
    }
}

/// A path of inputs from `start` back to itself, if there is one.
fn find_cycle(start: &str, upstream: &BTreeMap<&str, Vec<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut visited = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in upstream.get(node.as_str()).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if visited.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

fn check_readers(components: &[Node], errors: &mut Vec<ConfigError>) -> Vec<String> {
    let read: BTreeSet<String> = components
        .iter()
        .flat_map(|e| e.inputs.iter().map(|i| OutputRef::parse(i).component))
        .collect();
    let mut warnings = Vec::new();
    for entry in components {
        if read.contains(&entry.id) {
            continue;
        }
        match entry.kind {
            ComponentKind::Source => errors.push(ConfigError::at(
                &entry.key,
                None,
                format!(
                    "nothing reads this source; add \"{}\" to the inputs of a transform or sink",
                    entry.id
                ),
            )),
            ComponentKind::Transform => warnings.push(format!(
                "{}: nothing reads this transform's outputs; its events are discarded",
                entry.key.clone()
            )),
            ComponentKind::Sink => {}
        }
    }
    warnings
}
