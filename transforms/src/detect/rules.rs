//! Reading Falco rule files: `rule`, `macro` and `list` items, merged in load order.
//!
//! Files are read in the order given; a later item with `append: true` or
//! `override:` changes an earlier one of the same name, and a later item
//! without them replaces it (as Falco does). The result is a [`RuleSet`]:
//! rules, macros and lists still as text, compiled by [`super::compile`].
//!
//! Every error names the file, the line and column of the item, the item, and
//! what is wrong. Rules of another `source` than `k8s_audit` (Falco's default
//! source is `syscall`) are kept aside and reported in one notice.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use auditflow_core::event::Priority;
use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

/// The event source auditflow evaluates: Kubernetes audit events.
pub const K8S_AUDIT_SOURCE: &str = "k8s_audit";

/// Where an item was declared: its file and the line and column of its `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The rule file, as given.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A rule file error: where, which item, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {item}{message}")]
pub struct RuleError {
    /// Where the offending item (or text) is.
    pub origin: Origin,
    /// The item, as `rule "NAME": ` (empty when the error is about the file).
    pub item: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl RuleError {
    fn new(origin: &Origin, item: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            origin: origin.clone(),
            item: item.to_string(),
            message: message.into(),
        }
    }
}

/// One exception of a rule: fields, comparison operators, and tuples of values.
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionDef {
    /// The exception's name (values of a later `append` merge by name).
    pub name: String,
    /// The fields; a single field (not a list) means `values` is a plain list.
    pub fields: Fields,
    /// The operators, one per field (default `=`, or `in` for a single field).
    pub comps: Vec<String>,
    /// The values: per tuple, one value per field (a value may be a list).
    pub values: Vec<Value>,
}

/// The `fields` of an exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// `fields: ka.user.name`: `values` lists values of that one field.
    One(String),
    /// `fields: [a, b]`: `values` lists tuples.
    Tuple(Vec<String>),
}

/// A rule as declared (after appends and overrides).
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// The rule's name.
    pub name: String,
    /// Its description.
    pub desc: String,
    /// Its condition text.
    pub condition: String,
    /// Its output format.
    pub output: String,
    /// Its priority.
    pub priority: Priority,
    /// Its tags.
    pub tags: Vec<String>,
    /// Whether it is evaluated.
    pub enabled: bool,
    /// Its exceptions.
    pub exceptions: Vec<ExceptionDef>,
    /// The `auditflow:` key: stateful detection settings (Falco ignores it).
    pub stateful: Option<Value>,
    /// Where it was declared.
    pub origin: Origin,
}

/// A macro as declared.
#[derive(Debug, Clone)]
pub struct MacroDef {
    /// Its condition text.
    pub condition: String,
    /// Where it was declared.
    pub origin: Origin,
}

/// A list as declared; items naming other lists are expanded when compiling.
#[derive(Debug, Clone)]
pub struct ListDef {
    /// Its items.
    pub items: Vec<String>,
}

/// Everything read from a set of rule files, in load order.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    /// The `k8s_audit` rules.
    pub rules: IndexMap<String, RuleDef>,
    /// The macros.
    pub macros: IndexMap<String, MacroDef>,
    /// The lists.
    pub lists: IndexMap<String, ListDef>,
    /// Rules of other sources, by source: ignored.
    pub other_sources: BTreeMap<String, usize>,
    /// Things the user should know that are not errors (appends defining a new list, unknown keys).
    pub notices: Vec<String>,
}

