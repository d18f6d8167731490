//! The audit event as JSON: field for field what kube-apiserver writes, in its order.

use std::fmt;

use serde::Serialize;

use super::actors::Verb;
use super::body::{request_body, response_body, Body, Facts};
use super::catalog::{BodyKind, NAMESPACES, PODS};
use super::clock::{Clock, SimTime, Timestamp, DAY};
use super::identity::{Agent, Grant, SourceIps, User};
use super::request::{Authorization, Failure, ObjectTarget, Request, RequestUri, Resolved, Stage};
use super::text::{AsString, Uuid};
use crate::event::Level;

/// Serializes as `{}`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: Uuid,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: AsString<RequestUri<'a>>,
    verb: &'static str,
    user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<User>,
    #[serde(rename = "sourceIPs")]
    source_ips: SourceIps,
    user_agent: AsString<Agent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<Status<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<Body<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<ResponseObject<'a>>,
    request_received_timestamp: Timestamp,
    stage_timestamp: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Annotations>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef<'a> {
    resource: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_group: &'static str,
    api_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subresource: Option<&'static str>,
}

/// A `metav1.Status`: the `responseStatus`, or a failed write's `responseObject`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    metadata: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<AsString<FailureMessage<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    code: u16,
}

#[derive(Serialize)]
struct Details<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ResponseObject<'a> {
    Object(Body<'a>),
    Status(Status<'a>),
}

#[derive(Serialize)]
struct Annotations {
    #[serde(rename = "authorization.k8s.io/decision")]
    decision: &'static str,
    #[serde(rename = "authorization.k8s.io/reason")]
    reason: AsString<Reason>,
    #[serde(
        rename = "pod-security.kubernetes.io/enforce-policy",
        skip_serializing_if = "Option::is_none"
    )]
    pod_security: Option<&'static str>,
}

/// The authorizer's reason: the grant that allowed, or nothing.
struct Reason(Option<Grant>);

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(grant) => grant.fmt(f),
            None => Ok(()),
        }
    }
}

/// Appends the event of `request` at `stage`, reached at `stage_time`, to `out`.
pub(super) fn write_event(
    out: &mut Vec<u8>,
    request: &Request,
    stage: Stage,
    stage_time: SimTime,
    clock: &mut Clock,
) {
    let object = request.target.object();
    let facts = match object {
        Some(object) if carries_bodies(request, stage) => {
            body_facts(request, object, stage_time, clock)
        }
        _ => None,
    };
    let event = Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level: request.level.as_str(),
        audit_id: request.audit_id,
        stage: stage.as_str(),
        request_uri: AsString(request.uri()),
        verb: request.verb.as_str(),
        user: User {
            identity: request.identity,
            authenticated: true,
        },
        impersonated_user: request.impersonated.map(|identity| User {
            identity,
            authenticated: false,
        }),
        source_ips: request.identity.source_ips(),
        user_agent: AsString(request.identity.agent()),
        object_ref: object.map(|object| object_ref(request, object, stage)),
        response_status: (stage != Stage::RequestReceived).then(|| response_status(request)),
        request_object: facts
            .as_ref()
            .map(|facts| request_body(facts, request.verb)),
        response_object: facts
            .as_ref()
            .and_then(|facts| response_object(request, facts)),
        request_received_timestamp: clock.micros(request.received),
        stage_timestamp: clock.micros(stage_time.max(request.received)),
        annotations: annotations(request, stage),
    };
    serde_json::to_writer(out, &event).expect("writing JSON to memory cannot fail");
}

/// Whether the event records the request's bodies: writes the policy logs at
/// Request level or above, once handled, unless authentication or authorization refused them.
fn carries_bodies(request: &Request, stage: Stage) -> bool {
    stage == Stage::ResponseComplete
        && request.level >= Level::Request
        && request.verb.sends_object()
        && !matches!(
            request.failure,
            Some(Failure::Unauthorized | Failure::Forbidden)
        )
}

