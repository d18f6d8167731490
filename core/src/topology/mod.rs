//! Running a pipeline: one task per component, bounded channels between them.
//!
//! Every transform and sink has one input channel holding at most
//! [`CHANNEL_BATCHES`] batches; every output of every component is an
//! [`OutputPort`] holding a sender to each component that lists it in its
//! `inputs`. Sending waits while a receiver's channel is full, so a slow sink
//! holds up its upstream transforms and, through them, the sources, which stop
//! reading. Memory is bounded by the channel sizes times the batch size,
//! whatever the input.
//!
//! Shutdown travels the same way: a source that stops drops its ports; a
//! transform whose every upstream has stopped sees its input end, runs its
//! last tick, and drops its ports; a sink whose input ends flushes and stops.
//! [`run`] stops the sources when its shutdown token fires (SIGTERM) or, with
//! `once`, when every source that can end has ended, then waits for the whole
//! graph to drain.
//!
//! Stateless transforms right after a JSON source run on the source's decoding
//! threads instead of in tasks of their own ([`inline`]).

pub mod inline;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ack::{finalize_events, BatchStatus};
use crate::component::{
    ComponentTask, SinkContext, SourceContext, Transform, TransformContext, TransformOutput,
    ERRORS_OUTPUT,
};
use crate::config::graph::OutputRef;
use crate::config::{ComponentConfig, ComponentEntry, PipelineConfig};
use crate::event::Event;
use crate::metrics::{ComponentKind, ComponentMetrics, Counter, Gauge, Registry};
use crate::throttle::SharedThrottle;
use inline::{InlineChain, InlineTransform};

/// How many batches an input channel holds before its senders wait.
pub const CHANNEL_BATCHES: usize = 8;

/// How often a port warns about events dropped because nothing reads it.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

type Batch = Vec<Event>;

#[derive(Clone)]
struct Edge {
    sender: mpsc::Sender<Batch>,
    buffer: Gauge,
    receiver_id: Arc<str>,
}

/// One output of a component: sends each batch to every component reading it.
#[derive(Clone)]
pub struct OutputPort {
    name: String,
    edges: Vec<Edge>,
    sent: Counter,
    discarded: Counter,
    drop_warning: SharedThrottle,
}

impl OutputPort {
    fn new(
        name: String,
        edges: Vec<Edge>,
        metrics: &ComponentMetrics,
        output: Option<&str>,
    ) -> Self {
        OutputPort {
            name,
            edges,
            sent: metrics.sent_events(output),
            discarded: metrics.discarded_events.clone(),
            drop_warning: SharedThrottle::new(DROP_WARNING_INTERVAL),
        }
    }

    /// Sends a batch to every reader, waiting while a reader is full.
    ///
    /// Returns `false` when no reader can take events any more (they have all stopped).
    pub async fn send(&self, batch: Batch) -> bool {
        if batch.is_empty() {
            return true;
        }
        if self.edges.is_empty() {
            self.discard(batch);
            return true;
        }
        self.sent.add(batch.len() as u64);
        let mut delivered_somewhere = false;
        let last = self.edges.len() - 1;
        let mut batch = Some(batch);
        for (index, edge) in self.edges.iter().enumerate() {
            let copy = if index == last {
                batch.take().unwrap_or_default()
            } else {
                batch.clone().unwrap_or_default()
            };
            delivered_somewhere |= send_on_edge(edge, copy).await;
        }
        delivered_somewhere
    }

    /// Sends a batch if every reader can take it within `wait`; otherwise hands it back unsent.
    ///
    /// For a source that answers a client and must refuse work ("retry later")
    /// rather than wait without bound (the webhook source). A slot is reserved in
    /// every reader's channel before anything is sent, so the batch goes to all
    /// readers or to none. A zero `wait` takes free slots only.
    ///
    /// `Ok(false)`: no reader can take events any more; `Err(batch)`: full.
    pub async fn send_within(&self, batch: Batch, wait: Duration) -> Result<bool, Batch> {
        if batch.is_empty() {
            return Ok(true);
        }
        if self.edges.is_empty() {
            self.discard(batch);
            return Ok(true);
        }
        let reserve_all = async {
            let mut permits = Vec::with_capacity(self.edges.len());
            for edge in &self.edges {
                permits.push((edge, edge.sender.reserve().await.ok()));
            }
            permits
        };
        let Ok(permits) = tokio::time::timeout(wait, reserve_all).await else {
            return Err(batch);
        };
        self.sent.add(batch.len() as u64);
        let mut delivered_somewhere = false;
        let last = permits.len() - 1;
        let mut batch = Some(batch);
        for (index, (edge, permit)) in permits.into_iter().enumerate() {
            let copy = if index == last {
                batch.take().unwrap_or_default()
            } else {
                batch.clone().unwrap_or_default()
            };
            match permit {
                Some(permit) => {
                    edge.buffer.add(copy.len() as i64);
                    permit.send(copy);
                    delivered_somewhere = true;
                }
                None => report_stopped(edge, copy),
            }
        }
        Ok(delivered_somewhere)
    }