impl RuleSet {
    /// Reads rule files in order.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::default();
        for path in paths {
            let path = path.as_ref();
            let file: Arc<str> = path.display().to_string().into();
            let text = std::fs::read_to_string(path).map_err(|error| RuleError {
                origin: Origin {
                    file: file.clone(),
                    line: 1,
                    column: 1,
                },
                item: String::new(),
                message: format!("cannot read the rule file: {error}"),
            })?;
            set.add_text(file, &text)?;
        }
        Ok(set)
    }

    /// Adds the items of one rule file's text.
    pub fn add_text(&mut self, file: Arc<str>, text: &str) -> Result<(), RuleError> {
        let document: Value = serde_yaml::from_str(text).map_err(|error| {
            let (line, column) = error
                .location()
                .map_or((1, 1), |at| (at.line(), at.column()));
            RuleError {
                origin: Origin {
                    file: file.clone(),
                    line,
                    column,
                },
                item: String::new(),
                message: format!("not valid YAML: {error}"),
            }
        })?;
        let items = match document {
            Value::Null => return Ok(()),
            Value::Sequence(items) => items,
            _ => {
                return Err(RuleError::new(
                    &Origin {
                        file,
                        line: 1,
                        column: 1,
                    },
                    "",
                    "a rule file is a YAML list of `- rule:`, `- macro:` and `- list:` items",
                ))
            }
        };
        let starts = item_starts(text);
        for (index, item) in items.into_iter().enumerate() {
            let (line, column) = starts.get(index).copied().unwrap_or((1, 1));
            let origin = Origin {
                file: file.clone(),
                line,
                column,
            };
            self.add_item(item, origin)?;
        }
        Ok(())
    }

    fn add_item(&mut self, item: Value, origin: Origin) -> Result<(), RuleError> {
        let map = match item {
            Value::Mapping(map) => map,
            Value::Null => return Ok(()),
            _ => {
                return Err(RuleError::new(
                    &origin,
                    "",
                    "expected a `rule`, `macro` or `list` item (a YAML mapping)",
                ))
            }
        };
        let item = Item { map, origin };
        if let Some(name) = item.key_str("rule")? {
            self.add_rule(name, &item)
        } else if let Some(name) = item.key_str("macro")? {
            self.add_macro(name, &item)
        } else if let Some(name) = item.key_str("list")? {
            self.add_list(name, &item)
        } else if item.map.contains_key("required_engine_version")
            || item.map.contains_key("required_plugin_versions")
        {
            Ok(())
        } else {
            Err(RuleError::new(
                &item.origin,
                "",
                "unknown item: expected `rule`, `macro`, `list`, `required_engine_version` or `required_plugin_versions`",
            ))
        }
    }

    fn add_list(&mut self, name: String, item: &Item) -> Result<(), RuleError> {
        let label = format!("list \"{name}\": ");
        item.check_keys(&label, &["list", "items", "append", "override"], self)?;
        let items = item.string_list("items", &label)?.unwrap_or_default();
        let mode = item.merge_mode("items", &label)?;
        match (self.lists.get_mut(&name), mode) {
            (Some(existing), Merge::Append) => existing.items.extend(items),
            (None, Merge::Append) => {
                self.notices.push(format!(
                    "{}: {label}appends to a list not defined before; defining it",
                    item.origin
                ));
                self.lists.insert(name, ListDef { items });
            }
            (_, Merge::Replace) => {
                self.lists.insert(name, ListDef { items });
            }
        }
        Ok(())
    }

    fn add_macro(&mut self, name: String, item: &Item) -> Result<(), RuleError> {
        let label = format!("macro \"{name}\": ");
        item.check_keys(&label, &["macro", "condition", "append", "override"], self)?;
        let condition = item
            .string("condition", &label)?
            .ok_or_else(|| RuleError::new(&item.origin, &label, "a macro needs a `condition`"))?;
        let mode = item.merge_mode("condition", &label)?;
        match (self.macros.get_mut(&name), mode) {
            (Some(existing), Merge::Append) => {
                existing.condition = join_text(&existing.condition, &condition)
            }
            (None, Merge::Append) => {
                self.notices.push(format!(
                    "{}: {label}appends to a macro not defined before; defining it",
                    item.origin
                ));
                self.insert_macro(name, condition, item);
            }
            (_, Merge::Replace) => self.insert_macro(name, condition, item),
        }
        Ok(())
    }

    fn insert_macro(&mut self, name: String, condition: String, item: &Item) {
        self.macros.insert(
            name,
            MacroDef {
                condition,
                origin: item.origin.clone(),
            },
        );
    }

    fn add_rule(&mut self, name: String, item: &Item) -> Result<(), RuleError> {
        let label = format!("rule \"{name}\": ");
        item.check_keys(&label, RULE_KEYS, self)?;
        // An item changing a loaded `k8s_audit` rule need not repeat its source.
        let changes_loaded = self.rules.contains_key(&name)
            && (item.map.contains_key("append")
                || item.map.contains_key("override")
                || is_enable_only(item));
        let default_source = if changes_loaded {
            K8S_AUDIT_SOURCE
        } else {
            "syscall"
        };
        let source = item
            .string("source", &label)?
            .unwrap_or_else(|| default_source.to_string());
        if source != K8S_AUDIT_SOURCE {
            *self.other_sources.entry(source).or_default() += 1;
            return Ok(());
        }
        let overrides = item.overrides(&label)?;
        let append = item.flag("append", &label)?.unwrap_or(false);
        if append || !overrides.is_empty() {
            let Some(existing) = self.rules.get_mut(&name) else {
                return Err(RuleError::new(
                    &item.origin,
                    &label,
                    "`append`/`override` needs a rule of that name loaded before (check the order of the rule files)",
                ));
            };
            return merge_rule(existing, item, &label, append, &overrides);
        }
        if is_enable_only(item) {
            if let Some(existing) = self.rules.get_mut(&name) {
                existing.enabled = item.flag("enabled", &label)?.unwrap_or(true);
                return Ok(());
            }
        }
        let rule = new_rule(name.clone(), item, &label)?;
        self.rules.insert(name, rule);
        Ok(())
    }
}

