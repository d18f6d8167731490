//! Security incidents injected into generated traffic (`generate --incidents`).
//!
//! Six incidents happen at fixed times of the UTC day the traffic starts in,
//! as the audit events the kube-apiserver writes for them, with the bodies
//! detection rules read (Falco's upstream `k8s_audit` rules fire on them):
//!
//! | time (UTC) | incident | events |
//! | --- | --- | --- |
//! | 02:47:13 | `dave@example.com` execs a shell into the production pod `checkout-6f7c9d8b4-x7k2p` at night (Falco: "Attach/Exec Pod") | RequestReceived, ResponseStarted (101) of `create pods/exec` with `?command=...` |
//! | 04:10:00 | a burst of failed logins: 40 requests in 40 seconds rejected with 401 from `198.51.100.23` (`python-requests/2.32.3`, stolen token `deploy-bot`) | ResponseStarted (401), user empty as the apiserver writes it |
//! | 11:02:44 | the service account `system:serviceaccount:team-b:report-generator` reads the secret `production/db-credentials`, which it never read before | ResponseComplete of `get secrets` (200) |
//! | 14:31:09 | `erin@example.com` creates the privileged pod `node-debugger` in `default` (Falco: "Create Privileged Pod") | RequestReceived, ResponseComplete (201) with `securityContext.privileged: true` |
//! | 16:05:27 | `bob@example.com` binds the service account `ci/deployer` to `cluster-admin` (Falco: "Attach to cluster-admin Role") | RequestReceived, ResponseComplete (201) of `create clusterrolebindings` with `roleRef.name: cluster-admin` |
//! | 17:42:18 | `alice@example.com` deletes the ConfigMap `app-config` in `production` (Falco: "K8s ConfigMap Deleted") | RequestReceived, ResponseComplete (200) of `delete configmaps` |

use chrono::{DateTime, Duration, Utc};
use indexmap::IndexMap;
use serde_json::{json, Value};

use super::text::Uuid;

/// One audit event of an incident: when it happened and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentEvent {
    /// The event's `stageTimestamp`.
    pub time: DateTime<Utc>,
    /// The event as one line of JSON.
    pub text: String,
}

/// The UTC midnight starting the day `time` falls in.
pub fn day_start(time: DateTime<Utc>) -> DateTime<Utc> {
    time.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|midnight| midnight.and_utc())
        .unwrap_or(time)
}

/// The events of the six incidents of the day starting at `day` (UTC midnight), in time order.
pub fn incident_events(day: DateTime<Utc>, seed: u64) -> Vec<IncidentEvent> {
    let at = |h: i64, m: i64, s: i64| day + Duration::seconds(h * 3600 + m * 60 + s);
    let mut events = Vec::new();
    events.extend(night_exec(at(2, 47, 13), seed));
    events.extend(failed_logins(at(4, 10, 0), seed));
    events.extend(secret_read(at(11, 2, 44), seed));
    events.extend(privileged_pod(at(14, 31, 9), seed));
    events.extend(cluster_admin_binding(at(16, 5, 27), seed));
    events.extend(configmap_deleted(at(17, 42, 18), seed));
    events.sort_by_key(|event| event.time);
    events
}

/// A person's identity as the apiserver writes it.
struct Person {
    user: Value,
    ip: &'static str,
    agent: &'static str,
}

fn person(username: &str, groups: &[&str], ip: &'static str, agent: &'static str) -> Person {
    Person {
        user: json!({ "username": username, "groups": groups }),
        ip,
        agent,
    }
}

