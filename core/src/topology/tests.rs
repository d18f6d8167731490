//! Tests of the running graph with purpose-built components: acknowledgements
//! across fan-out, shutdown, and `--once`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::inline::TransformErrors;
use super::{run, RunOptions};
use crate::ack::{BatchNotifier, BatchStatus};
use crate::component::{
    ComponentTask, SinkConfig, SinkContext, SourceConfig, SourceContext, Transform,
    TransformConfig, TransformContext, TransformOutput, ERRORS_OUTPUT,
};
use crate::config::{ComponentConfig, ComponentEntry, PipelineConfig};
use crate::event::{AuditEvent, Event, Payload};
use crate::metrics::{ComponentKind, ComponentMetrics, Registry};

const EVENT: &str = r#"{"auditID":"a","stage":"ResponseComplete","verb":"get"}"#;

/// Sends one acknowledged batch of `count` events, reports the batch status, then ends.
struct AckedSource {
    count: usize,
    status: Mutex<Option<oneshot::Sender<BatchStatus>>>,
}

impl SourceConfig for AckedSource {
    fn can_end(&self) -> bool {
        true
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        let report = self.status.lock().ok().and_then(|mut slot| slot.take());
        let count = self.count;
        Ok(Box::pin(async move {
            let (finalizer, receiver) = BatchNotifier::new_batch();
            let event = AuditEvent::parse(EVENT)?;
            let batch: Vec<Event> = (0..count)
                .map(|_| {
                    Event::new(Payload::Audit(Arc::new(event.clone())), context.id.clone())
                        .with_finalizer(finalizer.clone())
                })
                .collect();
            drop(finalizer);
            context.send(batch).await;
            let status = receiver.wait().await;
            if let Some(report) = report {
                let _ = report.send(status);
            }
            Ok(())
        }))
    }
}

/// Delivers each batch once `gate` is notified (immediately without a gate), reporting counts.
struct GatedSink {
    gate: Option<Arc<Notify>>,
    delivered: mpsc::UnboundedSender<usize>,
    fail: bool,
}

impl SinkConfig for GatedSink {
    fn build(&self, mut context: SinkContext) -> anyhow::Result<ComponentTask> {
        let gate = self.gate.clone();
        let delivered = self.delivered.clone();
        let fail = self.fail;
        Ok(Box::pin(async move {
            while let Some(batch) = context.input.recv().await {
                if let Some(gate) = &gate {
                    gate.notified().await;
                }
                let _ = delivered.send(batch.len());
                if fail {
                    context.failed(batch, BatchStatus::Errored, "test_failure");
                } else {
                    context.delivered(batch, 0);
                }
            }
            Ok(())
        }))
    }
}

