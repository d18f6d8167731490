//! Secret-safe bodies: no value of a Secret's `data` or `stringData` survives.
//!
//! What the kube-apiserver writes in the bodies of requests about Secrets:
//!
//! - create, update, get, delete responses: a `Secret` (`kind: Secret`);
//!   list responses: a `SecretList` whose items may carry no `kind`;
//! - patch requests: the raw patch, with no `kind`: a merge or strategic merge
//!   patch (`{"data": {...}}`), a JSON patch (`[{"op", "path": "/data/k",
//!   "value"}]`), or a server-side apply body (which may not be JSON at all);
//! - `DeleteOptions` requests, `Status` responses, `Table` responses whose rows
//!   hold each Secret's metadata (and so its last-applied annotation).
//!
//! So, when `objectRef.resource` is `secrets`, every object in a body is treated
//! as part of a Secret: the values of any `data` and `stringData` are replaced
//! (keys kept), the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation is removed wherever it is, JSON patch operations touching them get
//! their `value` replaced, and a body that is not a JSON object or array is
//! replaced whole. For any other resource, objects of `kind: Secret` (and the
//! items of a `SecretList`) anywhere in a body are redacted the same way.

use serde_json::{Map, Value};

use super::replacer::Replacer;

/// The annotation `kubectl apply` keeps a copy of the whole object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The encoding of [`LAST_APPLIED`] inside a JSON pointer.
const LAST_APPLIED_POINTER: &str = "kubectl.kubernetes.io~1last-applied-configuration";

/// How much of a body is about Secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretScope {
    /// The request is about Secrets: the whole body is.
    WholeBody,
    /// Only objects of `kind: Secret` (and `SecretList` items) are.
    SecretKinds,
}

/// Whether a body's text may hold a Secret object (a cheap test before parsing).
pub fn may_hold_secret(body: &str) -> bool {
    memchr::memmem::find(body.as_bytes(), b"\"Secret").is_some()
}

/// Redacts the Secret parts of a body; returns how many values were replaced or removed.
pub fn redact(body: &mut Value, scope: SecretScope, replacer: &Replacer) -> u64 {
    match scope {
        SecretScope::SecretKinds => redact_secret_kinds(body, replacer),
        SecretScope::WholeBody => match body {
            Value::Object(_) => redact_tree(body, replacer),
            Value::Array(operations) => operations
                .iter_mut()
                .map(|operation| redact_patch_operation(operation, replacer))
                .sum(),
            Value::Null => 0,
            other => {
                *other = replacer.kept_value(other);
                1
            }
        },
    }
}

/// Every object in the tree is part of a Secret.
fn redact_tree(value: &mut Value, replacer: &Replacer) -> u64 {
    match value {
        Value::Object(object) => {
            let mut count = redact_secret_object(object, replacer);
            for child in object.values_mut() {
                count += redact_tree(child, replacer);
            }
            count
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|item| redact_tree(item, replacer))
            .sum(),
        _ => 0,
    }
}

/// Finds objects of kind Secret (and the items of SecretLists) anywhere in the tree.
fn redact_secret_kinds(value: &mut Value, replacer: &Replacer) -> u64 {
    match value {
        Value::Object(object) => {
            let mut count = 0;
            match object.get("kind").and_then(Value::as_str) {
                Some("Secret") => count += redact_secret_object(object, replacer),
                Some("SecretList") => {
                    if let Some(Value::Array(items)) = object.get_mut("items") {
                        // Items of kind Secret are redacted when the walk reaches them.
                        let untyped = items
                            .iter_mut()
                            .filter_map(Value::as_object_mut)
                            .filter(|item| !item.contains_key("kind"));
                        for item in untyped {
                            count += redact_secret_object(item, replacer);
                        }
                    }
                }
                _ => {}
            }
            for child in object.values_mut() {
                count += redact_secret_kinds(child, replacer);
            }
            count
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|item| redact_secret_kinds(item, replacer))
            .sum(),
        _ => 0,
    }
}

