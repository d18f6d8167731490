//! Who talks to the apiserver, how often, and what they ask for.
//!
//! Each kind of client has a weighted table of [`Action`]s modelled on what the
//! real component does: kubelets renew their node lease and watch the config of
//! their pods, kube-proxy and CoreDNS watch services and endpoint slices
//! everywhere, controllers update status, people list pods and apply
//! deployments, probes hit `/livez` and `/readyz`.

use std::net::Ipv4Addr;

use rand::Rng;

use super::catalog::{
    App, AppRole, Resource, ANONYMOUS_AGENTS, APPS, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS,
    CONFIGMAPS, CONTROL_PLANE_IP, DEPLOYMENTS, ENDPOINT_SLICES, EVENTS, LEASES, NAMESPACES, NODES,
    PEOPLE, PERSISTENT_VOLUMES, PODS, PROBE_AGENT, REJECTED_AGENTS, REJECTED_NETWORK, REPLICASETS,
    SCANNER_NETWORK, SECRETS, SERVICES, SERVICE_ACCOUNTS,
};
use super::identity::{Component, Identity, CONTROLLER_MANAGER, SCHEDULER};
use super::names::Place;
use Verb::{Create, Delete, Get, List, Patch, Update, Watch};

/// A Kubernetes API verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    /// Read one object (or a non-resource URL).
    Get,
    /// Read a collection.
    List,
    /// Stream the changes of a collection.
    Watch,
    /// Create an object.
    Create,
    /// Replace an object.
    Update,
    /// Patch an object.
    Patch,
    /// Delete an object.
    Delete,
}

impl Verb {
    /// The verb as audit events write it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    /// Whether the verb only reads.
    pub(super) fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }

    /// Whether the request carries an object (or a patch) in its body.
    pub(super) fn sends_object(self) -> bool {
        matches!(self, Verb::Create | Verb::Update | Verb::Patch)
    }
}

/// Which namespace a request addresses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope {
    /// The namespace of the application the request is about.
    App,
    /// All namespaces (a namespaced resource listed cluster-wide).
    Everywhere,
    /// A fixed namespace.
    In(&'static str),
}

