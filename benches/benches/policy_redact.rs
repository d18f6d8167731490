//! The `audit_policy` and `redact` transforms on `generate` traffic.
//!
//! `cargo bench -p auditflow-benches --bench policy_redact`
//!
//! - `pass_through`: what every pipeline does per event: decode the line and
//!   write it back (the codec);
//! - `policy_and_redact`: the same, with `audit_policy` (examples/policy.yaml)
//!   and `redact` (no options: Secret-safe) between decoding and writing;
//! - `audit_policy` and `redact_*` alone, on events decoded beforehand.

use std::sync::Arc;

use auditflow_benches::sample_lines;
use auditflow_core::component::{Transform, TransformContext, TransformOutput};
use auditflow_core::event::{AuditEvent, Event, Payload};
use auditflow_core::metrics::{ComponentKind, ComponentMetrics, Registry};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The allocator of the `auditflow` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;
const BATCH: usize = 1_000;

/// Builds a transform from its TOML options, as the pipeline does.
fn transform(type_name: &str, options: &str) -> Box<dyn Transform> {
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

fn policy_options() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/policy.yaml");
    format!("policy_file = \"{path}\"")
}

const ALL_PATTERNS: &str = r#"builtin_patterns = ["bearer_token", "jwt", "aws_access_key", "private_key", "basic_auth_url"]
fields = ["requestObject.spec.containers[*].env[*].value"]"#;

fn decode(line: &str) -> Event {
    let event = AuditEvent::parse(line).expect("generated events parse");
    Event::new(Payload::Audit(Arc::new(event)), "bench".into())
}

/// Runs the transforms over the events in batches; returns the events that came out.
fn run(transforms: &mut [Box<dyn Transform>], events: Vec<Event>) -> Vec<Event> {
    let mut out = Vec::with_capacity(events.len());
    let mut batch = events;
    for transform in transforms.iter_mut() {
        let mut next = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(BATCH) {
            let mut output = TransformOutput::new("bench".into(), 0);
            transform.transform(chunk.to_vec(), &mut output);
            next.extend(output.into_default());
        }
        batch = next;
    }
    out.append(&mut batch);
    out
}

fn write_all(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        event.write_json(out).expect("serialize");
        out.push(b'\n');
    }
}

fn policy_redact(c: &mut Criterion) {
    let lines = sample_lines(EVENTS, 1);
    let bytes: usize = lines.iter().map(String::len).sum();
    let decoded: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
    let mut group = c.benchmark_group("policy_redact");
    group.throughput(Throughput::Elements(EVENTS as u64));

    group.bench_function("pass_through", |b| {
        let mut out = Vec::with_capacity(bytes + EVENTS);
        b.iter(|| {
            out.clear();
            let events: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
            write_all(&events, &mut out);
            out.len()
        })
    });
    group.bench_function("policy_and_redact", |b| {
        let mut transforms = vec![
            transform("audit_policy", &policy_options()),
            transform("redact", ""),
        ];
        let mut out = Vec::with_capacity(bytes + EVENTS);
        b.iter(|| {
            out.clear();
            let events: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
            let events = run(&mut transforms, events);
            write_all(&events, &mut out);
            out.len()
        })
    });
    let alone = [
        ("audit_policy", "audit_policy", policy_options()),
        ("redact_default", "redact", String::new()),
        ("redact_all_patterns", "redact", ALL_PATTERNS.to_string()),
    ];
    for (name, type_name, options) in alone {
        group.bench_function(name, |b| {
            let mut transforms = vec![transform(type_name, &options)];
            b.iter(|| run(&mut transforms, decoded.clone()).len())
        });
    }
    group.finish();
}

criterion_group!(benches, policy_redact);
criterion_main!(benches);
