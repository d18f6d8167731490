//! Who sends a request: the user, groups, client and address an audit event
//! records, and the RBAC binding that lets them.

use std::fmt;
use std::net::Ipv4Addr;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::catalog::{
    node_ip, App, AppRole, Person, CONTROLLER_MANAGER_AGENT, CONTROL_PLANE_IP, KUBELET_AGENT,
    KUBE_PROXY_AGENT, LOAD_BALANCER_IP, SCHEDULER_AGENT,
};
use super::names::Place;
use super::text::{AsString, Uuid};

/// A control-plane component that authenticates with a client certificate.
#[derive(Debug)]
pub(super) struct Component {
    /// The user name in its certificate (also its ClusterRole and binding).
    pub(super) username: &'static str,
    /// Its User-Agent, before the `/<client name>` suffix.
    pub(super) agent: &'static str,
}

/// kube-controller-manager's own identity (informers and leader election).
pub(super) const CONTROLLER_MANAGER: Component = Component {
    username: "system:kube-controller-manager",
    agent: CONTROLLER_MANAGER_AGENT,
};

/// kube-scheduler.
pub(super) const SCHEDULER: Component = Component {
    username: "system:kube-scheduler",
    agent: SCHEDULER_AGENT,
};

/// The sender of a request.
#[derive(Debug, Clone, Copy)]
pub(super) enum Identity {
    /// The kubelet of a node.
    Kubelet {
        /// The node (1-based).
        node: u8,
    },
    /// kube-proxy on a node (service account `kube-system:kube-proxy`).
    KubeProxy {
        /// The node (1-based).
        node: u8,
    },
    /// A kube-controller-manager controller with its own service account credentials.
    Controller(&'static str),
    /// A control-plane component, `client` naming its client in the User-Agent.
    Component {
        /// The component.
        component: &'static Component,
        /// The client (`leader-election`, `shared-informers`).
        client: &'static str,
    },
    /// An application's service account, from one of its pods.
    Workload(Place),
    /// A person.
    Person(&'static Person),
    /// A client without credentials (`system:anonymous`).
    Anonymous {
        /// Its User-Agent.
        agent: &'static str,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// A client whose credentials were rejected (the event has an empty user).
    Rejected {
        /// Its User-Agent.
        agent: &'static str,
        /// Its address.
        ip: Ipv4Addr,
    },
}

/// The audit policy's view of a sender: which rule its requests fall under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Control-plane components, kubelets and cluster add-ons: noisy, metadata only.
    System,
    /// Applications: request bodies of their writes.
    Workload,
    /// Operators that change other applications' objects: request and response bodies.
    Operator,
    /// People: request and response bodies, and the RequestReceived stage.
    Person,
    /// Unauthenticated clients.
    Anonymous,
}

const KUBE_SYSTEM: &str = "kube-system";

impl Identity {
    /// The policy class of the sender.
    pub(super) fn class(&self) -> Class {
        match self {
            Identity::Workload(place) => match place.app.role {
                AppRole::GitOps | AppRole::Certificates => Class::Operator,
                AppRole::Dns | AppRole::Metrics => Class::System,
                _ => Class::Workload,
            },
            Identity::Person(_) => Class::Person,
            Identity::Anonymous { .. } | Identity::Rejected { .. } => Class::Anonymous,
            _ => Class::System,
        }
    }

    /// The namespace and name of the sender's service account, if it uses one.
    fn service_account(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Identity::KubeProxy { .. } => Some((KUBE_SYSTEM, "kube-proxy")),
            Identity::Controller(name) => Some((KUBE_SYSTEM, name)),
            Identity::Workload(place) => Some((place.app.namespace, place.app.service_account)),
            _ => None,
        }
    }

    /// The user name.
    pub(super) fn username(&self) -> Username {
        Username(*self)
    }

    /// The User-Agent.
    pub(super) fn agent(&self) -> Agent {
        Agent(*self)
    }

    /// The `sourceIPs`: the client first, then the proxies it came through.
    pub(super) fn source_ips(&self) -> SourceIps {
        let (client, proxy) = match self {
            Identity::Kubelet { node } | Identity::KubeProxy { node } => (node_ip(*node), None),
            Identity::Controller(_) | Identity::Component { .. } => (CONTROL_PLANE_IP, None),
            Identity::Workload(place) => (place.pod_ip(), None),
            Identity::Person(person) => (person.ip, Some(LOAD_BALANCER_IP)),
            Identity::Anonymous { ip, .. } | Identity::Rejected { ip, .. } => (*ip, None),
        };
        SourceIps { client, proxy }
    }

    /// The field manager its writes record in `managedFields`.
    pub(super) fn field_manager(&self) -> &'static str {
        match self {
            Identity::Kubelet { .. } => "kubelet",
            Identity::KubeProxy { .. } => "kube-proxy",
            Identity::Controller(_) => "kube-controller-manager",
            Identity::Component { component, .. } => {
                component.username.trim_start_matches("system:")
            }
            Identity::Workload(place) => place.app.name,
            Identity::Person(_) => "kubectl",
            Identity::Anonymous { .. } | Identity::Rejected { .. } => "unknown",
        }
    }

