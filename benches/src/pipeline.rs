//! A pipeline's per-event work without the pipeline: decode, transforms, encode.
//!
//! Shared by the benches of the `audit_policy` and `redact` transforms.

use std::sync::Arc;

use auditflow_core::component::{Transform, TransformContext, TransformOutput};
use auditflow_core::event::{AuditEvent, Event, Payload};
use auditflow_core::metrics::{ComponentKind, ComponentMetrics, Registry};

/// How many events a transform is given at once (a source's batch).
pub const BATCH: usize = 1_000;

/// `redact` options enabling every built-in pattern and a field path.
pub const ALL_PATTERNS: &str = r#"builtin_patterns = ["bearer_token", "jwt", "aws_access_key", "private_key", "basic_auth_url"]
fields = ["requestObject.spec.containers[*].env[*].value"]"#;

/// Builds an `audit_policy` or `redact` transform from its TOML options, as the pipeline does.
pub fn transform(type_name: &str, options: &str) -> Box<dyn Transform> {
    let table: toml::Table = options.parse().expect("bench options are TOML");
    let config = match type_name {
        "audit_policy" => auditflow_transforms::audit_policy::parse(&table),
        _ => auditflow_transforms::redact::parse(&table),
    }
    .unwrap_or_else(|errors| panic!("bench options are valid: {errors:?}"));
    let registry = Registry::new();
    let context = TransformContext {
        id: type_name.into(),
        data_dir: std::env::temp_dir(),
        metrics: ComponentMetrics::new(&registry, type_name, ComponentKind::Transform, type_name),
    };
    config.build(&context).expect("the transform builds")
}

/// The `audit_policy` options using the repository's example policy.
pub fn policy_options() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/policy.yaml");
    format!("policy_file = \"{path}\"")
}

/// Decodes one line, as a source does.
pub fn decode(line: &str) -> Event {
    let event = AuditEvent::parse(line).expect("generated events parse");
    Event::new(Payload::Audit(Arc::new(event)), "bench".into())
}

/// Runs the transforms one after the other over the events, in batches; returns what came out.
///
/// A batch of at most [`BATCH`] events is handed over as it is, as a pipeline
/// hands a source's batch to a transform; larger ones are cut into batches.
pub fn run(transforms: &mut [Box<dyn Transform>], events: Vec<Event>) -> Vec<Event> {
    let mut batch = events;
    for transform in transforms.iter_mut() {
        if batch.len() <= BATCH {
            batch = run_batch(transform.as_mut(), batch);
            continue;
        }
        let mut next = Vec::with_capacity(batch.len());
        let mut rest = batch.into_iter();
        loop {
            let chunk: Vec<Event> = rest.by_ref().take(BATCH).collect();
            if chunk.is_empty() {
                break;
            }
            next.extend(run_batch(transform.as_mut(), chunk));
        }
        batch = next;
    }
    batch
}

/// One batch through one transform; what it sends to its default output.
fn run_batch(transform: &mut dyn Transform, batch: Vec<Event>) -> Vec<Event> {
    let mut output = TransformOutput::new("bench".into(), 0);
    transform.transform(batch, &mut output);
    output.into_default()
}

/// Encodes events as a file sink does, one line each.
pub fn write_all(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        event.write_json(out).expect("serialize");
        out.push(b'\n');
    }
}
