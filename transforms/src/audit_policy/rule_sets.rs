//! The rules of a policy as sets, by the values of the attributes they look at.
//!
//! Deciding rule by rule compares the request's strings with each rule's lists
//! in turn, the same user name with one rule's `users` and then the next's.
//! Here each attribute of a request is looked at once: for its value, the set
//! of rules whose condition on that attribute holds is looked up (the rules that
//! set no such condition, and those listing the value), the sets of all
//! attributes are intersected, and the first rule of the intersection, in
//! policy order, is the one that matches. A set is the bits of a `u64`, so a
//! policy of up to [`MAX_RULES`] rules is decided this way; a longer one rule by
//! rule. The conditions are the checker's own ([`group_resources_match`],
//! [`path_matches`]); tested equal to trying every rule in order.
//!
//! Attributes are read from the event's header as they are needed, in the order
//! that empties the set soonest for most traffic (verb first); an empty set ends
//! the lookup (no rule matches).

use auditflow_core::event::{AuditHeader, ObjectReference};

use super::checker::{api_group, group_resources_match, path_matches, request_path};
use super::policy::{GroupResources, Rule};

/// Rules by their index: bit `i` is rule `i`.
type RuleSet = u64;

/// The most rules a policy can have to be decided by sets.
pub const MAX_RULES: usize = RuleSet::BITS as usize;

/// A policy's rules as sets, by attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleSets {
    users: ValueSets,
    groups: ValueSets,
    verbs: ValueSets,
    namespaces: ValueSets,
    resources: ResourceSets,
    paths: PathSets,
}

/// For one attribute compared with listed strings: the rules that list none,
/// and for each listed string the rules listing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ValueSets {
    unlisted: RuleSet,
    listed: Vec<(String, RuleSet)>,
}

/// The rules' `resources`: those without any, and the entries of the others by API group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ResourceSets {
    unlisted: RuleSet,
    /// For each API group some entry names, its entries with the rule each belongs to.
    by_group: Vec<(String, Vec<(RuleSet, GroupResources)>)>,
}

/// The rules' `nonResourceURLs`: the rules whose condition on the path always holds
/// (they list none, or they list `namespaces` or `resources`, which upstream looks at instead),
/// and each other rule's paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PathSets {
    unlisted: RuleSet,
    listed: Vec<(RuleSet, Vec<String>)>,
}

impl RuleSets {
    /// The sets of a policy's rules; `None` when it has more than [`MAX_RULES`].
    pub fn new(rules: &[Rule]) -> Option<RuleSets> {
        if rules.len() > MAX_RULES {
            return None;
        }
        let bits = || {
            let one: RuleSet = 1;
            rules
                .iter()
                .enumerate()
                .map(move |(index, rule)| (one << index, rule))
        };
        Some(RuleSets {
            users: ValueSets::new(bits().map(|(bit, rule)| (bit, rule.users.as_slice()))),
            groups: ValueSets::new(bits().map(|(bit, rule)| (bit, rule.user_groups.as_slice()))),
            verbs: ValueSets::new(bits().map(|(bit, rule)| (bit, rule.verbs.as_slice()))),
            namespaces: ValueSets::new(bits().map(|(bit, rule)| (bit, rule.namespaces.as_slice()))),
            resources: ResourceSets::new(bits()),
            paths: PathSets::new(bits()),
        })
    }

    /// The index of the first rule matching the request of the event with this header.
    pub fn first_match(&self, header: AuditHeader<'_>) -> Option<usize> {
        let mut rules = self.verbs.of(header.verb());
        let user = header.user();
        if rules & !self.users.unlisted != 0 {
            rules &= self.users.of(user.username());
        }
        if rules & !self.groups.unlisted != 0 {
            rules &= self.groups.of_any(user.groups());
        }
        if rules == 0 {
            return None;
        }
        rules = match header.object_ref() {
            Some(object) => self.resource_request(rules, object),
            None => self.non_resource_request(rules, header.request_uri()),
        };
        (rules != 0).then(|| rules.trailing_zeros() as usize)
    }

