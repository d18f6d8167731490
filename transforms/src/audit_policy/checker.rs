//! Which rule of a policy matches a request, exactly as the kube-apiserver decides it.
//!
//! This follows `k8s.io/apiserver/pkg/audit/policy/checker.go`: rules are tried
//! in order and the first that matches decides the level (no match: `None`,
//! with the policy's `omitStages`). A rule matches when every condition it
//! sets holds:
//!
//! - `users`: the user name is listed; `userGroups`: any of the user's groups is listed;
//! - `verbs`: the verb is listed;
//! - `namespaces` or `resources` set: the request is a resource request (the event
//!   has an `objectRef`), its namespace is listed (`""` for cluster-scoped), and
//!   a `resources` entry of its API group matches: no resources (every resource
//!   of the group), `*`, `resource`, `resource/subresource`, `*/subresource`, or
//!   `resource/*` (the resource and all its subresources), each only for the
//!   listed `resourceNames` when there are some;
//! - otherwise `nonResourceURLs` set: the request is a non-resource request and
//!   its path (the request URI without the query) is listed, or starts with a
//!   listed prefix ending in `*`, or `*` is listed.
//!
//! The user is the authenticated one (`user`), not the impersonated one: the
//! apiserver applies the policy before impersonation.

use std::borrow::Cow;

use auditflow_core::event::{AuditHeader, Level, ObjectReference, Stage, TextList};

use super::policy::{GroupResources, Policy, Rule};

/// What the policy checker looks at in a request, taken from an event's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes<'a> {
    /// The authenticated user's name.
    pub user: &'a str,
    /// The authenticated user's groups.
    pub groups: TextList<'a>,
    /// The verb.
    pub verb: &'a str,
    /// What the request is about.
    pub target: Target<'a>,
}

/// A resource request (the event has an `objectRef`) or a non-resource one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// A request about an API resource.
    Resource {
        /// The namespace; `""` for cluster-scoped resources.
        namespace: &'a str,
        /// The API group; `""` for the core group.
        group: &'a str,
        /// The resource (`pods`).
        resource: &'a str,
        /// The subresource (`exec`), or `""`.
        subresource: &'a str,
        /// The object name, or `""`.
        name: &'a str,
    },
    /// A request for a path such as `/healthz` or `/metrics`.
    NonResource {
        /// The URL path, without the query, percent-decoded.
        path: Cow<'a, str>,
    },
}

impl<'a> RequestAttributes<'a> {
    /// The attributes of the request an audit event records.
    pub fn of(header: AuditHeader<'a>) -> RequestAttributes<'a> {
        let target = match header.object_ref() {
            Some(object) => Target::Resource {
                namespace: object.namespace().unwrap_or(""),
                group: api_group(object),
                resource: object.resource().unwrap_or(""),
                subresource: object.subresource().unwrap_or(""),
                name: object.name().unwrap_or(""),
            },
            None => Target::NonResource {
                path: request_path(header.request_uri()),
            },
        };
        RequestAttributes {
            user: header.user().username(),
            groups: header.user().groups(),
            verb: header.verb(),
            target,
        }
    }

    /// How the request looks to a condition, for explanations.
    pub fn describe(&self, field: &str) -> String {
        match (field, &self.target) {
            ("users", _) => self.user.to_string(),
            ("userGroups", _) => format!("[{}]", self.groups.join(", ")),
            ("verbs", _) => self.verb.to_string(),
            ("namespaces" | "resources", Target::NonResource { path }) => {
                format!("not a resource request ({path})")
            }
            ("namespaces", Target::Resource { namespace, .. }) => format!("\"{namespace}\""),
            (
                _,
                Target::Resource {
                    group,
                    resource,
                    subresource,
                    name,
                    ..
                },
            ) if field == "resources" => {
                let combined = combined_resource(resource, subresource);
                format!("group \"{group}\", resource {combined}, name \"{name}\"")
            }
            ("nonResourceURLs", Target::Resource { .. }) => "a resource request".to_string(),
            ("nonResourceURLs", Target::NonResource { path }) => path.to_string(),
            _ => String::new(),
        }
    }
}

/// The API group of an `objectRef`; events of old apiservers wrote `group/version` in `apiVersion`.
pub(super) fn api_group<'a>(object: ObjectReference<'a>) -> &'a str {
    if let Some(group) = object.api_group() {
        return group;
    }
    let version = object.api_version().unwrap_or("");
    // A version is a few bytes: a plain scan finds the slash faster than a call to `memrchr`.
    match version.bytes().rposition(|byte| byte == b'/') {
        Some(slash) => version.get(..slash).unwrap_or(""),
        None => "",
    }
}

