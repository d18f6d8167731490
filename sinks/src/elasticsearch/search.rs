//! `auditflow query` against the indices of an `elasticsearch` sink: the
//! command's filters become a `bool` query of `term` filters on the mapped
//! header fields ([`super::mapping`]) and a `range` on `@timestamp`; a list
//! pages newest first with `search_after`, a count is `_count`, a
//! `--group-by` is a `terms` aggregation (with a `missing` one for events
//! without the field). The rows are the events as they were received (see
//! [`super::document::restore_source`]), so the table and the JSON output are
//! those of the local store.
//!
//! One difference: `--source-ip` (and grouping by it) looks at every address
//! of `sourceIPs` here, the first one in the local store; they differ only for
//! requests that came through proxies.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Context as _;
use auditflow_core::event::{Alert, AuditEvent};
use opensearch::http::Method;
use serde_json::{json, Value};

use super::connection::{ClusterClient, ClusterConnection, ClusterInfo, Distribution};
use super::document::restore_source;
use super::mapping::audit_field;
use crate::local_store::read::{
    sorted_counts, AlertFilter, EventFilter, Field, StoredAlert, StoredEvent, TimeRange, NONE,
};
use crate::search::SearchableStore;

/// How many documents one search page asks for.
const PAGE_SIZE: usize = 500;

/// The most distinct values a `--group-by` counts.
const MAX_GROUPS: usize = 10_000;

/// How long one search request may take.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The indices of an `elasticsearch` sink, opened for searching.
pub struct ElasticsearchStore {
    client: ClusterClient,
    runtime: tokio::runtime::Runtime,
    events: String,
    alerts: String,
    /// Whether hits can be sorted by `_id` last (OpenSearch; Elasticsearch 8
    /// refuses it by default).
    sort_by_id: bool,
    problems: Vec<String>,
}

impl ElasticsearchStore {
    /// A store over the indices matching `events` (audit events) and `alerts`.
    pub fn open(
        connection: &ClusterConnection,
        events: &str,
        alerts: &str,
    ) -> anyhow::Result<ElasticsearchStore> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = {
            let _entered = runtime.enter();
            connection.client(SEARCH_TIMEOUT)?
        };
        let info = runtime
            .block_on(ClusterInfo::ask(&client))
            .context("asking the cluster what it is")?;
        Ok(ElasticsearchStore {
            client,
            runtime,
            events: events.to_string(),
            alerts: alerts.to_string(),
            sort_by_id: info.distribution == Distribution::OpenSearch,
            problems: Vec::new(),
        })
    }

    fn search(&self, pattern: &str, body: &Value) -> anyhow::Result<Value> {
        let path = format!("/{pattern}/_search?ignore_unavailable=true&allow_no_indices=true");
        self.runtime
            .block_on(self.client.send_json(Method::Post, &path, Some(body)))
            .with_context(|| format!("searching {pattern}"))
    }

    /// Pages through the hits of `query`, newest first, handing each source on.
    fn each_hit(
        &self,
        pattern: &str,
        query: Value,
        tiebreak: &[&str],
        visit: &mut dyn FnMut(&str) -> anyhow::Result<ControlFlow<()>>,
    ) -> anyhow::Result<()> {
        let mut sort = vec![json!({ "@timestamp": { "order": "desc" } })];
        sort.extend(
            tiebreak
                .iter()
                .map(|field| json!({ *field: { "order": "asc", "unmapped_type": "keyword" } })),
        );
        sort.push(json!({ "_index": "asc" }));
        if self.sort_by_id {
            // Makes the order total, so no hit is skipped at a page's end.
            sort.push(json!({ "_id": "asc" }));
        }
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({ "size": PAGE_SIZE, "query": query, "sort": sort, "track_total_hits": false });
            if let Some(after) = &after {
                body["search_after"] = after.clone();
            }
            let answer = self.search(pattern, &body)?;
            let hits = answer["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for hit in &hits {
                let source = hit["_source"].to_string();
                if visit(&source)?.is_break() {
                    return Ok(());
                }
            }
            if hits.len() < PAGE_SIZE {
                return Ok(());
            }
            after = hits.last().map(|hit| hit["sort"].clone());
        }
    }
}

/// The `bool` query of a time range and term filters.
fn bool_query(range: &TimeRange, terms: Vec<(&str, Value)>) -> Value {
    let mut filters: Vec<Value> = terms
        .into_iter()
        .map(|(field, value)| json!({ "term": { field: value } }))
        .collect();
    let mut bounds = serde_json::Map::new();
    if let Some(from) = range.from {
        bounds.insert("gte".into(), json!(rfc3339_micros(from)));
    }
    if let Some(to) = range.to {
        bounds.insert("lt".into(), json!(rfc3339_micros(to)));
    }
    if !bounds.is_empty() {
        bounds.insert("format".into(), json!("strict_date_optional_time_nanos"));
        filters.push(json!({ "range": { "@timestamp": bounds } }));
    }
    json!({ "bool": { "filter": filters } })
}

