//! The running sink: set-up against the cluster, then batches sent as bulk
//! requests, their items retried, refused or acknowledged one by one.

use std::sync::Arc;
use std::time::Duration;

use auditflow_core::ack::{BatchStatus, Finalizer};
use auditflow_core::backoff::Backoff;
use auditflow_core::component::{DeliveryOutcomes, SinkContext};
use auditflow_core::event::{Event, Payload};
use opensearch::http::headers::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use opensearch::http::Method;

use super::bulk::{self, ItemOutcome};
use super::connection::{ClusterClient, ClusterInfo, Distribution, RequestError};
use super::document::{Document, DocumentBuilder};
use super::lifecycle;
use super::mapping::{self, Content, TemplateLifecycle};
use super::{CheckedElasticsearch, IndexMode};
use crate::http_client::{run_batched, BatchedSink, Compression, RequestOptions};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The bulk API, its answer cut to what the sink reads: whether any item
/// failed, and each item's status and error (a tenth of the full answer, which
/// the node then has less to write and compress).
const BULK_PATH: &str = "/_bulk?filter_path=errors,items.*.status,items.*.error";

/// How often an OpenSearch node without ISM is swept for expired indices.
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// The sink while it runs.
pub struct ElasticsearchSink {
    checked: CheckedElasticsearch,
    client: ClusterClient,
    /// Set once the cluster has answered (documents depend on its distribution).
    documents: Option<DocumentBuilder>,
    /// Whether the sink deletes expired indices itself (OpenSearch without ISM).
    sweeps: bool,
    backoff: Backoff,
    /// A permit for each bulk request that may be in flight (`concurrency`).
    in_flight: Arc<Semaphore>,
    /// The bulk requests in flight.
    writers: JoinSet<()>,
}

/// Sends one batch as bulk requests until each item is stored, refused or
/// given up on; several run at once (`concurrency`).
struct BulkWriter {
    client: ClusterClient,
    compression: Compression,
    request: RequestOptions,
    backoff: Backoff,
}

/// Why a bulk request as a whole did not deliver.
enum BulkFailure {
    /// Try it again (no answer, 429, 5xx, 401, 403, an answer that cannot be read).
    Retry {
        /// Why.
        reason: String,
        /// The wait a `Retry-After` header asked for.
        wait: Option<Duration>,
    },
    /// Refused whole for what it holds (400, 413).
    Refused(String),
}

impl ElasticsearchSink {
    /// The sink with its client; nothing is sent until it runs.
    pub fn new(checked: CheckedElasticsearch, context: &SinkContext) -> anyhow::Result<Self> {
        let client = checked.connection.client(checked.config.request.timeout)?;
        let request = checked.config.request;
        tracing::debug!(component_id = %context.id, endpoints = checked.connection.endpoints.len(), "elasticsearch sink built");
        Ok(ElasticsearchSink {
            in_flight: Arc::new(Semaphore::new(checked.config.concurrency)),
            checked,
            client,
            documents: None,
            sweeps: false,
            backoff: Backoff::new(request.retry_initial_backoff, request.retry_max_backoff),
            writers: JoinSet::new(),
        })
    }