    /// The RBAC binding that allows the sender's requests (its usual one).
    pub(super) fn grant(&self) -> Grant {
        match *self {
            Identity::Kubelet { .. } => Grant::Node,
            Identity::KubeProxy { .. } => Grant::ClusterRoleBinding {
                binding: "kubeadm:node-proxier",
                role: "system:node-proxier",
                subject: self.subject(),
            },
            Identity::Controller(name) => Grant::Controller(name),
            Identity::Component { component, .. } => Grant::ClusterRoleBinding {
                binding: component.username,
                role: component.username,
                subject: self.subject(),
            },
            Identity::Workload(place) => app_grant(place.app, self.subject()),
            Identity::Person(_) => Grant::ClusterRoleBinding {
                binding: "sre-admins",
                role: "cluster-admin",
                subject: Subject::Group("sre"),
            },
            Identity::Anonymous { .. } | Identity::Rejected { .. } => PUBLIC_INFO,
        }
    }

    /// The RBAC subject of the sender.
    fn subject(&self) -> Subject {
        match (self, self.service_account()) {
            (_, Some((namespace, name))) => Subject::ServiceAccount { namespace, name },
            (Identity::Component { component, .. }, None) => Subject::User(component.username),
            _ => Subject::Group("system:authenticated"),
        }
    }
}

fn app_grant(app: &'static App, subject: Subject) -> Grant {
    match app.cluster_role {
        Some(role) => Grant::ClusterRoleBinding {
            binding: role,
            role,
            subject,
        },
        None => Grant::RoleBinding {
            binding: app.name,
            namespace: app.namespace,
            role: Role::Namespaced(app.name),
            subject,
        },
    }
}

/// Writes the user name of an identity.
pub(super) struct Username(Identity);

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((namespace, name)) = self.0.service_account() {
            return write!(f, "system:serviceaccount:{namespace}:{name}");
        }
        match self.0 {
            Identity::Kubelet { node } => write!(f, "system:node:node-{node}"),
            Identity::Component { component, .. } => f.write_str(component.username),
            Identity::Person(person) => f.write_str(person.username),
            Identity::Anonymous { .. } => f.write_str("system:anonymous"),
            _ => Ok(()),
        }
    }
}

/// Writes the User-Agent of an identity.
pub(super) struct Agent(Identity);

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Identity::Kubelet { .. } => f.write_str(KUBELET_AGENT),
            Identity::KubeProxy { .. } => f.write_str(KUBE_PROXY_AGENT),
            Identity::Controller(_) => write!(f, "{CONTROLLER_MANAGER_AGENT}/{}", Username(self.0)),
            Identity::Component { component, client } => write!(f, "{}/{client}", component.agent),
            Identity::Workload(place) => f.write_str(place.app.agent),
            Identity::Person(person) => f.write_str(person.agent),
            Identity::Anonymous { agent, .. } | Identity::Rejected { agent, .. } => {
                f.write_str(agent)
            }
        }
    }
}

/// The `sourceIPs` of a request.
pub(super) struct SourceIps {
    client: Ipv4Addr,
    proxy: Option<Ipv4Addr>,
}

impl Serialize for SourceIps {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.proxy {
            Some(proxy) => [self.client, proxy].serialize(serializer),
            None => [self.client].serialize(serializer),
        }
    }
}

/// The `user` (or `impersonatedUser`) object of an event.
pub(super) struct User {
    /// Who.
    pub(super) identity: Identity,
    /// Whether to write what the authenticator adds (uid, token extras); impersonated users have none.
    pub(super) authenticated: bool,
}

impl Serialize for User {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let identity = self.identity;
        let mut user = serializer.serialize_struct("UserInfo", 4)?;
        if let Identity::Rejected { .. } = identity {
            return user.end();
        }
        user.serialize_field("username", &AsString(identity.username()))?;
        if let (Some((namespace, name)), true) = (identity.service_account(), self.authenticated) {
            user.serialize_field("uid", &Uuid::stable(&[namespace, name], 0))?;
        }
        user.serialize_field("groups", &Groups(identity))?;
        if let (Identity::Workload(place), true) = (identity, self.authenticated) {
            user.serialize_field("extra", &TokenExtra(place))?;
        }
        user.end()
    }
}

