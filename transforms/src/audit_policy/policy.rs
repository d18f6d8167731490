//! The audit `Policy` document (`audit.k8s.io/v1`, also `v1beta1`): loading and checking.
//!
//! The YAML is read with `serde_yaml` into structs that reject unknown fields,
//! then checked as the kube-apiserver checks a policy (levels, stages,
//! `nonResourceURLs` together with `resources`/`namespaces`, `*` in the wrong
//! place, `resourceNames` without `resources`), and a few mistakes the
//! apiserver accepts but that can never match (a `*` inside a resource name).
//! Every problem names the rule index and the field: `rules[2].level`.

use std::fmt;
use std::path::Path;

use auditflow_core::event::{Level, Stage};
use serde::Deserialize;

use super::index::RuleIndex;
use super::rule_sets::RuleSets;

/// A checked audit policy: its rules in order, and the policy-wide options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The rules; the first that matches decides.
    rules: Vec<Rule>,
    /// Which rules can match a request, by verb and kind of request.
    index: RuleIndex,
    /// The rules as sets by attribute value (policies of up to 64 rules).
    sets: Option<RuleSets>,
    /// Stages never logged, whatever rule matches (joined with each rule's own).
    pub omit_stages: Vec<Stage>,
    /// Whether `metadata.managedFields` is removed from bodies, unless a rule says otherwise.
    pub omit_managed_fields: bool,
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The level of requests this rule matches.
    pub level: Level,
    /// User names; empty matches every user.
    pub users: Vec<String>,
    /// Groups; a request matches when its user is in any of them. Empty matches every user.
    pub user_groups: Vec<String>,
    /// Verbs; empty matches every verb.
    pub verbs: Vec<String>,
    /// Resources by API group; a non-empty list makes the rule match resource requests only.
    pub resources: Vec<GroupResources>,
    /// Namespaces (`""` is cluster-scoped); a non-empty list makes the rule match resource requests only.
    pub namespaces: Vec<String>,
    /// Non-resource URL paths: exact, `*`, or a prefix ending in `*`.
    pub non_resource_urls: Vec<String>,
    /// Stages not logged for requests this rule matches, the policy's included.
    pub omit_stages: Vec<Stage>,
    /// Overrides the policy's `omitManagedFields` when set.
    pub omit_managed_fields: Option<bool>,
}

/// Resources of one API group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupResources {
    /// The API group; `""` is the core group.
    #[serde(default)]
    pub group: String,
    /// `pods`, `pods/log`, `*`, `*/status`, `pods/*`; empty matches every resource of the group.
    #[serde(default)]
    pub resources: Vec<ResourcePattern>,
    /// Object names; empty matches every name.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One entry of a rule's `resources` list, with the parts matching looks at taken apart once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct ResourcePattern {
    /// The entry as written (`pods/exec`).
    text: String,
    /// For `*/SUBRESOURCE`: the subresource (upstream trims every leading `*` and `/`).
    any_resource: Option<String>,
    /// For `RESOURCE/*`: the resource (upstream trims every trailing `/` and `*`).
    all_subresources: Option<String>,
}

impl From<String> for ResourcePattern {
    fn from(text: String) -> ResourcePattern {
        let any_resource = text
            .starts_with("*/")
            .then(|| text.trim_start_matches(['*', '/']).to_string());
        let all_subresources = text
            .ends_with("/*")
            .then(|| text.trim_end_matches(['/', '*']).to_string());
        ResourcePattern {
            text,
            any_resource,
            all_subresources,
        }
    }
}

impl ResourcePattern {
    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the entry matches a request's resource and subresource (`""` for none),
    /// as upstream's `ruleMatchesResource` decides for one entry.
    #[inline]
    pub fn matches(&self, resource: &str, subresource: &str) -> bool {
        self.text == "*"
            || self.is_combined(resource, subresource)
            || (!subresource.is_empty() && self.any_resource.as_deref() == Some(subresource))
            || self.all_subresources.as_deref() == Some(resource)
    }

    /// Whether the entry is `RESOURCE` (no subresource) or `RESOURCE/SUBRESOURCE`, without
    /// writing that string out.
    #[inline]
    fn is_combined(&self, resource: &str, subresource: &str) -> bool {
        if subresource.is_empty() {
            return self.text == resource;
        }
        let text = self.text.as_bytes();
        text.len() == resource.len() + 1 + subresource.len()
            && text.get(..resource.len()) == Some(resource.as_bytes())
            && text.get(resource.len()) == Some(&b'/')
            && text.get(resource.len() + 1..) == Some(subresource.as_bytes())
    }
}

