//! `auditflow query`: searches a store of a pipeline, newest first: a
//! `local_store` sink, or the indices of an `elasticsearch` sink.
//!
//! The store is the pipeline's store sink named by `--store ID` (needed only
//! when the pipeline has several), found from the pipeline configuration
//! (`--config`, default `pipeline.toml`); or a local store given by
//! `--data-dir DIR` (and `--store ID`); or an Elasticsearch/OpenSearch cluster
//! given by `--endpoint URL` (and `--index`, `--alerts-index`), with no
//! pipeline. Every store answers through [`SearchableStore`]: the header
//! filters (`--user`, `--verb`, ...) are answered by the store (its indexes,
//! or a query of the cluster); `--where` (a condition in the pipeline's
//! condition syntax) is evaluated on the events they select.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use auditflow_core::condition::Condition;
use auditflow_core::config::{ComponentConfig, PipelineConfig};
use auditflow_core::event::{Event, Payload};
use auditflow_sinks::elasticsearch::connection::ClusterConnection;
use auditflow_sinks::elasticsearch::search::ElasticsearchStore;
use auditflow_sinks::elasticsearch::{self, CheckedElasticsearch};
use auditflow_sinks::local_store::partition::{self, format_micros, Day};
use auditflow_sinks::local_store::read::{
    sorted_counts, AlertFilter, EventFilter, Field, Store, StoredAlert, StoredEvent, TimeRange,
};
use auditflow_sinks::local_store::{self, store_dir};
use auditflow_sinks::loki::{self, search::LokiStore, CheckedLoki};
use auditflow_sinks::search::SearchableStore;
use chrono::{DateTime, Utc};

use crate::validate;

/// Options of `auditflow query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The pipeline whose store is searched (its local_store, elasticsearch or loki sink).
    #[arg(long, short, default_value = "pipeline.toml")]
    pub config: PathBuf,
    /// The pipeline's data directory (default: data_dir of --config).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The id of the store sink (local_store, elasticsearch or loki), when the pipeline has several.
    #[arg(long)]
    pub store: Option<String>,
    /// An Elasticsearch/OpenSearch node to search, without a pipeline (`http://127.0.0.1:9200`).
    #[arg(long, conflicts_with_all = ["data_dir", "store"])]
    pub endpoint: Option<String>,
    /// With --endpoint: the indices of audit events (a pattern).
    #[arg(long, requires = "endpoint", default_value = "auditflow-audit-*")]
    pub index: String,
    /// With --endpoint: the indices of alerts (a pattern).
    #[arg(long, requires = "endpoint", default_value = "auditflow-alerts-*")]
    pub alerts_index: String,
    /// Only events of this recent period (`24h`, `7d`, `90m`).
    #[arg(long, conflicts_with = "from")]
    pub since: Option<String>,
    /// Only events at or after this time (RFC 3339, `2026-11-24`, or a period ago such as `2h`).
    #[arg(long)]
    pub from: Option<String>,
    /// Only events before this time (same forms as --from).
    #[arg(long)]
    pub to: Option<String>,
    /// `user.username`.
    #[arg(long)]
    pub user: Option<String>,
    /// One of `user.groups`.
    #[arg(long)]
    pub group: Option<String>,
    /// `verb` (get, list, create, delete, ...).
    #[arg(long)]
    pub verb: Option<String>,
    /// `objectRef.resource` (pods, configmaps, ...).
    #[arg(long)]
    pub resource: Option<String>,
    /// `objectRef.namespace`.
    #[arg(long)]
    pub namespace: Option<String>,
    /// `objectRef.name`.
    #[arg(long)]
    pub name: Option<String>,
    /// `responseStatus.code`.
    #[arg(long)]
    pub code: Option<i64>,
    /// The client's address (the first of `sourceIPs`).
    #[arg(long)]
    pub source_ip: Option<String>,
    /// A condition in the pipeline's condition syntax, evaluated on the events the other filters select.
    #[arg(long = "where")]
    pub condition: Option<String>,
    /// Search the alerts raised by detection instead of the audit events.
    #[arg(long)]
    pub alerts: bool,
    /// Print at most this many events (or groups).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// `table` (one line each) or `json` (the events as NDJSON).
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputArg,
    /// Print how many events match instead of the events.
    #[arg(long, conflicts_with = "group_by")]
    pub count: bool,
    /// Count the matching events by a field: user, group, verb, resource, subresource,
    /// namespace, name, code, source-ip, user-agent, level, stage (alerts: rule, priority, user, namespace).
    #[arg(long)]
    pub group_by: Option<String>,
}

