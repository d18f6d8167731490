//! Internal metrics, rendered in the Prometheus text format on `/metrics`.
//!
//! A [`Registry`] holds metric families by name; each family holds series by
//! label set. Components get their handles once, at build time
//! ([`Counter`], [`Gauge`], [`Summary`]), and update them without locking
//! (counters and gauges are atomics; a summary takes a short lock per batch).
//! Summaries keep an hdrhistogram and are rendered as Prometheus summaries
//! with the quantiles 0.5, 0.9, 0.99 and 0.999.
//!
//! [`ComponentMetrics`] bundles the series every component reports, with the
//! labels `component_id`, `component_kind` and `component_type`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of durations, kept in an hdrhistogram (microsecond resolution, up to one hour).
#[derive(Debug, Clone)]
pub struct Summary(Arc<Mutex<SummaryState>>);

#[derive(Debug)]
struct SummaryState {
    histogram: Histogram<u64>,
    sum_micros: u64,
}

const MAX_RECORDED_MICROS: u64 = 3_600_000_000;

impl Default for Summary {
    fn default() -> Summary {
        // The bounds are constants that hdrhistogram accepts; this cannot fail.
        let histogram = Histogram::new_with_bounds(1, MAX_RECORDED_MICROS, 3)
            .expect("constant histogram bounds are valid");
        Summary(Arc::new(Mutex::new(SummaryState {
            histogram,
            sum_micros: 0,
        })))
    }
}

impl Summary {
    /// Records several durations under one lock.
    pub fn record_all(&self, durations: impl IntoIterator<Item = Duration>) {
        let mut state = lock(&self.0);
        for duration in durations {
            let micros = (duration.as_micros() as u64).clamp(1, MAX_RECORDED_MICROS);
            state.histogram.saturating_record(micros);
            state.sum_micros = state.sum_micros.saturating_add(micros);
        }
    }

    /// The value at a quantile, in seconds, and the count of samples.
    pub fn quantile(&self, quantile: f64) -> (f64, u64) {
        let state = lock(&self.0);
        let micros = state.histogram.value_at_quantile(quantile);
        (micros as f64 / 1e6, state.histogram.len())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Summary(Summary),
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    series: BTreeMap<Vec<(String, String)>, Series>,
}

/// All metric families of a process.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

type Labels<'a> = &'a [(&'a str, &'a str)];

impl Registry {
    /// A new, empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// The counter of that name and labels, created at zero the first time.
    pub fn counter(&self, name: &str, help: &'static str, labels: Labels<'_>) -> Counter {
        match self.series(name, help, labels, || Series::Counter(Counter::default())) {
            Series::Counter(counter) => counter,
            _ => Counter::default(),
        }
    }

    /// The gauge of that name and labels, created at zero the first time.
    pub fn gauge(&self, name: &str, help: &'static str, labels: Labels<'_>) -> Gauge {
        match self.series(name, help, labels, || Series::Gauge(Gauge::default())) {
            Series::Gauge(gauge) => gauge,
            _ => Gauge::default(),
        }
    }

    /// The summary of that name and labels, created empty the first time.
    pub fn summary(&self, name: &str, help: &'static str, labels: Labels<'_>) -> Summary {
        match self.series(name, help, labels, || Series::Summary(Summary::default())) {
            Series::Summary(summary) => summary,
            _ => Summary::default(),
        }
    }

    fn series(
        &self,
        name: &str,
        help: &'static str,
        labels: Labels<'_>,
        create: impl FnOnce() -> Series,
    ) -> Series {
        let key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut families = lock(&self.families);
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        });
        family.series.entry(key).or_insert_with(create).clone()
    }

    /// Removes one series, for a component whose series come and go with its
    /// inputs (the file source drops the series of a file it stopped reading, so
    /// that rotated file names do not pile up).
    ///
    /// Handles already given out keep working but are no longer rendered.
    pub fn remove(&self, name: &str, labels: Labels<'_>) {
        let key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(family) = lock(&self.families).get_mut(name) {
            family.series.remove(&key);
        }
    }

    /// Every family in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = lock(&self.families);
        let mut out = String::new();
        for (name, family) in families.iter() {
            render_family(&mut out, name, family);
        }
        out
    }
}