/// The path of a request URI: without query and fragment, percent-decoded (Go's `URL.Path`).
pub(super) fn request_path(uri: &str) -> Cow<'_, str> {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(value) => {
                decoded.push(value);
                index += 3;
            }
            None => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

fn combined_resource(resource: &str, subresource: &str) -> String {
    if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    }
}

/// What a policy decides for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    /// The level of the first matching rule, `None` when no rule matches.
    pub level: Level,
    /// The index of the matching rule.
    pub rule: Option<usize>,
    /// The stages not logged (the rule's joined with the policy's).
    pub omit_stages: &'p [Stage],
    /// Whether `metadata.managedFields` is removed from the bodies.
    pub omit_managed_fields: bool,
}

impl Decision<'_> {
    /// Whether events of this stage are not logged.
    pub fn omits(&self, stage: &Stage) -> bool {
        self.omit_stages.contains(stage)
    }
}

/// A rule that did not match, and which of its conditions failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMismatch {
    /// The rule's index.
    pub rule: usize,
    /// The fields of the conditions that failed (`users`, `verbs`, `resources`, ...).
    pub failed: Vec<&'static str>,
}

impl Policy {
    /// The level and options of the first rule matching the request.
    ///
    /// Only the rules that can match the request's verb and kind of request are
    /// tried (see [`RuleIndex`](super::index::RuleIndex)), in policy order.
    pub fn decide(&self, request: &RequestAttributes<'_>) -> Decision<'_> {
        let candidates = self.index().candidates(request.verb);
        let indexes = match request.target {
            Target::Resource { .. } => &candidates.resource,
            Target::NonResource { .. } => &candidates.non_resource,
        };
        let rules = self.rules();
        let matching = indexes.iter().find_map(|&index| {
            rules
                .get(index)
                .filter(|rule| rule.matches_but_verbs(request))
                .map(|rule| (index, rule))
        });
        match matching {
            Some((index, rule)) => self.decision(index, rule),
            None => self.no_match(),
        }
    }

    /// What the policy decides for the request an event records: [`Policy::decide`]
    /// by the rules' sets (see [`RuleSets`](super::rule_sets::RuleSets)), reading
    /// only the header fields some rule looks at.
    pub fn decide_event(&self, header: AuditHeader<'_>) -> Decision<'_> {
        match self.sets() {
            Some(sets) => self.decision_of(sets.first_match(header)),
            None => self.decide(&RequestAttributes::of(header)),
        }
    }

    /// [`Policy::decide`] trying every rule in order, as upstream does.
    #[cfg(test)]
    pub(crate) fn decide_in_order(&self, request: &RequestAttributes<'_>) -> Decision<'_> {
        let rules = self.rules().iter().enumerate();
        match rules.into_iter().find(|(_, rule)| rule.matches(request)) {
            Some((index, rule)) => self.decision(index, rule),
            None => self.no_match(),
        }
    }

    /// The decision of the rule at `index` (`None`: of no rule matching).
    fn decision_of(&self, index: Option<usize>) -> Decision<'_> {
        match index.and_then(|index| Some((index, self.rules().get(index)?))) {
            Some((index, rule)) => self.decision(index, rule),
            None => self.no_match(),
        }
    }

    fn decision<'p>(&'p self, index: usize, rule: &'p Rule) -> Decision<'p> {
        Decision {
            level: rule.level,
            rule: Some(index),
            omit_stages: &rule.omit_stages,
            omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
        }
    }

    fn no_match(&self) -> Decision<'_> {
        Decision {
            level: Level::None,
            rule: None,
            omit_stages: &self.omit_stages,
            omit_managed_fields: self.omit_managed_fields,
        }
    }

    /// For each rule before the matching one (all rules when none matches), the conditions that failed.
    pub fn explain(&self, request: &RequestAttributes<'_>) -> Vec<RuleMismatch> {
        let mut mismatches = Vec::new();
        for (index, rule) in self.rules().iter().enumerate() {
            let failed = rule.failed_conditions(request);
            if failed.is_empty() {
                break;
            }
            mismatches.push(RuleMismatch {
                rule: index,
                failed,
            });
        }
        mismatches
    }
}

/// A condition of a rule: the rule field it comes from and its check.
type Condition = (&'static str, fn(&Rule, &RequestAttributes<'_>) -> bool);

/// Every condition a rule can set; each holds when the rule does not set it.
/// A rule matches when all hold (upstream checks them in this order too).
const CONDITIONS: [Condition; 6] = [
    ("users", Rule::users_match),
    ("userGroups", Rule::groups_match),
    ("verbs", Rule::verbs_match),
    ("namespaces", Rule::namespaces_match),
    ("resources", Rule::resources_match),
    ("nonResourceURLs", Rule::non_resource_urls_match),
];