/// The output format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputArg {
    /// Aligned columns.
    Table,
    /// One JSON object a line.
    Json,
}

/// What the query asks for.
enum Mode {
    List,
    Count,
    GroupBy(Field),
}

/// Runs the query and prints its results to stdout.
pub fn query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    if args.limit == 0 {
        anyhow::bail!("--limit must be at least 1");
    }
    let range = time_range(args, Utc::now())?;
    let condition = match &args.condition {
        Some(text) => {
            Some(Condition::compile(text).map_err(|error| anyhow::anyhow!("--where: {error}"))?)
        }
        None => None,
    };
    let mode = match (&args.group_by, args.count) {
        (Some(name), _) => Mode::GroupBy(parse_field(name, args.alerts)?),
        (None, true) => Mode::Count,
        (None, false) => Mode::List,
    };
    let Some(mut store) = open_store(args)? else {
        return Ok(ExitCode::FAILURE);
    };
    let store = store.as_mut();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let printed = if args.alerts {
        let filter = alert_filter(args)?;
        query_alerts(
            store,
            &range,
            &filter,
            condition.as_ref(),
            &mode,
            args,
            &mut out,
        )
    } else {
        let filter = event_filter(args);
        query_events(
            store,
            &range,
            &filter,
            condition.as_ref(),
            &mode,
            args,
            &mut out,
        )
    };
    match printed.and_then(|()| out.flush().map_err(Into::into)) {
        Err(error) if is_broken_pipe(&error) => {}
        other => other?,
    }
    let problems = store.problems();
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
}

fn parse_field(name: &str, alerts: bool) -> anyhow::Result<Field> {
    let field = Field::parse(name).with_context(|| {
        let names: Vec<&str> = Field::ALL.iter().map(|(name, _)| *name).collect();
        format!(
            "--group-by {name}: unknown field; expected one of {}",
            names.join(", ")
        )
    })?;
    let applies = if alerts {
        field.applies_to_alerts()
    } else {
        field.applies_to_events()
    };
    if !applies {
        let what = if alerts {
            "alerts"
        } else {
            "audit events (add --alerts)"
        };
        anyhow::bail!("--group-by {name}: {what} cannot be grouped by this field");
    }
    Ok(field)
}

/// The time range of `--since`, or of `--from` and `--to`.
fn time_range(args: &QueryArgs, now: DateTime<Utc>) -> anyhow::Result<TimeRange> {
    let now_micros = now.timestamp_micros();
    if let Some(since) = &args.since {
        let period = humantime::parse_duration(since).with_context(|| {
            format!("--since {since}: expected a period such as 24h, 7d or 90m")
        })?;
        return Ok(TimeRange {
            from: Some(now_micros.saturating_sub(period.as_micros() as i64)),
            to: args
                .to
                .as_deref()
                .map(|to| parse_time(to, now_micros, "--to"))
                .transpose()?,
        });
    }
    Ok(TimeRange {
        from: args
            .from
            .as_deref()
            .map(|t| parse_time(t, now_micros, "--from"))
            .transpose()?,
        to: args
            .to
            .as_deref()
            .map(|t| parse_time(t, now_micros, "--to"))
            .transpose()?,
    })
}

