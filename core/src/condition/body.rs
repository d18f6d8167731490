//! Fields read from the request and response bodies: `ka.req.*`, `ka.resp.*`.
//!
//! These follow the Kubernetes audit fields of Falco's k8saudit plugin. Only
//! the body a field names is parsed (once per evaluation, see
//! [`EvalContext::request_object`]); events without that body, or whose body
//! lacks the part a field reads, have the field missing.
//!
//! Values are given as Falco gives them: strings as they are, other JSON
//! values (numbers, booleans, objects) as their JSON text (`true`, `8080`,
//! `{"name":"http",...}`), numbers keeping their numeric comparison.
//!
//! Per-container fields exist for the three container lists of a pod spec:
//! `ka.req.pod.containers.*`, `ka.req.pod.initContainers.*` and
//! `ka.req.pod.ephemeralContainers.*`. List fields take an optional index
//! argument selecting one element (`ka.req.pod.containers.image[0]`); an index
//! past the end makes the field missing.
//!
//! Where Falco's extraction gives up on a whole list because one element lacks
//! a key (a volume without `hostPath`, a container without a security context
//! flag), auditflow skips that element and keeps the others.

use std::borrow::Cow;

use serde_json::Value;

use super::context::EvalContext;
use super::fields::{FieldError, FieldExtractor};
use super::value::{FieldRef, Scalar};

/// The names of the body fields (per-container names listed for `containers` only).
pub(super) const BODY_FIELD_NAMES: &[&str] = &[
    "ka.req.binding.subjects",
    "ka.req.binding.role",
    "ka.req.binding.subject.has_name",
    "ka.req.configmap.obj",
    "ka.req.pod.containers.image",
    "ka.req.pod.containers.image.repository",
    "ka.req.pod.containers.privileged",
    "ka.req.pod.containers.allow_privilege_escalation",
    "ka.req.pod.containers.read_only_fs",
    "ka.req.pod.containers.run_as_user",
    "ka.req.pod.containers.eff_run_as_user",
    "ka.req.pod.containers.run_as_group",
    "ka.req.pod.containers.eff_run_as_group",
    "ka.req.pod.containers.proc_mount",
    "ka.req.pod.containers.add_capabilities",
    "ka.req.pod.containers.host_port",
    "ka.req.pod.host_ipc",
    "ka.req.pod.host_network",
    "ka.req.pod.host_pid",
    "ka.req.pod.run_as_user",
    "ka.req.pod.run_as_group",
    "ka.req.pod.fs_group",
    "ka.req.pod.supplemental_groups",
    "ka.req.pod.volumes.hostpath",
    "ka.req.pod.volumes.flexvolume_driver",
    "ka.req.pod.volumes.volume_type",
    "ka.req.container.image",
    "ka.req.container.image.repository",
    "ka.req.container.privileged",
    "ka.req.container.host_network",
    "ka.req.volume.hostpath",
    "ka.req.role.rules",
    "ka.req.role.rules.apiGroups",
    "ka.req.role.rules.nonResourceURLs",
    "ka.req.role.rules.verbs",
    "ka.req.role.rules.resources",
    "ka.req.service.type",
    "ka.req.service.ports",
    "ka.resp.name",
];

/// The container lists of a pod spec, as field names and JSON keys.
const CONTAINER_LISTS: [(&str, &str); 3] = [
    ("ka.req.pod.containers.", "containers"),
    ("ka.req.pod.initContainers.", "initContainers"),
    ("ka.req.pod.ephemeralContainers.", "ephemeralContainers"),
];

/// Which body a field reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Request,
    Response,
}

/// What a body field extracts.
#[derive(Debug, Clone)]
enum Extract {
    /// The value at a path of keys.
    At(&'static [&'static str]),
    /// The elements of the array at a path, each as a value.
    Elements(&'static [&'static str]),
    /// For each element of the array at `list`, the value at `key` (arrays flattened).
    Each {
        list: Vec<&'static str>,
        key: &'static [&'static str],
    },
    /// Each container's image, or its repository part.
    Images {
        list: &'static str,
        repository: bool,
    },
    /// Each container's run-as id, defaulting to the pod's, then 0.
    Effective {
        list: &'static str,
        key: &'static str,
    },
    /// Each container's host ports (`hostPort`, else `containerPort`).
    HostPorts { list: &'static str },
    /// The keys of each volume other than `name` (its type).
    VolumeTypes,
    /// `true` if any container is privileged, `false` otherwise.
    AnyPrivileged,
    /// `true` if a hostPath volume has this path (or, ending in `*`, this prefix).
    HostPathUsed(String),
    /// Always `true` (a deprecated field Falco keeps for compatibility).
    AlwaysTrue,
}

