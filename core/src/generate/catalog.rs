//! The simulated cluster: its API resources, nodes, applications and people.
//!
//! Everything is a constant table, so the cluster is the same for every seed;
//! the seed only changes the traffic.

use std::net::Ipv4Addr;

/// The Kubernetes release the control plane and the kubelets run.
macro_rules! kube_agent {
    ($component:literal) => {
        concat!($component, "/v1.31.2 (linux/amd64) kubernetes/5864a46")
    };
}

/// The User-Agent of a Go client that did not set one (built with client-go defaults).
macro_rules! default_agent {
    ($binary:literal, $version:literal) => {
        concat!($binary, "/", $version, " (linux/amd64) kubernetes/$Format")
    };
}

/// The kubelet's User-Agent.
pub(super) const KUBELET_AGENT: &str = kube_agent!("kubelet");
/// kube-proxy's User-Agent.
pub(super) const KUBE_PROXY_AGENT: &str = kube_agent!("kube-proxy");
/// kube-controller-manager's User-Agent, before the `/<client name>` suffix.
pub(super) const CONTROLLER_MANAGER_AGENT: &str = kube_agent!("kube-controller-manager");
/// kube-scheduler's User-Agent, before the `/<client name>` suffix.
pub(super) const SCHEDULER_AGENT: &str = kube_agent!("kube-scheduler");
/// The kubelet's liveness and readiness probes of the apiserver.
pub(super) const PROBE_AGENT: &str = "kube-probe/1.31";

/// The number of worker nodes, named `node-1` to `node-N`.
pub(super) const NODE_COUNT: u8 = 8;
/// The address kube-controller-manager, kube-scheduler and the probes connect from.
pub(super) const CONTROL_PLANE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
/// The load balancer in front of the apiserver, last in the `sourceIPs` of people.
pub(super) const LOAD_BALANCER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

/// The address of node `node` (1-based).
pub(super) fn node_ip(node: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, 10 + node)
}

/// The address of a pod on node `node`, `host` picking it in the node's pod range.
pub(super) fn pod_ip(node: u8, host: u64) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node, 2 + (host % 250) as u8)
}

/// How the objects of a resource are named.
#[derive(Debug, Clone, Copy)]
pub(super) enum Naming {
    /// `<app>-<replicaset hash>-<suffix>`.
    Pod,
    /// `<app>-<replicaset hash>`.
    ReplicaSet,
    /// The application's name.
    App,
    /// The application's name and a suffix (`web-config`).
    AppSuffix(&'static str),
    /// The application's service account.
    ServiceAccount,
    /// `<app>-<suffix>`, as the EndpointSlice controller names slices.
    EndpointSlice,
    /// `<pod>.<hex>`, as the event recorder names events.
    Event,
    /// A node: `node-N`.
    Node,
    /// The application's namespace.
    Namespace,
    /// One of a list of names.
    OneOf(&'static [&'static str]),
    /// `pvc-<uuid>`, as dynamic provisioning names volumes.
    Volume,
}

/// The kinds of objects whose bodies the generator can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// A Pod.
    Pod,
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
    /// A Deployment.
    Deployment,
    /// A Lease.
    Lease,
}

/// An API resource.
#[derive(Debug)]
pub(super) struct Resource {
    /// The plural, lower-case resource name (`pods`).
    pub(super) name: &'static str,
    /// The kind of its objects (`Pod`).
    pub(super) kind: &'static str,
    /// The API group, empty for the core group.
    pub(super) group: &'static str,
    /// The API version.
    pub(super) version: &'static str,
    /// Whether its objects live in namespaces.
    pub(super) namespaced: bool,
    /// How its objects are named.
    pub(super) naming: Naming,
    /// The body written for it at the Request and RequestResponse levels, if any.
    pub(super) body: Option<BodyKind>,
}

impl Resource {
    const fn new(
        name: &'static str,
        kind: &'static str,
        group: &'static str,
        version: &'static str,
    ) -> Resource {
        Resource {
            name,
            kind,
            group,
            version,
            namespaced: true,
            naming: Naming::App,
            body: None,
        }
    }

    const fn cluster_scoped(self) -> Resource {
        Resource {
            namespaced: false,
            ..self
        }
    }

    const fn named(self, naming: Naming) -> Resource {
        Resource { naming, ..self }
    }

    const fn with_body(self, body: BodyKind) -> Resource {
        Resource {
            body: Some(body),
            ..self
        }
    }
}