fn entry(
    id: &str,
    kind: ComponentKind,
    inputs: &[&str],
    config: ComponentConfig,
) -> ComponentEntry {
    ComponentEntry {
        id: id.to_string(),
        kind,
        type_name: "test".to_string(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        config,
    }
}

fn pipeline(dir: &std::path::Path, components: Vec<ComponentEntry>) -> PipelineConfig {
    PipelineConfig {
        data_dir: dir.to_path_buf(),
        api: None,
        components,
        warnings: Vec::new(),
    }
}

struct FanOut {
    status: oneshot::Receiver<BatchStatus>,
    fast: mpsc::UnboundedReceiver<usize>,
    slow: mpsc::UnboundedReceiver<usize>,
    gate: Arc<Notify>,
    config: PipelineConfig,
    _dir: tempfile::TempDir,
}

fn fan_out(fast_fails: bool) -> FanOut {
    let dir = tempfile::tempdir().unwrap();
    let (status_tx, status) = oneshot::channel();
    let (fast_tx, fast) = mpsc::unbounded_channel();
    let (slow_tx, slow) = mpsc::unbounded_channel();
    let gate = Arc::new(Notify::new());
    let source = AckedSource {
        count: 10,
        status: Mutex::new(Some(status_tx)),
    };
    let fast_sink = GatedSink {
        gate: None,
        delivered: fast_tx,
        fail: fast_fails,
    };
    let slow_sink = GatedSink {
        gate: Some(gate.clone()),
        delivered: slow_tx,
        fail: false,
    };
    let config = pipeline(
        dir.path(),
        vec![
            entry(
                "in",
                ComponentKind::Source,
                &[],
                ComponentConfig::Source(Box::new(source)),
            ),
            entry(
                "fast",
                ComponentKind::Sink,
                &["in"],
                ComponentConfig::Sink(Box::new(fast_sink)),
            ),
            entry(
                "slow",
                ComponentKind::Sink,
                &["in"],
                ComponentConfig::Sink(Box::new(slow_sink)),
            ),
        ],
    );
    FanOut {
        status,
        fast,
        slow,
        gate,
        config,
        _dir: dir,
    }
}

#[tokio::test]
async fn fan_out_ack_resolves_only_after_both_sinks_delivered() {
    let mut fan = fan_out(false);
    let running = tokio::spawn(run(
        fan.config,
        Registry::new(),
        RunOptions { once: true },
        CancellationToken::new(),
    ));
    assert_eq!(fan.fast.recv().await, Some(10));
    // The fast sink has delivered; the slow one holds its copy: no ack yet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        fan.status.try_recv().is_err(),
        "acknowledged before the slow sink delivered"
    );
    fan.gate.notify_one();
    assert_eq!(fan.slow.recv().await, Some(10));
    let status = tokio::time::timeout(Duration::from_secs(5), &mut fan.status).await;
    assert_eq!(
        status.ok().and_then(Result::ok),
        Some(BatchStatus::Delivered)
    );
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failed_delivery_reaches_the_source() {
    let mut fan = fan_out(true);
    let running = tokio::spawn(run(
        fan.config,
        Registry::new(),
        RunOptions { once: true },
        CancellationToken::new(),
    ));
    fan.gate.notify_one();
    assert_eq!(fan.fast.recv().await, Some(10));
    assert_eq!(fan.slow.recv().await, Some(10));
    let status = tokio::time::timeout(Duration::from_secs(5), &mut fan.status).await;
    assert_eq!(status.ok().and_then(Result::ok), Some(BatchStatus::Errored));
    running.await.unwrap().unwrap();
}

/// A source that never ends by itself: it waits for shutdown.
struct ServerSource;

impl SourceConfig for ServerSource {
    fn can_end(&self) -> bool {
        false
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        Ok(Box::pin(async move {
            context.shutdown.cancelled().await;
            Ok(())
        }))
    }
}

#[tokio::test]
async fn once_stops_servers_when_finite_sources_end() {
    let dir = tempfile::tempdir().unwrap();
    let (status_tx, status) = oneshot::channel();
    let (sink_tx, mut delivered) = mpsc::unbounded_channel();
    let components = vec![
        entry(
            "file",
            ComponentKind::Source,
            &[],
            ComponentConfig::Source(Box::new(AckedSource {
                count: 3,
                status: Mutex::new(Some(status_tx)),
            })),
        ),
        entry(
            "server",
            ComponentKind::Source,
            &[],
            ComponentConfig::Source(Box::new(ServerSource)),
        ),
        entry(
            "out",
            ComponentKind::Sink,
            &["file", "server"],
            ComponentConfig::Sink(Box::new(GatedSink {
                gate: None,
                delivered: sink_tx,
                fail: false,
            })),
        ),
    ];
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        run(
            pipeline(dir.path(), components),
            Registry::new(),
            RunOptions { once: true },
            CancellationToken::new(),
        ),
    )
    .await;
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    assert_eq!(delivered.recv().await, Some(3));
    assert_eq!(status.await.ok(), Some(BatchStatus::Delivered));
}