fn micros(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn seconds(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn audit_id(name: &str, index: usize, seed: u64) -> String {
    Uuid::stable(&["incident", name, &index.to_string()], seed).to_string()
}

/// The parts of a request shared by its events.
struct Request<'a> {
    id: String,
    level: &'static str,
    uri: String,
    verb: &'static str,
    who: &'a Person,
    object_ref: Value,
    received: DateTime<Utc>,
}

/// What an event of a request adds to its shared parts, by stage.
#[derive(Default)]
struct Outcome {
    status: Option<Value>,
    request_object: Option<Value>,
    response_object: Option<Value>,
    annotations: Option<Value>,
}

impl Request<'_> {
    /// One event of the request at `stage`, `elapsed_micros` after it was
    /// received, with its fields in the order the apiserver writes them.
    fn event(&self, stage: &str, elapsed_micros: i64, outcome: Outcome) -> IncidentEvent {
        let time = self.received + Duration::microseconds(elapsed_micros);
        let mut event: IndexMap<&str, Value> = IndexMap::new();
        event.insert("kind", "Event".into());
        event.insert("apiVersion", "audit.k8s.io/v1".into());
        event.insert("level", self.level.into());
        event.insert("auditID", self.id.clone().into());
        event.insert("stage", stage.into());
        event.insert("requestURI", self.uri.clone().into());
        event.insert("verb", self.verb.into());
        event.insert("user", self.who.user.clone());
        event.insert("sourceIPs", json!([self.who.ip, "10.0.0.5"]));
        event.insert("userAgent", self.who.agent.into());
        event.insert("objectRef", self.object_ref.clone());
        let optional = [
            ("responseStatus", outcome.status),
            ("requestObject", outcome.request_object),
            ("responseObject", outcome.response_object),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                event.insert(name, value);
            }
        }
        event.insert("requestReceivedTimestamp", micros(self.received).into());
        event.insert("stageTimestamp", micros(time).into());
        if let Some(annotations) = outcome.annotations {
            event.insert("annotations", annotations);
        }
        IncidentEvent {
            time,
            text: serde_json::to_string(&event).unwrap_or_default(),
        }
    }
}

fn allowed(reason: &str) -> Value {
    json!({
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": reason,
    })
}

fn night_exec(time: DateTime<Utc>, seed: u64) -> Vec<IncidentEvent> {
    let dave = person(
        "dave@example.com",
        &["dev", "shop", "system:authenticated"],
        "203.0.113.9",
        "kubectl/v1.31.1 (windows/amd64) kubernetes/948afe5",
    );
    let pod = "checkout-6f7c9d8b4-x7k2p";
    let request = Request {
        id: audit_id("exec", 0, seed),
        level: "Metadata",
        uri: format!(
            "/api/v1/namespaces/production/pods/{pod}/exec?command=%2Fbin%2Fsh&command=-c&command=cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=checkout&stdin=true&stdout=true&tty=true"
        ),
        verb: "create",
        who: &dave,
        object_ref: json!({"resource": "pods", "namespace": "production", "name": pod, "apiVersion": "v1", "subresource": "exec"}),
        received: time,
    };
    vec![
        request.event("RequestReceived", 0, Outcome::default()),
        request.event(
            "ResponseStarted",
            612,
            Outcome {
                status: Some(json!({"metadata": {}, "code": 101})),
                annotations: Some(allowed("RBAC: allowed by RoleBinding \"shop-exec/production\" of Role \"pod-exec\" to Group \"shop\"")),
                ..Outcome::default()
            },
        ),
    ]
}

