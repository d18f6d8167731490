//! Compiling a [`RuleSet`]: macros and lists expanded, exceptions added, fields resolved.
//!
//! Each enabled `k8s_audit` rule becomes a [`CompiledRule`] once, when the
//! transform is built: its condition with every macro replaced by the macro's
//! own (expanded) tree, every list name in `in (...)`, `intersects (...)` and
//! `pmatch (...)` replaced by the list's items (lists inside lists too), and
//! its exceptions appended as `and not (...)`, as Falco does. Macros and lists
//! that no rule uses are never compiled, so files mixing sources load fine.

use std::collections::HashMap;
use std::sync::Arc;

use auditflow_core::condition::EvalContext;
use auditflow_core::condition::{
    parse, scan_field, Condition, Expr, FieldExtractor, FieldName, FieldResolver, FieldValue,
    Literal, MacroRef, Operand, Operator, StandardFields,
};
use auditflow_core::event::Priority;
use indexmap::IndexMap;
use serde_yaml::Value;

use super::rules::{scalar_text, ExceptionDef, Fields, RuleDef, RuleError, RuleSet};
use super::stateful::StatefulSpec;

/// A rule ready to evaluate.
#[derive(Debug)]
pub struct CompiledRule {
    /// The rule's name.
    pub name: Arc<str>,
    /// Its priority.
    pub priority: Priority,
    /// Its tags.
    pub tags: Arc<[String]>,
    /// Its condition, macros, lists and exceptions expanded.
    pub condition: Condition,
    /// Its output format.
    pub output: OutputFormat,
    /// Its stateful detection, if it declares one.
    pub stateful: Option<StatefulSpec>,
    /// The verbs the condition can hold for, when it can only hold for some.
    pub verbs: Option<Box<[String]>>,
    /// The stages the condition can hold for, when it can only hold for some.
    pub stages: Option<Box<[String]>>,
}

impl CompiledRule {
    /// Whether the condition can hold for an event with this verb and stage (a cheap pre-check).
    pub fn may_match(&self, verb: &str, stage: &str) -> bool {
        let allows = |values: &Option<Box<[String]>>, value: &str| {
            values
                .as_ref()
                .is_none_or(|values| values.iter().any(|v| v == value))
        };
        allows(&self.verbs, verb) && allows(&self.stages, stage)
    }
}

/// A header member a rule index looks at, as conditions name it.
struct IndexedField {
    name: &'static str,
    pointer: &'static str,
}

const VERB: IndexedField = IndexedField {
    name: "ka.verb",
    pointer: "/verb",
};

const STAGE: IndexedField = IndexedField {
    name: "ka.stage",
    pointer: "/stage",
};

impl IndexedField {
    fn is(&self, field: &FieldName) -> bool {
        match field.arg.as_deref() {
            None => field.name == self.name,
            Some(arg) => field.name == "jevt.value" && arg == self.pointer,
        }
    }
}

/// The values of `field` that `expr` can only hold for (`ka.verb = create`,
/// `ka.verb in (...)` under `and`s, alternatives of an `or`), if it constrains it.
fn required_values(expr: &Expr, field: &IndexedField) -> Option<Vec<String>> {
    match expr {
        Expr::Compare(comparison) if field.is(&comparison.field) => {
            match (&comparison.operator, &comparison.operand) {
                (Operator::Eq, Operand::Value(value)) => Some(vec![value.text.clone()]),
                (Operator::In | Operator::Intersects, Operand::List(items)) => {
                    Some(items.iter().map(|item| item.text.clone()).collect())
                }
                _ => None,
            }
        }
        Expr::And(items) => items
            .iter()
            .filter_map(|item| required_values(item, field))
            .reduce(|a, b| a.into_iter().filter(|value| b.contains(value)).collect()),
        Expr::Or(items) => items
            .iter()
            .map(|item| required_values(item, field))
            .collect::<Option<Vec<_>>>()
            .map(|sets| sets.concat()),
        _ => None,
    }
}

/// Compiles every enabled rule of `set`.
pub fn compile_rules(set: &RuleSet) -> Result<Vec<CompiledRule>, RuleError> {
    let mut expander = Expander {
        set,
        expanded: HashMap::new(),
        stack: Vec::new(),
    };
    set.rules
        .values()
        .filter(|rule| rule.enabled)
        .map(|rule| compile_rule(rule, &mut expander))
        .collect()
}

