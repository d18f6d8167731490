//! One simulated API request: who sends it, what it addresses, how the
//! authorizer and the handler answer, and what the audit policy records.

use std::fmt;

use rand::Rng;

use super::actors::{Action, Actor, NameRule, Scope, Target, Verb};
use super::catalog::{Resource, SECRETS};
use super::clock::{SimTime, MILLISECOND};
use super::identity::{Class, Grant, Identity, Role, Subject, DISCOVERY, PUBLIC_INFO};
use super::names::Place;
use super::text::{Name, Uuid};
use crate::event::Level;

/// The non-resource URLs anyone may read.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// How often a person with cluster-admin impersonates an application's service account.
const IMPERSONATION_RATE: f64 = 0.04;

/// The stage of request handling an event is written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Before the request is handled.
    RequestReceived,
    /// Response headers sent (watch, exec, failed authentication).
    ResponseStarted,
    /// Response sent.
    ResponseComplete,
}

impl Stage {
    /// The stage as audit events write it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
        }
    }
}

/// What a resource request addresses, resolved to names.
#[derive(Debug, Clone, Copy)]
pub(super) struct ObjectTarget {
    /// The resource.
    pub(super) resource: &'static Resource,
    /// The namespace, absent for cluster-scoped resources and cluster-wide collections.
    pub(super) namespace: Option<&'static str>,
    /// The object's name, absent for collections.
    pub(super) name: Option<Name>,
    /// The subresource.
    pub(super) subresource: Option<&'static str>,
}

/// What a request addresses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Resolved {
    /// A non-resource URL.
    Path(&'static str),
    /// A resource.
    Resource(ObjectTarget),
}

impl Resolved {
    /// The resource target, if the request is a resource request.
    pub(super) fn object(&self) -> Option<&ObjectTarget> {
        match self {
            Resolved::Resource(target) => Some(target),
            Resolved::Path(_) => None,
        }
    }
}

/// What the authorizer decided.
#[derive(Debug, Clone, Copy)]
pub(super) enum Authorization {
    /// Allowed, for this reason.
    Allow(Grant),
    /// Forbidden (403).
    Forbid,
    /// Authentication failed (401); the authorizer never ran.
    Unauthenticated,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 409, creating an object that exists.
    AlreadyExists,
    /// 409, writing a stale resource version.
    Conflict,
    /// 422.
    Invalid,
}

impl Failure {
    /// The HTTP status code.
    pub(super) fn code(self) -> u16 {
        match self {
            Failure::Unauthorized => 401,
            Failure::Forbidden => 403,
            Failure::NotFound => 404,
            Failure::AlreadyExists | Failure::Conflict => 409,
            Failure::Invalid => 422,
        }
    }

    /// The `reason` of the failure Status.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Failure::Unauthorized => "Unauthorized",
            Failure::Forbidden => "Forbidden",
            Failure::NotFound => "NotFound",
            Failure::AlreadyExists => "AlreadyExists",
            Failure::Conflict => "Conflict",
            Failure::Invalid => "Invalid",
        }
    }
}

/// How often a request of a verb fails, and how (per mille, for requests naming an object).
const FAILURE_RATES: &[(Verb, Failure, u32)] = &[
    (Verb::Get, Failure::NotFound, 25),
    (Verb::Delete, Failure::NotFound, 40),
    (Verb::Patch, Failure::NotFound, 5),
    (Verb::Patch, Failure::Invalid, 15),
    (Verb::Create, Failure::AlreadyExists, 30),
    (Verb::Create, Failure::Invalid, 10),
    (Verb::Update, Failure::Conflict, 30),
];

/// The time from receiving a request to the event, by verb: (minimum, mean of the rest), in µs.
fn latency_profile(verb: Verb) -> (i64, f64) {
    match verb {
        Verb::Get => (300, 2_000.0),
        Verb::List => (2_000, 25_000.0),
        Verb::Watch => (150, 800.0),
        Verb::Create | Verb::Update | Verb::Patch | Verb::Delete => (2_000, 8_000.0),
    }
}

/// A planned request: everything its audit events say, decided before they are written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    /// The audit ID shared by the request's events.
    pub(super) audit_id: Uuid,
    /// Who sent it.
    pub(super) identity: Identity,
    /// Whom the sender impersonates.
    pub(super) impersonated: Option<Identity>,
    /// The application, pod and node it is about.
    pub(super) place: Place,
    /// The verb.
    pub(super) verb: Verb,
    /// What it addresses.
    pub(super) target: Resolved,
    /// Its static query parameters.
    pub(super) query: &'static str,
    /// For a watch: the resource version it starts from.
    pub(super) watch_from: u64,
    /// For a watch: its timeout in seconds.
    pub(super) watch_timeout: u32,
    /// The authorizer's decision.
    pub(super) authorization: Authorization,
    /// How it failed, if it did.
    pub(super) failure: Option<Failure>,
    /// The level the audit policy records it at.
    pub(super) level: Level,
    /// When the apiserver received it.
    pub(super) received: SimTime,
    /// The resource version of the object it writes.
    pub(super) resource_version: u64,
    /// Random bits for the parts of names and bodies that vary from request to request.
    pub(super) noise: u64,
}