/// A problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The field path inside the document (`rules[2].level`), empty for the document.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl PolicyError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
        PolicyError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The policy document as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyDocument {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    /// Accepted (a Policy is a Kubernetes object) and not used.
    #[serde(default, rename = "metadata")]
    _metadata: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    rules: Vec<RuleDocument>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleDocument {
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

const API_VERSIONS: [&str; 2] = ["audit.k8s.io/v1", "audit.k8s.io/v1beta1"];
const LEVELS: &str = "None, Metadata, Request or RequestResponse";
const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

impl Policy {
    /// The rules, in order; the first that matches decides.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Which rules can match a request, by verb and kind of request.
    pub(crate) fn index(&self) -> &RuleIndex {
        &self.index
    }

    /// The rules as sets, when the policy has few enough rules.
    pub(crate) fn sets(&self) -> Option<&RuleSets> {
        self.sets.as_ref()
    }

    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, Vec<PolicyError>> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            vec![PolicyError::new(
                "",
                format!("cannot read the policy file: {error}"),
            )]
        })?;
        Policy::parse(&text)
    }

    /// Parses and checks a policy from its YAML (or JSON) text.
    pub fn parse(text: &str) -> Result<Policy, Vec<PolicyError>> {
        let document: PolicyDocument = serde_path_to_error::deserialize(
            serde_yaml::Deserializer::from_str(text),
        )
        .map_err(|error| {
            let field = error.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let message = error.into_inner().to_string();
            let message = without_path(&message, &field).to_string();
            vec![PolicyError::new(field, message)]
        })?;
        document.check()
    }
}

impl PolicyDocument {
    fn check(self) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        match self.api_version.as_deref() {
            Some(version) if API_VERSIONS.contains(&version) => {}
            Some(version) => errors.push(PolicyError::new(
                "apiVersion",
                format!("`{version}` is not an audit policy version: use audit.k8s.io/v1"),
            )),
            None => errors.push(PolicyError::new(
                "apiVersion",
                "missing: an audit policy starts with `apiVersion: audit.k8s.io/v1`",
            )),
        }
        if self.kind.as_deref() != Some("Policy") {
            errors.push(PolicyError::new(
                "kind",
                format!(
                    "expected `kind: Policy`, found {}",
                    self.kind
                        .map_or("nothing".to_string(), |k| format!("`{k}`"))
                ),
            ));
        }
        if self.rules.is_empty() {
            errors.push(PolicyError::new(
                "rules",
                "a policy needs at least one rule (the kube-apiserver refuses a policy with 0 rules)",
            ));
        }
        let omit_stages = check_stages(&self.omit_stages, "omitStages", &mut errors);
        let rules: Vec<Rule> = self
            .rules
            .into_iter()
            .enumerate()
            .filter_map(|(index, rule)| rule.check(&format!("rules[{index}]"), &mut errors))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let rules: Vec<Rule> = rules
            .into_iter()
            .map(|rule| Rule {
                omit_stages: union(&omit_stages, &rule.omit_stages),
                ..rule
            })
            .collect();
        Ok(Policy {
            index: RuleIndex::new(&rules),
            sets: RuleSets::new(&rules),
            rules,
            omit_stages,
            omit_managed_fields: self.omit_managed_fields,
        })
    }
}

impl RuleDocument {
    fn check(self, at: &str, errors: &mut Vec<PolicyError>) -> Option<Rule> {
        let before = errors.len();
        let level = match self.level.as_deref() {
            None | Some("") => {
                errors.push(PolicyError::new(
                    format!("{at}.level"),
                    format!("required: one of {LEVELS}"),
                ));
                None
            }
            Some(name) => {
                let level = Level::parse(name);
                if level.is_none() {
                    errors.push(PolicyError::new(
                        format!("{at}.level"),
                        format!("unknown level `{name}`: expected {LEVELS}"),
                    ));
                }
                level
            }
        };
        check_non_resource_urls(&self.non_resource_urls, at, errors);
        check_resources(&self.resources, at, errors);
        if !self.non_resource_urls.is_empty()
            && (!self.resources.is_empty() || !self.namespaces.is_empty())
        {
            errors.push(PolicyError::new(
                format!("{at}.nonResourceURLs"),
                "rules cannot apply to both regular resources and non-resource URLs: split it into two rules",
            ));
        }
        let omit_stages = check_stages(&self.omit_stages, &format!("{at}.omitStages"), errors);
        if errors.len() != before {
            return None;
        }
        Some(Rule {
            level: level?,
            users: self.users,
            user_groups: self.user_groups,
            verbs: self.verbs,
            resources: self.resources,
            namespaces: self.namespaces,
            non_resource_urls: self.non_resource_urls,
            omit_stages,
            omit_managed_fields: self.omit_managed_fields,
        })
    }
}