const CORE: &str = "";
const APPS_GROUP: &str = "apps";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";

/// Pods.
pub(super) const PODS: Resource = Resource::new("pods", "Pod", CORE, "v1")
    .named(Naming::Pod)
    .with_body(BodyKind::Pod);
/// ConfigMaps.
pub(super) const CONFIGMAPS: Resource = Resource::new("configmaps", "ConfigMap", CORE, "v1")
    .named(Naming::AppSuffix("-config"))
    .with_body(BodyKind::ConfigMap);
/// Secrets.
pub(super) const SECRETS: Resource = Resource::new("secrets", "Secret", CORE, "v1")
    .named(Naming::AppSuffix("-credentials"))
    .with_body(BodyKind::Secret);
/// Services.
pub(super) const SERVICES: Resource = Resource::new("services", "Service", CORE, "v1");
/// ServiceAccounts.
pub(super) const SERVICE_ACCOUNTS: Resource =
    Resource::new("serviceaccounts", "ServiceAccount", CORE, "v1").named(Naming::ServiceAccount);
/// Core events.
pub(super) const EVENTS: Resource =
    Resource::new("events", "Event", CORE, "v1").named(Naming::Event);
/// Nodes.
pub(super) const NODES: Resource = Resource::new("nodes", "Node", CORE, "v1")
    .cluster_scoped()
    .named(Naming::Node);
/// Namespaces.
pub(super) const NAMESPACES: Resource = Resource::new("namespaces", "Namespace", CORE, "v1")
    .cluster_scoped()
    .named(Naming::Namespace);
/// PersistentVolumes.
pub(super) const PERSISTENT_VOLUMES: Resource =
    Resource::new("persistentvolumes", "PersistentVolume", CORE, "v1")
        .cluster_scoped()
        .named(Naming::Volume);
/// Deployments.
pub(super) const DEPLOYMENTS: Resource =
    Resource::new("deployments", "Deployment", APPS_GROUP, "v1").with_body(BodyKind::Deployment);
/// ReplicaSets.
pub(super) const REPLICASETS: Resource =
    Resource::new("replicasets", "ReplicaSet", APPS_GROUP, "v1").named(Naming::ReplicaSet);
/// Leases (leader election, node heartbeats).
pub(super) const LEASES: Resource = Resource::new("leases", "Lease", COORDINATION, "v1")
    .named(Naming::AppSuffix("-leader"))
    .with_body(BodyKind::Lease);
/// EndpointSlices.
pub(super) const ENDPOINT_SLICES: Resource =
    Resource::new("endpointslices", "EndpointSlice", DISCOVERY, "v1").named(Naming::EndpointSlice);
/// ClusterRoles.
pub(super) const CLUSTER_ROLES: Resource = Resource::new("clusterroles", "ClusterRole", RBAC, "v1")
    .cluster_scoped()
    .named(Naming::OneOf(CLUSTER_ROLE_NAMES));
/// ClusterRoleBindings.
pub(super) const CLUSTER_ROLE_BINDINGS: Resource =
    Resource::new("clusterrolebindings", "ClusterRoleBinding", RBAC, "v1")
        .cluster_scoped()
        .named(Naming::OneOf(CLUSTER_ROLE_BINDING_NAMES));

const CLUSTER_ROLE_NAMES: &[&str] = &[
    "admin",
    "edit",
    "view",
    "cluster-admin",
    "system:aggregate-to-edit",
    "system:controller:deployment-controller",
    "prometheus-k8s",
];

const CLUSTER_ROLE_BINDING_NAMES: &[&str] = &[
    "cluster-admin",
    "sre-admins",
    "dev-view",
    "system:kube-controller-manager",
    "system:node-proxier",
    "argocd-application-controller",
];

/// What an application does with the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AppRole {
    /// Reads its own configuration and secrets now and then.
    Service,
    /// A service that also elects a leader through a Lease.
    LeaderElected,
    /// CoreDNS: watches services, endpoint slices and namespaces everywhere.
    Dns,
    /// metrics-server: watches nodes and pods.
    Metrics,
    /// Prometheus: discovers scrape targets and scrapes the apiserver.
    Prometheus,
    /// Argo CD: watches everything and applies manifests.
    GitOps,
    /// cert-manager: keeps certificate secrets up to date.
    Certificates,
    /// A sidecar that watches labelled ConfigMaps (Grafana dashboards).
    ConfigWatcher,
}