/// The keys a rule item may have.
const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "source",
    "exceptions",
    "append",
    "override",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
    "auditflow",
];

/// Whether a rule item only sets `enabled` (Falco's way to switch a loaded rule on or off).
fn is_enable_only(item: &Item) -> bool {
    item.map.contains_key("enabled")
        && item
            .map
            .keys()
            .all(|key| matches!(key.as_str(), Some("rule" | "enabled" | "source")))
}

fn new_rule(name: String, item: &Item, label: &str) -> Result<RuleDef, RuleError> {
    let required = |key: &str| -> Result<String, RuleError> {
        item.string(key, label)?
            .ok_or_else(|| RuleError::new(&item.origin, label, format!("a rule needs `{key}`")))
    };
    let condition = required("condition")?;
    let output = required("output")?;
    let priority = parse_priority(&required("priority")?, item, label)?;
    Ok(RuleDef {
        desc: item.string("desc", label)?.unwrap_or_default(),
        tags: item.string_list("tags", label)?.unwrap_or_default(),
        enabled: item.flag("enabled", label)?.unwrap_or(true),
        exceptions: item.exceptions(label)?,
        stateful: item.map.get("auditflow").cloned(),
        origin: item.origin.clone(),
        name,
        condition,
        output,
        priority,
    })
}

fn parse_priority(text: &str, item: &Item, label: &str) -> Result<Priority, RuleError> {
    Priority::parse(text.trim()).ok_or_else(|| {
        RuleError::new(
            &item.origin,
            label,
            format!("unknown priority `{text}`: use EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO or DEBUG"),
        )
    })
}

/// Applies an `append: true` or `override:` item to the rule it names.
fn merge_rule(
    rule: &mut RuleDef,
    item: &Item,
    label: &str,
    append: bool,
    overrides: &IndexMap<String, Merge>,
) -> Result<(), RuleError> {
    let mode_of = |key: &str| {
        overrides
            .get(key)
            .copied()
            .or(append.then_some(Merge::Append))
    };
    for key in item.map.keys().filter_map(Value::as_str) {
        if matches!(key, "rule" | "append" | "override" | "source") {
            continue;
        }
        let Some(mode) = mode_of(key) else {
            return Err(RuleError::new(
                &item.origin,
                label,
                format!("`{key}` is given without saying how to merge it: add it to `override:` (append or replace)"),
            ));
        };
        apply_rule_key(rule, item, label, key, mode)?;
    }
    Ok(())
}