/// How the object of a request is named.
#[derive(Debug, Clone, Copy)]
pub(super) enum NameRule {
    /// The way its resource names objects of the application.
    Derived,
    /// A fixed name.
    Fixed(&'static str),
    /// The name of the request's node.
    Node,
}

/// What a request is about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// A non-resource URL (`/healthz`).
    Path(&'static str),
    /// A collection.
    Collection {
        /// Its resource.
        resource: &'static Resource,
        /// Where (ignored for cluster-scoped resources).
        scope: Scope,
    },
    /// One object, or one of its subresources.
    Object {
        /// Its resource.
        resource: &'static Resource,
        /// The subresource (`status`, `log`).
        subresource: Option<&'static str>,
        /// Where (ignored for cluster-scoped resources).
        scope: Scope,
        /// How it is named.
        name: NameRule,
    },
}

impl Target {
    /// The same object's subresource.
    const fn sub(self, subresource: &'static str) -> Target {
        match self {
            Target::Object {
                resource,
                scope,
                name,
                ..
            } => Target::Object {
                resource,
                subresource: Some(subresource),
                scope,
                name,
            },
            other => other,
        }
    }
}

/// One kind of request a client makes, with its relative frequency.
#[derive(Debug, Clone, Copy)]
pub(super) struct Action {
    /// Its weight among the client's actions.
    pub(super) weight: u32,
    /// The verb.
    pub(super) verb: Verb,
    /// What it is about.
    pub(super) target: Target,
    /// Query parameters, `&`-separated without the `?`; for a watch, the ones
    /// between `allowWatchBookmarks` and `resourceVersion`.
    pub(super) query: &'static str,
}

impl Action {
    const fn query(self, query: &'static str) -> Action {
        Action { query, ..self }
    }
}

const fn act(weight: u32, verb: Verb, target: Target) -> Action {
    Action {
        weight,
        verb,
        target,
        query: "",
    }
}

const fn path(path: &'static str) -> Target {
    Target::Path(path)
}

/// The collection in the application's namespace (or the cluster-scoped collection).
const fn all(resource: &'static Resource) -> Target {
    Target::Collection {
        resource,
        scope: Scope::App,
    }
}

/// The collection in a fixed namespace.
const fn all_in(resource: &'static Resource, namespace: &'static str) -> Target {
    Target::Collection {
        resource,
        scope: Scope::In(namespace),
    }
}

/// The collection across all namespaces.
const fn everywhere(resource: &'static Resource) -> Target {
    Target::Collection {
        resource,
        scope: Scope::Everywhere,
    }
}

/// The application's object of that resource.
const fn one(resource: &'static Resource) -> Target {
    object(resource, Scope::App, NameRule::Derived)
}

/// A fixed name in the application's namespace.
const fn named(resource: &'static Resource, name: &'static str) -> Target {
    object(resource, Scope::App, NameRule::Fixed(name))
}

/// A fixed object.
const fn fixed(resource: &'static Resource, namespace: &'static str, name: &'static str) -> Target {
    object(resource, Scope::In(namespace), NameRule::Fixed(name))
}

/// The object named after the request's node (its Node, its Lease).
const fn own_node(resource: &'static Resource, namespace: &'static str) -> Target {
    object(resource, Scope::In(namespace), NameRule::Node)
}

const fn object(resource: &'static Resource, scope: Scope, name: NameRule) -> Target {
    Target::Object {
        resource,
        subresource: None,
        scope,
        name,
    }
}

/// What an informer's initial list asks for.
const INFORMER_LIST: &str = "limit=500&resourceVersion=0";
/// What kubectl's lists ask for.
const KUBECTL_LIST: &str = "limit=500";
/// What kubectl's discovery requests ask for.
const KUBECTL_DISCOVERY: &str = "timeout=32s";
/// The services kube-proxy does not handle.
macro_rules! proxy_selector {
    () => {
        "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name"
    };
}
/// kubectl's query of a write, with its field manager.
macro_rules! kubectl_write {
    ($manager:literal) => {
        concat!("fieldManager=", $manager, "&fieldValidation=Strict")
    };
}
const NODE_LEASES: &str = "kube-node-lease";

const KUBELET: &[Action] = &[
    act(6, Update, own_node(&LEASES, NODE_LEASES)).query("timeout=10s"),
    act(2, Get, own_node(&LEASES, NODE_LEASES)).query("timeout=10s"),
    act(12, Get, own_node(&NODES, "")).query("resourceVersion=0&timeout=10s"),
    act(3, Patch, own_node(&NODES, "").sub("status")),
    act(4, Watch, own_node(&NODES, "")),
    act(10, Watch, named(&CONFIGMAPS, "kube-root-ca.crt")),
    act(6, Watch, one(&CONFIGMAPS)),
    act(6, Watch, one(&SECRETS)),
    act(14, Get, one(&PODS)),
    act(4, Patch, one(&PODS).sub("status")),
    act(4, Create, one(&SERVICE_ACCOUNTS).sub("token")),
    act(3, Create, one(&EVENTS)),
    act(6, Get, one(&CONFIGMAPS)),
    act(4, Get, one(&SECRETS)),
];

const KUBE_PROXY: &[Action] = &[
    act(35, Watch, everywhere(&SERVICES)).query(proxy_selector!()),
    act(35, Watch, everywhere(&ENDPOINT_SLICES)).query(proxy_selector!()),
    act(10, List, everywhere(&SERVICES))
        .query(concat!(proxy_selector!(), "&limit=500&resourceVersion=0")),
    act(10, List, everywhere(&ENDPOINT_SLICES))
        .query(concat!(proxy_selector!(), "&limit=500&resourceVersion=0")),
    act(10, Get, own_node(&NODES, "")),
];

/// A kube-controller-manager controller using its own service account.
struct Controller {
    name: &'static str,
    weight: u32,
    actions: &'static [Action],
}

const CONTROLLERS: &[Controller] = &[
    Controller {
        name: "replicaset-controller",
        weight: 4,
        actions: &[
            act(4, Update, one(&REPLICASETS).sub("status")),
            act(2, Create, one(&PODS)),
            act(1, Delete, one(&PODS)),
            act(2, Create, one(&EVENTS)),
            act(3, Get, one(&REPLICASETS)),
        ],
    },
    Controller {
        name: "deployment-controller",
        weight: 3,
        actions: &[
            act(4, Update, one(&DEPLOYMENTS).sub("status")),
            act(2, Update, one(&REPLICASETS)),
            act(1, Create, one(&EVENTS)),
            act(3, Get, one(&DEPLOYMENTS)),
        ],
    },
    Controller {
        name: "endpointslice-controller",
        weight: 4,
        actions: &[
            act(6, Update, one(&ENDPOINT_SLICES)),
            act(1, Create, one(&ENDPOINT_SLICES)),
            act(3, Get, one(&SERVICES)),
        ],
    },
    Controller {
        name: "horizontal-pod-autoscaler",
        weight: 3,
        actions: &[
            act(6, Get, one(&DEPLOYMENTS).sub("scale")),
            act(1, Update, one(&DEPLOYMENTS).sub("scale")),
        ],
    },
    Controller {
        name: "namespace-controller",
        weight: 2,
        actions: &[
            act(3, Get, path("/api")),
            act(3, Get, path("/apis")),
            act(1, List, all(&NAMESPACES)).query(INFORMER_LIST),
        ],
    },
    Controller {
        name: "generic-garbage-collector",
        weight: 2,
        actions: &[
            act(2, Get, path("/apis")),
            act(1, Get, path("/api")),
            act(1, List, everywhere(&REPLICASETS)).query(INFORMER_LIST),
            act(1, Watch, all(&CLUSTER_ROLE_BINDINGS)),
        ],
    },
    Controller {
        name: "root-ca-cert-publisher",
        weight: 1,
        actions: &[
            act(3, Get, named(&CONFIGMAPS, "kube-root-ca.crt")),
            act(1, Update, named(&CONFIGMAPS, "kube-root-ca.crt")),
        ],
    },
    Controller {
        name: "node-controller",
        weight: 2,
        actions: &[
            act(3, Get, own_node(&NODES, "")),
            act(1, Patch, own_node(&NODES, "")),
            act(1, List, everywhere(&PODS)).query(INFORMER_LIST),
        ],
    },
    Controller {
        name: "persistent-volume-binder",
        weight: 1,
        actions: &[
            act(3, Get, one(&PERSISTENT_VOLUMES)),
            act(1, Update, one(&PERSISTENT_VOLUMES)),
            act(1, List, all(&PERSISTENT_VOLUMES)).query(INFORMER_LIST),
        ],
    },
    Controller {
        name: "clusterrole-aggregation-controller",
        weight: 1,
        actions: &[
            act(3, Get, one(&CLUSTER_ROLES)),
            act(1, Update, one(&CLUSTER_ROLES)),
        ],
    },
];

/// Renewing a leader-election lease: read it, then write it back.
macro_rules! leader_election {
    ($namespace:literal, $lease:literal) => {
        &[
            act(1, Get, fixed(&LEASES, $namespace, $lease)).query("timeout=5s"),
            act(1, Update, fixed(&LEASES, $namespace, $lease)).query("timeout=5s"),
        ]
    };
}

const CONTROLLER_MANAGER_LEADER: &[Action] =
    leader_election!("kube-system", "kube-controller-manager");

const CONTROLLER_MANAGER_INFORMERS: &[Action] = &[
    act(6, Watch, everywhere(&PODS)),
    act(4, Watch, everywhere(&REPLICASETS)),
    act(3, Watch, everywhere(&DEPLOYMENTS)),
    act(3, Watch, everywhere(&ENDPOINT_SLICES)),
    act(3, Watch, everywhere(&SERVICES)),
    act(3, Watch, all(&NODES)),
    act(2, Watch, all(&NAMESPACES)),
    act(2, Watch, everywhere(&SECRETS)),
    act(2, Watch, everywhere(&CONFIGMAPS)),
    act(2, Watch, all(&PERSISTENT_VOLUMES)),
    act(1, Watch, all(&CLUSTER_ROLES)),
    act(1, Watch, everywhere(&LEASES)),
    act(1, List, everywhere(&PODS)).query(INFORMER_LIST),
    act(1, List, all(&NODES)).query(INFORMER_LIST),
];

const SCHEDULER_LEADER: &[Action] = leader_election!("kube-system", "kube-scheduler");

const SCHEDULER_WORK: &[Action] = &[
    act(2, Create, one(&PODS).sub("binding")),
    act(6, Watch, everywhere(&PODS))
        .query("fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"),
    act(3, Watch, all(&NODES)),
    act(1, List, all(&NODES)).query(INFORMER_LIST),
    act(2, Watch, all(&PERSISTENT_VOLUMES)),
];

const SERVICE: &[Action] = &[
    act(40, Get, one(&CONFIGMAPS)),
    act(25, Get, one(&SECRETS)),
    act(10, Watch, one(&CONFIGMAPS)),
    act(10, List, all(&PODS)).query(KUBECTL_LIST),
    act(5, Get, one(&SERVICES)),
    act(3, Create, one(&EVENTS)),
];

const LEADER_ELECTED: &[Action] = &[
    act(30, Get, one(&LEASES)),
    act(22, Update, one(&LEASES)),
    act(15, Get, one(&CONFIGMAPS)),
    act(10, Get, one(&SECRETS)),
    act(8, Watch, all(&PODS)),
    act(3, Create, one(&EVENTS)),
];

const DNS: &[Action] = &[
    act(30, Watch, everywhere(&SERVICES)),
    act(30, Watch, everywhere(&ENDPOINT_SLICES)),
    act(10, Watch, all(&NAMESPACES)),
    act(10, List, everywhere(&SERVICES)).query(INFORMER_LIST),
    act(10, List, everywhere(&ENDPOINT_SLICES)).query(INFORMER_LIST),
    act(5, List, all(&NAMESPACES)).query(INFORMER_LIST),
];

const METRICS: &[Action] = &[
    act(20, List, all(&NODES)).query(INFORMER_LIST),
    act(20, Watch, all(&NODES)),
    act(20, Watch, everywhere(&PODS)),
    act(5, List, everywhere(&PODS)).query(INFORMER_LIST),
];

const PROMETHEUS: &[Action] = &[
    act(35, Get, path("/metrics")),
    act(5, List, everywhere(&PODS)).query(INFORMER_LIST),
    act(15, Watch, everywhere(&PODS)),
    act(10, Watch, everywhere(&SERVICES)),
    act(15, Watch, everywhere(&ENDPOINT_SLICES)),
    act(5, Watch, all(&NODES)),
    act(3, List, all(&NODES)).query(INFORMER_LIST),
];

/// Argo CD applies with server-side apply, forcing conflicts.
const ARGOCD_APPLY: &str = "fieldManager=argocd-controller&force=true";

const GITOPS: &[Action] = &[
    act(10, Watch, everywhere(&DEPLOYMENTS)),
    act(8, Watch, everywhere(&CONFIGMAPS)),
    act(5, Watch, everywhere(&SECRETS)),
    act(5, Watch, everywhere(&SERVICES)),
    act(4, List, everywhere(&DEPLOYMENTS)).query(INFORMER_LIST),
    act(10, Get, one(&DEPLOYMENTS)),
    act(6, Patch, one(&DEPLOYMENTS)).query(ARGOCD_APPLY),
    act(3, Patch, one(&CONFIGMAPS)).query(ARGOCD_APPLY),
    act(1, Create, one(&CONFIGMAPS)).query("fieldManager=argocd-controller"),
    act(3, Get, path("/version")),
    act(2, Get, path("/apis")),
    act(2, List, all(&NAMESPACES)).query(INFORMER_LIST),
];

const CERTIFICATES: &[Action] = &[
    act(25, Get, one(&SECRETS)),
    act(6, Update, one(&SECRETS)),
    act(1, Create, one(&SECRETS)),
    act(10, Watch, everywhere(&SECRETS)),
    act(
        20,
        Get,
        fixed(&LEASES, "kube-system", "cert-manager-controller"),
    )
    .query("timeout=5s"),
    act(
        18,
        Update,
        fixed(&LEASES, "kube-system", "cert-manager-controller"),
    )
    .query("timeout=5s"),
    act(4, Create, one(&EVENTS)),
];

const DASHBOARD_SELECTOR: &str = "labelSelector=grafana_dashboard%3D1";

const CONFIG_WATCHER: &[Action] = &[
    act(50, Watch, all(&CONFIGMAPS)).query(DASHBOARD_SELECTOR),
    act(20, List, all(&CONFIGMAPS)).query(DASHBOARD_SELECTOR),
    act(10, Get, one(&CONFIGMAPS)),
];

const PERSON: &[Action] = &[
    act(20, List, all(&PODS)).query(KUBECTL_LIST),
    act(8, Get, one(&PODS)),
    act(5, Get, one(&PODS).sub("log")).query("container=app&follow=true&tailLines=100"),
    act(2, Create, one(&PODS).sub("exec"))
        .query("command=%2Fbin%2Fsh&container=app&stdin=true&stdout=true&tty=true"),
    act(6, Get, one(&DEPLOYMENTS)),
    act(4, List, all(&DEPLOYMENTS)).query(KUBECTL_LIST),
    act(4, List, all(&EVENTS)).query(KUBECTL_LIST),
    act(4, Get, one(&CONFIGMAPS)),
    act(3, Get, one(&SECRETS)),
    act(3, List, all(&SERVICES)).query(KUBECTL_LIST),
    act(3, List, all(&NODES)).query(KUBECTL_LIST),
    act(2, List, all(&NAMESPACES)).query(KUBECTL_LIST),
    act(3, Watch, all(&PODS)),
    act(4, Get, path("/api")).query(KUBECTL_DISCOVERY),
    act(4, Get, path("/apis")).query(KUBECTL_DISCOVERY),
    act(2, Get, path("/version")).query(KUBECTL_DISCOVERY),
    act(4, Patch, one(&DEPLOYMENTS)).query(kubectl_write!("kubectl-client-side-apply")),
    act(1, Patch, one(&DEPLOYMENTS).sub("scale")),
    act(1, Create, one(&DEPLOYMENTS)).query(kubectl_write!("kubectl-create")),
    act(2, Create, one(&CONFIGMAPS)).query(kubectl_write!("kubectl-create")),
    act(1, Patch, one(&CONFIGMAPS)).query(kubectl_write!("kubectl-client-side-apply")),
    act(1, Update, one(&CONFIGMAPS)).query(kubectl_write!("kubectl-edit")),
    act(1, Create, one(&SECRETS)).query(kubectl_write!("kubectl-create")),
    act(2, Delete, one(&PODS)),
    act(1, Create, one(&PODS)).query(kubectl_write!("kubectl-run")),
];

const PROBES: &[Action] = &[
    act(40, Get, path("/livez")),
    act(40, Get, path("/readyz")),
    act(20, Get, path("/healthz")),
];

const SCANNER: &[Action] = &[
    act(30, Get, path("/")),
    act(20, Get, path("/version")),
    act(10, Get, path("/.env")),
    act(20, List, everywhere(&SECRETS)),
    act(10, List, everywhere(&PODS)),
    act(10, List, all_in(&SECRETS, "kube-system")),
];

const REJECTED: &[Action] = &[
    act(5, List, all(&PODS)).query(KUBECTL_LIST),
    act(3, Get, path("/api")).query(KUBECTL_DISCOVERY),
    act(2, Get, one(&DEPLOYMENTS)),
];

/// The actions of an application, by what it does.
fn app_actions(role: AppRole) -> &'static [Action] {
    match role {
        AppRole::Service => SERVICE,
        AppRole::LeaderElected => LEADER_ELECTED,
        AppRole::Dns => DNS,
        AppRole::Metrics => METRICS,
        AppRole::Prometheus => PROMETHEUS,
        AppRole::GitOps => GITOPS,
        AppRole::Certificates => CERTIFICATES,
        AppRole::ConfigWatcher => CONFIG_WATCHER,
    }
}

