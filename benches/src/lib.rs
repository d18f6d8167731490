#![warn(missing_docs)]
//! Shared inputs of auditflow's benchmarks.

use auditflow_core::generate::{Generator, GeneratorOptions};

/// `count` generated audit events (seeded), one JSON text each.
pub fn sample_lines(count: usize, seed: u64) -> Vec<String> {
    let mut generator = Generator::new(GeneratorOptions {
        seed,
        ..GeneratorOptions::default()
    });
    (0..count)
        .map(|_| {
            let mut line = String::new();
            generator.next_event(&mut line);
            line
        })
        .collect()
}

pub mod pipeline;