/// A field read from a body.
#[derive(Debug, Clone)]
struct BodyField {
    body: Body,
    extract: Extract,
    /// For list fields: which element to keep.
    index: Option<usize>,
}

/// The extractor for a body field, if `name` is one.
pub(super) fn resolve(
    name: &str,
    arg: Option<&str>,
) -> Option<Result<Box<dyn FieldExtractor>, FieldError>> {
    let (extract, takes) = extract_of(name)?;
    let index = match (takes, arg) {
        (_, None) => None,
        (Argument::Index, Some(arg)) => match arg.parse::<usize>() {
            Ok(index) => Some(index),
            Err(_) => {
                return Some(Err(FieldError::Argument(format!(
                    "the argument of `{name}` must be an index (`{name}[0]`)"
                ))))
            }
        },
        (Argument::Key, Some(_)) => None,
        (Argument::None, Some(_)) => {
            return Some(Err(FieldError::Argument(format!(
                "the field `{name}` takes no argument in brackets"
            ))))
        }
    };
    let extract = match (extract, arg) {
        (Extract::HostPathUsed(_), Some(arg)) => Extract::HostPathUsed(arg.to_string()),
        (Extract::HostPathUsed(_), None) | (Extract::AlwaysTrue, None) => {
            return Some(Err(FieldError::Argument(format!(
                "`{name}` needs an argument in brackets, as in `{name}[/proc*]`"
            ))))
        }
        (extract, _) => extract,
    };
    let body = if name == "ka.resp.name" {
        Body::Response
    } else {
        Body::Request
    };
    Some(Ok(Box::new(BodyField {
        body,
        extract,
        index,
    })))
}

/// What argument a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Argument {
    None,
    Index,
    Key,
}

fn extract_of(name: &str) -> Option<(Extract, Argument)> {
    if let Some(found) = container_field(name) {
        return Some(found);
    }
    use Argument::{Index, Key, None as NoArg};
    let found = match name {
        "ka.req.binding.subjects" => (Extract::Elements(&["subjects"]), Index),
        "ka.req.binding.role" => (Extract::At(&["roleRef", "name"]), NoArg),
        "ka.req.binding.subject.has_name" => (Extract::AlwaysTrue, Key),
        "ka.req.configmap.obj" => (Extract::At(&["data"]), NoArg),
        "ka.req.pod.host_ipc" => (Extract::At(&["spec", "hostIPC"]), NoArg),
        "ka.req.pod.host_network" | "ka.req.container.host_network" => {
            (Extract::At(&["spec", "hostNetwork"]), NoArg)
        }
        "ka.req.pod.host_pid" => (Extract::At(&["spec", "hostPID"]), NoArg),
        "ka.req.pod.run_as_user" => (
            Extract::At(&["spec", "securityContext", "runAsUser"]),
            NoArg,
        ),
        "ka.req.pod.run_as_group" => (
            Extract::At(&["spec", "securityContext", "runAsGroup"]),
            NoArg,
        ),
        "ka.req.pod.fs_group" => (Extract::At(&["spec", "securityContext", "fsGroup"]), NoArg),
        "ka.req.pod.supplemental_groups" => (
            Extract::Elements(&["spec", "securityContext", "supplementalGroups"]),
            Index,
        ),
        "ka.req.pod.volumes.hostpath" => (volume_key(&["hostPath", "path"]), Index),
        "ka.req.pod.volumes.flexvolume_driver" => (volume_key(&["flexVolume", "driver"]), Index),
        "ka.req.pod.volumes.volume_type" => (Extract::VolumeTypes, Index),
        "ka.req.container.image" => (
            Extract::Images {
                list: "containers",
                repository: false,
            },
            NoArg,
        ),
        "ka.req.container.image.repository" => (
            Extract::Images {
                list: "containers",
                repository: true,
            },
            NoArg,
        ),
        "ka.req.container.privileged" => (Extract::AnyPrivileged, NoArg),
        "ka.req.volume.hostpath" => (Extract::HostPathUsed(String::new()), Key),
        "ka.req.role.rules" => (Extract::Elements(&["rules"]), Index),
        "ka.req.role.rules.apiGroups" => (rule_key(&["apiGroups"]), Index),
        "ka.req.role.rules.nonResourceURLs" => (rule_key(&["nonResourceURLs"]), Index),
        "ka.req.role.rules.verbs" => (rule_key(&["verbs"]), Index),
        "ka.req.role.rules.resources" => (rule_key(&["resources"]), Index),
        "ka.req.service.type" => (Extract::At(&["spec", "type"]), NoArg),
        "ka.req.service.ports" => (Extract::Elements(&["spec", "ports"]), Index),
        "ka.resp.name" => (Extract::At(&["metadata", "name"]), NoArg),
        _ => return None,
    };
    Some(found)
}