fn compile_rule(rule: &RuleDef, expander: &mut Expander<'_>) -> Result<CompiledRule, RuleError> {
    let label = format!("rule \"{}\": ", rule.name);
    let error = |message: String| RuleError {
        origin: rule.origin.clone(),
        item: label.clone(),
        message,
    };
    let parsed = parse(&rule.condition)
        .map_err(|e| error(format!("condition: {e} (in `{}`)", rule.condition.trim())))?;
    let mut expr = expander.expand(parsed).map_err(&error)?;
    if let Some(exceptions) = exceptions_expr(&rule.exceptions).map_err(&error)? {
        expr = Expr::And(vec![expr, Expr::Not(Box::new(exceptions))]);
    }
    expander.expand_lists(&mut expr);
    let condition = Condition::from_expr(&expr, &StandardFields)
        .map_err(|e| error(format!("condition: {}", e.message)))?;
    let output = OutputFormat::compile(&rule.output).map_err(|e| error(format!("output: {e}")))?;
    let stateful = rule
        .stateful
        .as_ref()
        .map(StatefulSpec::parse)
        .transpose()
        .map_err(|e| error(format!("auditflow: {e}")))?;
    let verbs = required_values(&expr, &VERB).map(Vec::into_boxed_slice);
    let stages = required_values(&expr, &STAGE).map(Vec::into_boxed_slice);
    Ok(CompiledRule {
        verbs,
        stages,
        name: rule.name.as_str().into(),
        priority: rule.priority,
        tags: rule.tags.clone().into(),
        condition,
        output,
        stateful,
    })
}

/// Expands macros (each once, cached) and lists.
struct Expander<'a> {
    set: &'a RuleSet,
    expanded: HashMap<String, Expr>,
    stack: Vec<String>,
}

impl Expander<'_> {
    /// Replaces every macro reference in `expr` by the macro's expanded tree.
    fn expand(&mut self, expr: Expr) -> Result<Expr, String> {
        expr.try_replace_macros(&mut |reference: &MacroRef| self.macro_expr(reference).map(Some))
    }

    fn macro_expr(&mut self, reference: &MacroRef) -> Result<Expr, String> {
        let name = &reference.name;
        if let Some(expr) = self.expanded.get(name) {
            return Ok(expr.clone());
        }
        let Some(definition) = self.set.macros.get(name) else {
            return Err(match self.stack.last() {
                Some(inside) => format!("unknown macro `{name}` (used in macro `{inside}`)"),
                None => format!(
                    "condition: unknown macro or field `{name}` at position {}",
                    reference.position
                ),
            });
        };
        if self.stack.contains(name) {
            return Err(format!(
                "macro `{name}` refers to itself (through {})",
                self.stack.join(" → ")
            ));
        }
        let parsed = parse(&definition.condition)
            .map_err(|e| format!("macro `{name}` ({}): condition: {e}", definition.origin))?;
        self.stack.push(name.clone());
        let expanded = self.expand(parsed);
        self.stack.pop();
        let expanded = expanded?;
        self.expanded.insert(name.clone(), expanded.clone());
        Ok(expanded)
    }

    /// Splices lists into value lists.
    fn expand_lists(&self, expr: &mut Expr) {
        expr.expand_lists(&mut |name| {
            self.set.lists.contains_key(name).then(|| {
                let mut items = Vec::new();
                self.list_items(name, &mut items, &mut Vec::new());
                items
                    .into_iter()
                    .map(|text| Literal {
                        text,
                        quoted: true,
                        position: 0,
                    })
                    .collect()
            })
        });
    }

    /// The items of a list, lists named among them expanded (each at most once on a path).
    fn list_items(&self, name: &str, out: &mut Vec<String>, path: &mut Vec<String>) {
        let Some(list) = self.set.lists.get(name) else {
            return;
        };
        path.push(name.to_string());
        for item in &list.items {
            if self.set.lists.contains_key(item) && !path.contains(item) {
                self.list_items(item, out, path);
            } else {
                out.push(item.clone());
            }
        }
        path.pop();
    }
}

/// The exceptions as one expression: `(tuple) or (tuple) ...`; `None` when none has values.
fn exceptions_expr(exceptions: &[ExceptionDef]) -> Result<Option<Expr>, String> {
    let mut alternatives = Vec::new();
    for exception in exceptions {
        for text in exception_conditions(exception)? {
            let expr = parse(&text)
                .map_err(|e| format!("exception \"{}\": {e} (in `{text}`)", exception.name))?;
            alternatives.push(expr);
        }
    }
    Ok(match alternatives.len() {
        0 => None,
        1 => alternatives.pop(),
        _ => Some(Expr::Or(alternatives)),
    })
}

