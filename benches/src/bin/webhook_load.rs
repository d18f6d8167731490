//! Load generator for the `webhook` source: concurrent clients POST `audit.k8s.io/v1`
//! EventLists over HTTP, as the kube-apiserver's batch webhook backend does, and the
//! accepted events per second and the request latency quantiles are reported.
//!
//! ```sh
//! webhook_load --url http://127.0.0.1:8080/ --clients 8 --batch 400 --seconds 15 [--gzip]
//! ```
//!
//! Each client posts one request at a time; an answer of 429/503 is counted and the
//! request is retried after 50 ms (the apiserver backs off longer). Latency is
//! measured per request, from sending it to its answer (a 200 means delivered).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use flate2::write::GzEncoder;
use flate2::Compression;
use hdrhistogram::Histogram;
use std::io::Write;

#[derive(Parser)]
struct Args {
    /// The webhook source's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Events per EventList.
    #[arg(long, default_value_t = 400)]
    batch: usize,
    /// How long to post.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Send bodies gzip-compressed.
    #[arg(long)]
    gzip: bool,
    /// Different EventLists prepared (clients cycle through them).
    #[arg(long, default_value_t = 16)]
    bodies: usize,
}

#[derive(Default)]
struct Outcome {
    accepted_requests: u64,
    accepted_events: u64,
    refused: u64,
    failed: u64,
    body_bytes: u64,
    latency: Option<Histogram<u64>>,
}

fn event_lists(args: &Args) -> Vec<Vec<u8>> {
    let lines = auditflow_benches::sample_lines(args.batch * args.bodies, 7);
    lines
        .chunks(args.batch)
        .map(|items| {
            let json = format!(
                r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
                items.join(",")
            );
            if args.gzip {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
                let _ = encoder.write_all(json.as_bytes());
                encoder.finish().unwrap_or_default()
            } else {
                json.into_bytes()
            }
        })
        .collect()
}

async fn client(
    args: Arc<Args>,
    bodies: Arc<Vec<Vec<u8>>>,
    offset: usize,
    deadline: Instant,
) -> anyhow::Result<Outcome> {
    let http = reqwest::Client::new();
    let mut outcome = Outcome {
        latency: Some(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        ..Outcome::default()
    };
    let mut index = offset;
    while Instant::now() < deadline {
        let body = bodies[index % bodies.len()].clone();
        index += 1;
        let size = body.len() as u64;
        let mut request = http
            .post(&args.url)
            .header("Content-Type", "application/json");
        if args.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        let started = Instant::now();
        let status = request.body(body).send().await.map(|r| r.status().as_u16());
        let micros = started.elapsed().as_micros() as u64;
        match status {
            Ok(200) => {
                outcome.accepted_requests += 1;
                outcome.accepted_events += args.batch as u64;
                outcome.body_bytes += size;
                if let Some(latency) = outcome.latency.as_mut() {
                    latency.saturating_record(micros.max(1));
                }
            }
            Ok(429) | Ok(503) => {
                outcome.refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => outcome.failed += 1,
        }
    }
    Ok(outcome)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let bodies = Arc::new(event_lists(&args));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        tasks.push(tokio::spawn(client(
            args.clone(),
            bodies.clone(),
            c,
            deadline,
        )));
    }
    let mut total = Outcome {
        latency: Some(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        ..Outcome::default()
    };
    for task in tasks {
        let outcome = task.await??;
        total.accepted_requests += outcome.accepted_requests;
        total.accepted_events += outcome.accepted_events;
        total.refused += outcome.refused;
        total.failed += outcome.failed;
        total.body_bytes += outcome.body_bytes;
        if let (Some(sum), Some(part)) = (total.latency.as_mut(), outcome.latency.as_ref()) {
            sum.add(part)?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latency = total.latency.unwrap_or(Histogram::new(3)?);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{} clients, {}-event lists{}, {:.1} s: {} requests accepted, {} refused (429/503), {} failed",
        args.clients,
        args.batch,
        if args.gzip { " (gzip)" } else { "" },
        elapsed,
        total.accepted_requests,
        total.refused,
        total.failed
    );
    println!(
        "accepted: {:.0} events/s, {:.1} MB/s of bodies; latency of accepted requests: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total.accepted_events as f64 / elapsed,
        total.body_bytes as f64 / elapsed / 1e6,
        ms(0.5),
        ms(0.99),
        ms(1.0)
    );
    Ok(())
}