fn volume_key(key: &'static [&'static str]) -> Extract {
    Extract::Each {
        list: vec!["spec", "volumes"],
        key,
    }
}

fn rule_key(key: &'static [&'static str]) -> Extract {
    Extract::Each {
        list: vec!["rules"],
        key,
    }
}

/// `ka.req.pod.{containers,initContainers,ephemeralContainers}.*`.
fn container_field(name: &str) -> Option<(Extract, Argument)> {
    let (list, rest) = CONTAINER_LISTS
        .iter()
        .find_map(|(prefix, list)| name.strip_prefix(prefix).map(|rest| (*list, rest)))?;
    let security = |key: &'static str| -> &'static [&'static str] {
        match key {
            "privileged" => &["securityContext", "privileged"],
            "allowPrivilegeEscalation" => &["securityContext", "allowPrivilegeEscalation"],
            "readOnlyRootFilesystem" => &["securityContext", "readOnlyRootFilesystem"],
            "runAsUser" => &["securityContext", "runAsUser"],
            "runAsGroup" => &["securityContext", "runAsGroup"],
            "procMount" => &["securityContext", "procMount"],
            _ => &["securityContext", "capabilities", "add"],
        }
    };
    let each = |key| Extract::Each {
        list: vec!["spec", list],
        key: security(key),
    };
    let extract = match rest {
        "image" => Extract::Images {
            list,
            repository: false,
        },
        "image.repository" => Extract::Images {
            list,
            repository: true,
        },
        "privileged" => each("privileged"),
        "allow_privilege_escalation" => each("allowPrivilegeEscalation"),
        "read_only_fs" => each("readOnlyRootFilesystem"),
        "run_as_user" => each("runAsUser"),
        "run_as_group" => each("runAsGroup"),
        "proc_mount" => each("procMount"),
        "add_capabilities" => each("capabilities"),
        "eff_run_as_user" => Extract::Effective {
            list,
            key: "runAsUser",
        },
        "eff_run_as_group" => Extract::Effective {
            list,
            key: "runAsGroup",
        },
        "host_port" => Extract::HostPorts { list },
        _ => return None,
    };
    Some((extract, Argument::Index))
}

impl FieldExtractor for BodyField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        let body = match self.body {
            Body::Request => ctx.request_object(),
            Body::Response => ctx.response_object(),
        };
        match body {
            Some(body) => self.read_body(body),
            None => FieldRef::Missing,
        }
    }
}