impl Request {
    /// Plans a request arriving at `now`; `resource_version` is the cluster's, advanced by writes.
    pub(super) fn plan(rng: &mut impl Rng, now: SimTime, resource_version: &mut u64) -> Request {
        let actor = Actor::pick(rng);
        let action = actor.action(rng);
        let noise = rng.gen();
        let impersonated = impersonation(rng, &actor);
        let effective = impersonated.unwrap_or(actor.identity);
        let target = resolve(&action, &actor.place, noise);
        let authorization = authorize(&effective, action.verb, &target);
        let failure = failure(rng, authorization, action.verb, &target);
        *resource_version += rng.gen_range(1..=4);
        Request {
            audit_id: Uuid::random(rng),
            identity: actor.identity,
            impersonated,
            place: actor.place,
            verb: action.verb,
            target,
            query: action.query,
            watch_from: resource_version.saturating_sub(rng.gen_range(0..5_000)),
            watch_timeout: rng.gen_range(300..600),
            authorization,
            failure,
            level: level(actor.identity.class(), action.verb, &target),
            received: (now - latency(rng, action.verb)).max(0),
            resource_version: *resource_version,
            noise,
        }
    }

    /// The stage of the request's last event.
    pub(super) fn final_stage(&self) -> Stage {
        let streams = self.verb == Verb::Watch || self.subresource() == Some("exec");
        match self.failure {
            Some(Failure::Unauthorized) => Stage::ResponseStarted,
            None if streams => Stage::ResponseStarted,
            _ => Stage::ResponseComplete,
        }
    }

    /// Whether the policy records the RequestReceived stage too (it does for people).
    pub(super) fn records_received(&self) -> bool {
        self.identity.class() == Class::Person
    }

    /// The HTTP status code of the response.
    pub(super) fn code(&self) -> u16 {
        match (self.failure, self.verb, self.subresource()) {
            (Some(failure), _, _) => failure.code(),
            (None, _, Some("exec")) => 101,
            (None, Verb::Create, _) => 201,
            (None, _, _) => 200,
        }
    }

    /// The user the authorizer checked: the impersonated one, if any.
    pub(super) fn effective_identity(&self) -> Identity {
        self.impersonated.unwrap_or(self.identity)
    }

    fn subresource(&self) -> Option<&'static str> {
        self.target.object().and_then(|target| target.subresource)
    }

    /// The request URI.
    pub(super) fn uri(&self) -> RequestUri<'_> {
        RequestUri(self)
    }
}

/// People with cluster-admin now and then act as an application.
fn impersonation(rng: &mut impl Rng, actor: &Actor) -> Option<Identity> {
    match actor.identity {
        Identity::Person(person) if person.team.is_none() && rng.gen_bool(IMPERSONATION_RATE) => {
            Some(Identity::Workload(actor.place))
        }
        _ => None,
    }
}

/// Names the objects of an action for a place.
fn resolve(action: &Action, place: &Place, noise: u64) -> Resolved {
    let (resource, subresource, scope, name) = match action.target {
        Target::Path(path) => return Resolved::Path(path),
        Target::Collection { resource, scope } => (resource, None, scope, None),
        Target::Object {
            resource,
            subresource,
            scope,
            name,
        } => (resource, subresource, scope, Some(name)),
    };
    let namespace = match scope {
        _ if !resource.namespaced => None,
        Scope::App => Some(place.app.namespace),
        Scope::Everywhere => None,
        Scope::In(namespace) => Some(namespace),
    };
    let name = name.map(|rule| match rule {
        NameRule::Derived => place.object_name(resource.naming, noise),
        NameRule::Fixed(name) => Name::format(format_args!("{name}")),
        NameRule::Node => super::names::node_name(place.node),
    });
    Resolved::Resource(ObjectTarget {
        resource,
        namespace,
        name,
        subresource,
    })
}

/// What RBAC (or the Node authorizer) says to a request.
fn authorize(identity: &Identity, verb: Verb, target: &Resolved) -> Authorization {
    let public = matches!(target, Resolved::Path(path) if PUBLIC_PATHS.contains(path));
    match (identity, target) {
        (Identity::Rejected { .. }, _) => Authorization::Unauthenticated,
        (Identity::Anonymous { .. }, _) if public => Authorization::Allow(PUBLIC_INFO),
        (Identity::Anonymous { .. }, _) => Authorization::Forbid,
        (Identity::Person(_), Resolved::Path(_)) => Authorization::Allow(DISCOVERY),
        (Identity::Person(person), Resolved::Resource(object)) => match person.team {
            None => Authorization::Allow(identity.grant()),
            Some(team) => team_member(team, verb, object),
        },
        _ => Authorization::Allow(identity.grant()),
    }
}