#[tokio::test]
async fn shutdown_token_stops_a_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let (sink_tx, _delivered) = mpsc::unbounded_channel();
    let components = vec![
        entry(
            "server",
            ComponentKind::Source,
            &[],
            ComponentConfig::Source(Box::new(ServerSource)),
        ),
        entry(
            "out",
            ComponentKind::Sink,
            &["server"],
            ComponentConfig::Sink(Box::new(GatedSink {
                gate: None,
                delivered: sink_tx,
                fail: false,
            })),
        ),
    ];
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run(
        pipeline(dir.path(), components),
        Registry::new(),
        RunOptions { once: false },
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!running.is_finished());
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), running).await;
    assert!(matches!(result, Ok(Ok(Ok(())))));
}

fn edge(capacity: usize) -> (super::Edge, mpsc::Receiver<Vec<Event>>) {
    let (sender, receiver) = mpsc::channel(capacity);
    let edge = super::Edge {
        sender,
        buffer: Default::default(),
        receiver_id: "reader".into(),
    };
    (edge, receiver)
}

fn one_event() -> Vec<Event> {
    let event = AuditEvent::parse(EVENT).expect("a valid event");
    vec![Event::new(Payload::Audit(Arc::new(event)), "in".into())]
}

#[tokio::test]
async fn send_within_sends_to_every_reader_or_to_none() {
    let registry = Registry::new();
    let metrics =
        crate::metrics::ComponentMetrics::new(&registry, "in", ComponentKind::Source, "t");
    let (free, mut free_receiver) = edge(1);
    let (full, mut full_receiver) = edge(1);
    let port = super::OutputPort::new("in".into(), vec![free, full], &metrics, None);
    assert!(matches!(
        port.send_within(one_event(), Duration::ZERO).await,
        Ok(true)
    ));
    // The second reader's one slot is taken now: nothing may reach the first one either.
    assert_eq!(free_receiver.recv().await.map(|b| b.len()), Some(1));
    let refused = port
        .send_within(one_event(), Duration::from_millis(20))
        .await;
    assert!(matches!(refused, Err(batch) if batch.len() == 1));
    assert!(free_receiver.try_recv().is_err());
    assert_eq!(full_receiver.recv().await.map(|b| b.len()), Some(1));
    assert!(matches!(
        port.send_within(one_event(), Duration::ZERO).await,
        Ok(true)
    ));
    assert!(free_receiver.try_recv().is_ok() && full_receiver.try_recv().is_ok());
    drop((free_receiver, full_receiver));
    assert!(matches!(
        port.send_within(one_event(), Duration::ZERO).await,
        Ok(false)
    ));
}

/// Drops `delete` events and makes an `errors` record of each `bad` one; may run inline.
struct KeepReads {
    inline: bool,
    /// A named output beside the default one (a transform with one is never inlined).
    named: bool,
}

impl TransformConfig for KeepReads {
    fn runs_inline(&self) -> bool {
        self.inline
    }

    fn named_outputs(&self) -> Vec<String> {
        if self.named {
            vec!["other".to_string()]
        } else {
            Vec::new()
        }
    }

    fn build(&self, _context: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(Box::new(KeepReadsRun))
    }
}

struct KeepReadsRun;

impl Transform for KeepReadsRun {
    fn transform(&mut self, batch: Vec<Event>, output: &mut TransformOutput) {
        for event in batch {
            match event.as_audit().map(|audit| audit.header().verb()) {
                Some("delete") => {}
                Some("bad") => output.push_error(&event, "a bad verb"),
                _ => output.push(event),
            }
        }
    }
}

/// Sends events of the given verbs in one batch, running its inline
/// transforms on a blocking thread as the JSON sources' decoder does.
struct DecodingSource {
    verbs: Vec<&'static str>,
    inline: bool,
    /// The ids of the transforms it was given to run inline.
    given: Arc<Mutex<Vec<String>>>,
}

impl SourceConfig for DecodingSource {
    fn decodes_inline(&self) -> bool {
        self.inline
    }

    fn can_end(&self) -> bool {
        true
    }