/// serde_yaml starts its messages with the path; the error names the field already.
fn without_path<'m>(message: &'m str, field: &str) -> &'m str {
    match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && field.starts_with(path) => rest,
        _ => message,
    }
}

fn check_stages(names: &[String], at: &str, errors: &mut Vec<PolicyError>) -> Vec<Stage> {
    let mut stages = Vec::new();
    for (index, name) in names.iter().enumerate() {
        if STAGES.contains(&name.as_str()) {
            stages.push(Stage::parse(name));
        } else {
            errors.push(PolicyError::new(
                format!("{at}[{index}]"),
                format!(
                    "unknown stage `{name}`: allowed stages are {}",
                    STAGES.join(", ")
                ),
            ));
        }
    }
    stages
}

fn check_non_resource_urls(urls: &[String], at: &str, errors: &mut Vec<PolicyError>) {
    for (index, url) in urls.iter().enumerate() {
        let field = format!("{at}.nonResourceURLs[{index}]");
        if url == "*" {
            continue;
        }
        if !url.starts_with('/') {
            errors.push(PolicyError::new(
                field.clone(),
                format!("`{url}`: non-resource URL rules must begin with a '/' character"),
            ));
        }
        let head = url.strip_suffix('*').unwrap_or(url);
        if head.contains('*') {
            errors.push(PolicyError::new(
                field,
                format!(
                    "`{url}`: non-resource URL wildcards '*' must be the final character of the rule"
                ),
            ));
        }
    }
}

fn check_resources(groups: &[GroupResources], at: &str, errors: &mut Vec<PolicyError>) {
    for (index, group) in groups.iter().enumerate() {
        let field = format!("{at}.resources[{index}]");
        if !group.group.is_empty() && !is_dns_subdomain(&group.group) {
            errors.push(PolicyError::new(
                format!("{field}.group"),
                format!(
                    "`{}` is not an API group name (a lower-case DNS subdomain such as rbac.authorization.k8s.io, without a version)",
                    group.group
                ),
            ));
        }
        if !group.resource_names.is_empty() && group.resources.is_empty() {
            errors.push(PolicyError::new(
                format!("{field}.resourceNames"),
                "using resourceNames requires at least one resource",
            ));
        }
        for (position, resource) in group.resources.iter().enumerate() {
            let resource = resource.as_str();
            if !valid_resource_pattern(resource) {
                errors.push(PolicyError::new(
                    format!("{field}.resources[{position}]"),
                    format!(
                        "`{resource}` can never match: `*` is allowed only as `*`, `*/SUBRESOURCE` or `RESOURCE/*`"
                    ),
                ));
            }
        }
    }
}

/// Whether a `resources` entry can match: `*`, `*/sub`, `res/*`, or names without `*`.
fn valid_resource_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (resource, subresource) = match pattern.split_once('/') {
        Some((resource, subresource)) => (resource, Some(subresource)),
        None => (pattern, None),
    };
    match subresource {
        None => !resource.contains('*') && !resource.is_empty(),
        Some(sub) => {
            let plain = |s: &str| !s.is_empty() && !s.contains('*') && !s.contains('/');
            (resource == "*" && plain(sub)) || (plain(resource) && (sub == "*" || plain(sub)))
        }
    }
}