/// The kinds of clients, by how many requests they send.
#[derive(Clone, Copy)]
enum Population {
    Kubelets,
    KubeProxies,
    Controllers,
    Component(&'static Component, &'static str, &'static [Action]),
    Workloads,
    People,
    Probes,
    Anonymous,
    Rejected,
}

const POPULATIONS: &[(u32, Population)] = &[
    (240, Population::Kubelets),
    (50, Population::KubeProxies),
    (70, Population::Controllers),
    (
        8,
        Population::Component(
            &CONTROLLER_MANAGER,
            "leader-election",
            CONTROLLER_MANAGER_LEADER,
        ),
    ),
    (
        60,
        Population::Component(
            &CONTROLLER_MANAGER,
            "shared-informers",
            CONTROLLER_MANAGER_INFORMERS,
        ),
    ),
    (
        6,
        Population::Component(&SCHEDULER, "leader-election", SCHEDULER_LEADER),
    ),
    (
        30,
        Population::Component(&SCHEDULER, "scheduler", SCHEDULER_WORK),
    ),
    (240, Population::Workloads),
    (80, Population::People),
    (60, Population::Probes),
    (15, Population::Anonymous),
    (10, Population::Rejected),
];

/// A client about to send a request, and the objects it is about.
pub(super) struct Actor {
    /// Who sends it.
    pub(super) identity: Identity,
    /// What it may ask for.
    pub(super) actions: &'static [Action],
    /// The application (and its pod and node) the request is about.
    pub(super) place: Place,
}

impl Actor {
    /// Draws the sender of the next request.
    pub(super) fn pick(rng: &mut impl Rng) -> Actor {
        let population = pick(rng, POPULATIONS, |(weight, _)| *weight).1;
        let app = &APPS[uniform(rng, APPS.len())];
        let place = random_place(rng, app);
        match population {
            Population::Kubelets => {
                Actor::new(Identity::Kubelet { node: place.node }, KUBELET, place)
            }
            Population::KubeProxies => {
                Actor::new(Identity::KubeProxy { node: place.node }, KUBE_PROXY, place)
            }
            Population::Controllers => {
                let controller = pick(rng, CONTROLLERS, |controller| controller.weight);
                let identity = Identity::Controller(controller.name);
                Actor::new(identity, controller.actions, place)
            }
            Population::Component(component, client, actions) => {
                Actor::new(Identity::Component { component, client }, actions, place)
            }
            Population::Workloads => Actor::workload(rng, place),
            Population::People => Actor::person(rng, place),
            Population::Probes => {
                let identity = Identity::Anonymous {
                    agent: PROBE_AGENT,
                    ip: CONTROL_PLANE_IP,
                };
                Actor::new(identity, PROBES, place)
            }
            Population::Anonymous => {
                let (agent, ip) = stranger(rng, ANONYMOUS_AGENTS, SCANNER_NETWORK);
                Actor::new(Identity::Anonymous { agent, ip }, SCANNER, place)
            }
            Population::Rejected => {
                let (agent, ip) = stranger(rng, REJECTED_AGENTS, REJECTED_NETWORK);
                Actor::new(Identity::Rejected { agent, ip }, REJECTED, place)
            }
        }
    }