    /// A port nobody reads (a sink driven outside a pipeline): what it is sent is discarded.
    pub(crate) fn unconnected(name: String, metrics: &ComponentMetrics) -> OutputPort {
        OutputPort::new(name, Vec::new(), metrics, Some(ERRORS_OUTPUT))
    }

    fn discard(&self, batch: Batch) {
        self.discarded.add(batch.len() as u64);
        if self.drop_warning.allow().is_some() {
            tracing::warn!(
                output = %self.name,
                "events sent to `{}` are dropped because nothing reads it; add \"{}\" to the inputs of a sink to keep them",
                self.name,
                self.name
            );
        }
    }
}

async fn send_on_edge(edge: &Edge, batch: Batch) -> bool {
    let count = batch.len() as i64;
    edge.buffer.add(count);
    match edge.sender.send(batch).await {
        Ok(()) => true,
        Err(mpsc::error::SendError(batch)) => {
            edge.buffer.add(-count);
            report_stopped(edge, batch);
            false
        }
    }
}

/// Reports a batch sent to a component that has stopped as not delivered.
fn report_stopped(edge: &Edge, batch: Batch) {
    tracing::error!(component_id = %edge.receiver_id, "a component stopped while events were sent to it; they are reported as not delivered");
    finalize_events(batch, BatchStatus::Errored);
}

/// The input of a transform or sink: batches from every upstream, in arrival order.
pub struct InputReceiver {
    receiver: mpsc::Receiver<Batch>,
    buffer: Gauge,
    received: Counter,
}

impl InputReceiver {
    /// The next batch; `None` once every upstream has stopped and the channel is empty.
    ///
    /// Cancel-safe: it can be raced against a timer in `tokio::select!`.
    pub async fn recv(&mut self) -> Option<Batch> {
        let batch = self.receiver.recv().await?;
        self.buffer.add(-(batch.len() as i64));
        self.received.add(batch.len() as u64);
        Some(batch)
    }

    /// The next batch if one is waiting now, without waiting (a sink gathering a larger write).
    pub fn try_recv(&mut self) -> Option<Batch> {
        let batch = self.receiver.try_recv().ok()?;
        self.buffer.add(-(batch.len() as i64));
        self.received.add(batch.len() as u64);
        Some(batch)
    }

    /// Whether every upstream has stopped (batches may still wait to be received).
    pub fn is_closed(&self) -> bool {
        self.receiver.is_closed()
    }

    /// A receiver fed by the returned sender (tests and benches drive components with it).
    pub fn channel(metrics: &ComponentMetrics, capacity: usize) -> (mpsc::Sender<Batch>, Self) {
        let (sender, receiver) = mpsc::channel(capacity);
        let input = InputReceiver {
            receiver,
            buffer: metrics.buffer_events.clone(),
            received: metrics.received_events.clone(),
        };
        (sender, input)
    }
}

/// What `run` should do beyond running until it is told to stop.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop once every source that can end has ended.
    pub once: bool,
}

struct Wiring {
    registry: Arc<Registry>,
    metrics: BTreeMap<String, ComponentMetrics>,
    edges: BTreeMap<OutputRef, Vec<Edge>>,
    inputs: BTreeMap<String, InputReceiver>,
}

impl Wiring {
    fn new(config: &PipelineConfig, registry: Arc<Registry>) -> Wiring {
        let mut wiring = Wiring {
            registry,
            metrics: BTreeMap::new(),
            edges: BTreeMap::new(),
            inputs: BTreeMap::new(),
        };
        for entry in &config.components {
            let metrics =
                ComponentMetrics::new(&wiring.registry, &entry.id, entry.kind, &entry.type_name);
            if entry.kind != ComponentKind::Source {
                wiring.connect_inputs(entry, &metrics);
            }
            wiring.metrics.insert(entry.id.clone(), metrics);
        }
        wiring
    }

