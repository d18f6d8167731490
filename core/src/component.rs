//! The contract every source, transform and sink follows.
//!
//! A component type registers a [`ComponentSpec`] in a [`Catalog`]: its `type`
//! name and a function that checks a TOML options table and returns the
//! component's configuration. Checking has no side effects (no socket bound,
//! no file opened), so `auditflow validate` can run it on any machine.
//!
//! At run time the configuration builds the running component:
//! - a source ([`SourceConfig::build`]) is a future that reads input and sends
//!   batches through its [`SourceContext`] until its input ends or the
//!   context's shutdown token fires;
//! - a transform ([`TransformConfig::build`]) is a synchronous [`Transform`]
//!   that maps an input batch to its outputs; the topology runs it in a task;
//! - a sink ([`SinkConfig::build`]) is a future that takes batches from its
//!   [`SinkContext`], delivers them, and acknowledges them with
//!   [`SinkContext::delivered`] or [`SinkContext::failed`].
//!
//! Every component also has an `errors` output carrying records
//! `{"component_id", "error", "input"}` for input it could not process (a
//! sink: events its destination refused for good, such as a message over the
//! broker's size limit; see [`SinkContext::refuse`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::ack::{finalize_events, BatchStatus, Finalizer};
use crate::config::OptionError;
use crate::event::{error_record, Event, Payload};
use crate::metrics::{ComponentKind, ComponentMetrics, Counter, Summary};
use crate::topology::inline::{InlineChain, TransformErrors};
use crate::topology::{InputReceiver, OutputPort};

/// A running source or sink: resolves when the component has stopped.
pub type ComponentTask = BoxFuture<'static, anyhow::Result<()>>;

/// The name of the output that carries the records of input a component could not process.
pub const ERRORS_OUTPUT: &str = "errors";

/// Checks an options table and returns the component's configuration.
pub type ParseFn<T> = fn(&toml::Table) -> Result<T, Vec<OptionError>>;

/// How a component type is checked and built.
pub enum ComponentSpec {
    /// A source type.
    Source(ParseFn<Box<dyn SourceConfig>>),
    /// A transform type.
    Transform(ParseFn<Box<dyn TransformConfig>>),
    /// A sink type.
    Sink(ParseFn<Box<dyn SinkConfig>>),
}

impl ComponentSpec {
    /// Which part of the graph components of this type are.
    pub fn kind(&self) -> ComponentKind {
        match self {
            ComponentSpec::Source(_) => ComponentKind::Source,
            ComponentSpec::Transform(_) => ComponentKind::Transform,
            ComponentSpec::Sink(_) => ComponentKind::Sink,
        }
    }
}

/// Every component type the binary knows, by kind and `type` name.
#[derive(Default)]
pub struct Catalog {
    specs: BTreeMap<(ComponentKind, &'static str), ComponentSpec>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Registers a component type.
    pub fn register(&mut self, type_name: &'static str, spec: ComponentSpec) {
        self.specs.insert((spec.kind(), type_name), spec);
    }

    /// The spec of a type.
    pub fn get(&self, kind: ComponentKind, type_name: &str) -> Option<&ComponentSpec> {
        self.specs
            .iter()
            .find(|((k, name), _)| *k == kind && *name == type_name)
            .map(|(_, spec)| spec)
    }

    /// The type names registered for a kind, sorted.
    pub fn type_names(&self, kind: ComponentKind) -> Vec<&'static str> {
        self.specs
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, name)| *name)
            .collect()
    }
}

/// A checked source configuration.
pub trait SourceConfig: Send + Sync {
    /// Whether the source's input can end by itself (stdin at EOF; files read to the end with `--once`).
    fn can_end(&self) -> bool;

    /// Whether the source decodes its input through a decoder that runs the
    /// transforms of [`SourceContext::inline_transforms`] (see
    /// [`crate::topology::inline`]); only then does the topology hand it any.
    fn decodes_inline(&self) -> bool {
        false
    }

    /// Starts the source.
    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask>;
}