/// An application running in the cluster, with the identity it calls the API with.
#[derive(Debug)]
pub(super) struct App {
    /// The Deployment name, also the `app` label and the container's purpose.
    pub(super) name: &'static str,
    /// Its namespace.
    pub(super) namespace: &'static str,
    /// Its container image.
    pub(super) image: &'static str,
    /// The port its container listens on.
    pub(super) port: u16,
    /// Its replica count.
    pub(super) replicas: u8,
    /// Its CPU request.
    pub(super) cpu: &'static str,
    /// Its memory request and limit.
    pub(super) memory: &'static str,
    /// The service account its pods run as.
    pub(super) service_account: &'static str,
    /// The User-Agent of its API client.
    pub(super) agent: &'static str,
    /// What it does with the API.
    pub(super) role: AppRole,
    /// The ClusterRole it is bound to cluster-wide; `None`: a Role of its own namespace.
    pub(super) cluster_role: Option<&'static str>,
    /// Its share of the API traffic of applications.
    pub(super) weight: u32,
}

const GO_CLIENT: &str = "Go-http-client/2.0";

/// A plain service: a few reads of its own configuration.
const fn service(
    name: &'static str,
    namespace: &'static str,
    image: &'static str,
    port: u16,
    replicas: u8,
) -> App {
    App {
        name,
        namespace,
        image,
        port,
        replicas,
        cpu: "250m",
        memory: "256Mi",
        service_account: name,
        agent: GO_CLIENT,
        role: AppRole::Service,
        cluster_role: None,
        weight: 2,
    }
}

impl App {
    const fn role(self, role: AppRole, weight: u32) -> App {
        App {
            role,
            weight,
            ..self
        }
    }

    const fn client(self, service_account: &'static str, agent: &'static str) -> App {
        App {
            service_account,
            agent,
            ..self
        }
    }

    const fn cluster_role(self, role: &'static str) -> App {
        App {
            cluster_role: Some(role),
            ..self
        }
    }

    const fn resources(self, cpu: &'static str, memory: &'static str) -> App {
        App {
            cpu,
            memory,
            ..self
        }
    }
}

/// The applications of the cluster (a `static`, so each has one address).
pub(super) static APPS: &[App] = &[
    service(
        "web",
        "production",
        "registry.example.com/shop/web:3.14.2",
        8080,
        3,
    )
    .role(AppRole::Service, 4),
    service(
        "api",
        "production",
        "registry.example.com/shop/api:2.8.0",
        8443,
        4,
    )
    .resources("500m", "512Mi")
    .role(AppRole::Service, 4),
    service(
        "checkout",
        "production",
        "registry.example.com/shop/checkout:1.9.4",
        8080,
        2,
    )
    .client("checkout", "fabric8-kubernetes-client/6.13.1")
    .resources("1", "1Gi")
    .role(AppRole::LeaderElected, 5),
    service(
        "web",
        "staging",
        "registry.example.com/shop/web:3.15.0-rc.1",
        8080,
        1,
    ),
    service(
        "api",
        "staging",
        "registry.example.com/shop/api:2.9.0-rc.2",
        8443,
        1,
    ),
    service("worker", "team-a", "ghcr.io/example/worker:1.4.0", 9000, 2)
        .client("worker", default_agent!("worker", "v1.4.0"))
        .role(AppRole::LeaderElected, 5),
    service(
        "frontend",
        "team-b",
        "ghcr.io/example/frontend:0.22.1",
        3000,
        2,
    )
    .client("default", GO_CLIENT),
    service("nginx", "default", "docker.io/library/nginx:1.27.2", 80, 1)
        .client("default", GO_CLIENT),
    service(
        "coredns",
        "kube-system",
        "registry.k8s.io/coredns/coredns:v1.11.3",
        53,
        2,
    )
    .client("coredns", default_agent!("coredns", "v0.0.0"))
    .cluster_role("system:coredns")
    .resources("100m", "70Mi")
    .role(AppRole::Dns, 6),
    service(
        "metrics-server",
        "kube-system",
        "registry.k8s.io/metrics-server/metrics-server:v0.7.2",
        10250,
        1,
    )
    .client("metrics-server", default_agent!("metrics-server", "v0.7.2"))
    .cluster_role("system:metrics-server")
    .resources("100m", "200Mi")
    .role(AppRole::Metrics, 3),
    service(
        "prometheus",
        "monitoring",
        "quay.io/prometheus/prometheus:v2.54.1",
        9090,
        2,
    )
    .client("prometheus-k8s", "Prometheus/2.54.1")
    .cluster_role("prometheus-k8s")
    .resources("500m", "2Gi")
    .role(AppRole::Prometheus, 8),
    service(
        "grafana",
        "monitoring",
        "docker.io/grafana/grafana:11.3.0",
        3000,
        1,
    )
    .client("grafana", "OpenAPI-Generator/31.0.0/python")
    .role(AppRole::ConfigWatcher, 2),
    service(
        "argocd-application-controller",
        "argocd",
        "quay.io/argoproj/argocd:v2.13.1",
        8082,
        1,
    )
    .client(
        "argocd-application-controller",
        default_agent!("argocd-application-controller", "v2.13.1"),
    )
    .cluster_role("argocd-application-controller")
    .resources("250m", "1Gi")
    .role(AppRole::GitOps, 8),
    service(
        "cert-manager",
        "cert-manager",
        "quay.io/jetstack/cert-manager-controller:v1.16.1",
        9402,
        1,
    )
    .client(
        "cert-manager",
        "cert-manager-controller/v1.16.1 (linux/amd64) cert-manager/4b8d2f9c",
    )
    .cluster_role("cert-manager-controller-certificates")
    .role(AppRole::Certificates, 4),
];