/// Developers edit their team's namespace and view the rest, secrets excepted.
fn team_member(team: &'static str, verb: Verb, object: &ObjectTarget) -> Authorization {
    const DEVELOPERS: Subject = Subject::Group("dev");
    if object.namespace == Some(team) {
        Authorization::Allow(Grant::RoleBinding {
            binding: "dev-edit",
            namespace: team,
            role: Role::Cluster("edit"),
            subject: DEVELOPERS,
        })
    } else if verb.is_read() && object.resource.name != SECRETS.name {
        Authorization::Allow(Grant::ClusterRoleBinding {
            binding: "dev-view",
            role: "view",
            subject: DEVELOPERS,
        })
    } else {
        Authorization::Forbid
    }
}

/// How the request fails, if it does.
fn failure(
    rng: &mut impl Rng,
    authorization: Authorization,
    verb: Verb,
    target: &Resolved,
) -> Option<Failure> {
    match authorization {
        Authorization::Unauthenticated => return Some(Failure::Unauthorized),
        Authorization::Forbid => return Some(Failure::Forbidden),
        Authorization::Allow(_) => {}
    }
    let named = target
        .object()
        .is_some_and(|object| object.name.is_some() && object.subresource.is_none());
    if !named {
        return None;
    }
    let draw = rng.gen_range(0..1000);
    let mut threshold = 0;
    FAILURE_RATES
        .iter()
        .filter(|(failing_verb, _, _)| *failing_verb == verb)
        .find(|(_, _, rate)| {
            threshold += rate;
            draw < threshold
        })
        .map(|(_, failure, _)| *failure)
}

/// The audit policy: metadata for reads, noise and subresources; bodies of
/// writes by applications (request) and by people and operators (request and response).
fn level(class: Class, verb: Verb, target: &Resolved) -> Level {
    let with_body = target
        .object()
        .is_some_and(|object| object.resource.body.is_some() && object.subresource.is_none());
    if !verb.sends_object() || !with_body {
        return Level::Metadata;
    }
    match class {
        Class::Person | Class::Operator => Level::RequestResponse,
        Class::Workload => Level::Request,
        Class::System | Class::Anonymous => Level::Metadata,
    }
}

/// How long the apiserver took to reach the event's stage.
fn latency(rng: &mut impl Rng, verb: Verb) -> SimTime {
    let (minimum, mean) = latency_profile(verb);
    let uniform: f64 = rng.gen();
    let micros = minimum + (-(1.0 - uniform).ln() * mean) as i64;
    micros * (MILLISECOND / 1_000)
}

/// Writes the request URI of a request.
pub(super) struct RequestUri<'a>(&'a Request);

impl fmt::Display for RequestUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = self.0;
        let object = match &request.target {
            Resolved::Path(path) => return write_query(f, path, request.query),
            Resolved::Resource(object) => object,
        };
        let resource = object.resource;
        match resource.group {
            "" => write!(f, "/api/{}", resource.version)?,
            group => write!(f, "/apis/{group}/{}", resource.version)?,
        }
        if let Some(namespace) = object.namespace {
            write!(f, "/namespaces/{namespace}")?;
        }
        write!(f, "/{}", resource.name)?;
        let name_in_path = match request.verb {
            Verb::List | Verb::Watch => false,
            Verb::Create => object.subresource.is_some(),
            _ => true,
        };
        match object.name {
            Some(name) if name_in_path => write!(f, "/{name}")?,
            _ => {}
        }
        if let Some(subresource) = object.subresource {
            write!(f, "/{subresource}")?;
        }
        if request.verb == Verb::Watch {
            return write_watch_query(f, request, object.name);
        }
        write_query(f, "", request.query)
    }
}

fn write_query(f: &mut fmt::Formatter<'_>, path: &str, query: &str) -> fmt::Result {
    f.write_str(path)?;
    if !query.is_empty() {
        write!(f, "?{query}")?;
    }
    Ok(())
}

/// `?allowWatchBookmarks=true&...&watch=true`, the parameters in the order client-go sorts them.
fn write_watch_query(
    f: &mut fmt::Formatter<'_>,
    request: &Request,
    name: Option<Name>,
) -> fmt::Result {
    f.write_str("?allowWatchBookmarks=true")?;
    if let Some(name) = name {
        write!(f, "&fieldSelector=metadata.name%3D{name}")?;
    }
    if !request.query.is_empty() {
        write!(f, "&{}", request.query)?;
    }
    let timeout = request.watch_timeout;
    write!(
        f,
        "&resourceVersion={}&timeout={}m{}s&timeoutSeconds={timeout}&watch=true",
        request.watch_from,
        timeout / 60,
        timeout % 60
    )
}