impl BodyField {
    fn read_body<'v>(&self, body: &'v Value) -> FieldRef<'v> {
        match &self.extract {
            Extract::At(path) => at(body, path).map_or(FieldRef::Missing, one),
            Extract::Elements(path) => {
                FieldRef::List(self.elements(body, path).map(scalar).collect())
            }
            Extract::Each { list, key } => FieldRef::List(
                self.elements(body, list)
                    .filter_map(|item| at(item, key))
                    .flat_map(flatten)
                    .map(scalar)
                    .collect(),
            ),
            Extract::Images { list, repository } => self.images(body, list, *repository),
            Extract::Effective { list, key } => self.effective(body, list, key),
            Extract::HostPorts { list } => FieldRef::List(
                self.elements(body, &["spec", list])
                    .filter_map(|container| container.get("ports")?.as_array())
                    .flatten()
                    .filter_map(|port| port.get("hostPort").or_else(|| port.get("containerPort")))
                    .map(scalar)
                    .collect(),
            ),
            Extract::VolumeTypes => FieldRef::List(
                self.elements(body, &["spec", "volumes"])
                    .filter_map(Value::as_object)
                    .flat_map(|volume| volume.keys())
                    .filter(|key| *key != "name")
                    .map(|key| Scalar::Str(Cow::Borrowed(key.as_str())))
                    .collect(),
            ),
            Extract::AnyPrivileged => {
                let Some(containers) = at(body, &["spec", "containers"]).and_then(Value::as_array)
                else {
                    return FieldRef::Missing;
                };
                let any = containers.iter().any(|c| {
                    at(c, &["securityContext", "privileged"]).and_then(Value::as_bool) == Some(true)
                });
                FieldRef::str(if any { "true" } else { "false" })
            }
            Extract::HostPathUsed(path) => {
                let Some(volumes) = at(body, &["spec", "volumes"]).and_then(Value::as_array) else {
                    return FieldRef::Missing;
                };
                let used = volumes
                    .iter()
                    .filter_map(|v| at(v, &["hostPath", "path"])?.as_str())
                    .any(|host| match path.strip_suffix('*') {
                        Some(prefix) => host.starts_with(prefix),
                        None => host == path,
                    });
                FieldRef::str(if used { "true" } else { "false" })
            }
            Extract::AlwaysTrue => FieldRef::str("true"),
        }
    }

    /// The elements of the array at `path` (or the one at the index argument).
    fn elements<'v>(&self, body: &'v Value, path: &[&str]) -> impl Iterator<Item = &'v Value> {
        let items = at(body, path)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let items = match self.index {
            Some(index) => items.get(index..=index).unwrap_or_default(),
            None => items,
        };
        items.iter()
    }

    fn images<'v>(&self, body: &'v Value, list: &str, repository: bool) -> FieldRef<'v> {
        let images = self
            .elements(body, &["spec", list])
            .filter_map(|container| container.get("image")?.as_str())
            .map(|image| {
                let text = if repository {
                    image_repository(image)
                } else {
                    image
                };
                Scalar::Str(Cow::Borrowed(text))
            });
        FieldRef::List(images.collect())
    }

    fn effective<'v>(&self, body: &'v Value, list: &str, key: &str) -> FieldRef<'v> {
        let pod = at(body, &["spec", "securityContext"]).and_then(|context| context.get(key));
        let ids = self.elements(body, &["spec", list]).map(|container| {
            at(container, &["securityContext"])
                .and_then(|context| context.get(key))
                .or(pod)
                .map_or(Scalar::Int(0), scalar)
        });
        FieldRef::List(ids.collect())
    }
}

/// The repository part of an image reference: without digest and tag.
fn image_repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let name_start = image.rfind('/').map_or(0, |slash| slash + 1);
    match image.get(name_start..).and_then(|name| name.find(':')) {
        Some(colon) => image.get(..name_start + colon).unwrap_or(image),
        None => image,
    }
}

fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |node, key| node.get(key))
        .filter(|value| !value.is_null())
}

/// An array's elements, or the value itself.
fn flatten(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().filter(|item| !item.is_null()).collect(),
        other => vec![other],
    }
}

fn one(value: &Value) -> FieldRef<'_> {
    FieldRef::One(scalar(value))
}

/// A JSON value as Falco gives it: strings as they are, the rest as JSON text
/// (numbers and booleans keep their type for comparisons).
pub(super) fn scalar(value: &Value) -> Scalar<'_> {
    match value {
        Value::String(text) => Scalar::Str(Cow::Borrowed(text)),
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Scalar::Int(i),
            (None, Some(f)) => Scalar::Float(f),
            (None, None) => Scalar::Str(Cow::Owned(n.to_string())),
        },
        other => Scalar::Str(Cow::Owned(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::image_repository;

    #[test]
    fn image_repositories_drop_tag_and_digest() {
        assert_eq!(image_repository("nginx"), "nginx");
        assert_eq!(image_repository("nginx:1.25"), "nginx");
        assert_eq!(
            image_repository("registry:5000/team/app:v1"),
            "registry:5000/team/app"
        );
        assert_eq!(image_repository("app@sha256:abc"), "app");
    }
}
