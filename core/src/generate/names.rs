//! The names of the cluster's objects, derived from the application they belong to.
//!
//! Names are stable: the same pod, replica set or endpoint slice has the same
//! name in every event, as in a real cluster between two rollouts.

use std::net::Ipv4Addr;

use super::catalog::{pod_ip, App, Naming, APPS, NODE_COUNT};
use super::text::{mix, stable_hash, Name, Suffix, Uuid};

/// The objects a request is about: an application's replica on a node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place {
    /// The application.
    pub(super) app: &'static App,
    /// Which of its pods (0-based).
    pub(super) replica: u8,
    /// The node (1-based) the pod runs on, or the node a node-scoped request is about.
    pub(super) node: u8,
}

impl Place {
    /// The replica `replica` of `app`, on the node the scheduler put it on.
    pub(super) fn of(app: &'static App, replica: u8) -> Place {
        Place {
            app,
            replica,
            node: node_of(app, replica),
        }
    }

    /// The name of the object of a resource named the `naming` way; `noise` varies the free parts.
    pub(super) fn object_name(&self, naming: Naming, noise: u64) -> Name {
        let app = self.app.name;
        match naming {
            Naming::Pod => self.pod_name(),
            Naming::ReplicaSet => {
                let hash = replica_set_hash(self.app);
                Name::format(format_args!("{app}-{hash}"))
            }
            Naming::App => Name::format(format_args!("{app}")),
            Naming::AppSuffix(suffix) => Name::format(format_args!("{app}{suffix}")),
            Naming::ServiceAccount => Name::format(format_args!("{}", self.app.service_account)),
            Naming::EndpointSlice => {
                let suffix = Suffix {
                    bits: mix(app_hash(self.app) ^ 0xe5),
                    len: 5,
                };
                Name::format(format_args!("{app}-{suffix}"))
            }
            Naming::Event => Name::format(format_args!("{}.{noise:016x}", self.pod_name())),
            Naming::Node => node_name(self.node),
            Naming::Namespace => Name::format(format_args!("{}", self.app.namespace)),
            Naming::OneOf(names) => Name::format(format_args!(
                "{}",
                names[(noise % names.len() as u64) as usize]
            )),
            Naming::Volume => {
                let uid = Uuid::stable(&[self.app.namespace, app, "pvc"], 0);
                Name::format(format_args!("pvc-{uid}"))
            }
        }
    }

    /// The pod's address.
    pub(super) fn pod_ip(&self) -> Ipv4Addr {
        pod_ip(self.node, app_hash(self.app) ^ u64::from(self.replica))
    }

    /// `<app>-<replicaset hash>-<suffix>`.
    pub(super) fn pod_name(&self) -> Name {
        let hash = replica_set_hash(self.app);
        let suffix = Suffix {
            bits: mix(app_hash(self.app) ^ u64::from(self.replica + 1)),
            len: 5,
        };
        Name::format(format_args!("{}-{hash}-{suffix}", self.app.name))
    }
}

/// `node-N`.
pub(super) fn node_name(node: u8) -> Name {
    Name::format(format_args!("node-{node}"))
}

/// The node (1-based) a replica of an application runs on: the scheduler
/// spreads the pods of all applications, in order, over the nodes.
pub(super) fn node_of(app: &App, replica: u8) -> u8 {
    let earlier_pods: usize = APPS
        .iter()
        .take_while(|other| !std::ptr::eq(*other, app))
        .map(|other| usize::from(other.replicas))
        .sum();
    ((earlier_pods + usize::from(replica)) % usize::from(NODE_COUNT)) as u8 + 1
}

/// The `pod-template-hash` of an application's current ReplicaSet (10 characters).
pub(super) fn replica_set_hash(app: &App) -> Suffix {
    Suffix {
        bits: app_hash(app),
        len: 10,
    }
}

fn app_hash(app: &App) -> u64 {
    stable_hash(&[app.namespace, app.name], 0)
}