/// One condition text per value tuple of an exception.
fn exception_conditions(exception: &ExceptionDef) -> Result<Vec<String>, String> {
    let bad_value = || {
        format!(
            "exception \"{}\": values must be text or lists of text",
            exception.name
        )
    };
    match &exception.fields {
        Fields::One(field) => {
            if exception.values.is_empty() {
                return Ok(Vec::new());
            }
            let comp = exception.comps.first().map_or("in", String::as_str);
            let items = exception
                .values
                .iter()
                .map(|value| scalar_text(value).map(|text| bare_or_quoted(&text)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad_value)?;
            Ok(vec![format!("{field} {comp} ({})", items.join(", "))])
        }
        Fields::Tuple(fields) => exception
            .values
            .iter()
            .map(|tuple| {
                let values = tuple.as_sequence().ok_or_else(bad_value)?;
                if fields.is_empty() || values.len() != fields.len() {
                    return Err(format!(
                        "exception \"{}\": needs `fields`, and one value per field in each of its values",
                        exception.name
                    ));
                }
                let parts = fields
                    .iter()
                    .zip(&exception.comps)
                    .zip(values)
                    .map(|((field, comp), value)| comparison_text(field, comp, value))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad_value)?;
                Ok(format!("({})", parts.join(" and ")))
            })
            .collect(),
    }
}

/// `field comp value` for one element of an exception tuple.
fn comparison_text(field: &str, comp: &str, value: &Value) -> Option<String> {
    let takes_list = matches!(
        Operator::from_keyword(comp),
        Some(Operator::In | Operator::Intersects | Operator::PMatch)
    );
    let operand = match (value, takes_list) {
        (Value::Sequence(items), true) => {
            let items = items
                .iter()
                .map(|item| scalar_text(item).map(|text| bare_or_quoted(&text)))
                .collect::<Option<Vec<_>>>()?;
            format!("({})", items.join(", "))
        }
        (value, true) => format!("({})", bare_or_quoted(&scalar_text(value)?)),
        (value, false) => quoted(&scalar_text(value)?),
    };
    Some(format!("{field} {comp} {operand}"))
}

/// A value written bare when it reads back the same (so list names expand), quoted otherwise.
fn bare_or_quoted(text: &str) -> String {
    Literal {
        text: text.to_string(),
        quoted: false,
        position: 0,
    }
    .to_string()
}

fn quoted(text: &str) -> String {
    Literal {
        text: text.to_string(),
        quoted: true,
        position: 0,
    }
    .to_string()
}

/// A rule's output format: text with `%field` references.
#[derive(Debug)]
pub struct OutputFormat {
    parts: Vec<Part>,
    fields: Vec<(String, Box<dyn FieldExtractor>)>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Field(usize),
}

impl OutputFormat {
    /// Compiles an output format, resolving each `%field`.
    pub fn compile(text: &str) -> Result<OutputFormat, String> {
        let text = text.trim();
        let mut format = OutputFormat {
            parts: Vec::new(),
            fields: Vec::new(),
        };
        let mut literal = String::new();
        let mut rest = text;
        while let Some(percent) = rest.find('%') {
            literal.push_str(rest.get(..percent).unwrap_or_default());
            let after = rest.get(percent + 1..).unwrap_or_default();
            let Some((field, len)) = scan_field(after) else {
                literal.push('%');
                rest = after;
                continue;
            };
            let extractor = StandardFields
                .resolve(&field.name, field.arg.as_deref())
                .map_err(|_| format!("unknown field `%{field}`"))?;
            if !literal.is_empty() {
                format.parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            let key = field.to_string();
            let index = match format.fields.iter().position(|(name, _)| *name == key) {
                Some(index) => index,
                None => {
                    format.fields.push((key, extractor));
                    format.fields.len() - 1
                }
            };
            format.parts.push(Part::Field(index));
            rest = after.get(len..).unwrap_or_default();
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            format.parts.push(Part::Text(literal));
        }
        Ok(format)
    }

    /// The output with its fields filled in (`<NA>` when missing), and the fields' values.
    pub fn render(&self, ctx: &EvalContext<'_>) -> (String, IndexMap<String, serde_json::Value>) {
        let values: Vec<FieldValue> = self
            .fields
            .iter()
            .map(|(_, field)| field.extract_in(ctx))
            .collect();
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(literal) => text.push_str(literal),
                Part::Field(index) => {
                    if let Some(value) = values.get(*index) {
                        text.push_str(&value.to_string());
                    }
                }
            }
        }
        let fields = self
            .fields
            .iter()
            .zip(&values)
            .map(|((name, _), value)| (name.clone(), value.to_json()))
            .collect();
        (text, fields)
    }
}