fn render_family(out: &mut String, name: &str, family: &Family) {
    let kind = match family.series.values().next() {
        Some(Series::Counter(_)) => "counter",
        Some(Series::Gauge(_)) => "gauge",
        Some(Series::Summary(_)) => "summary",
        None => return,
    };
    let _ = writeln!(out, "# HELP {name} {}", family.help);
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, series) in &family.series {
        match series {
            Series::Counter(counter) => write_sample(out, name, labels, None, counter.get()),
            Series::Gauge(gauge) => write_sample(out, name, labels, None, gauge.get()),
            Series::Summary(summary) => render_summary(out, name, labels, summary),
        }
    }
}

fn render_summary(out: &mut String, name: &str, labels: &[(String, String)], summary: &Summary) {
    let state = lock(&summary.0);
    for quantile in ["0.5", "0.9", "0.99", "0.999"] {
        let q: f64 = quantile.parse().unwrap_or(0.5);
        let seconds = state.histogram.value_at_quantile(q) as f64 / 1e6;
        write_sample(out, name, labels, Some(("quantile", quantile)), seconds);
    }
    let sum = state.sum_micros as f64 / 1e6;
    write_sample(out, &format!("{name}_sum"), labels, None, sum);
    write_sample(
        out,
        &format!("{name}_count"),
        labels,
        None,
        state.histogram.len(),
    );
}

fn write_sample(
    out: &mut String,
    name: &str,
    labels: &[(String, String)],
    extra: Option<(&str, &str)>,
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    let mut all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra)
        .peekable();
    if all.peek().is_some() {
        out.push('{');
        for (index, (key, value)) in all.enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Which part of the graph a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Produces events.
    Source,
    /// Changes, filters or routes events.
    Transform,
    /// Delivers events out of the pipeline.
    Sink,
}

impl ComponentKind {
    /// The name used in configuration tables and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        }
    }

    /// The plural, as in `[sources.ID]`.
    pub fn table(self) -> &'static str {
        match self {
            ComponentKind::Source => "sources",
            ComponentKind::Transform => "transforms",
            ComponentKind::Sink => "sinks",
        }
    }
}

/// The metrics every component reports, labelled with its id, kind and type.
#[derive(Debug, Clone)]
pub struct ComponentMetrics {
    registry: Arc<Registry>,
    id: String,
    kind: ComponentKind,
    type_name: String,
    /// Events that entered the component.
    pub received_events: Counter,
    /// Bytes of input the component read (sources) or took in (others).
    pub received_bytes: Counter,
    /// Bytes the component wrote out (sinks).
    pub sent_bytes: Counter,
    /// Events dropped on purpose or for lack of a reader.
    pub discarded_events: Counter,
    /// Events waiting in the component's input channel.
    pub buffer_events: Gauge,
}

impl ComponentMetrics {
    /// Creates (or finds) the series of a component.
    pub fn new(registry: &Arc<Registry>, id: &str, kind: ComponentKind, type_name: &str) -> Self {
        let labels = [
            ("component_id", id),
            ("component_kind", kind.as_str()),
            ("component_type", type_name),
        ];
        ComponentMetrics {
            registry: registry.clone(),
            id: id.to_string(),
            kind,
            type_name: type_name.to_string(),
            received_events: registry.counter(
                "auditflow_component_received_events_total",
                "Events that entered a component.",
                &labels,
            ),
            received_bytes: registry.counter(
                "auditflow_component_received_bytes_total",
                "Bytes a component read or received.",
                &labels,
            ),
            sent_bytes: registry.counter(
                "auditflow_component_sent_bytes_total",
                "Bytes a sink wrote to its destination.",
                &labels,
            ),
            discarded_events: registry.counter(
                "auditflow_component_discarded_events_total",
                "Events a component dropped on purpose or because nothing read that output.",
                &labels,
            ),
            buffer_events: registry.gauge(
                "auditflow_buffer_events",
                "Events waiting in a component's input channel.",
                &labels,
            ),
        }
    }