fn apply_rule_key(
    rule: &mut RuleDef,
    item: &Item,
    label: &str,
    key: &str,
    mode: Merge,
) -> Result<(), RuleError> {
    let text = |key| item.string(key, label).map(Option::unwrap_or_default);
    match (key, mode) {
        ("condition", Merge::Append) => rule.condition = join_text(&rule.condition, &text(key)?),
        ("condition", Merge::Replace) => rule.condition = text(key)?,
        ("output", Merge::Append) => rule.output = join_text(&rule.output, &text(key)?),
        ("output", Merge::Replace) => rule.output = text(key)?,
        ("desc", Merge::Append) => rule.desc = join_text(&rule.desc, &text(key)?),
        ("desc", Merge::Replace) => rule.desc = text(key)?,
        ("tags", Merge::Append) => rule
            .tags
            .extend(item.string_list(key, label)?.unwrap_or_default()),
        ("tags", Merge::Replace) => rule.tags = item.string_list(key, label)?.unwrap_or_default(),
        ("exceptions", Merge::Append) => {
            merge_exceptions(&mut rule.exceptions, item.exceptions(label)?)
        }
        ("exceptions", Merge::Replace) => rule.exceptions = item.exceptions(label)?,
        ("priority", Merge::Replace) => rule.priority = parse_priority(&text(key)?, item, label)?,
        ("enabled", _) => rule.enabled = item.flag(key, label)?.unwrap_or(true),
        ("auditflow", Merge::Replace) => rule.stateful = item.map.get(key).cloned(),
        (other, mode) => {
            return Err(RuleError::new(
                &item.origin,
                label,
                format!("`{other}` cannot be merged with {mode:?}"),
            ))
        }
    }
    Ok(())
}

/// Appends exceptions: values of an exception already there are added to it, new ones are added.
fn merge_exceptions(into: &mut Vec<ExceptionDef>, more: Vec<ExceptionDef>) {
    for exception in more {
        match into.iter_mut().find(|e| e.name == exception.name) {
            Some(existing) => existing.values.extend(exception.values),
            None => into.push(exception),
        }
    }
}

/// Joins an appended text to the original, as Falco does (with a space).
fn join_text(original: &str, appended: &str) -> String {
    format!("{} {}", original.trim_end(), appended.trim())
}

/// How an `append` or `override` merges a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    Append,
    Replace,
}

/// One YAML item with its position, and typed accessors naming it in errors.
struct Item {
    map: Mapping,
    origin: Origin,
}

impl Item {
    fn error(&self, label: &str, message: impl Into<String>) -> RuleError {
        RuleError::new(&self.origin, label, message)
    }

