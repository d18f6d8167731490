//! `auditflow query` against a `loki` sink whose server is VictoriaLogs (its
//! `path` begins with `/insert/`), through LogsQL.
//!
//! The query narrows on the server: the sink's constant labels as the stream
//! filter (`{job="kubernetes-audit", cluster="production-eu"}`), the time
//! range on `_time`, and an exact `field:="value"` for each filter whose field
//! the sink sends as a label or metadata of its own (`verb`, `resource`,
//! `user`, `namespace`, `name`, `code` by default). The lines come back newest
//! first; each is parsed, and the command's filters are applied to it exactly
//! as the local store applies them, so the rows are the same. Counts and
//! groups are taken over the lines the query returns.
//!
//! Grafana Loki's own query API (LogQL over `/loki/api/v1/query_range`) is not
//! built: the tests' server is VictoriaLogs.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Context as _;
use auditflow_core::event::{Alert, AuditEvent, AuditHeader};
use auditflow_core::template::Template;
use reqwest::header::HeaderMap;
use reqwest::Url;

use super::CheckedLoki;
use crate::local_store::read::{
    sorted_counts, AlertFilter, EventFilter, Field, StoredAlert, StoredEvent, TimeRange,
};
use crate::search::SearchableStore;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// The entries a `loki` sink pushed to VictoriaLogs, opened for searching.
pub struct LokiStore {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    url: Url,
    headers: HeaderMap,
    streams: String,
    fields: BTreeMap<String, String>,
    problems: Vec<String>,
}

impl LokiStore {
    /// The store of a checked `loki` sink; an error when its server is not
    /// VictoriaLogs (the only query API built).
    pub fn open(checked: &CheckedLoki) -> anyhow::Result<LokiStore> {
        if !is_victorialogs(checked) {
            anyhow::bail!(
                "`auditflow query` searches a loki sink through VictoriaLogs' LogsQL (its path begins with /insert/); querying Grafana Loki through LogQL is not built yet: use Grafana Explore"
            );
        }
        if checked.config.encoding != super::LineEncoding::Json
            || !checked.config.path.contains("disable_message_parsing=1")
        {
            anyhow::bail!(
                "`auditflow query` reads the events back from their lines: give the loki sink encoding = \"json\" and a path with ?disable_message_parsing=1 (VictoriaLogs then keeps each line as it came)"
            );
        }
        let base = crate::http_client::parse_url("endpoint", &checked.config.endpoint)
            .map_err(|error| anyhow::anyhow!("{}: {}", error.field, error.message))?;
        let url = super::push_url(&base, "/select/logsql/query")
            .map_err(|error| anyhow::anyhow!("{}: {}", error.field, error.message))?;
        let mut builder = reqwest::Client::builder().timeout(QUERY_TIMEOUT);
        if let Some(tls) = &checked.config.tls {
            builder = crate::http_client::with_tls(builder, tls)?;
        }
        Ok(LokiStore {
            client: builder.build()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            url,
            headers: checked.headers.clone(),
            streams: stream_filter(&checked.labels),
            fields: field_names(checked),
            problems: Vec::new(),
        })
    }

    /// The LogsQL query of a time range, exact field filters and more
    /// (`extra`, LogsQL filters), newest first when `sorted`.
    fn logsql(
        &self,
        range: &TimeRange,
        filters: &[(&str, Option<String>)],
        extra: &str,
        sorted: bool,
    ) -> String {
        let mut query = self.streams.clone();
        if range.from.is_some() || range.to.is_some() {
            let from = range
                .from
                .map_or("1970-01-01T00:00:00Z".to_string(), rfc3339);
            let to = range.to.map_or("2262-01-01T00:00:00Z".to_string(), rfc3339);
            query.push_str(&format!(" _time:[{from}, {to})"));
        }
        for (path, value) in filters {
            if let (Some(name), Some(value)) = (self.fields.get(*path), value) {
                query.push_str(&format!(" {name}:={}", quoted(value)));
            }
        }
        query.push_str(extra);
        if sorted {
            query.push_str(" | sort by (_time desc)");
        }
        query.push_str(" | fields _msg");
        query
    }