    fn connect_inputs(&mut self, entry: &ComponentEntry, metrics: &ComponentMetrics) {
        let (sender, input) = InputReceiver::channel(metrics, CHANNEL_BATCHES);
        let mut seen = Vec::new();
        for input_name in &entry.inputs {
            let output = OutputRef::parse(input_name);
            if seen.contains(&output) {
                continue;
            }
            seen.push(output.clone());
            self.edges.entry(output).or_default().push(Edge {
                sender: sender.clone(),
                buffer: metrics.buffer_events.clone(),
                receiver_id: entry.id.as_str().into(),
            });
        }
        self.inputs.insert(entry.id.clone(), input);
    }

    fn port(&mut self, id: &str, output: Option<&str>) -> OutputPort {
        let key = OutputRef {
            component: id.to_string(),
            output: output.map(str::to_string),
        };
        let edges = self.edges.remove(&key).unwrap_or_default();
        let metrics = self.metrics(id);
        OutputPort::new(key.to_string(), edges, &metrics, output)
    }

    fn metrics(&self, id: &str) -> ComponentMetrics {
        match self.metrics.get(id) {
            Some(metrics) => metrics.clone(),
            None => ComponentMetrics::new(&self.registry, id, ComponentKind::Transform, "unknown"),
        }
    }

    fn input(&mut self, id: &str) -> anyhow::Result<InputReceiver> {
        self.inputs
            .remove(id)
            .with_context(|| format!("internal error: no input channel for `{id}`"))
    }
}

struct TransformPorts {
    default: Option<OutputPort>,
    named: Vec<OutputPort>,
    errors: OutputPort,
}

#[derive(Debug)]
struct TaskEnd {
    id: String,
    kind: ComponentKind,
    can_end: bool,
    result: anyhow::Result<()>,
}

/// Runs a checked pipeline until it is told to stop (or, with `once`, until its input ends).
///
/// Returns an error if any component failed; everything that could be
/// delivered has been by then.
pub async fn run(
    config: PipelineConfig,
    registry: Arc<Registry>,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create data_dir {}; create it or point data_dir at a writable directory",
            config.data_dir.display()
        )
    })?;
    let mut wiring = Wiring::new(&config, registry);
    let chains = inline::plan(&config);
    let sources_stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut finite_sources = 0usize;
    for entry in &config.components {
        if chains.values().flatten().any(|id| *id == entry.id) {
            continue;
        }
        let chain = chains.get(&entry.id).map(Vec::as_slice).unwrap_or_default();
        let task = start_component(entry, chain, &config, &mut wiring, &sources_stop, options)?;
        let can_end = matches!(&entry.config, ComponentConfig::Source(s) if s.can_end());
        finite_sources += usize::from(can_end);
        let (id, kind) = (entry.id.clone(), entry.kind);
        tasks.spawn(async move {
            let result = task.await;
            TaskEnd {
                id,
                kind,
                can_end,
                result,
            }
        });
    }
    drop(wiring);
    if options.once && finite_sources == 0 {
        tracing::info!("--once: no source can end by itself; running until stopped");
    }
    supervise(tasks, options, finite_sources, shutdown, sources_stop).await
}