fn body_facts<'a>(
    request: &Request,
    object: &'a ObjectTarget,
    stage_time: SimTime,
    clock: &mut Clock,
) -> Option<Facts<'a>> {
    let kind: BodyKind = object.resource.body?;
    let name = object.name.as_ref()?.as_str();
    let uid = Uuid::stable(&[object.namespace.unwrap_or_default(), name], 0);
    let age = DAY + (uid.low_bits() % (90 * DAY as u64)) as SimTime;
    let created = stage_time - age;
    Some(Facts {
        kind,
        place: request.place,
        namespace: object.namespace.unwrap_or_default(),
        name,
        manager: field_manager(request),
        operation: operation(request),
        created_now: request.verb == Verb::Create,
        created: (clock.seconds(created), clock.micros(created)),
        now: (clock.seconds(stage_time), clock.micros(stage_time)),
        resource_version: request.resource_version,
        previous_version: request
            .resource_version
            .saturating_sub(1 + request.noise % 5_000),
        noise: request.noise,
    })
}

/// `Apply` for server-side apply (a forced patch), else `Update`.
fn operation(request: &Request) -> &'static str {
    let applies = request.verb == Verb::Patch
        && request
            .query
            .split('&')
            .any(|parameter| parameter == "force=true");
    if applies {
        "Apply"
    } else {
        "Update"
    }
}

/// The `fieldManager` of the query, or the client's default one.
fn field_manager(request: &Request) -> &'static str {
    request
        .query
        .split('&')
        .find_map(|parameter| parameter.strip_prefix("fieldManager="))
        .unwrap_or_else(|| request.identity.field_manager())
}

fn response_object<'a>(request: &'a Request, facts: &'a Facts<'a>) -> Option<ResponseObject<'a>> {
    if request.level < Level::RequestResponse {
        return None;
    }
    Some(match request.failure {
        Some(_) => ResponseObject::Status(Status {
            kind: Some("Status"),
            api_version: Some("v1"),
            ..response_status(request)
        }),
        None => ResponseObject::Object(response_body(facts)),
    })
}

fn object_ref<'a>(request: &Request, object: &'a ObjectTarget, stage: Stage) -> ObjectRef<'a> {
    let resource = object.resource;
    // The name of a created object comes from its body, decoded after RequestReceived.
    let name_known = !(request.verb == Verb::Create
        && object.subresource.is_none()
        && stage == Stage::RequestReceived);
    let name = object
        .name
        .as_ref()
        .filter(|_| name_known)
        .map(|name| name.as_str());
    // A namespace's namespace is itself.
    let namespace = if resource.name == NAMESPACES.name {
        name
    } else {
        object.namespace
    };
    ObjectRef {
        resource: resource.name,
        namespace,
        name,
        api_group: resource.group,
        api_version: resource.version,
        subresource: object.subresource,
    }
}

fn response_status(request: &Request) -> Status<'_> {
    let Some(failure) = request.failure else {
        return Status {
            kind: None,
            api_version: None,
            metadata: Empty {},
            status: None,
            message: None,
            reason: None,
            details: None,
            code: request.code(),
        };
    };
    Status {
        kind: None,
        api_version: None,
        metadata: Empty {},
        status: Some("Failure"),
        message: Some(AsString(FailureMessage { request, failure })),
        reason: Some(failure.reason()),
        details: (failure != Failure::Unauthorized).then(|| details(request, failure)),
        code: failure.code(),
    }
}

fn details(request: &Request, failure: Failure) -> Details<'_> {
    let Some(object) = request.target.object() else {
        return Details {
            name: None,
            group: "",
            kind: None,
        };
    };
    let resource = object.resource;
    Details {
        name: object.name.as_ref().map(|name| name.as_str()),
        group: resource.group,
        kind: Some(if failure == Failure::Invalid {
            resource.kind
        } else {
            resource.name
        }),
    }
}

