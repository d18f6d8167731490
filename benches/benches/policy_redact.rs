//! The `audit_policy` and `redact` transforms on `generate` traffic.
//!
//! `cargo bench -p auditflow-benches --bench policy_redact`
//!
//! - `pass_through`: what every pipeline does per event: decode the line and
//!   write it back (the codec);
//! - `policy_and_redact`: the same, with `audit_policy` (examples/policy.yaml)
//!   and `redact` (no options: Secret-safe) between decoding and writing;
//! - `audit_policy` and `redact_*` alone, on events decoded beforehand.
//!
//! On a machine shared with other work these wall-clock figures move by tens of
//! percent from run to run; `benches/policy_overhead` measures the ratio of
//! the first two robustly.

use auditflow_benches::pipeline::{
    decode, policy_options, run, transform, write_all, ALL_PATTERNS,
};
use auditflow_benches::sample_lines;
use auditflow_core::event::Event;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The allocator of the `auditflow` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;

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