    fn build(&self, context: SourceContext) -> anyhow::Result<ComponentTask> {
        let verbs = self.verbs.clone();
        if let (Some(chain), Ok(mut given)) = (context.inline_transforms(), self.given.lock()) {
            given.extend(chain.ids().into_iter().map(str::to_string));
        }
        Ok(Box::pin(async move {
            let mut events = Vec::new();
            for (index, verb) in verbs.iter().enumerate() {
                let text = format!(
                    r#"{{"auditID":"{index}","stage":"ResponseComplete","verb":"{verb}"}}"#
                );
                let event = AuditEvent::parse(&text)?;
                events.push(Event::new(
                    Payload::Audit(Arc::new(event)),
                    context.id.clone(),
                ));
            }
            let (events, errors) = match context.inline_transforms() {
                Some(chain) => tokio::task::spawn_blocking(move || chain.apply(events)).await?,
                None => (events, TransformErrors::default()),
            };
            context.send_transform_errors(errors).await;
            context.send(events).await;
            Ok(())
        }))
    }
}

/// Reports the auditID (or, for a record, its `error`) of every event it delivers.
struct CollectSink {
    seen: mpsc::UnboundedSender<String>,
}

impl SinkConfig for CollectSink {
    fn build(&self, mut context: SinkContext) -> anyhow::Result<ComponentTask> {
        let seen = self.seen.clone();
        Ok(Box::pin(async move {
            while let Some(batch) = context.input.recv().await {
                for event in &batch {
                    let name = match &event.payload {
                        Payload::Audit(audit) => audit.header().audit_id().to_string(),
                        Payload::Record(record) => record["error"].to_string(),
                        _ => String::new(),
                    };
                    let _ = seen.send(name);
                }
                context.delivered(batch, 0);
            }
            Ok(())
        }))
    }
}

fn source(id: &str, inline: bool) -> ComponentEntry {
    source_telling(id, inline, Arc::default())
}

fn source_telling(id: &str, inline: bool, given: Arc<Mutex<Vec<String>>>) -> ComponentEntry {
    let verbs = vec!["get", "delete", "bad", "list"];
    let source = DecodingSource {
        verbs,
        inline,
        given,
    };
    entry(
        id,
        ComponentKind::Source,
        &[],
        ComponentConfig::Source(Box::new(source)),
    )
}

fn keep_reads(id: &str, inputs: &[&str], inline: bool) -> ComponentEntry {
    let named = false;
    let config = ComponentConfig::Transform(Arc::new(KeepReads { inline, named }));
    entry(id, ComponentKind::Transform, inputs, config)
}

fn collect(id: &str, inputs: &[&str], seen: &mpsc::UnboundedSender<String>) -> ComponentEntry {
    let config = ComponentConfig::Sink(Box::new(CollectSink { seen: seen.clone() }));
    entry(id, ComponentKind::Sink, inputs, config)
}

fn chains(components: Vec<ComponentEntry>) -> Vec<(String, Vec<String>)> {
    let dir = std::path::Path::new("/nonexistent");
    super::inline::plan(&pipeline(dir, components))
        .into_iter()
        .collect()
}

#[test]
fn inline_chains_follow_the_default_output_while_one_inline_transform_reads_it() {
    let (seen, _) = mpsc::unbounded_channel();
    let chain = |ids: &[&str]| {
        vec![(
            "in".to_string(),
            ids.iter().map(|s| s.to_string()).collect(),
        )]
    };
    let straight = vec![
        source("in", true),
        keep_reads("a", &["in"], true),
        keep_reads("b", &["a"], true),
        collect("out", &["b", "a.errors"], &seen),
    ];
    assert_eq!(chains(straight), chain(&["a", "b"]));
    let a_read_twice = vec![
        source("in", true),
        keep_reads("a", &["in"], true),
        keep_reads("b", &["a"], true),
        collect("out", &["b"], &seen),
        collect("copy", &["a"], &seen),
    ];
    assert_eq!(chains(a_read_twice), chain(&["a"]));
    let b_reads_more = vec![
        source("in", true),
        source("other", false),
        keep_reads("a", &["in", "in"], true),
        keep_reads("b", &["a", "other"], true),
        collect("out", &["b"], &seen),
    ];
    assert_eq!(chains(b_reads_more), chain(&["a"]));
    let stateful_second = vec![
        source("in", true),
        keep_reads("a", &["in"], true),
        keep_reads("b", &["a"], false),
        keep_reads("c", &["b"], true),
        collect("out", &["c"], &seen),
    ];
    assert_eq!(chains(stateful_second), chain(&["a"]));
    let not_inline = vec![
        source("in", false),
        keep_reads("a", &["in"], true),
        collect("out", &["a"], &seen),
    ];
    assert_eq!(chains(not_inline), vec![]);
    let errors_only = vec![
        source("in", true),
        keep_reads("a", &["in.errors"], true),
        collect("out", &["a", "in"], &seen),
    ];
    assert_eq!(chains(errors_only), vec![]);
    let with_named_output = ComponentConfig::Transform(Arc::new(KeepReads {
        inline: true,
        named: true,
    }));
    let named_second = vec![
        source("in", true),
        keep_reads("a", &["in"], true),
        entry("b", ComponentKind::Transform, &["a"], with_named_output),
        collect("out", &["b", "b.other"], &seen),
    ];
    assert_eq!(chains(named_second), chain(&["a"]));
}