/// A person using the cluster.
#[derive(Debug)]
pub(super) struct Person {
    /// The user name the OIDC provider gives.
    pub(super) username: &'static str,
    /// The user's groups, `system:authenticated` last.
    pub(super) groups: &'static [&'static str],
    /// The client they use.
    pub(super) agent: &'static str,
    /// Where they connect from.
    pub(super) ip: Ipv4Addr,
    /// The namespace their team edits; `None`: an SRE with cluster-admin.
    pub(super) team: Option<&'static str>,
}

/// The people using the cluster.
pub(super) const PEOPLE: &[Person] = &[
    Person {
        username: "alice@example.com",
        groups: &["sre", "system:authenticated"],
        agent: "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46",
        ip: Ipv4Addr::new(203, 0, 113, 24),
        team: None,
    },
    Person {
        username: "bob@example.com",
        groups: &["dev", "team-a", "system:authenticated"],
        agent: "kubectl/v1.30.5 (linux/amd64) kubernetes/74e84a9",
        ip: Ipv4Addr::new(203, 0, 113, 77),
        team: Some("team-a"),
    },
    Person {
        username: "carol@example.com",
        groups: &["dev", "team-b", "system:authenticated"],
        agent: "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46",
        ip: Ipv4Addr::new(203, 0, 113, 181),
        team: Some("team-b"),
    },
    Person {
        username: "dave@example.com",
        groups: &["dev", "shop", "system:authenticated"],
        agent: "kubectl/v1.31.1 (windows/amd64) kubernetes/948afe5",
        ip: Ipv4Addr::new(203, 0, 113, 9),
        team: Some("staging"),
    },
    Person {
        username: "erin@example.com",
        groups: &["sre", "oncall", "system:authenticated"],
        agent: "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
        ip: Ipv4Addr::new(203, 0, 113, 150),
        team: None,
    },
];

/// Clients probing the apiserver without credentials (scanners, misconfigured tools).
pub(super) const ANONYMOUS_AGENTS: &[&str] = &[
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "Mozilla/5.0 zgrab/0.x",
];

/// Where scanners connect from (a documentation network).
pub(super) const SCANNER_NETWORK: [u8; 3] = [198, 51, 100];

/// Clients whose credentials the apiserver rejects (expired tokens, old kubeconfigs).
pub(super) const REJECTED_AGENTS: &[&str] = &[
    "kubectl/v1.29.1 (linux/amd64) kubernetes/bc401b9",
    "helm/v3.16.2 (linux/amd64)",
    GO_CLIENT,
];

/// Where clients with rejected credentials connect from (a documentation network).
pub(super) const REJECTED_NETWORK: [u8; 3] = [192, 0, 2];

/// The data of every ConfigMap body (a newline and quotes make escaping matter).
pub(super) const CONFIG_DATA: &[(&str, &str)] = &[
    ("LOG_LEVEL", "info"),
    (
        "application.yaml",
        "server:\n  port: 8080\n  shutdown: graceful\nmanagement:\n  endpoints:\n    web:\n      exposure:\n        include: \"health,prometheus\"\n",
    ),
];
