//! Falco's condition language over pipeline events.
//!
//! A condition is text such as
//!
//! ```text
//! ka.verb in (create, update) and ka.target.resource = pods
//!   and not ka.user.name startswith "system:serviceaccount:kube-system:"
//! ```
//!
//! [`parse`] turns it into a syntax tree ([`Expr`]), which a rule loader may
//! rewrite (expand macros and lists); [`Condition::compile`] (or
//! [`Condition::from_expr`]) resolves its fields and prepares its values, and
//! [`Condition::matches`] evaluates it against an [`Event`].
//!
//! # Syntax
//!
//! - Logic: `and`, `or`, `not`, parentheses; `not` binds tighter than `and`,
//!   which binds tighter than `or`.
//! - Comparisons: `field op value`, `field op (v1, v2, ...)`, `field exists`.
//!   Operators: `=` (or `==`), `!=`, `<`, `<=`, `>`, `>=`, `contains`,
//!   `icontains`, `startswith`, `endswith`, `glob`, `in`, `intersects`,
//!   `pmatch`, `exists`.
//! - Fields: dotted names, with an argument in brackets right after the name:
//!   `jevt.value[/objectRef/resource]`. See [`StandardFields`] for the list.
//! - Values: bare words (`create`, `kube-system`, `/api/v1`,
//!   `system:serviceaccount:ns:sa`: anything up to whitespace, a parenthesis,
//!   a comma or a quote), quoted strings (`"..."` or `'...'`, with `\\`, `\"`,
//!   `\'`, `\n`, `\t`, `\r` escapes), numbers (written like any other value).
//! - A bare identifier without an operator after it is a macro reference
//!   ([`Expr::Macro`]); compiling a condition that still has one fails with
//!   "unknown macro or field".
//!
//! # Semantics
//!
//! - **Missing fields.** A field the event lacks (`ka.target.name` on a
//!   `/healthz` request, any `ka.*` field on a record, a `jevt.value` pointer
//!   to nothing or to `null`) makes every comparison on it false, `!=`
//!   included, so `not (...)` of such a comparison is true; `exists` is false.
//!   An empty list counts as missing.
//! - **Numbers and text.** A value compares with a numeric field as a number
//!   when it reads as one, so `ka.response.code = 403`, `= "403"`,
//!   `in ("401", "403")` and `>= 400` all work; the text operators
//!   (`startswith 4`, ...) see the number as its decimal text. Between text
//!   values, `<`, `<=`, `>`, `>=` compare as numbers when both sides read as
//!   numbers and byte-wise otherwise.
//! - **List fields** (`ka.user.groups`, `ka.sourceips`): `in` holds when
//!   *every* element is in the value list, and `intersects` when *at least
//!   one* is (as Falco documents them). Every other operator holds when it
//!   holds for at least one element (`ka.user.groups = system:masters`,
//!   `contains`, `startswith`, `glob`, ...), except `!=`, which holds when no
//!   element equals the value: `f != v` is exactly `not f = v` for a present
//!   field. (Falco itself accepts only `in`, `intersects` and `exists` on list
//!   fields; the others are an extension with the semantics above.) On a
//!   single-valued field, `in` and `intersects` both mean "is one of".
//! - **`glob`**: `*` and `?` do not match `/`; `[a-z]` and `[!a-z]` classes.
//!   **`pmatch`**: the field is one of the paths or lies under one of them
//!   (`/tmp/a` matches `/tmp/a` and `/tmp/a/b`, not `/tmp/ab`); paths may hold
//!   glob wildcards, each matching within one path segment.
//! - **`icontains`** ignores ASCII case (and Unicode case for non-ASCII values).
//!
//! Evaluation allocates nothing for header fields. `jevt.*` fields parse the
//! event's JSON once per evaluation, on first use, and not at all if no such
//! field is reached; to share that parse between several conditions, evaluate
//! them with [`Condition::matches_in`] on one [`EvalContext`].

mod ast;
mod body;
mod context;
mod eval;
mod fields;
mod glob;
mod json;
mod lexer;
mod matcher;
mod origin;
mod parser;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

pub use ast::{Comparison, Expr, FieldName, Literal, MacroRef, Operand, OperandKind, Operator};
pub use context::EvalContext;
pub use fields::{
    event_time, format_event_time, FieldError, FieldExtractor, FieldResolver, StandardFields,
};
pub use json::{JsonPointer, JsonRef};
pub use parser::{parse, scan_field};
pub use value::{FieldRef, FieldValue, Scalar};

use crate::event::Event;
use eval::Node;

/// Why a condition could not be parsed or compiled, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct ConditionError {
    /// The 1-based character column of the offending token in the condition
    /// text (one past the last character when the text ended too early).
    pub position: usize,
    /// What is wrong, naming what was expected.
    pub message: String,
}

impl ConditionError {
    /// An error at `position` (1-based character column).
    pub fn new(position: usize, message: impl Into<String>) -> ConditionError {
        ConditionError {
            position,
            message: message.into(),
        }
    }
}

/// A compiled condition: cheap to clone and to share between threads.
#[derive(Clone)]
pub struct Condition {
    source: Arc<str>,
    root: Arc<Node>,
}

impl Condition {
    /// Parses and compiles `text` with the [`StandardFields`].
    pub fn compile(text: &str) -> Result<Condition, ConditionError> {
        Condition::compile_with(text, &StandardFields)
    }

    /// Parses and compiles `text`, resolving fields with `fields`.
    pub fn compile_with(
        text: &str,
        fields: &dyn FieldResolver,
    ) -> Result<Condition, ConditionError> {
        let expr = parse(text)?;
        Condition::build(&expr, fields, text.into())
    }

    /// Compiles a syntax tree (after macro and list expansion, say), resolving fields with `fields`.
    pub fn from_expr(expr: &Expr, fields: &dyn FieldResolver) -> Result<Condition, ConditionError> {
        Condition::build(expr, fields, expr.to_string().into())
    }

    fn build(
        expr: &Expr,
        fields: &dyn FieldResolver,
        source: Arc<str>,
    ) -> Result<Condition, ConditionError> {
        let root = Node::compile(expr, fields)?;
        Ok(Condition {
            source,
            root: Arc::new(root),
        })
    }

    /// Whether `event` satisfies the condition.
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_in(&EvalContext::new(event))
    }

    /// Whether the event of `ctx` satisfies the condition, reusing the JSON `ctx` may have parsed.
    pub fn matches_in(&self, ctx: &EvalContext<'_>) -> bool {
        self.root.eval(ctx)
    }

    /// The condition's text (printed from the tree when compiled with [`Condition::from_expr`]).
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}