    fn new(identity: Identity, actions: &'static [Action], place: Place) -> Actor {
        Actor {
            identity,
            actions,
            place,
        }
    }

    /// An application's pod, asking about its own objects or (operators) another application's.
    fn workload(rng: &mut impl Rng, other: Place) -> Actor {
        let app = pick(rng, APPS, |app| app.weight);
        let own = random_place(rng, app);
        let place = match app.role {
            AppRole::GitOps | AppRole::Certificates => other,
            _ => own,
        };
        Actor::new(Identity::Workload(own), app_actions(app.role), place)
    }

    /// A person, mostly working in their team's namespace if they have one.
    fn person(rng: &mut impl Rng, anywhere: Place) -> Actor {
        let person = &PEOPLE[uniform(rng, PEOPLE.len())];
        let place = match person.team {
            Some(team) if rng.gen_bool(TEAM_FOCUS) => team_place(rng, team).unwrap_or(anywhere),
            _ => anywhere,
        };
        Actor::new(Identity::Person(person), PERSON, place)
    }

    /// Draws one of the actor's actions.
    pub(super) fn action(&self, rng: &mut impl Rng) -> Action {
        *pick(rng, self.actions, |action| action.weight)
    }
}

/// How often a developer's request is about their team's namespace.
const TEAM_FOCUS: f64 = 0.8;

/// A client from outside: one of `agents`, from an address of a /24 network.
fn stranger(
    rng: &mut impl Rng,
    agents: &[&'static str],
    network: [u8; 3],
) -> (&'static str, Ipv4Addr) {
    let agent = agents[uniform(rng, agents.len())];
    let [a, b, c] = network;
    (agent, Ipv4Addr::new(a, b, c, rng.gen_range(1..255)))
}

/// A random pod of one of the applications of a namespace.
fn team_place(rng: &mut impl Rng, namespace: &str) -> Option<Place> {
    let in_namespace = || APPS.iter().filter(move |app| app.namespace == namespace);
    let count = in_namespace().count();
    if count == 0 {
        return None;
    }
    let app = in_namespace().nth(uniform(rng, count))?;
    Some(random_place(rng, app))
}

/// A random pod of an application.
fn random_place(rng: &mut impl Rng, app: &'static App) -> Place {
    Place::of(app, rng.gen_range(0..app.replicas.max(1)))
}

/// A uniform index below `len` (drawn as `u32`, so the stream is the same on every platform).
pub(super) fn uniform(rng: &mut impl Rng, len: usize) -> usize {
    rng.gen_range(0..len as u32) as usize
}

/// Draws one item, each as likely as its weight.
pub(super) fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = items.iter().map(&weight).sum();
    let mut draw = rng.gen_range(0..total);
    for item in items {
        let w = weight(item);
        if draw < w {
            return item;
        }
        draw -= w;
    }
    &items[items.len() - 1]
}