/// A lower-case RFC 1123 DNS subdomain, as Kubernetes requires of API group names.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn union(policy: &[Stage], rule: &[Stage]) -> Vec<Stage> {
    let mut stages = policy.to_vec();
    for stage in rule {
        if !stages.contains(stage) {
            stages.push(stage.clone());
        }
    }
    stages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        Policy::parse(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const HEAD: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";

    #[test]
    fn a_valid_policy_loads_with_stages_joined() {
        let policy = Policy::parse(&format!(
            "{HEAD}omitStages: [RequestReceived]\nomitManagedFields: true\nrules:\n- level: Metadata\n  omitStages: [Panic, RequestReceived]\n  omitManagedFields: false\n- level: None\n"
        ))
        .unwrap();
        assert_eq!(policy.rules.len(), 2);
        assert_eq!(
            policy.rules[0].omit_stages,
            vec![Stage::RequestReceived, Stage::Panic]
        );
        assert_eq!(policy.rules[1].omit_stages, vec![Stage::RequestReceived]);
        assert!(policy.omit_managed_fields);
        assert_eq!(policy.rules[0].omit_managed_fields, Some(false));
        assert_eq!(policy.rules[1].omit_managed_fields, None);
    }

    #[test]
    fn v1beta1_and_metadata_are_accepted() {
        let text = "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nmetadata:\n  name: default\nrules:\n- level: None\n";
        assert!(Policy::parse(text).is_ok());
    }

    #[test]
    fn unknown_fields_are_named_with_their_rule() {
        let found = errors(&format!(
            "{HEAD}rules:\n- level: None\n- level: Metadata\n  verb: [get]\n"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("rules[1].verb: unknown field `verb`"),
            "{found:?}"
        );
    }

    #[test]
    fn every_invalid_value_is_reported() {
        let found = errors(&format!(
            "{HEAD}omitStages: [Done]\nrules:\n- level: Everything\n- level: Metadata\n  omitStages: [RequestReceived, Started]\n- level: None\n  nonResourceURLs: [\"/api*/x\", healthz]\n- level: None\n  namespaces: [kube-system]\n  nonResourceURLs: [\"/healthz\"]\n- level: None\n  resources:\n  - group: apps/v1\n    resourceNames: [a]\n- level: None\n  resources:\n  - resources: [\"pods*\", \"*/*\", \"pods/*\", \"*/exec\", \"*\"]\n- {{}}\n"
        ));
        let expected = [
            "omitStages[0]: unknown stage `Done`",
            "rules[0].level: unknown level `Everything`",
            "rules[1].omitStages[1]: unknown stage `Started`",
            "rules[2].nonResourceURLs[0]: `/api*/x`: non-resource URL wildcards",
            "rules[2].nonResourceURLs[1]: `healthz`: non-resource URL rules must begin",
            "rules[3].nonResourceURLs: rules cannot apply to both",
            "rules[4].resources[0].group: `apps/v1` is not an API group name",
            "rules[4].resources[0].resourceNames: using resourceNames requires",
            "rules[5].resources[0].resources[0]: `pods*` can never match",
            "rules[5].resources[0].resources[1]: `*/*` can never match",
            "rules[6].level: required",
        ];
        for prefix in expected {
            assert!(
                found.iter().any(|e| e.starts_with(prefix)),
                "missing {prefix:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn the_document_must_be_a_policy_with_rules() {
        let found = errors("apiVersion: v1\nkind: ConfigMap\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("apiVersion: `v1` is not an audit policy version"));
        assert!(found[1].starts_with("kind: expected `kind: Policy`"));
        assert!(found[2].starts_with("rules: a policy needs at least one rule"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let found = errors(&format!("{HEAD}rules:\n- level: None\n  users: alice\n"));
        assert!(
            found[0].starts_with("rules[0].users: invalid type"),
            "{found:?}"
        );
    }

    /// Each form of a `resources` entry against (resource, subresource), as upstream's
    /// `ruleMatchesResource` compares them (`resource/subresource` as one string).
    #[test]
    fn resource_patterns_match_as_upstream_compares_them() {
        let cases = [
            ("*", "pods", "", true),
            ("*", "pods", "exec", true),
            ("pods", "pods", "", true),
            ("pods", "pods", "exec", false),
            ("pods", "pod", "", false),
            ("pods/exec", "pods", "exec", true),
            ("pods/exec", "pods", "", false),
            ("pods/exec", "pods", "log", false),
            // A resource written with its subresource is the same combined string.
            ("pods/exec", "pods/exec", "", true),
            ("*/status", "deployments", "status", true),
            ("*/status", "deployments", "", false),
            ("*/status", "deployments", "scale", false),
            ("pods/*", "pods", "", true),
            ("pods/*", "pods", "log", true),
            ("pods/*", "services", "log", false),
        ];
        for (pattern, resource, subresource, expected) in cases {
            let found = ResourcePattern::from(pattern.to_string()).matches(resource, subresource);
            assert_eq!(
                found, expected,
                "{pattern} against {resource} / {subresource}"
            );
        }
    }
}
