//! `auditflow validate`: every error named by component and field; exit codes.

mod common;

use std::process::Command;

use common::*;

fn validate(config: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .expect("run validate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_valid_configuration_prints_a_summary() {
    let workspace = Workspace::new();
    let config = workspace.config(
        r#"
[sources.in]
type = "stdin"
[sinks.out]
type = "console"
inputs = ["in"]
"#,
    );
    let (ok, stdout, _) = validate(&config);
    assert!(ok);
    assert!(
        stdout.contains("valid (1 source, 0 transforms, 1 sink)"),
        "{stdout}"
    );
}

#[test]
fn every_error_is_printed_with_component_and_field() {
    let workspace = Workspace::new();
    let config = workspace.config(
        r#"
data_dir = 5
[api]
address = "not an address"
[sources.in]
type = "stdin"
max_line_bytes = "big"
colour = "blue"
[sources.twice]
type = "stdin"
[sources.unread]
type = "stdin"
[sources."bad.id"]
type = "stdin"
[transforms.twice]
type = "nope"
inputs = ["in"]
[sinks.out]
type = "file"
inputs = ["in", "ghost", "in.nothing"]
[sinks.c]
type = "console"
encoding = "yaml"
[sinks.d]
type = "console"
inputs = ["out"]
"#,
    );
    let (ok, _, stderr) = validate(&config);
    assert!(!ok);
    let expected = [
        "data_dir: expected a directory path string",
        "api.address: expected an address",
        "sources.in.max_line_bytes: invalid type: string \"big\"",
        "sources.in.colour: unknown option",
        "sources.unread: nothing reads this source",
        "sources.bad.id: a component id may hold only",
        "transforms.twice.type: unknown transform type `nope`",
        "the id `twice` is already used by sources.twice",
        "sinks.out.path: the option `path` is required",
        "sinks.out.inputs: input `ghost`: no source or transform has the id `ghost`",
        "sinks.out.inputs: input `in.nothing`: `in` has no output `nothing`; its outputs are: in.errors",
        "sinks.c.inputs: the option `inputs` is required",
        "sinks.c.encoding: unknown variant `yaml`",
        "sinks.d.inputs: input `out`: `out` is a sink, whose one output is `out.errors` (the events it refused for good)",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(stderr.contains("errors found"), "{stderr}");
}

#[test]
fn cycles_are_errors_and_unread_transforms_are_warnings() {
    let workspace = Workspace::new();
    let config = workspace.config(
        r#"
[sources.in]
type = "stdin"
[transforms.a]
type = "filter"
inputs = ["in", "b"]
condition = "ka.verb = get"
[transforms.b]
type = "filter"
inputs = ["a"]
condition = "ka.verb = get"
[transforms.lonely]
type = "filter"
inputs = ["in"]
condition = "ka.verb = get"
[sinks.out]
type = "console"
inputs = ["b"]
"#,
    );
    let (ok, _, stderr) = validate(&config);
    assert!(!ok);
    assert!(stderr.contains("the inputs form a cycle"), "{stderr}");
    assert!(
        stderr.contains("warning: transforms.lonely: nothing reads"),
        "{stderr}"
    );
}

#[test]
fn a_condition_that_does_not_parse_is_named_with_its_position() {
    let workspace = Workspace::new();
    let config = workspace.config(
        r#"
[sources.in]
type = "stdin"
[transforms.f]
type = "filter"
inputs = ["in"]
condition = "ka.verb = get and (ka.user.name = x"
[sinks.out]
type = "console"
inputs = ["f"]
"#,
    );
    let (ok, _, stderr) = validate(&config);
    assert!(!ok);
    assert!(
        stderr.contains("transforms.f.condition: at position"),
        "{stderr}"
    );
}

#[test]
fn environment_variables_are_interpolated() {
    let workspace = Workspace::new();
    let config = workspace.config(
        r#"
data_dir = "${AUDITFLOW_TEST_DIR:-./data}"
[sources.in]
type = "stdin"
[sinks.out]
type = "file"
inputs = ["in"]
path = "${AUDITFLOW_TEST_UNSET}"
"#,
    );
    let (ok, _, stderr) = validate(&config);
    assert!(!ok);
    assert!(
        stderr.contains("sinks.out.path: environment variable `AUDITFLOW_TEST_UNSET` is not set"),
        "{stderr}"
    );
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&config)
        .env("AUDITFLOW_TEST_UNSET", "/tmp/x.ndjson")
        .output()
        .expect("validate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