fn failed_logins(time: DateTime<Utc>, seed: u64) -> Vec<IncidentEvent> {
    let unknown = Person {
        user: json!({}),
        ip: "198.51.100.23",
        agent: "python-requests/2.32.3",
    };
    (0..40)
        .map(|attempt| {
            let request = Request {
                id: audit_id("login", attempt, seed),
                level: "Metadata",
                uri: "/api/v1/namespaces/production/secrets".to_string(),
                verb: "list",
                who: &unknown,
                object_ref: json!({"resource": "secrets", "namespace": "production", "apiVersion": "v1"}),
                received: time + Duration::milliseconds(attempt as i64 * 1_000 + 137),
            };
            request.event(
                "ResponseStarted",
                240,
                Outcome {
                status: Some(json!({"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401})),
                ..Outcome::default()
            },
            )
        })
        .collect()
}

fn secret_read(time: DateTime<Utc>, seed: u64) -> Vec<IncidentEvent> {
    let account = Person {
        user: json!({
            "username": "system:serviceaccount:team-b:report-generator",
            "uid": Uuid::stable(&["team-b", "report-generator"], 0).to_string(),
            "groups": ["system:serviceaccounts", "system:serviceaccounts:team-b", "system:authenticated"],
        }),
        ip: "10.244.3.41",
        agent: "python-requests/2.32.3",
    };
    let request = Request {
        id: audit_id("secret", 0, seed),
        level: "Metadata",
        uri: "/api/v1/namespaces/production/secrets/db-credentials".to_string(),
        verb: "get",
        who: &account,
        object_ref: json!({"resource": "secrets", "namespace": "production", "name": "db-credentials", "apiVersion": "v1"}),
        received: time,
    };
    vec![request.event(
        "ResponseComplete",
        1_873,
        Outcome {
                status: Some(json!({"metadata": {}, "code": 200})),
                annotations: Some(allowed("RBAC: allowed by ClusterRoleBinding \"reporting-read-all\" of ClusterRole \"view-secrets\" to ServiceAccount \"report-generator/team-b\"")),
                ..Outcome::default()
            },
    )]
}

fn privileged_pod(time: DateTime<Utc>, seed: u64) -> Vec<IncidentEvent> {
    let erin = person(
        "erin@example.com",
        &["sre", "oncall", "system:authenticated"],
        "203.0.113.150",
        "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
    );
    let container = json!({
        "name": "node-debugger",
        "image": "docker.io/library/ubuntu:22.04",
        "command": ["sleep", "infinity"],
        "securityContext": {"privileged": true},
        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
    });
    let pod = json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "node-debugger", "namespace": "default", "labels": {"run": "node-debugger"}},
        "spec": {
            "containers": [container],
            "hostPID": true,
            "nodeName": "node-3",
            "volumes": [{"name": "host", "hostPath": {"path": "/", "type": ""}}],
            "restartPolicy": "Never",
        },
    });
    let mut created = pod.clone();
    if let Some(metadata) = created.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(
            "uid".into(),
            Uuid::stable(&["default", "node-debugger"], seed)
                .to_string()
                .into(),
        );
        metadata.insert("resourceVersion".into(), "48391022".into());
        metadata.insert("creationTimestamp".into(), seconds(time).into());
    }
    if let Some(fields) = created.as_object_mut() {
        fields.insert(
            "status".into(),
            json!({"phase": "Pending", "qosClass": "BestEffort"}),
        );
    }
    let request = Request {
        id: audit_id("privileged", 0, seed),
        level: "RequestResponse",
        uri: "/api/v1/namespaces/default/pods?fieldManager=kubectl-client-side-apply&fieldValidation=Strict".to_string(),
        verb: "create",
        who: &erin,
        object_ref: json!({"resource": "pods", "namespace": "default", "name": "node-debugger", "apiVersion": "v1"}),
        received: time,
    };
    vec![
        request.event("RequestReceived", 0, Outcome::default()),
        request.event(
            "ResponseComplete",
            9_412,
            Outcome {
                status: Some(json!({"metadata": {}, "code": 201})),
                request_object: Some(pod),
                response_object: Some(created),
                annotations: Some(allowed("RBAC: allowed by ClusterRoleBinding \"sre-admins\" of ClusterRole \"cluster-admin\" to Group \"sre\"")),
            },
        ),
    ]
}

fn cluster_admin_binding(time: DateTime<Utc>, seed: u64) -> Vec<IncidentEvent> {
    let bob = person(
        "bob@example.com",
        &["dev", "team-a", "system:authenticated"],
        "203.0.113.77",
        "kubectl/v1.30.5 (linux/amd64) kubernetes/74e84a9",
    );
    let binding = json!({
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "ci-deployer-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}],
    });
    let mut created = binding.clone();
    if let Some(metadata) = created.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(
            "uid".into(),
            Uuid::stable(&["ci-deployer-admin"], seed)
                .to_string()
                .into(),
        );
        metadata.insert("resourceVersion".into(), "48402177".into());
        metadata.insert("creationTimestamp".into(), seconds(time).into());
    }
    let request = Request {
        id: audit_id("binding", 0, seed),
        level: "RequestResponse",
        uri: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict".to_string(),
        verb: "create",
        who: &bob,
        object_ref: json!({"resource": "clusterrolebindings", "name": "ci-deployer-admin", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}),
        received: time,
    };
    vec![
        request.event("RequestReceived", 0, Outcome::default()),
        request.event(
            "ResponseComplete",
            6_205,
            Outcome {
                status: Some(json!({"metadata": {}, "code": 201})),
                request_object: Some(binding),
                response_object: Some(created),
                annotations: Some(allowed("RBAC: allowed by ClusterRoleBinding \"team-a-rbac-managers\" of ClusterRole \"rbac-manager\" to Group \"team-a\"")),
            },
        ),
    ]
}