/// A checked transform configuration.
pub trait TransformConfig: Send + Sync {
    /// Named outputs (`ID.NAME`), in the order [`TransformOutput::push_named`] indexes them.
    fn named_outputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the transform has a default output (`ID`); a router has only named ones.
    fn has_default_output(&self) -> bool {
        true
    }

    /// Whether the transform may run on its source's decoding threads (see
    /// [`crate::topology::inline`]): it keeps no state from one batch to the
    /// next (no tick), so several instances may each take some of the batches,
    /// and it has only the default output (and `errors`).
    fn runs_inline(&self) -> bool {
        false
    }

    /// Creates the transform.
    fn build(&self, context: &TransformContext) -> anyhow::Result<Box<dyn Transform>>;

    /// The configuration as `Any`, for commands that need a transform type's own
    /// settings (`auditflow test` reads the rules and tests of `detect` transforms).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// A checked sink configuration.
pub trait SinkConfig: Send + Sync {
    /// Starts the sink.
    fn build(&self, context: SinkContext) -> anyhow::Result<ComponentTask>;

    /// The checked options as `Any`, for tools that read a sink's options
    /// (`auditflow query` finds a store sink's indices this way); `None` for
    /// sinks no tool reads.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// What a transform is given when it is built.
#[derive(Debug, Clone)]
pub struct TransformContext {
    /// The component id.
    pub id: Arc<str>,
    /// The pipeline's `data_dir`, for state that survives restarts.
    pub data_dir: PathBuf,
    /// The component's metrics.
    pub metrics: ComponentMetrics,
}

/// A running transform: takes a batch, writes what it makes to its outputs.
pub trait Transform: Send {
    /// Processes one input batch.
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput);

    /// How often [`Transform::tick`] should run, if the transform keeps time-based state.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Runs periodically (see [`Transform::tick_interval`]) and once when the input ends.
    fn tick(&mut self, _output: &mut TransformOutput) {}
}

/// Where a transform puts its results for one batch.
#[derive(Debug)]
pub struct TransformOutput {
    component_id: Arc<str>,
    pub(crate) default: Vec<Event>,
    pub(crate) named: Vec<Vec<Event>>,
    pub(crate) errors: Vec<Event>,
}

impl TransformOutput {
    /// Empty outputs for a transform with `named_outputs` named outputs.
    pub fn new(component_id: Arc<str>, named_outputs: usize) -> TransformOutput {
        TransformOutput {
            component_id,
            default: Vec::new(),
            named: (0..named_outputs).map(|_| Vec::new()).collect(),
            errors: Vec::new(),
        }
    }

    /// Sends an event to the default output.
    pub fn push(&mut self, event: Event) {
        self.default.push(event);
    }

    /// Takes the events sent to the default output so far (to run a transform
    /// outside a pipeline, as benchmarks do).
    pub fn into_default(self) -> Vec<Event> {
        self.default
    }

    /// Sends an event to the named output at `index` (see [`TransformConfig::named_outputs`]).
    pub fn push_named(&mut self, index: usize, event: Event) {
        if let Some(output) = self.named.get_mut(index) {
            output.push(event);
        }
    }

    /// Sends an `errors` record for an input the transform could not process.
    ///
    /// The record keeps the input event's acknowledgement handle, so a dead-letter
    /// sink's delivery is waited for like any other.
    pub fn push_error(&mut self, input: &Event, error: &str) {
        let mut text = Vec::new();
        let _ = input.write_json(&mut text);
        self.push_error_showing(input, error, &String::from_utf8_lossy(&text));
    }

