//! How much slower a pipeline's per-event work gets with `audit_policy` and
//! `redact`, measured so that a machine shared with other work does not blur it.
//!
//! `cargo bench -p auditflow-benches --bench policy_overhead`
//!
//! Pass-through (decode each line, write it back), and the same with
//! `audit_policy` (examples/policy.yaml) and `redact` (no options) in between,
//! together and alone, are run in turns, 60 times each, on 10,000 events of
//! `generate`; the fastest run of each is kept (other work on the machine only
//! ever adds time), and each is compared with pass-through.

use std::time::{Duration, Instant};

use auditflow_benches::pipeline::{decode, policy_options, run, transform, write_all};
use auditflow_benches::sample_lines;
use auditflow_core::component::Transform;
use auditflow_core::event::Event;

/// The allocator of the `auditflow` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;
const ROUNDS: usize = 60;

/// One variant: its name and the transforms between decoding and writing.
struct Variant {
    name: &'static str,
    transforms: Vec<Box<dyn Transform>>,
    fastest: Duration,
    kept: usize,
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let lines = sample_lines(EVENTS, 1);
    let variant = |name, transforms| Variant {
        name,
        transforms,
        fastest: Duration::MAX,
        kept: 0,
    };
    let mut variants = vec![
        variant("pass_through", vec![]),
        variant(
            "policy_and_redact",
            vec![
                transform("audit_policy", &policy_options()),
                transform("redact", ""),
            ],
        ),
        variant(
            "audit_policy",
            vec![transform("audit_policy", &policy_options())],
        ),
        variant("redact", vec![transform("redact", "")]),
    ];
    let mut out = Vec::new();
    for _ in 0..ROUNDS {
        for variant in variants.iter_mut() {
            let started = Instant::now();
            out.clear();
            let events: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
            let events = run(&mut variant.transforms, events);
            variant.kept = events.len();
            write_all(&events, &mut out);
            drop(events);
            variant.fastest = variant.fastest.min(started.elapsed());
        }
    }
    let base = variants[0].fastest.as_secs_f64();
    for variant in &variants {
        let time = variant.fastest.as_secs_f64();
        println!(
            "{:<18} {:>8.2} ms {:>9.0} events/s {:>+7.1}%  ({} of {EVENTS} events out)",
            variant.name,
            time * 1e3,
            EVENTS as f64 / time,
            (time / base - 1.0) * 100.0,
            variant.kept
        );
    }
}
