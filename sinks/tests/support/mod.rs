//! Helpers of the sink integration tests: run a sink from its TOML options,
//! feed it batches with acknowledgement handles, build events, and put a TCP
//! forwarder in front of a server (to drop connections or bring an endpoint up late).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auditflow_core::ack::{BatchNotifier, BatchReceiver, BatchStatus};
use auditflow_core::component::{Catalog, ComponentSpec, SinkContext};
use auditflow_core::event::{Alert, AuditEvent, Event, Payload, Priority};
use auditflow_core::metrics::{ComponentKind, ComponentMetrics, Registry};
use auditflow_core::topology::InputReceiver;
use indexmap::IndexMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[path = "../../../tests/common/free_port.rs"]
mod free_port;
pub use free_port::free_port;

/// A sink running in the test's runtime.
pub struct RunningSink {
    pub input: Option<mpsc::Sender<Vec<Event>>>,
    pub task: JoinHandle<anyhow::Result<()>>,
    pub registry: Arc<Registry>,
    pub id: String,
}

impl RunningSink {
    /// Starts the sink of type `type_name` with options `options` (TOML).
    pub fn start(type_name: &str, options: &str) -> RunningSink {
        let mut catalog = Catalog::new();
        auditflow_sinks::register(&mut catalog);
        let table: toml::Table = options.parse().expect("the test's options are TOML");
        let Some(ComponentSpec::Sink(parse)) = catalog.get(ComponentKind::Sink, type_name) else {
            panic!("no sink type {type_name}");
        };
        let config = match parse(&table) {
            Ok(config) => config,
            Err(errors) => panic!("invalid options: {errors:?}"),
        };
        let registry = Registry::new();
        let id = "out".to_string();
        let metrics = ComponentMetrics::new(&registry, &id, ComponentKind::Sink, type_name);
        let (sender, input) = InputReceiver::channel(&metrics, 8);
        let context = SinkContext::new(id.clone().into(), std::env::temp_dir(), metrics, input);
        let task = tokio::spawn(config.build(context).expect("the sink builds"));
        RunningSink {
            input: Some(sender),
            task,
            registry,
            id,
        }
    }

    /// Sends events as one source batch; returns the batch's acknowledgement.
    pub async fn send(&self, events: Vec<Event>) -> BatchReceiver {
        let (finalizer, receiver) = BatchNotifier::new_batch();
        let events = events
            .into_iter()
            .map(|event| event.with_finalizer(finalizer.clone()))
            .collect();
        drop(finalizer);
        self.input
            .as_ref()
            .expect("the sink's input is open")
            .send(events)
            .await
            .expect("the sink takes input");
        receiver
    }

    /// Closes the input and waits for the sink to stop.
    pub async fn finish(mut self) -> Arc<Registry> {
        self.input = None;
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the sink stops once its input ends")
            .expect("the sink task did not panic")
            .expect("the sink ends without error");
        self.registry
    }

    /// A counter of this sink (`auditflow_component_errors_total`, ...) with extra labels.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, labels)
    }

    /// This sink's `auditflow_component_errors_total` of one `error_type`.
    pub fn errors(&self, error_type: &str) -> f64 {
        self.metric(
            "auditflow_component_errors_total",
            &[("error_type", error_type)],
        )
    }
}

/// The value of a series in a registry (0 when absent).
pub fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .render()
        .lines()
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches = series.starts_with(&format!("{name}{{"))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Waits for an acknowledgement, at most `seconds`.
pub async fn ack(receiver: BatchReceiver, seconds: u64) -> BatchStatus {
    tokio::time::timeout(Duration::from_secs(seconds), receiver)
        .await
        .expect("the batch is acknowledged in time")
}

/// An alert event, in the form a detection emits it.
pub fn alert_event(
    rule: &str,
    priority: Priority,
    namespace: &str,
    user: &str,
    time: &str,
) -> Event {
    let mut output_fields = IndexMap::new();
    output_fields.insert("ka.target.namespace".to_string(), namespace.into());
    output_fields.insert("ka.user.name".to_string(), user.into());
    let alert = Alert {
        time: time.to_string(),
        rule: rule.to_string(),
        priority,
        output: format!("{rule} by {user} in {namespace}"),
        output_fields,
        source: "k8s_audit".to_string(),
        tags: vec!["k8s".to_string(), "test".to_string()],
        hostname: "node-1".to_string(),
    };
    Event::new(Payload::Alert(Arc::new(alert)), "test".into())
}

/// An audit event with the given auditID.
pub fn audit_event(audit_id: &str) -> Event {
    let text = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{audit_id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{{"username":"alice"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"default"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-11-24T10:00:00.000000Z","stageTimestamp":"2026-11-24T10:00:00.001000Z"}}"#
    );
    let event = AuditEvent::parse(&text).expect("a valid audit event");
    Event::new(Payload::Audit(Arc::new(event)), "test".into())
}

/// A unique token for this test run (labels in a shared Alertmanager, ids).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{nanos}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP forwarder on `port` to `target`, started now: it closes the first
/// `drop_first` connections at once (a dropped connection) and forwards the others.
/// Returns how many connections it has accepted.
pub async fn forward(port: u16, target: String, drop_first: usize) -> Arc<AtomicUsize> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the forwarder");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let number = counter.fetch_add(1, Ordering::SeqCst);
            if number < drop_first {
                drop(client);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    accepted
}