/// Parses a time: RFC 3339 (`2026-11-24T10:00:00Z`, also with a space and without
/// the zone, taken as UTC), a day (`2026-11-24`, its start), or a period ago (`2h`).
pub fn parse_time(text: &str, now_micros: i64, option: &str) -> anyhow::Result<i64> {
    if let Some(micros) = partition::parse_micros(text) {
        return Ok(micros);
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        let since_epoch = time
            .duration_since(std::time::UNIX_EPOCH)
            .context("times before 1970 are not supported")?;
        return Ok(since_epoch.as_micros() as i64);
    }
    if let Some(day) = Day::parse(text) {
        return Ok(day.start_micros());
    }
    if let Ok(period) = humantime::parse_duration(text) {
        return Ok(now_micros.saturating_sub(period.as_micros() as i64));
    }
    anyhow::bail!(
        "{option} {text}: expected a time such as 2026-11-24T10:00:00Z, 2026-11-24 10:00:00, 2026-11-24, or a period ago such as 2h"
    )
}

fn event_filter(args: &QueryArgs) -> EventFilter {
    EventFilter {
        user: args.user.clone(),
        group: args.group.clone(),
        verb: args.verb.clone(),
        resource: args.resource.clone(),
        namespace: args.namespace.clone(),
        name: args.name.clone(),
        code: args.code,
        source_ip: args.source_ip.clone(),
    }
}

fn alert_filter(args: &QueryArgs) -> anyhow::Result<AlertFilter> {
    let event_only = [
        ("--group", args.group.is_some()),
        ("--verb", args.verb.is_some()),
        ("--resource", args.resource.is_some()),
        ("--name", args.name.is_some()),
        ("--code", args.code.is_some()),
        ("--source-ip", args.source_ip.is_some()),
    ];
    if let Some((flag, _)) = event_only.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} filters audit events and does not apply to --alerts (alerts take --user, --namespace and --where)"
        );
    }
    Ok(AlertFilter {
        user: args.user.clone(),
        namespace: args.namespace.clone(),
    })
}

/// The store to search: `--endpoint`, `--data-dir`/`--store`, or the pipeline's
/// store sink. `None` when the configuration is invalid (its errors are printed).
fn open_store(args: &QueryArgs) -> anyhow::Result<Option<Box<dyn SearchableStore>>> {
    if let Some(endpoint) = &args.endpoint {
        let connection = ClusterConnection::parse(std::slice::from_ref(endpoint), None, None)
            .map_err(|errors| {
                let messages: Vec<String> = errors.into_iter().map(|e| e.message).collect();
                anyhow::anyhow!("--endpoint: {}", messages.join("; "))
            })?;
        let store = ElasticsearchStore::open(&connection, &args.index, &args.alerts_index)?;
        return Ok(Some(Box::new(store)));
    }
    if let (Some(data_dir), Some(store)) = (&args.data_dir, &args.store) {
        return Ok(Some(Box::new(Store::open(&store_dir(data_dir, store))?)));
    }
    if args.data_dir.is_some() && !args.config.exists() {
        let data_dir = args.data_dir.as_deref().unwrap_or(Path::new("."));
        return Ok(Some(Box::new(Store::open(&store_in_data_dir(data_dir)?)?)));
    }
    let Some(config) = validate::load(&args.config) else {
        return Ok(None);
    };
    let (id, type_name) = store_sink(&config, args)?;
    let options = config
        .components
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| match &c.config {
            ComponentConfig::Sink(sink) => sink.as_any(),
            _ => None,
        });
    if type_name == elasticsearch::TYPE_NAME {
        let checked = options
            .and_then(|any| any.downcast_ref::<CheckedElasticsearch>())
            .with_context(|| format!("sinks.{id} is not an elasticsearch sink"))?;
        let (events, alerts) = checked.patterns();
        let store = ElasticsearchStore::open(&checked.connection, &events, &alerts)?;
        return Ok(Some(Box::new(store)));
    }
    if type_name == loki::TYPE_NAME {
        let checked = options
            .and_then(|any| any.downcast_ref::<CheckedLoki>())
            .with_context(|| format!("sinks.{id} is not a loki sink"))?;
        return Ok(Some(Box::new(LokiStore::open(checked)?)));
    }
    let data_dir = args.data_dir.clone().unwrap_or(config.data_dir.clone());
    Ok(Some(Box::new(Store::open(&store_dir(&data_dir, &id))?)))
}