    /// Narrows `rules` to those matching a resource request for `object`.
    fn resource_request(&self, mut rules: RuleSet, object: ObjectReference<'_>) -> RuleSet {
        rules &= self.paths.unlisted;
        if rules & !self.namespaces.unlisted != 0 {
            rules &= self.namespaces.of(object.namespace().unwrap_or(""));
        }
        if rules & !self.resources.unlisted != 0 {
            rules &= self.resources.of(rules, object);
        }
        rules
    }

    /// Narrows `rules` to those matching a non-resource request for `uri`.
    fn non_resource_request(&self, mut rules: RuleSet, uri: &str) -> RuleSet {
        rules &= self.namespaces.unlisted & self.resources.unlisted;
        if rules & !self.paths.unlisted != 0 {
            rules &= self.paths.of(rules, &request_path(uri));
        }
        rules
    }
}

impl ValueSets {
    /// The sets of one attribute, from each rule's bit and list.
    fn new<'r>(rules: impl Iterator<Item = (RuleSet, &'r [String])>) -> ValueSets {
        let mut sets = ValueSets::default();
        for (bit, list) in rules {
            if list.is_empty() {
                sets.unlisted |= bit;
            }
            for value in list {
                match sets.listed.iter_mut().find(|(listed, _)| listed == value) {
                    Some((_, set)) => *set |= bit,
                    None => sets.listed.push((value.clone(), bit)),
                }
            }
        }
        sets
    }

    /// The rules whose condition holds for `value`.
    fn of(&self, value: &str) -> RuleSet {
        self.listed
            .iter()
            .find(|(listed, _)| listed == value)
            .map_or(self.unlisted, |(_, set)| self.unlisted | set)
    }

    /// The rules whose condition holds for any of `values`.
    fn of_any<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> RuleSet {
        values
            .into_iter()
            .fold(self.unlisted, |rules, value| rules | self.of(value))
    }
}

impl ResourceSets {
    fn new<'r>(rules: impl Iterator<Item = (RuleSet, &'r Rule)>) -> ResourceSets {
        let mut sets = ResourceSets::default();
        for (bit, rule) in rules {
            if rule.resources.is_empty() {
                sets.unlisted |= bit;
            }
            for entry in &rule.resources {
                let at = match sets
                    .by_group
                    .iter()
                    .position(|(group, _)| *group == entry.group)
                {
                    Some(at) => at,
                    None => {
                        sets.by_group.push((entry.group.clone(), Vec::new()));
                        sets.by_group.len() - 1
                    }
                };
                if let Some((_, entries)) = sets.by_group.get_mut(at) {
                    entries.push((bit, entry.clone()));
                }
            }
        }
        sets
    }

    /// Of `candidates`, the rules whose `resources` condition holds for `object`.
    fn of(&self, candidates: RuleSet, object: ObjectReference<'_>) -> RuleSet {
        let group = api_group(object);
        let Some((_, entries)) = self.by_group.iter().find(|(listed, _)| listed == group) else {
            return self.unlisted;
        };
        let resource = object.resource().unwrap_or("");
        let subresource = object.subresource().unwrap_or("");
        let name = || object.name().unwrap_or("");
        entries
            .iter()
            .filter(|(bit, entry)| {
                candidates & bit != 0 && group_resources_match(entry, resource, subresource, name)
            })
            .fold(self.unlisted, |rules, (bit, _)| rules | bit)
    }
}

impl PathSets {
    fn new<'r>(rules: impl Iterator<Item = (RuleSet, &'r Rule)>) -> PathSets {
        let mut sets = PathSets::default();
        for (bit, rule) in rules {
            if rule.looks_at_paths() {
                sets.listed.push((bit, rule.non_resource_urls.clone()));
            } else {
                sets.unlisted |= bit;
            }
        }
        sets
    }

    /// Of `candidates`, the rules whose `nonResourceURLs` condition holds for `path`.
    fn of(&self, candidates: RuleSet, path: &str) -> RuleSet {
        self.listed
            .iter()
            .filter(|(bit, specs)| {
                candidates & bit != 0 && specs.iter().any(|spec| path_matches(path, spec))
            })
            .fold(self.unlisted, |rules, (bit, _)| rules | bit)
    }
}