fn annotations(request: &Request, stage: Stage) -> Option<Annotations> {
    if stage == Stage::RequestReceived {
        return None;
    }
    let (decision, grant) = match request.authorization {
        Authorization::Allow(grant) => ("allow", Some(grant)),
        Authorization::Forbid => ("forbid", None),
        Authorization::Unauthenticated => return None,
    };
    let creates_pod = request.verb == Verb::Create
        && request.failure.is_none()
        && request.target.object().is_some_and(|object| {
            object.resource.name == PODS.name && object.subresource.is_none()
        });
    Some(Annotations {
        decision,
        reason: AsString(Reason(grant)),
        pod_security: creates_pod.then(|| pod_security_policy(request.place.app.namespace)),
    })
}

/// The Pod Security level a namespace enforces.
fn pod_security_policy(namespace: &str) -> &'static str {
    match namespace {
        "kube-system" | "monitoring" | "cert-manager" => "privileged:latest",
        "production" => "restricted:latest",
        _ => "baseline:latest",
    }
}

/// The message of a failure Status, worded as the apiserver words it.
struct FailureMessage<'a> {
    request: &'a Request,
    failure: Failure,
}

const CONFLICT: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

const INVALID_LABEL: &str = r#"metadata.labels: Invalid value: "release/candidate": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#;

impl fmt::Display for FailureMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = self.request;
        match (self.failure, &request.target) {
            (Failure::Unauthorized, _) => f.write_str("Unauthorized"),
            (_, Resolved::Path(path)) => write!(
                f,
                "forbidden: User \"{}\" cannot {} path \"{path}\"",
                request.effective_identity().username(),
                request.verb.as_str()
            ),
            (failure, Resolved::Resource(object)) => {
                write_object_failure(f, request, object, failure)
            }
        }
    }
}

fn write_object_failure(
    f: &mut fmt::Formatter<'_>,
    request: &Request,
    object: &ObjectTarget,
    failure: Failure,
) -> fmt::Result {
    let resource = object.resource;
    let name = object.name.as_ref().map_or("", |name| name.as_str());
    let qualified = Qualified(resource.name, resource.group);
    match failure {
        Failure::Unauthorized => f.write_str("Unauthorized"),
        Failure::Forbidden => write_forbidden(f, request, object),
        Failure::NotFound => write!(f, "{qualified} \"{name}\" not found"),
        Failure::AlreadyExists => write!(f, "{qualified} \"{name}\" already exists"),
        Failure::Conflict => write!(
            f,
            "Operation cannot be fulfilled on {qualified} \"{name}\": {CONFLICT}"
        ),
        Failure::Invalid => {
            let kind = Qualified(resource.kind, resource.group);
            write!(f, "{kind} \"{name}\" is invalid: {INVALID_LABEL}")
        }
    }
}

/// `pods "web-..." is forbidden: User "bob" cannot get resource "pods" in API group "" in the namespace "production"`.
fn write_forbidden(
    f: &mut fmt::Formatter<'_>,
    request: &Request,
    object: &ObjectTarget,
) -> fmt::Result {
    let resource = object.resource;
    f.write_str(resource.name)?;
    if let Some(name) = &object.name {
        write!(f, " \"{name}\"")?;
    }
    let user = request.effective_identity().username();
    let verb = request.verb.as_str();
    write!(
        f,
        " is forbidden: User \"{user}\" cannot {verb} resource \"{}",
        resource.name
    )?;
    if let Some(subresource) = object.subresource {
        write!(f, "/{subresource}")?;
    }
    write!(f, "\" in API group \"{}\"", resource.group)?;
    match object.namespace {
        Some(namespace) => write!(f, " in the namespace \"{namespace}\""),
        None => f.write_str(" at the cluster scope"),
    }
}

/// `name.group`, or just `name` for the core group.
struct Qualified(&'static str, &'static str);

impl fmt::Display for Qualified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            "" => f.write_str(self.0),
            group => write!(f, "{}.{group}", self.0),
        }
    }
}