/// The id and type of the store sink `--store` names, or of the only one.
fn store_sink(config: &PipelineConfig, args: &QueryArgs) -> anyhow::Result<(String, String)> {
    let stores: Vec<(String, String)> = config
        .components
        .iter()
        .filter(|c| {
            [
                local_store::TYPE_NAME,
                elasticsearch::TYPE_NAME,
                loki::TYPE_NAME,
            ]
            .contains(&c.type_name.as_str())
        })
        .map(|c| (c.id.clone(), c.type_name.clone()))
        .collect();
    let ids = || {
        stores
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&args.store, stores.as_slice()) {
        (Some(id), _) => stores
            .iter()
            .find(|(store, _)| store == id)
            .cloned()
            .with_context(|| match stores.is_empty() {
                true => format!("{} has no store sink named {id}: it has no local_store, elasticsearch or loki sink", args.config.display()),
                false => format!("{} has no store sink named {id}; its store sinks: {}", args.config.display(), ids()),
            }),
        (None, [only]) => Ok(only.clone()),
        (None, []) => anyhow::bail!(
            "{} has no store sink (local_store, elasticsearch or loki): add one, or give the store with --data-dir DIR --store ID or --endpoint URL",
            args.config.display()
        ),
        (None, _) => anyhow::bail!(
            "{} has several store sinks ({}): choose one with --store ID",
            args.config.display(),
            ids()
        ),
    }
}

/// The only store under a data directory (a subdirectory holding day partitions).
fn store_in_data_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(data_dir)
        .with_context(|| format!("cannot read the data directory {}", data_dir.display()))?;
    let mut stores = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && partition::list(&path).is_ok_and(|p| !p.is_empty()) {
            stores.push(path);
        }
    }
    match stores.as_slice() {
        [only] => Ok(only.clone()),
        [] => anyhow::bail!(
            "no local_store under {}: run a pipeline with a local_store sink first",
            data_dir.display()
        ),
        several => {
            let names: Vec<String> = several
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            anyhow::bail!(
                "several stores under {} ({}): choose one with --store ID",
                data_dir.display(),
                names.join(", ")
            )
        }
    }
}

fn matches(condition: Option<&Condition>, payload: Payload) -> (bool, Event) {
    let event = Event::new(payload, Arc::from("query"));
    (condition.is_none_or(|c| c.matches(&event)), event)
}