    /// Streams the lines of `query` to `visit` until it breaks.
    fn each_line(
        &self,
        query: &str,
        visit: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let response = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .form(&[("query", query)])
                .send()
                .await
                .with_context(|| format!("querying {}", self.url))?;
            let status = response.status();
            if !status.is_success() {
                let body = response.bytes().await.unwrap_or_default();
                anyhow::bail!(
                    "the server refused the query with HTTP {}: {}",
                    status.as_u16(),
                    crate::http_client::quote_body(&body)
                );
            }
            let mut response = response;
            let mut pending = Vec::new();
            let mut done = false;
            while !done {
                let chunk = response
                    .chunk()
                    .await
                    .context("reading the query's answer")?;
                match &chunk {
                    Some(chunk) => pending.extend_from_slice(chunk),
                    // The last line may end without a newline.
                    None => {
                        pending.push(b'\n');
                        done = true;
                    }
                }
                while let Some(end) = memchr::memchr(b'\n', &pending) {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let message = serde_json::from_slice::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|entry| entry["_msg"].as_str().map(str::to_string));
                    let Some(message) = message else {
                        continue;
                    };
                    if visit(&message).is_break() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    fn events(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        sorted: bool,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let query = self.logsql(
            range,
            &[
                ("verb", filter.verb.clone()),
                ("objectRef.resource", filter.resource.clone()),
                ("user.username", filter.user.clone()),
                ("objectRef.namespace", filter.namespace.clone()),
                ("objectRef.name", filter.name.clone()),
                (
                    "responseStatus.code",
                    filter.code.map(|code| code.to_string()),
                ),
            ],
            "",
            sorted,
        );
        let mut unreadable = 0u64;
        let searched = self.each_line(&query, &mut |line| {
            let Ok(event) = AuditEvent::parse(line) else {
                // An alert, or a line that is not an event.
                if serde_json::from_str::<Alert>(line).is_err() {
                    unreadable += 1;
                }
                return ControlFlow::Continue(());
            };
            let header = event.header();
            let Some(time) = header.event_time().map(|time| time.timestamp_micros()) else {
                return ControlFlow::Continue(());
            };
            if !in_range(range, time) || !matches(filter, header) {
                return ControlFlow::Continue(());
            }
            visit(StoredEvent { time, event })
        });
        if unreadable > 0 {
            self.problems.push(format!(
                "{unreadable} lines of the sink's streams are neither audit events nor alerts; they are not in the results"
            ));
        }
        searched
    }
}

/// The stream filter of the sink's constant labels, `*` when it has none.
fn stream_filter(labels: &[(String, Template)]) -> String {
    let constants: Vec<String> = labels
        .iter()
        .filter_map(|(name, template)| {
            template
                .as_constant()
                .map(|value| format!("{name}={}", quoted(value)))
        })
        .collect();
    if constants.is_empty() {
        "*".to_string()
    } else {
        format!("{{{}}}", constants.join(","))
    }
}

/// The field each header path is sent under (a label or metadata whose
/// template reads that one field).
fn field_names(checked: &CheckedLoki) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (name, template) in checked.labels.iter().chain(&checked.metadata) {
        if let [field] = template.fields().as_slice() {
            if template.as_str().trim_start().starts_with("{{")
                && template.as_str().trim_end().ends_with("}}")
            {
                names.entry(field.clone()).or_insert_with(|| name.clone());
            }
        }
    }
    names
}

/// A LogsQL string literal.
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

fn rfc3339(micros: i64) -> String {
    crate::local_store::partition::format_micros(micros)
}

/// Whether a loki sink pushes to VictoriaLogs (the only server `query` reads).
pub fn is_victorialogs(checked: &CheckedLoki) -> bool {
    checked.config.path.starts_with("/insert/")
}

fn in_range(range: &TimeRange, time: i64) -> bool {
    range.from.is_none_or(|from| time >= from) && range.to.is_none_or(|to| time < to)
}

/// Whether an event's header passes the filter, as the local store decides.
pub fn matches(filter: &EventFilter, header: AuditHeader<'_>) -> bool {
    let object = header.object_ref();
    let equal = |wanted: &Option<String>, value: Option<&str>| {
        wanted.as_deref().is_none_or(|wanted| value == Some(wanted))
    };
    equal(&filter.user, Some(header.user().username()))
        && filter
            .group
            .as_deref()
            .is_none_or(|group| header.user().groups().contains(group))
        && equal(&filter.verb, Some(header.verb()))
        && equal(&filter.resource, object.and_then(|o| o.resource()))
        && equal(&filter.namespace, object.and_then(|o| o.namespace()))
        && equal(&filter.name, object.and_then(|o| o.name()))
        && filter
            .code
            .is_none_or(|code| header.response_code() == Some(code))
        && equal(&filter.source_ip, header.source_ips().first())
}

impl SearchableStore for LokiStore {
    fn for_each_event(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        self.events(range, filter, true, visit)
    }

    fn count_events(&mut self, range: &TimeRange, filter: &EventFilter) -> anyhow::Result<u64> {
        let mut total = 0;
        self.events(range, filter, false, &mut |_| {
            total += 1;
            ControlFlow::Continue(())
        })?;
        Ok(total)
    }

    fn group_events(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        field: Field,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        let mut counts = BTreeMap::new();
        self.events(range, filter, false, &mut |stored| {
            for value in field.values_of(stored.event.header()) {
                *counts.entry(value).or_insert(0u64) += 1;
            }
            ControlFlow::Continue(())
        })?;
        Ok(sorted_counts(counts))
    }

    fn for_each_alert(
        &mut self,
        range: &TimeRange,
        filter: &AlertFilter,
        visit: &mut dyn FnMut(StoredAlert) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        // Alerts are the lines with a `"rule":` (Falco's JSON form).
        let query = self.logsql(range, &[], r#" ~"\"rule\":""#, false);
        let mut alerts = Vec::new();
        self.each_line(&query, &mut |line| {
            let Ok(alert) = serde_json::from_str::<Alert>(line) else {
                return ControlFlow::Continue(());
            };
            let Some(time) = chrono::DateTime::parse_from_rfc3339(&alert.time)
                .ok()
                .map(|time| time.timestamp_micros())
            else {
                return ControlFlow::Continue(());
            };
            let field = |name: &str| {
                alert
                    .output_fields
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let wanted =
                |want: &Option<String>, have: Option<String>| want.is_none() || *want == have;
            if in_range(range, time)
                && wanted(&filter.user, field("ka.user.name"))
                && wanted(&filter.namespace, field("ka.target.namespace"))
            {
                alerts.push(StoredAlert { time, alert });
            }
            ControlFlow::Continue(())
        })?;
        // The local store's order: newest first, then by rule and output.
        alerts.sort_by(|a, b| {
            b.time
                .cmp(&a.time)
                .then_with(|| a.alert.rule.cmp(&b.alert.rule))
                .then_with(|| a.alert.output.cmp(&b.alert.output))
        });
        for alert in alerts {
            if visit(alert).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }
}