    /// Like [`TransformOutput::push_error`], with `shown` in the record's `input`
    /// instead of the event (for inputs that must not be stored as they are).
    pub fn push_error_showing(&mut self, input: &Event, error: &str, shown: &str) {
        let record = error_record(&self.component_id, error, shown);
        let mut event = Event::new(
            Payload::Record(Arc::new(record)),
            input.meta.source_id.clone(),
        );
        event.meta.finalizer = input.meta.finalizer.clone();
        self.errors.push(event);
    }
}

/// What a source is given when it starts.
pub struct SourceContext {
    /// The component id.
    pub id: Arc<str>,
    /// The pipeline's `data_dir` (checkpoints live there).
    pub data_dir: PathBuf,
    /// Fires when the source must stop reading (SIGTERM, or `--once` with every finite source done).
    pub shutdown: CancellationToken,
    /// The component's metrics.
    pub metrics: ComponentMetrics,
    /// Whether the pipeline runs with `--once` ([`crate::topology::RunOptions::once`]).
    ///
    /// A source whose input never ends by itself (files that may grow) uses it to
    /// decide when it is done: with `once`, the file source ends once every
    /// matched file is read to its end and acknowledged; without it, it tails
    /// until shutdown.
    pub once: bool,
    pub(crate) output: OutputPort,
    pub(crate) errors: OutputPort,
    pub(crate) inline: Option<Arc<InlineChain>>,
    /// The `errors` output of each transform of `inline`, in order.
    pub(crate) inline_errors: Vec<OutputPort>,
}

impl SourceContext {
    /// Sends a batch downstream; waits while the pipeline is full (backpressure).
    ///
    /// Returns `false` when nothing downstream can take events any more.
    pub async fn send(&self, batch: Vec<Event>) -> bool {
        self.output.send(batch).await
    }

    /// The transforms to run on the decoding threads, right after decoding, if
    /// the source [decodes inline](SourceConfig::decodes_inline) and the
    /// pipeline has such transforms after it. What the chain keeps is what
    /// [`SourceContext::send`] takes; its `errors` records go to
    /// [`SourceContext::send_transform_errors`].
    pub fn inline_transforms(&self) -> Option<Arc<InlineChain>> {
        self.inline.clone()
    }

    /// Sends the `errors` records the inline transforms made, each to its transform's `errors` output.
    pub async fn send_transform_errors(&self, errors: TransformErrors) {
        for (stage, records) in errors.into_stages() {
            if let Some(port) = self.inline_errors.get(stage) {
                port.send(records).await;
            }
        }
    }

    /// Sends a batch only if the pipeline can take it within `wait`; otherwise hands it back.
    ///
    /// For sources that answer a client and refuse work when the pipeline is full
    /// (the webhook source answers 429) instead of waiting without bound; see
    /// [`OutputPort::send_within`]. `Ok(false)`: nothing downstream can take
    /// events any more; `Err(batch)`: the pipeline stayed full for `wait`.
    pub async fn send_within(&self, batch: Vec<Event>, wait: Duration) -> Result<bool, Vec<Event>> {
        self.output.send_within(batch, wait).await
    }

    /// Counts and sends `errors` records for several inputs at once.
    ///
    /// With a finalizer, the records are acknowledged with the batch they came in.
    pub async fn send_failures(&self, failures: Vec<InputFailure>, finalizer: Option<&Finalizer>) {
        if failures.is_empty() {
            return;
        }
        let events = failures
            .into_iter()
            .map(|failure| {
                self.metrics.error(failure.error_type, 1);
                let record = error_record(&self.id, &failure.message, &failure.input);
                let event = Event::new(Payload::Record(Arc::new(record)), self.id.clone());
                match finalizer {
                    Some(finalizer) => event.with_finalizer(finalizer.clone()),
                    None => event,
                }
            })
            .collect();
        self.errors.send(events).await;
    }
}

/// An input a source could not turn into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFailure {
    /// The `error_type` metric label (`invalid_json`, `not_audit_event`, `invalid_utf8`, `too_large`).
    pub error_type: &'static str,
    /// What is wrong, for the `error` field of the record.
    pub message: String,
    /// The input as text (cut to 64 KiB in the record).
    pub input: String,
}

/// What a sink is given when it starts.
pub struct SinkContext {
    /// The component id.
    pub id: Arc<str>,
    /// The pipeline's `data_dir`.
    pub data_dir: PathBuf,
    /// The component's metrics.
    pub metrics: ComponentMetrics,
    /// The batches to deliver; ends when every upstream has stopped.
    pub input: InputReceiver,
    outcomes: DeliveryOutcomes,
}

/// How a sink reports what became of its events: delivered, failed, or
/// refused to its `errors` output. A [`SinkContext`] has one; a sink that
/// delivers from several tasks at once gives each a clone
/// ([`SinkContext::outcomes`]).
#[derive(Clone)]
pub struct DeliveryOutcomes {
    id: Arc<str>,
    metrics: ComponentMetrics,
    errors: OutputPort,
    delivered_events: Counter,
    latency: Summary,
}

