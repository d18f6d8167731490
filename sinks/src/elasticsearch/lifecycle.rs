//! Retention: `retention = "90d"` deletes what is older than that.
//!
//! - **OpenSearch with ISM** (every OpenSearch distribution has the Index
//!   State Management plugin): an ISM policy `hot → delete` after the
//!   retention, attached to new indices by its `ism_template`; for a data
//!   stream, the hot state rolls the write index over at `rollover_size`
//!   first.
//! - **Elasticsearch**: an ILM policy (hot, with rollover at `rollover_size`
//!   for a data stream; delete at the retention), named in the index
//!   template's `index.lifecycle.name`.
//! - **OpenSearch without ISM** (a minimal node): the sink applies the
//!   retention itself, at start and every hour: an index matching its
//!   templates, made by them (its mapping's `_meta.managed_by` is
//!   `auditflow`), whose newest event (`@timestamp`) is older than the
//!   retention is deleted (never the write index of a data stream).

use std::time::Duration;

use opensearch::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::connection::{check_status, ClusterClient, RequestError};

/// A retention, in whole days or hours as the lifecycle APIs take it (`90d`, `36h`).
pub fn age(retention: Duration) -> String {
    let hours = retention.as_secs().div_ceil(3600).max(1);
    if hours.is_multiple_of(24) {
        format!("{}d", hours / 24)
    } else {
        format!("{hours}h")
    }
}

/// The body of `PUT _plugins/_ism/policies/NAME` (OpenSearch ISM).
pub fn ism_policy(retention: Duration, patterns: &[String], rollover_size: Option<&str>) -> Value {
    let mut hot_actions = Vec::new();
    if let Some(size) = rollover_size {
        hot_actions.push(json!({ "rollover": { "min_primary_shard_size": size } }));
    }
    json!({ "policy": {
        "description": "auditflow: delete audit indices past their retention",
        "default_state": "hot",
        "states": [
            {
                "name": "hot",
                "actions": hot_actions,
                "transitions": [{ "state_name": "delete", "conditions": { "min_index_age": age(retention) } }],
            },
            {
                "name": "delete",
                "actions": [{ "delete": {} }],
                "transitions": [],
            },
        ],
        "ism_template": [{ "index_patterns": patterns, "priority": 200 }],
    } })
}

/// The body of `PUT _ilm/policy/NAME` (Elasticsearch ILM).
pub fn ilm_policy(retention: Duration, rollover_size: Option<&str>) -> Value {
    let mut hot = json!({ "min_age": "0ms", "actions": {} });
    if let Some(size) = rollover_size {
        hot["actions"]["rollover"] = json!({ "max_primary_shard_size": size });
    }
    json!({ "policy": {
        "_meta": { "managed_by": "auditflow" },
        "phases": {
            "hot": hot,
            "delete": { "min_age": age(retention), "actions": { "delete": {} } },
        },
    } })
}

#[derive(Deserialize)]
struct IsmPolicyAnswer {
    #[serde(rename = "_seq_no")]
    seq_no: u64,
    #[serde(rename = "_primary_term")]
    primary_term: u64,
}

/// Creates or updates an ISM policy (an update names the version it replaces).
pub async fn put_ism_policy(
    client: &ClusterClient,
    name: &str,
    policy: &Value,
) -> Result<(), RequestError> {
    let path = format!("/_plugins/_ism/policies/{name}");
    let (status, body) = client.request(Method::Get, &path, None).await?;
    let path = if status.is_success() {
        let current: IsmPolicyAnswer =
            serde_json::from_slice(&body).map_err(|error| RequestError::Refused {
                status: status.as_u16(),
                message: format!("the ISM policy {name} cannot be read: {error}"),
            })?;
        format!(
            "{path}?if_seq_no={}&if_primary_term={}",
            current.seq_no, current.primary_term
        )
    } else {
        path
    };
    let (status, body) = client.request(Method::Put, &path, Some(policy)).await?;
    check_status(status, &body)
}

/// Creates or replaces an ILM policy.
pub async fn put_ilm_policy(
    client: &ClusterClient,
    name: &str,
    policy: &Value,
) -> Result<(), RequestError> {
    let _: Value = client
        .send_json(Method::Put, &format!("/_ilm/policy/{name}"), Some(policy))
        .await?;
    Ok(())
}

/// Deletes the indices matching `patterns` whose newest `@timestamp` is before
/// `cutoff_millis`, except data streams' write indices; returns their names.
pub async fn delete_expired(
    client: &ClusterClient,
    patterns: &[String],
    cutoff_millis: i64,
) -> Result<Vec<String>, RequestError> {
    let targets = patterns.join(",");
    let search = json!({
        "size": 0,
        "aggs": { "indices": {
            "terms": { "field": "_index", "size": 10000 },
            "aggs": { "newest": { "max": { "field": "@timestamp" } } },
        } },
    });
    let answer: Value = client
        .send_json(
            Method::Post,
            &format!("/{targets}/_search?ignore_unavailable=true&allow_no_indices=true"),
            Some(&search),
        )
        .await?;
    let write_indices = write_indices(client, patterns).await?;
    let mut expired = Vec::new();
    let buckets = answer["aggregations"]["indices"]["buckets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for bucket in buckets {
        let (Some(index), Some(newest)) =
            (bucket["key"].as_str(), bucket["newest"]["value"].as_f64())
        else {
            continue;
        };
        if (newest as i64) < cutoff_millis
            && !write_indices.iter().any(|w| w == index)
            && managed_by_auditflow(client, index).await?
        {
            expired.push(index.to_string());
        }
    }
    for index in &expired {
        let (status, body) = client
            .request(Method::Delete, &format!("/{index}"), None)
            .await?;
        check_status(status, &body)?;
    }
    Ok(expired)
}

/// Whether an index was made by one of the sink's templates (its mapping's
/// `_meta.managed_by`): the sweep deletes nothing else, whatever its name.
async fn managed_by_auditflow(client: &ClusterClient, index: &str) -> Result<bool, RequestError> {
    let mapping: Value = client.get_json(&format!("/{index}/_mapping")).await?;
    Ok(mapping[index]["mappings"]["_meta"]["managed_by"] == super::mapping::MANAGED_BY)
}

/// The write indices of the data streams matching `patterns`.
async fn write_indices(
    client: &ClusterClient,
    patterns: &[String],
) -> Result<Vec<String>, RequestError> {
    let (status, body) = client
        .request(
            Method::Get,
            &format!("/_data_stream/{}", patterns.join(",")),
            None,
        )
        .await?;
    if !status.is_success() {
        return Ok(Vec::new());
    }
    let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
    let streams = answer["data_streams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(streams
        .iter()
        .filter_map(|stream| {
            stream["indices"].as_array()?.last()?["index_name"]
                .as_str()
                .map(str::to_string)
        })
        .collect())
}