struct KeepReadsOutcome {
    kept: Vec<String>,
    errors: Vec<String>,
    registry: Arc<Registry>,
    /// The transforms the source ran inline.
    inlined: Vec<String>,
}

async fn run_keep_reads(inline: bool) -> KeepReadsOutcome {
    let dir = tempfile::tempdir().unwrap();
    let given = Arc::default();
    let (kept_tx, mut kept) = mpsc::unbounded_channel();
    let (errors_tx, mut errors) = mpsc::unbounded_channel();
    let config = pipeline(
        dir.path(),
        vec![
            source_telling("in", inline, Arc::clone(&given)),
            keep_reads("a", &["in"], true),
            keep_reads("b", &["a"], true),
            collect("out", &["b"], &kept_tx),
            collect("dead", &["a.errors", "b.errors"], &errors_tx),
        ],
    );
    drop((kept_tx, errors_tx));
    let registry = Registry::new();
    let options = RunOptions { once: true };
    let running = run(config, registry.clone(), options, CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the pipeline ends")
        .unwrap();
    let (mut kept_ids, mut error_texts) = (Vec::new(), Vec::new());
    while let Some(id) = kept.recv().await {
        kept_ids.push(id);
    }
    while let Some(text) = errors.recv().await {
        error_texts.push(text);
    }
    let inlined = given.lock().map(|ids| ids.clone()).unwrap_or_default();
    KeepReadsOutcome {
        kept: kept_ids,
        errors: error_texts,
        registry,
        inlined,
    }
}

#[tokio::test]
async fn inline_transforms_give_what_their_tasks_give_with_the_same_counts() {
    for inline in [true, false] {
        let KeepReadsOutcome {
            kept,
            errors,
            registry,
            inlined,
        } = run_keep_reads(inline).await;
        let expected_inline: &[&str] = if inline { &["a", "b"] } else { &[] };
        assert_eq!(inlined, expected_inline);
        assert_eq!(kept, vec!["0", "3"], "inline: {inline}");
        assert_eq!(errors, vec!["\"a bad verb\""], "inline: {inline}");
        let metrics = |id: &str, kind| ComponentMetrics::new(&registry, id, kind, "test");
        let (source, a, b) = (
            metrics("in", ComponentKind::Source),
            metrics("a", ComponentKind::Transform),
            metrics("b", ComponentKind::Transform),
        );
        assert_eq!(source.sent_events(None).get(), 4, "inline: {inline}");
        assert_eq!(a.received_events.get(), 4, "inline: {inline}");
        assert_eq!(a.sent_events(None).get(), 2, "inline: {inline}");
        assert_eq!(
            a.sent_events(Some(ERRORS_OUTPUT)).get(),
            1,
            "inline: {inline}"
        );
        assert_eq!(b.received_events.get(), 2, "inline: {inline}");
        assert_eq!(b.sent_events(None).get(), 2, "inline: {inline}");
    }
}
