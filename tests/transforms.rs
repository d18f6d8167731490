//! The `filter` and `route` transforms in a running pipeline.

mod common;

use common::*;

fn all_events(workspace: &Workspace) -> Vec<serde_json::Value> {
    let config = workspace.config(
        r#"
[sources.in]
type = "stdin"
[sinks.all]
type = "file"
inputs = ["in"]
path = "{dir}/all.ndjson"
"#,
    );
    assert!(workspace
        .run_once(&config, falco_traces().as_bytes())
        .status
        .success());
    workspace.json_lines("all.ndjson")
}

#[test]
fn filter_passes_only_matching_events() {
    let workspace = Workspace::new();
    let all = all_events(&workspace);
    let config = workspace.config(
        r#"
data_dir = "{dir}/data"
[sources.in]
type = "stdin"
[transforms.creates]
type = "filter"
inputs = ["in"]
condition = "ka.verb = create and ka.target.resource = pods and not ka.user.name startswith system:"
[sinks.out]
type = "file"
inputs = ["creates"]
path = "{dir}/out.ndjson"
"#,
    );
    let output = workspace.run_once(&config, falco_traces().as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<_> = all
        .iter()
        .filter(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "pods"
                && !e["user"]["username"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("system:")
        })
        .cloned()
        .collect();
    assert_eq!(
        expected.len(),
        2,
        "the traces hold two pod creations by minikube-user"
    );
    assert_eq!(workspace.json_lines("out.ndjson"), expected);
}

#[test]
fn route_sends_events_to_every_matching_output_and_the_rest_to_unmatched() {
    let workspace = Workspace::new();
    let all = all_events(&workspace);
    let config = workspace.config(
        r#"
data_dir = "{dir}/data"
[sources.in]
type = "stdin"
[transforms.by]
type = "route"
inputs = ["in"]
[transforms.by.route]
rbac = "ka.target.resource in (clusterroles, clusterrolebindings, roles, rolebindings)"
writes = "ka.verb in (create, update, patch, delete)"
[sinks.rbac]
type = "file"
inputs = ["by.rbac"]
path = "{dir}/rbac.ndjson"
[sinks.writes]
type = "file"
inputs = ["by.writes"]
path = "{dir}/writes.ndjson"
[sinks.rest]
type = "file"
inputs = ["by._unmatched"]
path = "{dir}/rest.ndjson"
"#,
    );
    let output = workspace.run_once(&config, falco_traces().as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let is_rbac = |e: &serde_json::Value| {
        [
            "clusterroles",
            "clusterrolebindings",
            "roles",
            "rolebindings",
        ]
        .contains(&e["objectRef"]["resource"].as_str().unwrap_or(""))
    };
    let is_write = |e: &serde_json::Value| {
        ["create", "update", "patch", "delete"].contains(&e["verb"].as_str().unwrap_or(""))
    };
    let select = |f: &dyn Fn(&serde_json::Value) -> bool| -> Vec<serde_json::Value> {
        all.iter().filter(|e| f(e)).cloned().collect()
    };
    let rbac = select(&is_rbac);
    let writes = select(&is_write);
    let rest = select(&|e| !is_rbac(e) && !is_write(e));
    assert!(!rbac.is_empty() && !writes.is_empty() && !rest.is_empty());
    assert_eq!(workspace.json_lines("rbac.ndjson"), rbac);
    assert_eq!(workspace.json_lines("writes.ndjson"), writes);
    assert_eq!(workspace.json_lines("rest.ndjson"), rest);
}