async fn supervise(
    mut tasks: JoinSet<TaskEnd>,
    options: RunOptions,
    mut finite_sources: usize,
    shutdown: CancellationToken,
    sources_stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            _ = shutdown.cancelled(), if !sources_stop.is_cancelled() => {
                tracing::info!("stopping: sources stop reading, in-flight events are delivered");
                sources_stop.cancel();
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let end = match joined {
            Ok(end) => end,
            Err(error) => {
                failures.push(format!("a component task panicked: {error}"));
                sources_stop.cancel();
                continue;
            }
        };
        if let Err(error) = &end.result {
            tracing::error!(component_id = %end.id, "{} `{}` failed: {error:#}", end.kind.as_str(), end.id);
            failures.push(format!("{} `{}`: {error:#}", end.kind.as_str(), end.id));
            sources_stop.cancel();
        }
        if end.kind == ComponentKind::Source && end.can_end {
            finite_sources = finite_sources.saturating_sub(1);
            if options.once && finite_sources == 0 {
                sources_stop.cancel();
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "the pipeline stopped with errors:\n  {}",
            failures.join("\n  ")
        )
    }
}

/// Starts one component; a source with a `chain` runs those transforms inline.
fn start_component(
    entry: &ComponentEntry,
    chain: &[String],
    config: &PipelineConfig,
    wiring: &mut Wiring,
    sources_stop: &CancellationToken,
    options: RunOptions,
) -> anyhow::Result<ComponentTask> {
    let id: Arc<str> = entry.id.as_str().into();
    let metrics = wiring.metrics(&entry.id);
    let data_dir = config.data_dir.clone();
    let context = |what: &str| {
        format!(
            "cannot start {} `{}`: {what}",
            entry.kind.as_str(),
            entry.id
        )
    };
    match &entry.config {
        ComponentConfig::Source(source) => {
            let inline = inline_chain(&entry.id, chain, config, wiring, &metrics)
                .with_context(|| context("transform run on its decoding threads"))?;
            let last = chain.last().unwrap_or(&entry.id);
            let context_value = SourceContext {
                id,
                data_dir,
                shutdown: sources_stop.child_token(),
                once: options.once,
                output: wiring.port(last, None),
                errors: wiring.port(&entry.id, Some(ERRORS_OUTPUT)),
                inline_errors: chain
                    .iter()
                    .map(|id| wiring.port(id, Some(ERRORS_OUTPUT)))
                    .collect(),
                inline,
                metrics,
            };
            source
                .build(context_value)
                .with_context(|| context("source"))
        }
        ComponentConfig::Transform(transform_config) => {
            let transform = transform_config
                .build(&TransformContext {
                    id: id.clone(),
                    data_dir,
                    metrics,
                })
                .with_context(|| context("transform"))?;
            let ports = TransformPorts {
                default: transform_config
                    .has_default_output()
                    .then(|| wiring.port(&entry.id, None)),
                named: transform_config
                    .named_outputs()
                    .iter()
                    .map(|name| wiring.port(&entry.id, Some(name)))
                    .collect(),
                errors: wiring.port(&entry.id, Some(ERRORS_OUTPUT)),
            };
            let input = wiring.input(&entry.id)?;
            Ok(Box::pin(run_transform(transform, input, ports, id)))
        }
        ComponentConfig::Sink(sink) => {
            let input = wiring.input(&entry.id)?;
            let errors = wiring.port(&entry.id, Some(ERRORS_OUTPUT));
            let sink_context = SinkContext::new(id, data_dir, metrics, input).with_errors(errors);
            sink.build(sink_context).with_context(|| context("sink"))
        }
    }
}

/// Builds the transforms of `chain` to run on the decoding threads of source `source_id`.
fn inline_chain(
    source_id: &str,
    chain: &[String],
    config: &PipelineConfig,
    wiring: &Wiring,
    source_metrics: &ComponentMetrics,
) -> anyhow::Result<Option<Arc<InlineChain>>> {
    if chain.is_empty() {
        return Ok(None);
    }
    let mut transforms = Vec::with_capacity(chain.len());
    for id in chain {
        let Some(ComponentConfig::Transform(transform)) = config
            .components
            .iter()
            .find(|entry| entry.id == *id)
            .map(|entry| &entry.config)
        else {
            anyhow::bail!("internal error: `{id}` is not a transform");
        };
        transforms.push(InlineTransform {
            config: transform.clone(),
            context: TransformContext {
                id: id.as_str().into(),
                data_dir: config.data_dir.clone(),
                metrics: wiring.metrics(id),
            },
        });
    }
    let chain = InlineChain::new(source_metrics, transforms)?;
    tracing::info!(
        component_id = %source_id,
        "{} run on the decoding threads of source `{source_id}`",
        chain.ids().join(", ")
    );
    Ok(Some(Arc::new(chain)))
}

async fn run_transform(
    mut transform: Box<dyn Transform>,
    mut input: InputReceiver,
    ports: TransformPorts,
    id: Arc<str>,
) -> anyhow::Result<()> {
    let mut output = TransformOutput::new(id, ports.named.len());
    let mut ticker = transform.tick_interval().map(tokio::time::interval);
    loop {
        let next = match ticker.as_mut() {
            Some(ticker) => tokio::select! {
                batch = input.recv() => Some(batch),
                _ = ticker.tick() => None,
            },
            None => Some(input.recv().await),
        };
        match next {
            Some(Some(batch)) => transform.transform(batch, &mut output),
            Some(None) => {
                transform.tick(&mut output);
                flush_outputs(&mut output, &ports).await;
                return Ok(());
            }
            None => transform.tick(&mut output),
        }
        flush_outputs(&mut output, &ports).await;
    }
}

async fn flush_outputs(output: &mut TransformOutput, ports: &TransformPorts) {
    let default = std::mem::take(&mut output.default);
    match &ports.default {
        Some(port) => {
            port.send(default).await;
        }
        None => drop(default),
    }
    for (events, port) in output.named.iter_mut().zip(&ports.named) {
        port.send(std::mem::take(events)).await;
    }
    ports.errors.send(std::mem::take(&mut output.errors)).await;
}

#[cfg(test)]
mod tests;