fn configmap_deleted(time: DateTime<Utc>, seed: u64) -> Vec<IncidentEvent> {
    let alice = person(
        "alice@example.com",
        &["sre", "system:authenticated"],
        "203.0.113.24",
        "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46",
    );
    let request = Request {
        id: audit_id("configmap", 0, seed),
        level: "RequestResponse",
        uri: "/api/v1/namespaces/production/configmaps/app-config".to_string(),
        verb: "delete",
        who: &alice,
        object_ref: json!({"resource": "configmaps", "namespace": "production", "name": "app-config", "apiVersion": "v1"}),
        received: time,
    };
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": "app-config", "kind": "configmaps", "uid": Uuid::stable(&["production", "app-config"], seed).to_string()},
    });
    vec![
        request.event(
            "RequestReceived",
            0,
            Outcome {
                request_object: Some(delete_options()),
                ..Outcome::default()
            },
        ),
        request.event(
            "ResponseComplete",
            4_781,
            Outcome {
                status: Some(json!({"metadata": {}, "code": 200})),
                request_object: Some(delete_options()),
                response_object: Some(status),
                annotations: Some(allowed("RBAC: allowed by ClusterRoleBinding \"sre-admins\" of ClusterRole \"cluster-admin\" to Group \"sre\"")),
            },
        ),
    ]
}

fn delete_options() -> Value {
    json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/__internal", "propagationPolicy": "Background"})
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::condition::Condition;
    use crate::event::{AuditEvent, Event, Payload};
    use crate::generate::{Generator, GeneratorOptions, OutputFormat};

    fn day() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap()
    }

    fn matching(condition: &str, events: &[IncidentEvent]) -> usize {
        let condition = Condition::compile(condition).unwrap();
        events
            .iter()
            .map(|e| AuditEvent::parse(&e.text).unwrap())
            .filter(|e| {
                condition.matches(&Event::new(Payload::Audit(Arc::new(e.clone())), "t".into()))
            })
            .count()
    }

    #[test]
    fn each_incident_has_the_fields_detection_reads() {
        let events = incident_events(day(), 1);
        assert_eq!(events.len(), 49);
        assert!(events.windows(2).all(|pair| pair[0].time <= pair[1].time));
        let exec = "ka.stage = ResponseStarted and ka.target.resource = pods and ka.target.subresource = exec and ka.verb = create and ka.target.namespace = production and ka.uri contains command=";
        assert_eq!(matching(exec, &events), 1);
        let privileged = "ka.stage = ResponseComplete and ka.verb = create and ka.target.resource = pods and jevt.value[/requestObject/spec/containers/0/securityContext/privileged] = true";
        assert_eq!(matching(privileged, &events), 1);
        let binding = "ka.stage = ResponseComplete and ka.verb = create and ka.target.resource = clusterrolebindings and jevt.value[/requestObject/roleRef/name] = cluster-admin";
        assert_eq!(matching(binding, &events), 1);
        let deleted = "ka.stage = ResponseComplete and ka.verb = delete and ka.target.name = app-config and ka.target.namespace = production and ka.response.code = 200 and ka.user.name = alice@example.com";
        assert_eq!(matching(deleted, &events), 1);
        let secret = "ka.verb = get and ka.target.resource = secrets and ka.user.name = system:serviceaccount:team-b:report-generator";
        assert_eq!(matching(secret, &events), 1);
        assert_eq!(
            matching(
                "ka.response.code = 401 and ka.sourceips = 198.51.100.23",
                &events
            ),
            40
        );
    }

    #[test]
    fn the_generator_injects_the_incidents_of_its_day() {
        let options = GeneratorOptions {
            seed: 3,
            start: day(),
            events_per_second: 0.5,
            incidents: true,
        };
        let mut out = Vec::new();
        Generator::new(options)
            .write_events(43_000, OutputFormat::Ndjson, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let incidents = incident_events(day(), 3);
        for event in &incidents {
            assert_eq!(text.matches(event.text.as_str()).count(), 1);
        }
        assert_eq!(text.lines().count(), 43_000);
    }
}