impl SinkContext {
    /// The context of a sink, with the series its deliveries update looked up once.
    ///
    /// The topology builds it for every sink; tests and benches use it to drive a
    /// sink directly (with [`InputReceiver::channel`]).
    pub fn new(
        id: Arc<str>,
        data_dir: PathBuf,
        metrics: ComponentMetrics,
        input: InputReceiver,
    ) -> SinkContext {
        SinkContext {
            outcomes: DeliveryOutcomes {
                delivered_events: metrics.sent_events(None),
                latency: metrics.latency(),
                errors: OutputPort::unconnected(format!("{id}.{ERRORS_OUTPUT}"), &metrics),
                id: id.clone(),
                metrics: metrics.clone(),
            },
            id,
            data_dir,
            metrics,
            input,
        }
    }

    /// The context with its `errors` output connected to the components reading it.
    pub(crate) fn with_errors(mut self, errors: OutputPort) -> SinkContext {
        self.outcomes.errors = errors;
        self
    }

    /// The sink's outcome reports, for a task that delivers on its own.
    pub fn outcomes(&self) -> DeliveryOutcomes {
        self.outcomes.clone()
    }

    /// Refuses events for good (see [`DeliveryOutcomes::refuse`]).
    pub async fn refuse(&self, refused: Vec<(Event, String)>, error_type: &str) {
        self.outcomes.refuse(refused, error_type).await;
    }

    /// Records a successful delivery (see [`DeliveryOutcomes::delivered`]).
    pub fn delivered(&self, events: Vec<Event>, bytes: usize) {
        self.outcomes.delivered(events, bytes);
    }

    /// Records a failed delivery (see [`DeliveryOutcomes::failed`]).
    pub fn failed(&self, events: Vec<Event>, status: BatchStatus, error_type: &str) {
        self.outcomes.failed(events, status, error_type);
    }
}

impl DeliveryOutcomes {
    /// The sink's metrics.
    pub fn metrics(&self) -> &ComponentMetrics {
        &self.metrics
    }

    /// Refuses events for good, each with the reason: each is counted under
    /// `error_type`, reported `Rejected` to its source (which moves past it:
    /// sending it again would fail again), and sent as an `errors` record
    /// (`{"component_id", "error", "input"}`, holding the event's
    /// acknowledgement handle) to the sink's `errors` output, where a
    /// dead-letter sink can keep it.
    pub async fn refuse(&self, refused: Vec<(Event, String)>, error_type: &str) {
        if refused.is_empty() {
            return;
        }
        self.metrics.error(error_type, refused.len() as u64);
        let records = refused
            .into_iter()
            .map(|(event, reason)| {
                if let Some(finalizer) = &event.meta.finalizer {
                    finalizer.fail(BatchStatus::Rejected);
                }
                let mut text = Vec::new();
                let _ = event.write_json(&mut text);
                let record = error_record(&self.id, &reason, &String::from_utf8_lossy(&text));
                let mut record_event =
                    Event::new(Payload::Record(Arc::new(record)), self.id.clone());
                record_event.meta.finalizer = event.meta.finalizer.clone();
                record_event
            })
            .collect();
        self.errors.send(records).await;
    }

    /// Records a successful delivery of `bytes` bytes and acknowledges the events.
    pub fn delivered(&self, events: Vec<Event>, bytes: usize) {
        self.delivered_events.add(events.len() as u64);
        self.metrics.sent_bytes.add(bytes as u64);
        let now = std::time::Instant::now();
        self.latency.record_all(
            events
                .iter()
                .map(|e| now.duration_since(e.meta.received_at)),
        );
        finalize_events(events, BatchStatus::Delivered);
    }

    /// Records a failed delivery: the error is counted and the sources see the failure.
    pub fn failed(&self, events: Vec<Event>, status: BatchStatus, error_type: &str) {
        self.metrics.error(error_type, events.len() as u64);
        finalize_events(events, status);
    }
}