    /// Sets up against the cluster (waiting for it), then sends batches until the input ends.
    /// If the input ends while the cluster cannot be reached, the events
    /// still waiting are reported as not delivered and the sink stops.
    pub async fn run(mut self, mut context: SinkContext) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            match self.set_up(&context).await {
                Ok(()) => break,
                Err(RequestError::Unavailable(reason)) if context.input.is_closed() => {
                    let mut events = Vec::new();
                    while let Some(batch) = context.input.try_recv() {
                        events.extend(batch);
                    }
                    tracing::error!(component_id = %context.id, events = events.len(), "the pipeline stops and the cluster cannot be reached ({reason}): the events waiting are reported as not delivered");
                    context.failed(events, BatchStatus::Errored, "delivery_failed");
                    return Ok(());
                }
                Err(RequestError::Unavailable(reason)) => {
                    let wait = self.backoff.wait(attempt.min(16));
                    context.metrics.error("setup_retried", 1);
                    tracing::warn!(component_id = %context.id, "cannot set up the index templates: {reason}; trying again in {wait:?} (no event is read meanwhile)");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(error) => {
                    anyhow::bail!("{}: cannot set up the index templates: {error}", context.id)
                }
            }
        }
        let batch = self.checked.batch;
        run_batched(self, batch, context).await
    }

    /// Asks the cluster what it is and installs the templates and the lifecycle policy.
    async fn set_up(&mut self, context: &SinkContext) -> Result<(), RequestError> {
        let info = ClusterInfo::ask(&self.client).await?;
        tracing::info!(component_id = %context.id, "connected to {:?} {} (lifecycle policies: {})", info.distribution, info.version, if info.has_lifecycle { "yes" } else { "no" });
        let (audit_pattern, alerts_pattern) = self.checked.patterns();
        let patterns = vec![audit_pattern.clone(), alerts_pattern.clone()];
        let policy = format!(
            "{}-retention",
            mapping::template_name(&audit_pattern, &format!("auditflow-{}", context.id))
        );
        let lifecycle = self
            .install_lifecycle(&info, &policy, &patterns, context)
            .await?;
        if self.checked.config.manage_templates {
            let data_stream = self.checked.config.mode == IndexMode::DataStream;
            for (content, pattern, what) in [
                (Content::Audit, &audit_pattern, "audit"),
                (Content::Alerts, &alerts_pattern, "alerts"),
            ] {
                let fallback = format!("auditflow-{}-{what}", context.id);
                let name = mapping::template_name(pattern, &fallback);
                let body = mapping::index_template(
                    content,
                    info.distribution,
                    std::slice::from_ref(pattern),
                    data_stream,
                    &lifecycle,
                    &super::index_settings_json(&self.checked.config.index_settings),
                );
                let path = format!("/_index_template/{name}");
                let (status, answer) = self.client.request(Method::Put, &path, Some(&body)).await?;
                super::connection::check_status(status, &answer)?;
            }
        }
        self.documents = Some(DocumentBuilder {
            index: self.checked.index.clone(),
            alerts_index: self.checked.alerts_index.clone(),
            id: self.checked.id.clone(),
            distribution: info.distribution,
        });
        if self.sweeps {
            self.sweep(context).await;
        }
        Ok(())
    }

    /// Installs the retention policy the cluster runs, or notes that the sink sweeps.
    async fn install_lifecycle(
        &mut self,
        info: &ClusterInfo,
        policy: &str,
        patterns: &[String],
        context: &SinkContext,
    ) -> Result<TemplateLifecycle, RequestError> {
        let Some(retention) = self.checked.config.retention else {
            return Ok(TemplateLifecycle::None);
        };
        if !self.checked.config.manage_templates {
            return Ok(TemplateLifecycle::None);
        }
        let rollover = self.checked.rollover_size();
        match (info.distribution, info.has_lifecycle) {
            (Distribution::Elasticsearch, _) => {
                let body = lifecycle::ilm_policy(retention, rollover);
                lifecycle::put_ilm_policy(&self.client, policy, &body).await?;
                Ok(TemplateLifecycle::Ilm(policy.to_string()))
            }
            (Distribution::OpenSearch, true) => {
                let body = lifecycle::ism_policy(retention, patterns, rollover);
                lifecycle::put_ism_policy(&self.client, policy, &body).await?;
                Ok(TemplateLifecycle::None)
            }
            (Distribution::OpenSearch, false) => {
                tracing::warn!(component_id = %context.id, "the cluster has no ISM plugin: the sink deletes indices past the retention ({}) itself, every hour", lifecycle::age(retention));
                self.sweeps = true;
                Ok(TemplateLifecycle::None)
            }
        }
    }

    /// Deletes the indices past the retention (OpenSearch without ISM).
    async fn sweep(&self, context: &SinkContext) {
        let Some(retention) = self.checked.config.retention else {
            return;
        };
        let (audit, alerts) = self.checked.patterns();
        let cutoff = chrono::Utc::now().timestamp_millis()
            - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match lifecycle::delete_expired(&self.client, &[audit, alerts], cutoff).await {
            Ok(deleted) if deleted.is_empty() => {}
            Ok(deleted) => {
                tracing::info!(component_id = %context.id, "deleted {} indices past the retention: {}", deleted.len(), deleted.join(", "))
            }
            Err(error) => {
                context.metrics.error("retention_failed", 1);
                tracing::warn!(component_id = %context.id, "cannot apply the retention: {error}; trying again in an hour");
            }
        }
    }
}

/// What the items of one sub-batch came to, gathered until the batch is done.
#[derive(Default)]
struct Settled {
    stored: Vec<Event>,
    stored_bytes: usize,
    refused: Vec<(Event, String)>,
}