/// Where `verbs` is in [`CONDITIONS`].
const VERBS_CONDITION: usize = 2;

impl Rule {
    /// Whether the rule matches the request.
    pub fn matches(&self, request: &RequestAttributes<'_>) -> bool {
        CONDITIONS.iter().all(|(_, holds)| holds(self, request))
    }

    /// Whether every condition but `verbs` holds (the rule index checked the verb).
    fn matches_but_verbs(&self, request: &RequestAttributes<'_>) -> bool {
        CONDITIONS
            .iter()
            .enumerate()
            .all(|(index, (_, holds))| index == VERBS_CONDITION || holds(self, request))
    }

    /// The fields of the conditions that do not hold.
    fn failed_conditions(&self, request: &RequestAttributes<'_>) -> Vec<&'static str> {
        CONDITIONS
            .iter()
            .filter(|(_, holds)| !holds(self, request))
            .map(|(field, _)| *field)
            .collect()
    }

    fn users_match(&self, request: &RequestAttributes<'_>) -> bool {
        list_allows(&self.users, request.user)
    }

    fn groups_match(&self, request: &RequestAttributes<'_>) -> bool {
        self.user_groups.is_empty()
            || request
                .groups
                .iter()
                .any(|group| self.user_groups.iter().any(|listed| listed == group))
    }

    fn verbs_match(&self, request: &RequestAttributes<'_>) -> bool {
        list_allows(&self.verbs, request.verb)
    }

    /// `namespaces` (resource requests only).
    fn namespaces_match(&self, request: &RequestAttributes<'_>) -> bool {
        self.namespaces.is_empty()
            || matches!(&request.target, Target::Resource { namespace, .. }
                if list_allows(&self.namespaces, namespace))
    }

    /// `resources` (resource requests only).
    fn resources_match(&self, request: &RequestAttributes<'_>) -> bool {
        if self.resources.is_empty() {
            return true;
        }
        let Target::Resource {
            group,
            resource,
            subresource,
            name,
            ..
        } = &request.target
        else {
            return false;
        };
        self.resources
            .iter()
            .any(|rule| group_matches(rule, group, resource, subresource, name))
    }

    /// Whether the rule lists `namespaces` or `resources`: it then matches
    /// resource requests only, and its `nonResourceURLs` are not looked at.
    pub(super) fn looks_at_objects(&self) -> bool {
        !self.namespaces.is_empty() || !self.resources.is_empty()
    }

    /// Whether the rule's `nonResourceURLs` decide (it lists some, and no
    /// `namespaces` or `resources`): it then matches non-resource requests only.
    pub(super) fn looks_at_paths(&self) -> bool {
        !self.non_resource_urls.is_empty() && !self.looks_at_objects()
    }

    /// `nonResourceURLs` (non-resource requests only); upstream does not look at
    /// it when the rule has `namespaces` or `resources` (validation forbids both).
    fn non_resource_urls_match(&self, request: &RequestAttributes<'_>) -> bool {
        if !self.looks_at_paths() {
            return true;
        }
        match &request.target {
            Target::Resource { .. } => false,
            Target::NonResource { path } => self
                .non_resource_urls
                .iter()
                .any(|spec| path_matches(path, spec)),
        }
    }
}

/// An empty list allows everything; otherwise the value must be listed.
fn list_allows(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|item| item == value)
}

/// Upstream `pathMatches`: `*`, exact, or a prefix given by a trailing `*`.
pub(super) fn path_matches(path: &str, spec: &str) -> bool {
    if spec == "*" || spec == path {
        return true;
    }
    spec.ends_with('*') && path.starts_with(spec.trim_end_matches('*'))
}

/// Upstream `ruleMatchesResource` for one `resources` entry.
pub(super) fn group_matches(
    rule: &GroupResources,
    group: &str,
    resource: &str,
    subresource: &str,
    name: &str,
) -> bool {
    rule.group == group && group_resources_match(rule, resource, subresource, || name)
}

/// [`group_matches`] for an entry already known to be of the request's API group;
/// the object's name is asked for only when the entry lists `resourceNames`.
pub(super) fn group_resources_match<'n>(
    rule: &GroupResources,
    resource: &str,
    subresource: &str,
    name: impl FnOnce() -> &'n str,
) -> bool {
    if rule.resources.is_empty() {
        return true;
    }
    if !rule.resource_names.is_empty() && !list_allows(&rule.resource_names, name()) {
        return false;
    }
    rule.resources
        .iter()
        .any(|pattern| pattern.matches(resource, subresource))
}

#[cfg(test)]
mod tests;
