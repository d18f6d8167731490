//! Synthetic Kubernetes audit traffic, deterministic for a seed.
//!
//! A [`Generator`] simulates the clients of one cluster's apiserver: kubelets
//! renewing node leases and watching their pods' config, kube-proxy and CoreDNS
//! watching services, kube-controller-manager and kube-scheduler with their
//! leader election, applications reading their secrets, Argo CD and
//! cert-manager writing objects, people running kubectl (sometimes impersonating,
//! sometimes forbidden), health probes, scanners and clients with expired
//! credentials. It writes the `audit.k8s.io/v1` events an audit policy would
//! record for them:
//!
//! - reads, noisy system writes and subresources at `Metadata`; writes by
//!   applications at `Request`; writes by people and operators at
//!   `RequestResponse`, with Pod, ConfigMap, Secret, Deployment and Lease bodies
//!   including their `managedFields`;
//! - `ResponseComplete` events, `ResponseStarted` for watches, exec and failed
//!   authentication, and a `RequestReceived` event before people's requests;
//! - request URIs, object references, response statuses and authorization
//!   annotations consistent with each other and with the RBAC of the cluster.
//!
//! The same seed and options give the same bytes: time is simulated (a Poisson
//! arrival process at the configured density from the configured start) and all
//! randomness comes from a ChaCha8 stream seeded with the seed.

mod actors;
mod body;
mod catalog;
mod clock;
mod identity;
pub mod incidents;
mod names;
mod request;
mod text;
mod wire;

use std::collections::VecDeque;
use std::io;

use chrono::{DateTime, TimeZone, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use clock::Clock;
use request::{Request, Stage};

/// The most items an `EventList` document holds.
pub const EVENT_LIST_MAX_ITEMS: usize = 400;

/// How many bytes of output [`Generator::write_events`] gathers before writing them.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// The first resource version of the simulated cluster.
const INITIAL_RESOURCE_VERSION: u64 = 48_213_377;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorOptions {
    /// The seed of the random stream: the same seed gives the same events.
    pub seed: u64,
    /// The simulated time of the first request.
    pub start: DateTime<Utc>,
    /// The simulated traffic density: requests arrive at this mean rate, which
    /// spaces the events' timestamps (it does not pace the generator).
    pub events_per_second: f64,
    /// Inject the incidents of [`incidents`] at their times of the start's UTC day.
    pub incidents: bool,
}

impl Default for GeneratorOptions {
    /// Seed 1, from 2026-01-01T00:00:00Z, 1000 events per second, no incidents.
    fn default() -> Self {
        GeneratorOptions {
            seed: 1,
            start: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            events_per_second: 1000.0,
            incidents: false,
        }
    }
}

/// How [`Generator::write_events`] frames events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One event per line (newline-delimited JSON), as log-backend audit files are.
    Ndjson,
    /// `EventList` documents of at most [`EVENT_LIST_MAX_ITEMS`] events, one per
    /// line, as the webhook backend posts them.
    EventList,
}

/// A deterministic generator of Kubernetes audit events.
///
/// ```
/// use auditflow_core::event::AuditEvent;
/// use auditflow_core::generate::{Generator, GeneratorOptions, OutputFormat};
///
/// let mut generator = Generator::new(GeneratorOptions {
///     seed: 42,
///     ..GeneratorOptions::default()
/// });
/// let mut line = String::new();
/// generator.next_event(&mut line);
/// assert!(AuditEvent::parse(&line).is_ok());
///
/// let mut out = Vec::new();
/// generator.write_events(3, OutputFormat::Ndjson, &mut out)?;
/// assert_eq!(out.iter().filter(|&&byte| byte == b'\n').count(), 3);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Generator {
    rng: ChaCha8Rng,
    clock: Clock,
    resource_version: u64,
    /// A request whose RequestReceived event was written and whose last event is due.
    pending: Option<Request>,
    /// Incident events still to come, in time order, with their simulated times.
    incidents: VecDeque<(clock::SimTime, String)>,
    scratch: Vec<u8>,
}