impl BulkWriter {
    /// Sends one bulk request; the outcome of each document.
    async fn post_bulk(&self, documents: &[&Document]) -> Result<Vec<ItemOutcome>, BulkFailure> {
        let mut body = Vec::with_capacity(documents.iter().map(|d| bulk::operation_size(d)).sum());
        for document in documents {
            bulk::write_operation(&mut body, document);
        }
        let compression = self.compression;
        let body = compression
            .compress(body)
            .map_err(|error| BulkFailure::Retry {
                reason: format!("cannot compress the request: {error}"),
                wait: None,
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        if let Some(encoding) = compression.content_encoding() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        let answer = self
            .client
            .send(Method::Post, BULK_PATH, headers, Some(body.into()))
            .await
            .map_err(|error| BulkFailure::Retry {
                reason: error.to_string(),
                wait: None,
            })?;
        match super::connection::check_status(answer.status, &answer.body) {
            Ok(()) => {}
            Err(RequestError::Unavailable(reason)) => {
                return Err(BulkFailure::Retry {
                    reason,
                    wait: answer.retry_after,
                })
            }
            // Credentials and rights can be fixed while the events wait.
            Err(
                refused @ RequestError::Refused {
                    status: 401 | 403, ..
                },
            ) => {
                return Err(BulkFailure::Retry {
                    reason: format!("{refused} (check the sink's auth and the user's rights)"),
                    wait: None,
                })
            }
            Err(refused @ RequestError::Refused { .. }) => {
                return Err(BulkFailure::Refused(refused.to_string()))
            }
        }
        bulk::read_answer(&answer.body, documents.len())
            .map_err(|reason| BulkFailure::Retry { reason, wait: None })
    }

    /// Sends `batch`, its items again while they are worth retrying, and
    /// reports each event's outcome. A request the cluster refuses whole
    /// (too large, or one operation it cannot read) is split in halves until
    /// the refused operation is alone; that one goes to `errors`.
    async fn write(
        &mut self,
        batch: Vec<(Event, Document)>,
        outcomes: &DeliveryOutcomes,
        id: &str,
    ) {
        let mut settled = Settled::default();
        let mut parts = vec![batch];
        while let Some(part) = parts.pop() {
            if let Some((first, second)) = self.write_part(part, &mut settled, outcomes, id).await {
                parts.push(second);
                parts.push(first);
            }
        }
        outcomes.delivered(settled.stored, settled.stored_bytes);
        outcomes.refuse(settled.refused, "document_refused").await;
    }

    /// Sends one part of a batch until each item is settled; the two halves
    /// of the part when the cluster refuses it whole.
    async fn write_part(
        &mut self,
        mut pending: Vec<(Event, Document)>,
        settled: &mut Settled,
        outcomes: &DeliveryOutcomes,
        id: &str,
    ) -> Option<(Vec<(Event, Document)>, Vec<(Event, Document)>)> {
        let attempts = self.request.retry_attempts;
        let mut retries = 0;
        loop {
            let documents: Vec<&Document> = pending.iter().map(|(_, document)| document).collect();
            let (reason, wait) = match self.post_bulk(&documents).await {
                Ok(items) => {
                    let mut again = Vec::new();
                    let mut last = String::new();
                    for ((event, document), outcome) in pending.drain(..).zip(items) {
                        match outcome {
                            ItemOutcome::Stored => {
                                settled.stored_bytes += document.source.len();
                                settled.stored.push(event);
                            }
                            ItemOutcome::Retry(reason) => {
                                last = reason;
                                again.push((event, document));
                            }
                            ItemOutcome::Refused(reason) => {
                                let reason = refusal(&event, &document, &reason);
                                settled.refused.push((event, reason));
                            }
                        }
                    }
                    pending = again;
                    (last, None)
                }
                Err(BulkFailure::Retry { reason, wait }) => (reason, wait),
                Err(BulkFailure::Refused(reason)) if pending.len() > 1 => {
                    tracing::warn!(component_id = %id, events = pending.len(), "{reason}; sending the request again in two halves");
                    let second = pending.split_off(pending.len() / 2);
                    return Some((pending, second));
                }
                Err(BulkFailure::Refused(reason)) => {
                    for (event, document) in pending.drain(..) {
                        let reason = refusal(&event, &document, &reason);
                        settled.refused.push((event, reason));
                    }
                    (String::new(), None)
                }
            };
            if pending.is_empty() {
                return None;
            }
            if retries >= attempts {
                tracing::error!(component_id = %id, events = pending.len(), "no delivery after {} attempts; the last one failed: {reason}; the events are reported as not delivered", retries + 1);
                let events = pending.drain(..).map(|(event, _)| event).collect();
                outcomes.failed(events, BatchStatus::Errored, "delivery_failed");
                return None;
            }
            let wait = wait
                .unwrap_or_else(|| self.backoff.wait(retries))
                .max(Duration::from_millis(1));
            outcomes
                .metrics()
                .error("items_retried", pending.len() as u64);
            tracing::warn!(component_id = %id, events = pending.len(), "not stored: {reason}; retry {} of {attempts} in {wait:?}", retries + 1);
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }
}

/// The reason an item was refused, as its `errors` record says it.
fn refusal(event: &Event, document: &Document, reason: &str) -> String {
    let audit_id = match &event.payload {
        Payload::Audit(audit) => audit.header().audit_id().to_string(),
        _ => String::new(),
    };
    if audit_id.is_empty() {
        format!(
            "index {} refused document {}: {reason}",
            document.index, document.id
        )
    } else {
        format!(
            "index {} refused the event with auditID {audit_id}: {reason}",
            document.index
        )
    }
}

impl BatchedSink for ElasticsearchSink {
    type Item = (Event, Document);

    fn prepare(&mut self, event: Event, context: &SinkContext) -> Option<(Self::Item, usize)> {
        let Some(documents) = self.documents.as_ref() else {
            // `run` sets the builder up before it reads any input.
            context.failed(vec![event], BatchStatus::Errored, "not_set_up");
            return None;
        };
        match documents.build(&event) {
            Ok((document, notes)) => {
                if notes.missing_fields > 0 {
                    context
                        .metrics
                        .error("template_field_missing", notes.missing_fields as u64);
                }
                if notes.cut_bodies {
                    context.metrics.error("body_strings_cut", 1);
                }
                let size = bulk::operation_size(&document);
                Some(((event, document), size))
            }
            Err(reason) => {
                tracing::error!(component_id = %context.id, "an event cannot be made a document: {reason}");
                context.failed(vec![event], BatchStatus::Rejected, "encode_failed");
                None
            }
        }
    }

    async fn send(&mut self, batch: Vec<Self::Item>, context: &SinkContext) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            // The semaphore is never closed; fail rather than drop if it were.
            let events = batch.into_iter().map(|(event, _)| event).collect();
            context.failed(events, BatchStatus::Errored, "delivery_failed");
            return;
        };
        let request = self.checked.config.request;
        let mut writer = BulkWriter {
            client: self.client.clone(),
            compression: self.checked.config.compression,
            request,
            backoff: Backoff::new(request.retry_initial_backoff, request.retry_max_backoff),
        };
        let outcomes = context.outcomes();
        let id = context.id.clone();
        let guard = FailUnlessSettled::new(&batch);
        self.writers.spawn(async move {
            writer.write(batch, &outcomes, &id).await;
            guard.settled();
            drop(permit);
        });
        while let Some(done) = self.writers.try_join_next() {
            report_panic(done, &context.id);
        }
    }

    async fn flush(&mut self, context: &SinkContext) {
        while let Some(done) = self.writers.join_next().await {
            report_panic(done, &context.id);
        }
    }

    fn housekeeping_interval(&self) -> Option<Duration> {
        self.sweeps.then_some(SWEEP_INTERVAL)
    }

    async fn housekeeping(&mut self, context: &SinkContext) {
        self.sweep(context).await;
    }
}

/// The acknowledgement handles of a batch in a bulk writer's hands: should the
/// writer stop before it reports every event (a panic), they are failed as
/// `Errored` (a dropped handle alone would count as delivered), so the source
/// sends the events again.
struct FailUnlessSettled {
    finalizers: Vec<Finalizer>,
}

impl FailUnlessSettled {
    fn new(batch: &[(Event, Document)]) -> FailUnlessSettled {
        FailUnlessSettled {
            finalizers: batch
                .iter()
                .filter_map(|(event, _)| event.meta.finalizer.clone())
                .collect(),
        }
    }

    /// Every event was reported: nothing to fail.
    fn settled(mut self) {
        self.finalizers.clear();
    }
}

impl Drop for FailUnlessSettled {
    fn drop(&mut self) {
        for finalizer in &self.finalizers {
            finalizer.fail(BatchStatus::Errored);
        }
    }
}

/// Logs a bulk writer that panicked (its events are failed by [`FailUnlessSettled`]).
fn report_panic(done: Result<(), tokio::task::JoinError>, id: &str) {
    if let Err(error) = done {
        tracing::error!(component_id = %id, "a bulk request task failed: {error}");
    }
}
