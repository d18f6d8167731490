//! The `detect` transform's work on one core: Falco's current Kubernetes audit
//! rules plus auditflow's rule pack, evaluated on `auditflow generate` traffic.
//!
//! `cargo bench -p auditflow-benches --bench detect`
//!
//! `evaluate` measures what the transform does per event (the events are
//! decoded beforehand, as the source hands them over); `decode_and_evaluate`
//! adds decoding, the whole single-core cost of `auditflow detect`.

use std::path::Path;
use std::sync::Arc;

use auditflow_benches::sample_lines;
use auditflow_core::event::{AuditEvent, Event, Payload};
use auditflow_transforms::detect::{load_rules, DetectState, Engine};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The allocator of the `auditflow` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 20_000;

fn engine() -> Engine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = [
        root.join("../shared/conformance/falco/k8s_audit_rules.yaml"),
        root.join("examples/rules/auditflow_rules.yaml"),
    ];
    let loaded = load_rules(&rules).expect("the rules load");
    Engine::new(loaded.rules, DetectState::new(100_000), "bench".into())
}

fn decode(line: &str) -> Event {
    let audit = AuditEvent::parse(line).expect("generated events parse");
    Event::new(Payload::Audit(Arc::new(audit)), "bench".into())
}

fn detect(c: &mut Criterion) {
    let lines = sample_lines(EVENTS, 1);
    let events: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
    let mut engine = engine();
    let mut alerts = 0;
    let mut matches = Vec::new();
    for event in &events {
        engine.evaluate(event, &mut matches);
        alerts += matches.len();
        matches.clear();
    }
    println!(
        "{} rules, {alerts} alerts on {EVENTS} events",
        engine.rules().len()
    );
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("evaluate", |b| {
        b.iter(|| {
            for event in &events {
                engine.evaluate(event, &mut matches);
                matches.clear();
            }
        })
    });
    group.bench_function("decode_and_evaluate", |b| {
        b.iter(|| {
            for line in &lines {
                engine.evaluate(&decode(line), &mut matches);
                matches.clear();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, detect);
criterion_main!(benches);