fn query_events(
    store: &mut dyn SearchableStore,
    range: &TimeRange,
    filter: &EventFilter,
    condition: Option<&Condition>,
    mode: &Mode,
    args: &QueryArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match (mode, condition) {
        (Mode::Count, None) => writeln!(out, "{}", store.count_events(range, filter)?)?,
        (Mode::GroupBy(field), None) => {
            let counts = store.group_events(range, filter, *field)?;
            print_counts(&counts, *field, args, out)?;
        }
        (Mode::Count, Some(_)) | (Mode::GroupBy(_), Some(_)) => {
            let mut counts = BTreeMap::new();
            let mut total = 0u64;
            store.for_each_event(range, filter, &mut |stored| {
                let (matched, event) = matches(condition, Payload::Audit(Arc::new(stored.event)));
                if matched {
                    total += 1;
                    if let (Mode::GroupBy(field), Some(audit)) = (mode, event.as_audit()) {
                        for value in field.values_of(audit.header()) {
                            *counts.entry(value).or_insert(0u64) += 1;
                        }
                    }
                }
                ControlFlow::Continue(())
            })?;
            match mode {
                Mode::GroupBy(field) => print_counts(&sorted_counts(counts), *field, args, out)?,
                _ => writeln!(out, "{total}")?,
            }
        }
        (Mode::List, _) => {
            let mut rows = Vec::new();
            store.for_each_event(range, filter, &mut |StoredEvent { time, event }| {
                let (matched, event) = matches(condition, Payload::Audit(Arc::new(event)));
                if matched {
                    rows.push((time, event));
                }
                if rows.len() >= args.limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            print_events(&rows, args.output, out)?;
        }
    }
    Ok(())
}

fn query_alerts(
    store: &mut dyn SearchableStore,
    range: &TimeRange,
    filter: &AlertFilter,
    condition: Option<&Condition>,
    mode: &Mode,
    args: &QueryArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut counts = BTreeMap::new();
    let mut total = 0u64;
    store.for_each_alert(range, filter, &mut |StoredAlert { time, alert }| {
        let (matched, event) = matches(condition, Payload::Alert(Arc::new(alert)));
        if !matched {
            return ControlFlow::Continue(());
        }
        total += 1;
        match (mode, &event.payload) {
            (Mode::GroupBy(field), Payload::Alert(alert)) => {
                for value in field.values_of_alert(alert) {
                    *counts.entry(value).or_insert(0u64) += 1;
                }
            }
            (Mode::List, _) => rows.push((time, event)),
            _ => {}
        }
        if matches!(mode, Mode::List) && rows.len() >= args.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    match mode {
        Mode::Count => writeln!(out, "{total}")?,
        Mode::GroupBy(field) => print_counts(&sorted_counts(counts), *field, args, out)?,
        Mode::List => print_events(&rows, args.output, out)?,
    }
    Ok(())
}

fn print_counts(
    counts: &[(String, u64)],
    field: Field,
    args: &QueryArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let shown = &counts[..counts.len().min(args.limit)];
    match args.output {
        OutputArg::Json => {
            for (value, count) in shown {
                let line = serde_json::json!({ field.name(): value, "count": count });
                writeln!(out, "{line}")?;
            }
        }
        OutputArg::Table => {
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|(value, count)| vec![count.to_string(), value.clone()])
                .collect();
            print_table(&["COUNT", &field.name().to_uppercase()], &rows, out)?;
        }
    }
    Ok(())
}

fn print_events(
    rows: &[(i64, Event)],
    output: OutputArg,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match output {
        OutputArg::Json => {
            let mut line = Vec::new();
            for (_, event) in rows {
                line.clear();
                event.write_json(&mut line)?;
                line.push(b'\n');
                out.write_all(&line)?;
            }
        }
        OutputArg::Table => {
            let alerts = rows
                .first()
                .is_some_and(|(_, e)| matches!(e.payload, Payload::Alert(_)));
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|(time, event)| table_row(*time, event))
                .collect();
            if alerts {
                print_table(&["TIME", "PRIORITY", "RULE", "OUTPUT"], &cells, out)?;
            } else {
                let headers = ["TIME", "USER", "VERB", "RESOURCE", "NAMESPACE/NAME", "CODE"];
                print_table(&headers, &cells, out)?;
            }
        }
    }
    Ok(())
}

fn table_row(time: i64, event: &Event) -> Vec<String> {
    let time = format_micros(time);
    match &event.payload {
        Payload::Alert(alert) => vec![
            time,
            alert.priority.as_str().to_string(),
            alert.rule.clone(),
            alert.output.clone(),
        ],
        Payload::Audit(audit) => {
            let header = audit.header();
            let object = header.object_ref();
            let resource = match object.and_then(|o| o.resource()) {
                Some(resource) => match object.and_then(|o| o.subresource()) {
                    Some(sub) => format!("{resource}/{sub}"),
                    None => resource.to_string(),
                },
                None => header.request_uri().to_string(),
            };
            let target = match (
                object.and_then(|o| o.namespace()),
                object.and_then(|o| o.name()),
            ) {
                (Some(ns), Some(name)) => format!("{ns}/{name}"),
                (Some(ns), None) => format!("{ns}/"),
                (None, Some(name)) => name.to_string(),
                (None, None) => "-".to_string(),
            };
            let code = header
                .response_code()
                .map_or("-".to_string(), |c| c.to_string());
            vec![
                time,
                header.user().username().to_string(),
                header.verb().to_string(),
                resource,
                target,
                code,
            ]
        }
        Payload::Record(_) => vec![time],
    }
}

/// Prints aligned columns (the last one unpadded).
fn print_table(
    headers: &[&str],
    rows: &[Vec<String>],
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(index).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