fn rfc3339_micros(micros: i64) -> String {
    crate::local_store::partition::format_micros(micros)
}

/// The query of the audit events `filter` selects in `range`.
pub fn events_query(range: &TimeRange, filter: &EventFilter) -> Value {
    // Only audit events (`errors` records routed to the sink share the index).
    let mut terms = vec![("kind", json!("Event"))];
    let text = |field: &'static str, value: &Option<String>| {
        value.as_ref().map(|value| (field, json!(value)))
    };
    terms.extend(text("user.username", &filter.user));
    terms.extend(text("user.groups", &filter.group));
    terms.extend(text("verb", &filter.verb));
    terms.extend(text("objectRef.resource", &filter.resource));
    terms.extend(text("objectRef.namespace", &filter.namespace));
    terms.extend(text("objectRef.name", &filter.name));
    terms.extend(text("sourceIPs", &filter.source_ip));
    if let Some(code) = filter.code {
        terms.push(("responseStatus.code", json!(code)));
    }
    bool_query(range, terms)
}

/// The query of the alerts `filter` selects in `range`.
pub fn alerts_query(range: &TimeRange, filter: &AlertFilter) -> Value {
    let mut terms = Vec::new();
    if let Some(user) = &filter.user {
        terms.push(("output_fields.ka.user.name", json!(user)));
    }
    if let Some(namespace) = &filter.namespace {
        terms.push(("output_fields.ka.target.namespace", json!(namespace)));
    }
    bool_query(range, terms)
}

/// The aggregations counting documents by `field` (and those without it).
pub fn group_aggregations(field: &str) -> Value {
    json!({
        "values": { "terms": { "field": field, "size": MAX_GROUPS } },
        "absent": { "missing": { "field": field } },
    })
}

/// The counts of a [`group_aggregations`] answer, most frequent first.
pub fn read_groups(answer: &Value) -> Vec<(String, u64)> {
    let mut counts = BTreeMap::new();
    let buckets = answer["aggregations"]["values"]["buckets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for bucket in buckets {
        let key = match &bucket["key"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let count = bucket["doc_count"].as_u64().unwrap_or(0);
        *counts.entry(key).or_insert(0) += count;
    }
    if let Some(absent) = answer["aggregations"]["absent"]["doc_count"].as_u64() {
        if absent > 0 {
            *counts.entry(NONE.to_string()).or_insert(0) += absent;
        }
    }
    sorted_counts(counts)
}

fn micros_of(time: Option<chrono::DateTime<chrono::Utc>>) -> i64 {
    time.map_or(0, |time| time.timestamp_micros())
}

impl SearchableStore for ElasticsearchStore {
    fn for_each_event(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let query = events_query(range, filter);
        self.each_hit(&self.events, query, &["auditID", "stage"], &mut |source| {
            let text = restore_source(source).context("a stored document is not a JSON object")?;
            let event = AuditEvent::parse(&text).map_err(|error| {
                anyhow::anyhow!("a stored document is not an audit event: {error}")
            })?;
            let time = micros_of(event.header().event_time());
            Ok(visit(StoredEvent { time, event }))
        })
    }

    fn count_events(&mut self, range: &TimeRange, filter: &EventFilter) -> anyhow::Result<u64> {
        let body = json!({ "query": events_query(range, filter) });
        let path = format!(
            "/{}/_count?ignore_unavailable=true&allow_no_indices=true",
            self.events
        );
        let answer: Value = self
            .runtime
            .block_on(self.client.send_json(Method::Post, &path, Some(&body)))
            .with_context(|| format!("counting in {}", self.events))?;
        answer["count"]
            .as_u64()
            .context("the count answer holds no count")
    }

    fn group_events(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        field: Field,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        let mapped = audit_field(field.name())
            .with_context(|| format!("audit events cannot be grouped by {}", field.name()))?;
        let body = json!({
            "size": 0,
            "query": events_query(range, filter),
            "aggs": group_aggregations(mapped),
        });
        let answer = self.search(&self.events, &body)?;
        if let Some(other) = answer["aggregations"]["values"]["sum_other_doc_count"].as_u64() {
            if other > 0 {
                self.problems.push(format!(
                    "{other} matching events have values beyond the {MAX_GROUPS} most frequent, which are not counted; narrow the query"
                ));
            }
        }
        Ok(read_groups(&answer))
    }

    fn for_each_alert(
        &mut self,
        range: &TimeRange,
        filter: &AlertFilter,
        visit: &mut dyn FnMut(StoredAlert) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let query = alerts_query(range, filter);
        self.each_hit(
            &self.alerts,
            query,
            &["rule", "output.keyword"],
            &mut |source| {
                let text = restore_source(source).context("a stored alert is not a JSON object")?;
                let alert: Alert =
                    serde_json::from_str(&text).context("a stored document is not an alert")?;
                let time = micros_of(
                    chrono::DateTime::parse_from_rfc3339(&alert.time)
                        .ok()
                        .map(|time| time.with_timezone(&chrono::Utc)),
                );
                Ok(visit(StoredAlert { time, alert }))
            },
        )
    }

    fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }
}
