//! `requestObject` and `responseObject` bodies: Pods, ConfigMaps, Secrets,
//! Deployments and Leases as the apiserver stores them, `managedFields` included.

use std::net::Ipv4Addr;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::actors::Verb;
use super::catalog::{BodyKind, CONFIG_DATA};
use super::clock::Timestamp;
use super::names::{replica_set_hash, Place};
use super::text::{base64, mix, AsString, InlineStr, Name, Suffix, Uuid};

/// The writable fields of each kind, as the field manager that owns them records them.
struct Template {
    kind: &'static str,
    api_version: &'static str,
    /// The `fieldsV1` of the writer's `managedFields` entry.
    fields: &'static str,
    /// The manager and `fieldsV1` of the `status` subresource, for kinds a controller reports on.
    status: Option<(&'static str, &'static str)>,
}

const POD: Template = Template {
    kind: "Pod",
    api_version: "v1",
    fields: r#"{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{}}}"#,
    status: Some((
        "kubelet",
        r#"{"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:startTime":{}}}"#,
    )),
};

const CONFIG_MAP: Template = Template {
    kind: "ConfigMap",
    api_version: "v1",
    fields: r#"{"f:data":{".":{},"f:LOG_LEVEL":{},"f:application.yaml":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#,
    status: None,
};

const SECRET: Template = Template {
    kind: "Secret",
    api_version: "v1",
    fields: r#"{"f:data":{".":{},"f:password":{},"f:username":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:type":{}}"#,
    status: None,
};

const DEPLOYMENT: Template = Template {
    kind: "Deployment",
    api_version: "apps/v1",
    fields: r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{}}}}}"#,
    status: Some((
        "kube-controller-manager",
        r#"{"f:metadata":{"f:annotations":{".":{},"f:deployment.kubernetes.io/revision":{}}},"f:status":{"f:availableReplicas":{},"f:conditions":{".":{},"k:{\"type\":\"Available\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}}"#,
    )),
};

const LEASE: Template = Template {
    kind: "Lease",
    api_version: "coordination.k8s.io/v1",
    fields: r#"{"f:spec":{"f:acquireTime":{},"f:holderIdentity":{},"f:leaseDurationSeconds":{},"f:leaseTransitions":{},"f:renewTime":{}}}"#,
    status: None,
};

fn template(kind: BodyKind) -> &'static Template {
    match kind {
        BodyKind::Pod => &POD,
        BodyKind::ConfigMap => &CONFIG_MAP,
        BodyKind::Secret => &SECRET,
        BodyKind::Deployment => &DEPLOYMENT,
        BodyKind::Lease => &LEASE,
    }
}

/// A constant JSON fragment, embedded as is.
fn raw(json: &'static str) -> &'static RawValue {
    serde_json::from_str(json).expect("the fieldsV1 templates are valid JSON")
}

/// What the bodies of one request are about.
pub(super) struct Facts<'a> {
    /// The kind of the object.
    pub(super) kind: BodyKind,
    /// The application, pod and node it belongs to.
    pub(super) place: Place,
    /// Its namespace.
    pub(super) namespace: &'a str,
    /// Its name.
    pub(super) name: &'a str,
    /// The field manager of the write.
    pub(super) manager: &'a str,
    /// `Update`, or `Apply` for server-side apply.
    pub(super) operation: &'static str,
    /// Whether the request creates the object.
    pub(super) created_now: bool,
    /// When the object was created, to the second and to the microsecond.
    pub(super) created: (Timestamp, Timestamp),
    /// Now, to the second and to the microsecond.
    pub(super) now: (Timestamp, Timestamp),
    /// The object's resource version after the write.
    pub(super) resource_version: u64,
    /// The object's resource version before the write.
    pub(super) previous_version: u64,
    /// Random bits (secret values).
    pub(super) noise: u64,
}

/// Which version of the object a body shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// As a client sends it for creation: no server-set fields.
    Client,
    /// As stored before the write (what an update sends back).
    Before,
    /// As stored after the write (the response).
    After,
}

