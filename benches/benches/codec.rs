//! The event codec: decoding audit events into a typed header with raw bodies
//! and writing them back, against building a full `serde_json::Value` tree.
//!
//! `cargo bench -p auditflow-benches --bench codec`

use auditflow_benches::sample_lines;
use auditflow_core::event::{AuditEvent, Event, Payload};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;

/// The allocator of the `auditflow` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;

fn codec(c: &mut Criterion) {
    let lines = sample_lines(EVENTS, 1);
    let bytes: usize = lines.iter().map(String::len).sum();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("typed_header_raw_bodies", |b| {
        let mut out = Vec::with_capacity(bytes + EVENTS);
        b.iter(|| {
            out.clear();
            for line in &lines {
                let event = AuditEvent::parse(line).expect("generated events parse");
                let event = Event::new(Payload::Audit(Arc::new(event)), "bench".into());
                event.write_json(&mut out).expect("serialize");
                out.push(b'\n');
            }
            out.len()
        })
    });
    group.bench_function("serde_json_value_tree", |b| {
        let mut out = Vec::with_capacity(bytes + EVENTS);
        b.iter(|| {
            out.clear();
            for line in &lines {
                let value: serde_json::Value = serde_json::from_str(line).expect("parse");
                serde_json::to_writer(&mut out, &value).expect("serialize");
                out.push(b'\n');
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