    /// The registry, for components that report metrics of their own.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The component's labels plus `extra`, for a component's own series.
    pub fn labels_with<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut labels = vec![
            ("component_id", self.id.as_str()),
            ("component_kind", self.kind.as_str()),
            ("component_type", self.type_name.as_str()),
        ];
        labels.extend_from_slice(extra);
        labels
    }

    /// The counter of events sent on one output (`None`: the default output).
    pub fn sent_events(&self, output: Option<&str>) -> Counter {
        let output = output.unwrap_or("_default");
        self.registry.counter(
            "auditflow_component_sent_events_total",
            "Events a component sent on an output (sinks: delivered).",
            &self.labels_with(&[("output", output)]),
        )
    }

    /// Counts `n` errors of one kind (`invalid_json`, `not_audit_event`, `delivery_failed`, ...).
    pub fn error(&self, error_type: &str, n: u64) {
        self.registry
            .counter(
                "auditflow_component_errors_total",
                "Errors a component met, by kind.",
                &self.labels_with(&[("error_type", error_type)]),
            )
            .add(n);
    }

    /// The end-to-end latency summary of a sink (from source receipt to delivery).
    pub fn latency(&self) -> Summary {
        self.registry.summary(
            "auditflow_end_to_end_latency_seconds",
            "Time from a source receiving an event to a sink delivering it.",
            &self.labels_with(&[]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_summaries() {
        let registry = Registry::new();
        let metrics = ComponentMetrics::new(&registry, "out", ComponentKind::Sink, "file");
        metrics.received_events.add(3);
        metrics.sent_events(None).add(2);
        metrics.error("delivery_failed", 1);
        metrics.buffer_events.set(7);
        metrics
            .latency()
            .record_all([Duration::from_millis(2), Duration::from_millis(4)]);
        let text = registry.render();
        assert!(text.contains("# TYPE auditflow_component_received_events_total counter"));
        assert!(text.contains(
            "auditflow_component_received_events_total{component_id=\"out\",component_kind=\"sink\",component_type=\"file\"} 3"
        ));
        assert!(text.contains("output=\"_default\"} 2"));
        assert!(text.contains("error_type=\"delivery_failed\"} 1"));
        assert!(text.contains("auditflow_buffer_events{component_id=\"out\",component_kind=\"sink\",component_type=\"file\"} 7"));
        assert!(text.contains("auditflow_end_to_end_latency_seconds_count{component_id=\"out\",component_kind=\"sink\",component_type=\"file\"} 2"));
        assert!(text.contains("quantile=\"0.99\"} 0.004"));
    }

    #[test]
    fn same_labels_share_a_series() {
        let registry = Registry::new();
        registry.counter("c", "help", &[("a", "1")]).add(1);
        registry.counter("c", "help", &[("a", "1")]).add(1);
        assert_eq!(registry.counter("c", "help", &[("a", "1")]).get(), 2);
    }

    #[test]
    fn removed_series_are_no_longer_rendered() {
        let registry = Registry::new();
        let kept = registry.gauge("g", "help", &[("file", "a")]);
        let removed = registry.gauge("g", "help", &[("file", "b")]);
        kept.set(1);
        removed.set(2);
        registry.remove("g", &[("file", "b")]);
        removed.set(3);
        let text = registry.render();
        assert!(text.contains("g{file=\"a\"} 1"));
        assert!(!text.contains("file=\"b\""));
    }

    #[test]
    fn label_values_are_escaped() {
        let registry = Registry::new();
        registry.gauge("g", "help", &[("path", "a\"b\\c")]).set(1);
        assert!(registry.render().contains("g{path=\"a\\\"b\\\\c\"} 1"));
    }
}