/// A `requestObject` or `responseObject`.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Body<'a> {
    /// A whole object.
    Object(Box<Object<'a>>),
    /// A merge patch.
    Patch(Patch<'a>),
}

/// The body a client sends: the object to create, the object to replace, or a patch.
pub(super) fn request_body<'a>(facts: &'a Facts<'a>, verb: Verb) -> Body<'a> {
    match verb {
        Verb::Patch => Body::Patch(patch(facts)),
        Verb::Create => Body::Object(Box::new(object(facts, Form::Client))),
        _ => Body::Object(Box::new(object(facts, Form::Before))),
    }
}

/// The object the apiserver answers with after the write.
pub(super) fn response_body<'a>(facts: &'a Facts<'a>) -> Body<'a> {
    Body::Object(Box::new(object(facts, Form::After)))
}

/// A Kubernetes object.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Object<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<Spec<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    secret_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

fn object<'a>(facts: &'a Facts<'a>, form: Form) -> Object<'a> {
    let template = template(facts.kind);
    let mut object = Object {
        kind: template.kind,
        api_version: template.api_version,
        metadata: metadata(facts, template, form),
        spec: None,
        data: None,
        secret_type: None,
        status: None,
    };
    match facts.kind {
        BodyKind::Pod => {
            let scheduled = form != Form::Client && !facts.created_now;
            object.spec = Some(Spec::Pod(pod_spec(facts, scheduled)));
            object.status =
                (form != Form::Client).then(|| Status::Pod(pod_status(facts, scheduled)));
        }
        BodyKind::Deployment => {
            object.spec = Some(Spec::Deployment(deployment_spec(facts)));
            object.status =
                (form != Form::Client).then(|| Status::Deployment(deployment_status(facts)));
        }
        BodyKind::Lease => object.spec = Some(Spec::Lease(lease_spec(facts))),
        BodyKind::ConfigMap => object.data = Some(Data::Config(ConfigData)),
        BodyKind::Secret => {
            object.data = Some(Data::Secret(secret_data(facts)));
            object.secret_type = Some("Opaque");
        }
    }
    object
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    generate_name: Option<AsString<GenerateName>>,
    namespace: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<AsString<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    creation_timestamp: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Labels<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Revision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_references: Option<[OwnerReference; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_fields: Option<ManagedFields<'a>>,
}

fn metadata<'a>(facts: &'a Facts<'a>, template: &'static Template, form: Form) -> Metadata<'a> {
    let stored = form != Form::Client;
    let is = |kind| facts.kind == kind;
    // Pods that exist were made by their ReplicaSet; a person creating one makes a bare pod.
    let replica = is(BodyKind::Pod) && !facts.created_now;
    let created = if facts.created_now {
        facts.now.0
    } else {
        facts.created.0
    };
    let resource_version = match form {
        Form::Client => None,
        Form::Before => Some(facts.previous_version),
        Form::After => Some(facts.resource_version),
    };
    Metadata {
        name: facts.name,
        generate_name: replica.then_some(AsString(GenerateName(facts.place))),
        namespace: facts.namespace,
        uid: stored.then(|| Uuid::stable(&[facts.namespace, facts.name], 0)),
        resource_version: resource_version.map(AsString),
        generation: (stored && is(BodyKind::Deployment)).then(|| generation(facts)),
        creation_timestamp: stored.then_some(created),
        labels: (!is(BodyKind::Lease)).then(|| Labels {
            app: facts.place.app.name,
            pod_template_hash: is(BodyKind::Pod)
                .then(|| AsString(replica_set_hash(facts.place.app))),
        }),
        annotations: (stored && is(BodyKind::Deployment)).then(|| Revision {
            revision: AsString(generation(facts)),
        }),
        owner_references: replica.then(|| [owner_reference(facts)]),
        managed_fields: stored.then(|| managed_fields(facts, template, form, created)),
    }
}

/// The generation (and revision) of a deployment: stable per object.
fn generation(facts: &Facts<'_>) -> u64 {
    let uid = Uuid::stable(&[facts.namespace, facts.name], 2);
    1 + uid.low_bits() % 40
}

/// `<app>-<replicaset hash>-`.
struct GenerateName(Place);

impl std::fmt::Display for GenerateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-", self.0.app.name, replica_set_hash(self.0.app))
    }
}

#[derive(Serialize)]
struct Labels<'a> {
    app: &'a str,
    #[serde(rename = "pod-template-hash", skip_serializing_if = "Option::is_none")]
    pod_template_hash: Option<AsString<Suffix>>,
}