impl Generator {
    /// A generator for `options`.
    ///
    /// # Panics
    /// If `options.events_per_second` is not a positive, finite number.
    pub fn new(options: GeneratorOptions) -> Generator {
        assert!(
            options.events_per_second.is_finite() && options.events_per_second > 0.0,
            "events_per_second must be positive and finite, got {}",
            options.events_per_second
        );
        let incidents = if options.incidents {
            incident_queue(&options)
        } else {
            VecDeque::new()
        };
        Generator {
            incidents,
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            clock: Clock::new(options.start, options.events_per_second),
            resource_version: INITIAL_RESOURCE_VERSION,
            pending: None,
            scratch: Vec::with_capacity(8 * 1024),
        }
    }

    /// Appends the next audit event to `out`, as one line of JSON without a newline.
    pub fn next_event(&mut self, out: &mut String) {
        if let Some(text) = self.due_incident() {
            out.push_str(&text);
            return;
        }
        let now = self.clock.tick(&mut self.rng);
        let (request, stage) = match self.pending.take() {
            Some(request) => (request, request.final_stage()),
            None => self.next_request(now),
        };
        self.scratch.clear();
        wire::write_event(&mut self.scratch, &request, stage, now, &mut self.clock);
        out.push_str(std::str::from_utf8(&self.scratch).expect("serde_json writes UTF-8"));
    }

    /// The next incident event, if the simulated clock has reached its time.
    fn due_incident(&mut self) -> Option<String> {
        let (time, _) = self.incidents.front()?;
        if *time > self.clock.now() {
            return None;
        }
        self.incidents.pop_front().map(|(_, text)| text)
    }

    /// Plans a request arriving now and the stage of its first event.
    fn next_request(&mut self, now: clock::SimTime) -> (Request, Stage) {
        let mut request = Request::plan(&mut self.rng, now, &mut self.resource_version);
        if !request.records_received() {
            return (request, request.final_stage());
        }
        request.received = now;
        self.pending = Some(request);
        (request, Stage::RequestReceived)
    }

    /// Writes `count` events to `out` in `format`.
    pub fn write_events(
        &mut self,
        count: u64,
        format: OutputFormat,
        out: &mut impl io::Write,
    ) -> io::Result<()> {
        match format {
            OutputFormat::Ndjson => self.write_ndjson(count, out),
            OutputFormat::EventList => self.write_event_lists(count, out),
        }
    }

    fn write_ndjson(&mut self, count: u64, out: &mut impl io::Write) -> io::Result<()> {
        let mut chunk = String::with_capacity(WRITE_CHUNK_BYTES + 16 * 1024);
        for _ in 0..count {
            self.next_event(&mut chunk);
            chunk.push('\n');
            if chunk.len() >= WRITE_CHUNK_BYTES {
                out.write_all(chunk.as_bytes())?;
                chunk.clear();
            }
        }
        out.write_all(chunk.as_bytes())
    }

    fn write_event_lists(&mut self, count: u64, out: &mut impl io::Write) -> io::Result<()> {
        let mut document = String::new();
        let mut remaining = count;
        while remaining > 0 {
            let items = remaining.min(EVENT_LIST_MAX_ITEMS as u64);
            document.clear();
            document.push_str(
                r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#,
            );
            for item in 0..items {
                if item > 0 {
                    document.push(',');
                }
                self.next_event(&mut document);
            }
            document.push_str("]}\n");
            out.write_all(document.as_bytes())?;
            remaining -= items;
        }
        Ok(())
    }
}

/// The incident events of the start's day that come after the start, with their simulated times.
fn incident_queue(options: &GeneratorOptions) -> VecDeque<(clock::SimTime, String)> {
    let day = incidents::day_start(options.start);
    incidents::incident_events(day, options.seed)
        .into_iter()
        .filter_map(|event| {
            let offset = (event.time - options.start).num_nanoseconds()?;
            (offset >= 0).then_some((offset, event.text))
        })
        .collect()
}

#[cfg(test)]
mod tests;
