//! How much slower a pipeline's per-event work gets with `audit_policy` and
//! `redact`, measured so that a machine shared with other work does not blur it.
//!
//! `cargo bench -p auditflow-benches --bench policy_overhead`
//!
//! Pass-through (decode each line, write it back), and the same with
//! `audit_policy` (examples/policy.yaml) and `redact` (no options) in between,
//! together and alone, are run in turns, 60 times each, on 10,000 events of
//! `generate`; the fastest run of each is kept (other work on the machine only
//! ever adds time), and each is compared with pass-through. A run's time is the
//! CPU time of the measuring thread, so the time other processes hold the core
//! is not counted (their effect on the caches still is); the fastest
//! wall-clock time is shown beside it.
//!
//! `--rounds=N` changes the number of runs, `--only=VARIANT` runs one variant
//! (to profile one variant, e.g. under `perf record`).
//!
//! `header_reads` is a reference: it only reads the header fields a policy
//! decides on, and passes every event on.
//!
//! Each is measured in three layouts: as a pipeline runs (a source's batch of
//! 1,000 events decoded, passed through the transforms and encoded, then the
//! next batch: a file source's turn); the same with groups of 256 events (what
//! the `stdin` source decodes from one 256 KiB chunk, and what transforms run
//! on its decoding threads are given); and with all 10,000 events decoded
//! before the transforms run (the transforms then read events decoded long
//! before, out of the caches).

use std::time::{Duration, Instant};

use auditflow_benches::pipeline::{decode, policy_options, run, transform, write_all, BATCH};
use auditflow_benches::sample_lines;
use auditflow_core::component::{Transform, TransformOutput};
use auditflow_core::event::Event;

/// The allocator of the `auditflow` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;
/// Runs of each variant in each layout, unless `--rounds=N` says otherwise.
const ROUNDS: usize = 60;

/// One variant: its name and the transforms between decoding and writing.
struct Variant {
    name: &'static str,
    transforms: Vec<Box<dyn Transform>>,
    /// The fastest run in each layout, in CPU time of the thread.
    fastest: [Duration; 3],
    /// The fastest run in each layout, in wall-clock time.
    fastest_wall: [Duration; 3],
    kept: usize,
}

/// How the work of a run is ordered.
#[derive(Clone, Copy)]
enum Layout {
    /// Batch by batch, as a pipeline runs.
    Batches,
    /// Group by group, as the `stdin` source's decoding threads run.
    Groups,
    /// Every event decoded, then transformed, then encoded.
    WholeSet,
}

/// The events of one group the `stdin` source decodes (one 256 KiB chunk of 1 KB events).
const GROUP: usize = 256;

const LAYOUTS: [(Layout, &str); 3] = [
    (
        Layout::Batches,
        "batch by batch (decode 1,000, transform, encode; as a pipeline)",
    ),
    (
        Layout::Groups,
        "group by group (decode 256, transform, encode; as stdin's decoding threads)",
    ),
    (
        Layout::WholeSet,
        "whole set (decode 10,000, then transform, then encode)",
    ),
];

/// The variants, as they are listed (pass-through first: the others are compared with it).
const VARIANT_ORDER: [&str; 5] = [
    "pass_through",
    "policy_and_redact",
    "audit_policy",
    "redact",
    "header_reads",
];

/// A reference, not a transform of auditflow: reads the header fields a policy
/// decides on (verb, user, groups, the object's resource, namespace and group)
/// and passes every event on. What it costs over pass-through is the price of
/// reaching those fields at all, which any policy pays.
struct HeaderReads;

impl Transform for HeaderReads {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        let first_byte = |text: &str| usize::from(text.as_bytes().first().copied().unwrap_or(0));
        for event in batch {
            if let Some(audit) = event.as_audit() {
                let header = audit.header();
                let user = header.user();
                let mut sum = first_byte(header.verb()) + first_byte(user.username());
                sum += user.groups().iter().map(first_byte).sum::<usize>();
                if let Some(object) = header.object_ref() {
                    for field in [object.resource(), object.namespace(), object.api_group()] {
                        sum += first_byte(field.unwrap_or(""));
                    }
                }
                std::hint::black_box(sum);
            }
            output.push(event);
        }
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    // `--rounds=N` and `--only=VARIANT` (to profile one variant).
    let option =
        |name: &str| std::env::args().find_map(|arg| arg.strip_prefix(name).map(str::to_string));
    let rounds = option("--rounds=").map_or(ROUNDS, |n| n.parse().expect("--rounds=N"));
    let only = option("--only=");
    let lines = sample_lines(EVENTS, 1);
    let variant = |name, transforms| Variant {
        name,
        transforms,
        fastest: [Duration::MAX; 3],
        fastest_wall: [Duration::MAX; 3],
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
        variant("header_reads", vec![Box::new(HeaderReads)]),
    ];
    let mut out = Vec::new();
    if let Some(only) = &only {
        variants.retain(|variant| variant.name == only);
    }
    for round in 0..rounds {
        // Each round starts with another variant, so none always runs right after the same one.
        variants.rotate_left(usize::from(round > 0));
        for (slot, (layout, _)) in LAYOUTS.iter().enumerate() {
            for variant in variants.iter_mut() {
                let started = Instant::now();
                let cpu_started = thread_cpu_time();
                out.clear();
                variant.kept = match layout {
                    Layout::Batches => lines
                        .chunks(BATCH)
                        .map(|batch| pass(batch, &mut variant.transforms, &mut out))
                        .sum(),
                    Layout::Groups => lines
                        .chunks(GROUP)
                        .map(|group| pass(group, &mut variant.transforms, &mut out))
                        .sum(),
                    Layout::WholeSet => pass(&lines, &mut variant.transforms, &mut out),
                };
                let cpu = thread_cpu_time().saturating_sub(cpu_started);
                variant.fastest[slot] = variant.fastest[slot].min(cpu);
                variant.fastest_wall[slot] = variant.fastest_wall[slot].min(started.elapsed());
            }
        }
    }
    println!("fastest of {rounds} runs each, in CPU time of the thread (wall-clock beside it)");
    variants.sort_by_key(|variant| VARIANT_ORDER.iter().position(|name| *name == variant.name));
    for (slot, (_, title)) in LAYOUTS.iter().enumerate() {
        println!("{title}:");
        let base = variants[0].fastest[slot].as_secs_f64();
        for variant in &variants {
            let time = variant.fastest[slot].as_secs_f64();
            println!(
                "  {:<18} {:>8.2} ms {:>9.0} events/s {:>+7.1}%  (wall {:>6.2} ms; {} of {EVENTS} events out)",
                variant.name,
                time * 1e3,
                EVENTS as f64 / time,
                (time / base - 1.0) * 100.0,
                variant.fastest_wall[slot].as_secs_f64() * 1e3,
                variant.kept
            );
        }
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

/// Decodes the lines, runs the transforms, encodes what comes out and drops it; returns how many came out.
fn pass(lines: &[String], transforms: &mut [Box<dyn Transform>], out: &mut Vec<u8>) -> usize {
    let events: Vec<Event> = lines.iter().map(|line| decode(line)).collect();
    let events = run(transforms, events);
    write_all(&events, out);
    events.len()
}
