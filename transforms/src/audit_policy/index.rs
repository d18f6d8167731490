//! Which rules of a policy can match a request at all, by verb and kind of request.
//!
//! Built once when the policy is loaded: for each verb some rule lists, the
//! rules listing it or listing no verbs, split into those that can match a
//! resource request and those that can match a non-resource request. Deciding
//! then tries only these rules, in policy order, and skips their `verbs`
//! check, which the index already made; the first that matches still decides.

use super::policy::Rule;

/// The rules that can match, by verb and kind of request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RuleIndex {
    /// Each verb some rule lists, with the rules that can match it.
    by_verb: Vec<(String, Candidates)>,
    /// The rules that can match a verb no rule lists: those listing no verbs.
    other_verbs: Candidates,
}

/// Rule indexes in policy order, by the kind of request they can match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Candidates {
    /// The rules that can match a resource request.
    pub resource: Vec<usize>,
    /// The rules that can match a non-resource request.
    pub non_resource: Vec<usize>,
}

impl RuleIndex {
    /// The index of a policy's rules.
    pub fn new(rules: &[Rule]) -> RuleIndex {
        let mut verbs: Vec<&str> = rules
            .iter()
            .flat_map(|rule| rule.verbs.iter().map(String::as_str))
            .collect();
        verbs.sort_unstable();
        verbs.dedup();
        RuleIndex {
            by_verb: verbs
                .into_iter()
                .map(|verb| (verb.to_string(), Candidates::for_verb(rules, Some(verb))))
                .collect(),
            other_verbs: Candidates::for_verb(rules, None),
        }
    }

    /// The rules that can match a request with this verb.
    pub fn candidates(&self, verb: &str) -> &Candidates {
        self.by_verb
            .iter()
            .find(|(listed, _)| listed == verb)
            .map_or(&self.other_verbs, |(_, candidates)| candidates)
    }
}

impl Candidates {
    /// The rules that allow `verb` (`None`: a verb no rule lists).
    fn for_verb(rules: &[Rule], verb: Option<&str>) -> Candidates {
        let allows = |rule: &Rule| {
            rule.verbs.is_empty() || verb.is_some_and(|verb| rule.verbs.iter().any(|v| v == verb))
        };
        let mut candidates = Candidates::default();
        for (index, rule) in rules.iter().enumerate().filter(|(_, rule)| allows(rule)) {
            // A rule whose `nonResourceURLs` decide never matches a resource request,
            // one listing namespaces or resources never a non-resource request.
            if !rule.looks_at_paths() {
                candidates.resource.push(index);
            }
            if !rule.looks_at_objects() {
                candidates.non_resource.push(index);
            }
        }
        candidates
    }
}