/// Replaces the values of `data` and `stringData` and removes the last-applied annotation.
fn redact_secret_object(object: &mut Map<String, Value>, replacer: &Replacer) -> u64 {
    let mut count = 0;
    for field in ["data", "stringData"] {
        match object.get_mut(field) {
            Some(Value::Object(values)) => {
                for value in values.values_mut() {
                    *value = replacer.kept_value(value);
                    count += 1;
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => {
                *other = replacer.kept_value(other);
                count += 1;
            }
        }
    }
    let annotations = object
        .get_mut("metadata")
        .and_then(|metadata| metadata.get_mut("annotations"))
        .and_then(Value::as_object_mut);
    if let Some(annotations) = annotations {
        if annotations.shift_remove(LAST_APPLIED).is_some() {
            count += 1;
        }
    }
    count
}

/// A JSON patch operation on a Secret: its `value` is replaced when the path
/// touches `data`, `stringData`, the annotations or the whole object.
fn redact_patch_operation(operation: &mut Value, replacer: &Replacer) -> u64 {
    let Some(object) = operation.as_object_mut() else {
        return redact_tree(operation, replacer);
    };
    let touches_secret = object
        .get("path")
        .and_then(Value::as_str)
        .is_some_and(|path| {
            path.is_empty()
                || path == "/"
                || path.starts_with("/data")
                || path.starts_with("/stringData")
                || path == "/metadata"
                || path.starts_with("/metadata/annotations")
                    && (path == "/metadata/annotations" || path.contains(LAST_APPLIED_POINTER))
        });
    match object.get_mut("value") {
        Some(value) if touches_secret && !value.is_null() => {
            *value = replacer.kept_value(value);
            1
        }
        _ => redact_tree(operation, replacer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::replacer::{HashEncoding, Mode};
    use serde_json::json;

    fn mask() -> Replacer {
        Replacer::new(Mode::Mask, None, HashEncoding::Hex).unwrap()
    }

    #[test]
    fn a_secret_keeps_its_keys_and_loses_its_values_and_last_applied() {
        let mut body = json!({"kind": "Secret", "metadata": {"name": "s", "annotations": {
            LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}", "team": "a"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="}, "stringData": {"token": "t0p"}, "type": "Opaque"});
        assert_eq!(redact(&mut body, SecretScope::SecretKinds, &mask()), 4);
        assert_eq!(
            body,
            json!({"kind": "Secret", "metadata": {"name": "s", "annotations": {"team": "a"}},
                "data": {"password": "[REDACTED]", "user": "[REDACTED]"}, "stringData": {"token": "[REDACTED]"}, "type": "Opaque"})
        );
    }

    #[test]
    fn secret_list_items_without_kind() {
        let mut body = json!({"kind": "SecretList", "items": [
            {"metadata": {"name": "a"}, "data": {"k": "dg=="}},
            {"kind": "Secret", "metadata": {"name": "b"}, "data": {"k": "dg=="}}]});
        assert_eq!(redact(&mut body, SecretScope::SecretKinds, &mask()), 2);
        assert_eq!(body["items"][0]["data"]["k"], "[REDACTED]");
        assert_eq!(body["items"][1]["data"]["k"], "[REDACTED]");
    }

    #[test]
    fn other_kinds_are_left_alone_unless_the_request_is_about_secrets() {
        let mut configmap = json!({"kind": "ConfigMap", "data": {"k": "v"}});
        assert_eq!(redact(&mut configmap, SecretScope::SecretKinds, &mask()), 0);
        let mut patch =
            json!({"data": {"k": "bmV3"}, "metadata": {"annotations": {LAST_APPLIED: "x"}}});
        assert_eq!(redact(&mut patch, SecretScope::WholeBody, &mask()), 2);
        assert_eq!(
            patch,
            json!({"data": {"k": "[REDACTED]"}, "metadata": {"annotations": {}}})
        );
    }

    #[test]
    fn json_patches_apply_bodies_and_tables_of_secrets() {
        let mut json_patch = json!([
            {"op": "add", "path": "/data/k", "value": "c2VjcmV0"},
            {"op": "replace", "path": "/data", "value": {"a": "Yg=="}},
            {"op": "add", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration", "value": "{}"},
            {"op": "add", "path": "/metadata/labels/x", "value": "y"},
            {"op": "remove", "path": "/data/old"}]);
        assert_eq!(redact(&mut json_patch, SecretScope::WholeBody, &mask()), 3);
        assert_eq!(json_patch[0]["value"], "[REDACTED]");
        assert_eq!(json_patch[1]["value"], "[REDACTED]");
        assert_eq!(json_patch[2]["value"], "[REDACTED]");
        assert_eq!(json_patch[3]["value"], "y");

        let mut yaml_apply = json!("apiVersion: v1\nkind: Secret\ndata:\n  k: c2VjcmV0\n");
        assert_eq!(redact(&mut yaml_apply, SecretScope::WholeBody, &mask()), 1);
        assert_eq!(yaml_apply, "[REDACTED]");

        let mut table = json!({"kind": "Table", "rows": [{"cells": ["s", "Opaque", 1], "object": {
            "kind": "PartialObjectMetadata", "metadata": {"name": "s", "annotations": {LAST_APPLIED: "{\"data\":{}}"}}}}]});
        assert_eq!(redact(&mut table, SecretScope::WholeBody, &mask()), 1);
        assert!(!table.to_string().contains("last-applied"));

        let mut delete_options =
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        let before = delete_options.clone();
        assert_eq!(
            redact(&mut delete_options, SecretScope::WholeBody, &mask()),
            0
        );
        assert_eq!(delete_options, before);
    }

    #[test]
    fn hashes_keep_equal_values_equal() {
        let hash = Replacer::new(Mode::Hash, Some("key"), HashEncoding::Hex).unwrap();
        let mut body = json!({"kind": "Secret", "data": {"a": "same", "b": "same", "c": "other"}});
        redact(&mut body, SecretScope::SecretKinds, &hash);
        assert_eq!(body["data"]["a"], body["data"]["b"]);
        assert_ne!(body["data"]["a"], body["data"]["c"]);
        assert!(body["data"]["a"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"));
    }
}