    fn key_str(&self, key: &str) -> Result<Option<String>, RuleError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) => scalar_text(value)
                .map(|name| Some(name.trim().to_string()))
                .ok_or_else(|| self.error("", format!("`{key}` must be a name"))),
        }
    }

    fn string(&self, key: &str, label: &str) -> Result<Option<String>, RuleError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => scalar_text(value)
                .map(Some)
                .ok_or_else(|| self.error(label, format!("`{key}` must be text"))),
        }
    }

    fn flag(&self, key: &str, label: &str) -> Result<Option<bool>, RuleError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.error(label, format!("`{key}` must be true or false"))),
        }
    }

    fn string_list(&self, key: &str, label: &str) -> Result<Option<Vec<String>>, RuleError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| {
                    scalar_text(item).ok_or_else(|| {
                        self.error(label, format!("the items of `{key}` must be text"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.error(label, format!("`{key}` must be a list"))),
        }
    }

    /// The `override:` map: key → append or replace.
    fn overrides(&self, label: &str) -> Result<IndexMap<String, Merge>, RuleError> {
        let Some(value) = self.map.get("override") else {
            return Ok(IndexMap::new());
        };
        let Value::Mapping(map) = value else {
            return Err(self.error(label, "`override` must map keys to `append` or `replace`"));
        };
        map.iter()
            .map(|(key, mode)| {
                let key = key.as_str().unwrap_or_default().to_string();
                let mode = match mode.as_str() {
                    Some("append") => Merge::Append,
                    Some("replace") => Merge::Replace,
                    _ => {
                        return Err(self.error(
                            label,
                            format!("`override.{key}` must be `append` or `replace`"),
                        ))
                    }
                };
                Ok((key, mode))
            })
            .collect()
    }

    /// How a list's items or a macro's condition merge: `append: true` or `override: {KEY: append}`.
    fn merge_mode(&self, key: &str, label: &str) -> Result<Merge, RuleError> {
        let overrides = self.overrides(label)?;
        let append = self.flag("append", label)?.unwrap_or(false);
        Ok(match overrides.get(key) {
            Some(mode) => *mode,
            None if append => Merge::Append,
            None => Merge::Replace,
        })
    }

    /// Warns about keys Falco would not know either (typos), listing them once.
    fn check_keys(&self, label: &str, known: &[&str], set: &mut RuleSet) -> Result<(), RuleError> {
        for key in self.map.keys() {
            let Some(key) = key.as_str() else {
                return Err(self.error(label, "keys must be text"));
            };
            if !known.contains(&key) {
                set.notices.push(format!(
                    "{}: {label}unknown key `{key}` ignored",
                    self.origin
                ));
            }
        }
        Ok(())
    }

    fn exceptions(&self, label: &str) -> Result<Vec<ExceptionDef>, RuleError> {
        let Some(value) = self.map.get("exceptions") else {
            return Ok(Vec::new());
        };
        let Value::Sequence(items) = value else {
            return Err(self.error(label, "`exceptions` must be a list"));
        };
        items
            .iter()
            .map(|item| self.exception(item, label))
            .collect()
    }

    fn exception(&self, value: &Value, label: &str) -> Result<ExceptionDef, RuleError> {
        let bad = |message: &str| self.error(label, format!("exception: {message}"));
        let Value::Mapping(map) = value else {
            return Err(bad(
                "each exception is a mapping with `name`, `fields`, `comps`, `values`",
            ));
        };
        let name = map
            .get("name")
            .and_then(scalar_text)
            .ok_or_else(|| bad("`name` is required"))?;
        let fields = match map.get("fields") {
            Some(Value::Sequence(items)) => Fields::Tuple(
                items
                    .iter()
                    .map(|f| scalar_text(f).ok_or_else(|| bad("`fields` must name fields")))
                    .collect::<Result<_, _>>()?,
            ),
            Some(value) => {
                Fields::One(scalar_text(value).ok_or_else(|| bad("`fields` must name fields"))?)
            }
            None => Fields::Tuple(Vec::new()),
        };
        let comps = exception_comps(map.get("comps"), &fields)
            .ok_or_else(|| bad("`comps` must be one operator per field"))?;
        let values = match map.get("values") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(values)) => values.clone(),
            Some(_) => return Err(bad("`values` must be a list")),
        };
        if let Fields::Tuple(names) = &fields {
            // Without `fields`, an appended exception adds values to the one of that name.
            for tuple in values.iter().filter(|_| !names.is_empty()) {
                let len = tuple.as_sequence().map(Vec::len);
                if len != Some(names.len()) {
                    return Err(bad(&format!(
                        "exception \"{name}\": each value must be a list of {} values, one per field",
                        names.len()
                    )));
                }
            }
        }
        Ok(ExceptionDef {
            name,
            fields,
            comps,
            values,
        })
    }
}

/// The operators of an exception: given, or `=` per field (`in` for a single field).
fn exception_comps(value: Option<&Value>, fields: &Fields) -> Option<Vec<String>> {
    match (value, fields) {
        (None, Fields::One(_)) => Some(vec!["in".to_string()]),
        (None, Fields::Tuple(names)) => Some(vec!["=".to_string(); names.len()]),
        (Some(Value::Sequence(items)), Fields::Tuple(names)) if items.len() == names.len() => {
            items.iter().map(scalar_text).collect()
        }
        (Some(value), Fields::One(_)) => scalar_text(value).map(|comp| vec![comp]),
        _ => None,
    }
}

/// Text of a YAML scalar (numbers and booleans as written).
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The line and column of each top-level `- ` item of a block-style YAML list.
fn item_starts(text: &str) -> Vec<(usize, usize)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.starts_with('-') && !line.starts_with("---") && {
                let rest = line.get(1..).unwrap_or_default();
                rest.is_empty() || rest.starts_with(' ')
            }
        })
        .map(|(index, _)| (index + 1, 1))
        .collect()
}