#[derive(Serialize)]
struct Revision {
    #[serde(rename = "deployment.kubernetes.io/revision")]
    revision: AsString<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OwnerReference {
    api_version: &'static str,
    kind: &'static str,
    name: Name,
    uid: Uuid,
    controller: bool,
    block_owner_deletion: bool,
}

fn owner_reference(facts: &Facts<'_>) -> OwnerReference {
    let app = facts.place.app;
    let name = Name::format(format_args!("{}-{}", app.name, replica_set_hash(app)));
    OwnerReference {
        api_version: "apps/v1",
        kind: "ReplicaSet",
        uid: Uuid::stable(&[facts.namespace, name.as_str()], 0),
        name,
        controller: true,
        block_owner_deletion: true,
    }
}

/// The `managedFields` of a stored object: the writer's entry, then the status owner's.
struct ManagedFields<'a> {
    writer: ManagedField<'a>,
    status: Option<ManagedField<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManagedField<'a> {
    manager: &'a str,
    operation: &'static str,
    api_version: &'static str,
    time: Timestamp,
    fields_type: &'static str,
    #[serde(rename = "fieldsV1")]
    fields_v1: &'static RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    subresource: Option<&'static str>,
}

impl Serialize for ManagedFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.status {
            Some(status) => (&self.writer, status).serialize(serializer),
            None => [&self.writer].serialize(serializer),
        }
    }
}

fn managed_fields<'a>(
    facts: &'a Facts<'a>,
    template: &'static Template,
    form: Form,
    created: Timestamp,
) -> ManagedFields<'a> {
    let written = if form == Form::After {
        facts.now.0
    } else {
        created
    };
    let entry = |manager, operation, time, fields, subresource| ManagedField {
        manager,
        operation,
        api_version: template.api_version,
        time,
        fields_type: "FieldsV1",
        fields_v1: raw(fields),
        subresource,
    };
    ManagedFields {
        writer: entry(
            facts.manager,
            facts.operation,
            written,
            template.fields,
            None,
        ),
        status: template
            .status
            .filter(|_| !facts.created_now)
            .map(|(manager, fields)| entry(manager, "Update", created, fields, Some("status"))),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Spec<'a> {
    Pod(PodSpec<'a>),
    Deployment(DeploymentSpec<'a>),
    Lease(LeaseSpec),
}

/// Serializes as `{}`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec<'a> {
    containers: [Container; 1],
    restart_policy: &'static str,
    termination_grace_period_seconds: u32,
    dns_policy: &'static str,
    service_account_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_name: Option<Name>,
    security_context: Empty,
    scheduler_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_service_links: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: &'static str,
    image: &'static str,
    ports: [ContainerPort; 1],
    resources: Resources,
    termination_message_path: &'static str,
    termination_message_policy: &'static str,
    image_pull_policy: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
    protocol: &'static str,
}

#[derive(Serialize)]
struct Resources {
    limits: Memory,
    requests: CpuMemory,
}

#[derive(Serialize)]
struct Memory {
    memory: &'static str,
}

#[derive(Serialize)]
struct CpuMemory {
    cpu: &'static str,
    memory: &'static str,
}

/// The pod spec of an application; a pod's own spec adds the fields the apiserver defaults.
fn pod_template_spec(place: Place, own_pod: bool) -> PodSpec<'static> {
    let app = place.app;
    PodSpec {
        containers: [Container {
            name: "app",
            image: app.image,
            ports: [ContainerPort {
                container_port: app.port,
                protocol: "TCP",
            }],
            resources: Resources {
                limits: Memory { memory: app.memory },
                requests: CpuMemory {
                    cpu: app.cpu,
                    memory: app.memory,
                },
            },
            termination_message_path: "/dev/termination-log",
            termination_message_policy: "File",
            image_pull_policy: "IfNotPresent",
        }],
        restart_policy: "Always",
        termination_grace_period_seconds: 30,
        dns_policy: "ClusterFirst",
        service_account_name: app.service_account,
        service_account: own_pod.then_some(app.service_account),
        node_name: None,
        security_context: Empty {},
        scheduler_name: "default-scheduler",
        priority: own_pod.then_some(0),
        enable_service_links: own_pod.then_some(true),
    }
}

