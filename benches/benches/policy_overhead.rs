//! How much slower a pipeline's per-event work gets with `audit_policy` and
//! `redact`, measured so that a machine shared with other work does not blur it.
//!
//! `cargo bench -p auditflow-benches --bench policy_overhead`
//!
//! Pass-through (decode each line, write it back) and the same with
//! `audit_policy` (examples/policy.yaml) and `redact` (no options) in between
//! are run alternately, 25 times each, on 10,000 events of `generate`; the
//! fastest run of each is kept (other work on the machine only ever adds time),
//! and the overhead is the ratio of the two.

use std::time::{Duration, Instant};

use auditflow_benches::pipeline::{decode, policy_options, run, transform, write_all};
use auditflow_benches::sample_lines;
use auditflow_core::event::Event;

/// The allocator of the `auditflow` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;
const ROUNDS: usize = 25;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let lines = sample_lines(EVENTS, 1);
    let mut transforms = vec![
        transform("audit_policy", &policy_options()),
        transform("redact", ""),
    ];
    let mut out = Vec::new();
    let mut pass_through = Duration::MAX;
    let mut with_transforms = Duration::MAX;
    let mut kept = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        out.clear();
        let events: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
        write_all(&events, &mut out);
        drop(events);
        pass_through = pass_through.min(started.elapsed());

        let started = Instant::now();
        out.clear();
        let events: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
        let events = run(&mut transforms, events);
        kept = events.len();
        write_all(&events, &mut out);
        drop(events);
        with_transforms = with_transforms.min(started.elapsed());
    }
    let rate = |time: Duration| EVENTS as f64 / time.as_secs_f64();
    println!(
        "pass_through:      {:>8.2} ms  {:>9.0} events/s",
        pass_through.as_secs_f64() * 1e3,
        rate(pass_through)
    );
    println!(
        "policy_and_redact: {:>8.2} ms  {:>9.0} events/s  ({kept} of {EVENTS} events kept by the policy)",
        with_transforms.as_secs_f64() * 1e3,
        rate(with_transforms)
    );
    println!(
        "overhead: {:+.1}% (fastest of {ROUNDS} alternating runs each)",
        (with_transforms.as_secs_f64() / pass_through.as_secs_f64() - 1.0) * 100.0
    );
}