/// The groups of an identity.
struct Groups(Identity);

impl Serialize for Groups {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const AUTHENTICATED: &str = "system:authenticated";
        if let Some((namespace, _)) = self.0.service_account() {
            return (
                "system:serviceaccounts",
                AsString(format_args!("system:serviceaccounts:{namespace}")),
                AUTHENTICATED,
            )
                .serialize(serializer);
        }
        match self.0 {
            Identity::Kubelet { .. } => ["system:nodes", AUTHENTICATED].serialize(serializer),
            Identity::Person(person) => person.groups.serialize(serializer),
            Identity::Anonymous { .. } => ["system:unauthenticated"].serialize(serializer),
            _ => [AUTHENTICATED].serialize(serializer),
        }
    }
}

/// What a bound service account token adds to the user: the pod and node it was issued for.
struct TokenExtra(Place);

impl Serialize for TokenExtra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let place = self.0;
        let pod = place.pod_name();
        let node = super::names::node_name(place.node);
        let pod_uid = Uuid::stable(&[place.app.namespace, pod.as_str()], 0);
        let token_id = Uuid::stable(&[place.app.namespace, pod.as_str()], 1);
        let mut extra = serializer.serialize_struct("Extra", 4)?;
        extra.serialize_field(
            "authentication.kubernetes.io/credential-id",
            &[AsString(format_args!("JTI={token_id}"))],
        )?;
        extra.serialize_field("authentication.kubernetes.io/node-name", &[node])?;
        extra.serialize_field("authentication.kubernetes.io/pod-name", &[pod])?;
        extra.serialize_field("authentication.kubernetes.io/pod-uid", &[pod_uid])?;
        extra.end()
    }
}

/// An RBAC subject.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject {
    /// A user.
    User(&'static str),
    /// A group.
    Group(&'static str),
    /// A service account.
    ServiceAccount {
        /// Its namespace.
        namespace: &'static str,
        /// Its name.
        name: &'static str,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(name) => write!(f, "User {name:?}"),
            Subject::Group(name) => write!(f, "Group {name:?}"),
            Subject::ServiceAccount { namespace, name } => {
                write!(f, "ServiceAccount \"{name}/{namespace}\"")
            }
        }
    }
}

/// The role a RoleBinding refers to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    /// A ClusterRole.
    Cluster(&'static str),
    /// A Role of the binding's namespace.
    Namespaced(&'static str),
}

/// Why the authorizer allowed a request (`authorization.k8s.io/reason`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Grant {
    /// The Node authorizer (kubelets); it gives no reason.
    Node,
    /// A ClusterRoleBinding.
    ClusterRoleBinding {
        /// The binding's name.
        binding: &'static str,
        /// The ClusterRole's name.
        role: &'static str,
        /// Who it binds.
        subject: Subject,
    },
    /// A RoleBinding.
    RoleBinding {
        /// The binding's name.
        binding: &'static str,
        /// The binding's namespace.
        namespace: &'static str,
        /// The role it refers to.
        role: Role,
        /// Who it binds.
        subject: Subject,
    },
    /// The bootstrap binding `system:controller:NAME` of a controller's service account.
    Controller(&'static str),
}

/// What lets everyone read the health and version endpoints.
pub(super) const PUBLIC_INFO: Grant = Grant::ClusterRoleBinding {
    binding: "system:public-info-viewer",
    role: "system:public-info-viewer",
    subject: Subject::Group("system:unauthenticated"),
};

/// What lets every authenticated user read the discovery endpoints.
pub(super) const DISCOVERY: Grant = Grant::ClusterRoleBinding {
    binding: "system:discovery",
    role: "system:discovery",
    subject: Subject::Group("system:authenticated"),
};

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Grant::Node => Ok(()),
            Grant::ClusterRoleBinding {
                binding,
                role,
                subject,
            } => write!(
                f,
                "RBAC: allowed by ClusterRoleBinding {binding:?} of ClusterRole {role:?} to {subject}"
            ),
            Grant::RoleBinding {
                binding,
                namespace,
                role,
                subject,
            } => {
                let (kind, role) = match role {
                    Role::Cluster(name) => ("ClusterRole", name),
                    Role::Namespaced(name) => ("Role", name),
                };
                write!(
                    f,
                    "RBAC: allowed by RoleBinding \"{binding}/{namespace}\" of {kind} {role:?} to {subject}"
                )
            }
            Grant::Controller(name) => write!(
                f,
                "RBAC: allowed by ClusterRoleBinding \"system:controller:{name}\" of ClusterRole \"system:controller:{name}\" to ServiceAccount \"{name}/{KUBE_SYSTEM}\""
            ),
        }
    }
}
