//! The event codec: decoding audit events into a typed header with raw bodies
//! and writing them back, against building a full `serde_json::Value` tree.
//!
//! `typed_header_raw_bodies` parses each line from a `&str` (the text is
//! copied into the event); `typed_header_raw_bodies_owned_lines` takes the
//! path of a source's framed line (a copy of the bytes, a UTF-8 check, the
//! copy kept as the event's text).
//!
//! `cargo bench -p auditflow-benches --bench codec`

use auditflow_benches::sample_lines;
use auditflow_core::event::{decode_document_each, AuditEvent, Event, Payload};
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
    // The source's id is shared by its events (a pointer copy each), as in a pipeline.
    let source_id: Arc<str> = "bench".into();
    group.bench_function("typed_header_raw_bodies", |b| {
        let mut out = Vec::with_capacity(bytes + EVENTS);
        b.iter(|| {
            out.clear();
            for line in &lines {
                let event = AuditEvent::parse(line).expect("generated events parse");
                let event = Event::new(Payload::Audit(Arc::new(event)), source_id.clone());
                event.write_json(&mut out).expect("serialize");
                out.push(b'\n');
            }
            out.len()
        })
    });
    // What a source does with each framed line: its bytes copied out of the
    // read buffer, checked as UTF-8, decoded keeping that copy as the text.
    group.bench_function("typed_header_raw_bodies_owned_lines", |b| {
        let mut out = Vec::with_capacity(bytes + EVENTS);
        b.iter(|| {
            out.clear();
            for line in &lines {
                let text = String::from_utf8(line.as_bytes().to_vec()).expect("UTF-8");
                decode_document_each(text, |event| {
                    let event = event.expect("generated events decode");
                    let event = Event::new(Payload::Audit(Arc::new(event)), source_id.clone());
                    event.write_json(&mut out).expect("serialize");
                    out.push(b'\n');
                })
                .expect("generated events decode");
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