fn pod_spec(facts: &Facts<'_>, scheduled: bool) -> PodSpec<'static> {
    PodSpec {
        node_name: scheduled.then(|| super::names::node_name(facts.place.node)),
        ..pod_template_spec(facts.place, true)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpec<'a> {
    replicas: u8,
    selector: Selector<'a>,
    template: PodTemplate<'a>,
    strategy: Strategy,
    revision_history_limit: u32,
    progress_deadline_seconds: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector<'a> {
    match_labels: Labels<'a>,
}

#[derive(Serialize)]
struct PodTemplate<'a> {
    metadata: TemplateMetadata<'a>,
    spec: PodSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TemplateMetadata<'a> {
    /// Always `null` in a template, as the apiserver writes it.
    creation_timestamp: (),
    labels: Labels<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Strategy {
    #[serde(rename = "type")]
    kind: &'static str,
    rolling_update: RollingUpdate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RollingUpdate {
    max_unavailable: &'static str,
    max_surge: &'static str,
}

fn deployment_spec(facts: &Facts<'_>) -> DeploymentSpec<'static> {
    let app = facts.place.app;
    let labels = || Labels {
        app: app.name,
        pod_template_hash: None,
    };
    DeploymentSpec {
        replicas: app.replicas,
        selector: Selector {
            match_labels: labels(),
        },
        template: PodTemplate {
            metadata: TemplateMetadata {
                creation_timestamp: (),
                labels: labels(),
            },
            spec: pod_template_spec(facts.place, false),
        },
        strategy: Strategy {
            kind: "RollingUpdate",
            rolling_update: RollingUpdate {
                max_unavailable: "25%",
                max_surge: "25%",
            },
        },
        revision_history_limit: 10,
        progress_deadline_seconds: 600,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaseSpec {
    holder_identity: Name,
    lease_duration_seconds: u32,
    acquire_time: Timestamp,
    renew_time: Timestamp,
    lease_transitions: u32,
}

fn lease_spec(facts: &Facts<'_>) -> LeaseSpec {
    let pod = facts.place.pod_name();
    let holder = Uuid::stable(&[facts.namespace, pod.as_str()], 3);
    LeaseSpec {
        holder_identity: Name::format(format_args!("{pod}_{holder}")),
        lease_duration_seconds: 15,
        acquire_time: facts.created.1,
        renew_time: facts.now.1,
        lease_transitions: (holder.low_bits() % 7) as u32,
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data {
    Config(ConfigData),
    Secret(SecretData),
}

/// The data of every ConfigMap.
struct ConfigData;

impl Serialize for ConfigData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(CONFIG_DATA.len()))?;
        for (key, value) in CONFIG_DATA {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct SecretData {
    password: InlineStr<32>,
    username: InlineStr<128>,
}

fn secret_data(facts: &Facts<'_>) -> SecretData {
    let mut secret = [0u8; 16];
    secret[..8].copy_from_slice(&facts.noise.to_le_bytes());
    secret[8..].copy_from_slice(&mix(facts.noise).to_le_bytes());
    SecretData {
        password: base64(&secret),
        username: base64(facts.place.app.name.as_bytes()),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Status {
    Pod(PodStatus),
    Deployment(DeploymentStatus),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    phase: &'static str,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    host_ip: Option<Ipv4Addr>,
    #[serde(rename = "podIP", skip_serializing_if = "Option::is_none")]
    pod_ip: Option<Ipv4Addr>,
    qos_class: &'static str,
}

fn pod_status(facts: &Facts<'_>, scheduled: bool) -> PodStatus {
    PodStatus {
        phase: if scheduled { "Running" } else { "Pending" },
        host_ip: scheduled.then(|| super::catalog::node_ip(facts.place.node)),
        pod_ip: scheduled.then(|| facts.place.pod_ip()),
        qos_class: "Burstable",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentStatus {
    observed_generation: u64,
    replicas: u8,
    updated_replicas: u8,
    ready_replicas: u8,
    available_replicas: u8,
}

/// A rolled-out deployment: every replica updated, ready and available.
fn deployment_status(facts: &Facts<'_>) -> DeploymentStatus {
    let replicas = facts.place.app.replicas;
    DeploymentStatus {
        observed_generation: generation(facts),
        replicas,
        updated_replicas: replicas,
        ready_replicas: replicas,
        available_replicas: replicas,
    }
}

/// A merge patch: relabel most objects, rescale deployments.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Patch<'a> {
    /// `{"metadata":{"labels":{"app":...}}}`.
    Labels {
        /// The patched metadata.
        metadata: PatchMetadata<'a>,
    },
    /// `{"spec":{"replicas":N}}`.
    Replicas {
        /// The patched spec.
        spec: PatchReplicas,
    },
}

/// The metadata part of a label patch.
#[derive(Serialize)]
pub(super) struct PatchMetadata<'a> {
    labels: Labels<'a>,
}

/// The spec part of a scaling patch.
#[derive(Serialize)]
pub(super) struct PatchReplicas {
    replicas: u8,
}

fn patch<'a>(facts: &'a Facts<'a>) -> Patch<'a> {
    let app = facts.place.app;
    match facts.kind {
        BodyKind::Deployment => Patch::Replicas {
            spec: PatchReplicas {
                replicas: app.replicas,
            },
        },
        _ => Patch::Labels {
            metadata: PatchMetadata {
                labels: Labels {
                    app: app.name,
                    pod_template_hash: None,
                },
            },
        },
    }
}
