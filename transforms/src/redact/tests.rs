//! The `redact` transform's options and its effect on whole events.

use super::*;

fn redactor(options: &str) -> Redactor {
    let table: toml::Table = options.parse().unwrap();
    Redactor::from_options(parse_options(&table).unwrap()).unwrap()
}

fn option_errors(options: &str) -> Vec<String> {
    let table: toml::Table = options.parse().unwrap();
    let options: RedactOptions = parse_options(&table).unwrap();
    Redactor::from_options(options)
        .unwrap_err()
        .into_iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect()
}

fn event(resource: &str, verb: &str, bodies: &str) -> AuditEvent {
    AuditEvent::parse(&format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"id-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/d/{resource}","verb":"{verb}","user":{{"username":"u"}},"objectRef":{{"resource":"{resource}","namespace":"d","apiVersion":"v1"}}{bodies},"future":{{"n":1.50}}}}"#
    ))
    .unwrap()
}

const SECRET: &str = r#","requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},"data":{"password":"aHVudGVyMg=="},"type":"Opaque"},"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="},"type":"Opaque"}"#;

#[test]
fn secrets_are_safe_with_no_options() {
    let redactor = redactor("");
    let (redacted, tally) = redactor
        .redact(&event("secrets", "create", SECRET))
        .unwrap()
        .unwrap();
    assert_eq!(tally.secret, 3, "two values and one annotation");
    let text = redacted.as_json();
    assert!(!text.contains("aHVudGVyMg=="), "{text}");
    assert!(!text.contains("last-applied"), "{text}");
    assert_eq!(
        redacted.request_object(),
        Some(
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","annotations":{}},"data":{"password":"[REDACTED]"},"type":"Opaque"}"#
        )
    );
    assert!(text.starts_with(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"id-1""#));
    assert!(
        text.ends_with(r#""future":{"n":1.50}}"#),
        "untouched fields stay byte for byte"
    );
}

#[test]
fn a_secret_inside_another_resource_is_found_by_kind() {
    let list = r#","responseObject":{"kind":"List","items":[{"kind":"Secret","data":{"k":"c2VjcmV0"}},{"kind":"ConfigMap","data":{"k":"plain"}}]}"#;
    let (redacted, tally) = redactor("")
        .redact(&event("configmaps", "list", list))
        .unwrap()
        .unwrap();
    assert_eq!(tally.secret, 1);
    assert!(!redacted.as_json().contains("c2VjcmV0"));
    assert!(redacted.as_json().contains(r#""k":"plain""#));
}

#[test]
fn events_with_nothing_to_redact_are_not_touched() {
    let redactor = redactor("builtin_patterns = [\"jwt\"]");
    assert_eq!(redactor.redact(&event("pods", "get", "")).unwrap(), None);
    let configmap = r#","requestObject":{"kind":"ConfigMap","data":{"k":"v"}}"#;
    assert_eq!(
        redactor
            .redact(&event("configmaps", "create", configmap))
            .unwrap(),
        None
    );
    let delete = r#","requestObject":{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/v1"}"#;
    assert_eq!(
        redactor
            .redact(&event("secrets", "delete", delete))
            .unwrap(),
        None
    );
}

#[test]
fn fields_patterns_and_hash_mode() {
    let redactor = redactor(
        r#"
fields = ["requestObject.spec.containers[*].env[*].value", "responseObject.spec.containers[*].env[*].value"]
builtin_patterns = ["jwt"]
patterns = [{ name = "internal", regex = "itk_[a-z0-9]{8}" }]
mode = "hash"
key = "k3y"
"#,
    );
    let pod = r#","requestObject":{"kind":"Pod","spec":{"containers":[{"name":"a","env":[{"name":"DB","value":"pw1"},{"name":"T","value":"pw1"}],"args":["--token=itk_abcd1234"]}]},"metadata":{"annotations":{"t":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}}}"#;
    let (redacted, tally) = redactor
        .redact(&event("pods", "create", pod))
        .unwrap()
        .unwrap();
    assert_eq!(tally.field, 2);
    assert_eq!(tally.patterns, vec![1, 1]);
    let body: Value = serde_json::from_str(redacted.request_object().unwrap()).unwrap();
    let env = &body["spec"]["containers"][0]["env"];
    assert_eq!(
        env[0]["value"], env[1]["value"],
        "equal values, equal hashes"
    );
    assert!(env[0]["value"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    let args = body["spec"]["containers"][0]["args"][0].as_str().unwrap();
    assert!(args.starts_with("--token=hmac-sha256:"), "{args}");
    assert!(!redacted.as_json().contains("itk_abcd1234"));
    assert!(!redacted.as_json().contains("eyJzdWIiOiJ4In0"));
    assert!(!redacted.as_json().contains("pw1"));
}

#[test]
fn remove_mode_removes_fields_but_keeps_secret_keys() {
    let redactor =
        redactor("fields = [\"requestObject.metadata.annotations.token\"]\nmode = \"remove\"");
    let body = r#","requestObject":{"kind":"Secret","metadata":{"annotations":{"token":"t","x":"y"}},"stringData":{"k":"v"}}"#;
    let (redacted, tally) = redactor
        .redact(&event("secrets", "update", body))
        .unwrap()
        .unwrap();
    assert_eq!((tally.secret, tally.field), (1, 1));
    assert_eq!(
        redacted.request_object(),
        Some(
            r#"{"kind":"Secret","metadata":{"annotations":{"x":"y"}},"stringData":{"k":"[REDACTED]"}}"#
        )
    );
}

#[test]
fn bad_options_are_named() {
    let errors = option_errors(
        r#"
fields = ["spec.x", "requestObject.a[b]"]
builtin_patterns = ["jwt", "password"]
patterns = [{ name = "jwt", regex = "x" }, { name = "ok", regex = "(" }]
mode = "hash"
"#,
    );
    let expected = [
        "fields[0]: `spec`: a path starts with requestObject or responseObject",
        "fields[1]: `[b]`",
        "builtin_patterns[1]: unknown built-in pattern `password`",
        "patterns[0].name: `jwt` is taken",
        "patterns[1].regex: regex parse error",
        "key: mode = \"hash\" needs a key",
    ];
    for prefix in expected {
        assert!(
            errors.iter().any(|e| e.starts_with(prefix)),
            "missing {prefix:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}
