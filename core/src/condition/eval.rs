//! Compiling a syntax tree into an evaluation tree, and evaluating it.
//!
//! Compiling resolves every field to its extractor and every operator to a
//! [`Matcher`] with its values prepared, and flattens nested `and`s and `or`s.
//! Evaluating short-circuits left to right, as Falco does.

use super::ast::{Comparison, Expr};
use super::context::EvalContext;
use super::fields::{FieldError, FieldExtractor, FieldResolver};
use super::matcher::Matcher;
use super::ConditionError;

/// A compiled condition.
#[derive(Debug)]
pub(super) enum Node {
    /// Every child holds.
    All(Box<[Node]>),
    /// Some child holds.
    Any(Box<[Node]>),
    /// The child does not hold.
    Not(Box<Node>),
    /// A field compared with values.
    Test(Test),
}

/// One compiled comparison: a field and what to apply to its value.
#[derive(Debug)]
pub(super) struct Test {
    field: Box<dyn FieldExtractor>,
    matcher: Matcher,
}

impl Node {
    /// Compiles `expr`, resolving its fields with `fields`.
    pub(super) fn compile(expr: &Expr, fields: &dyn FieldResolver) -> Result<Node, ConditionError> {
        match expr {
            Expr::And(items) => Ok(Node::All(compile_flat(items, fields, all_children)?)),
            Expr::Or(items) => Ok(Node::Any(compile_flat(items, fields, any_children)?)),
            Expr::Not(inner) => Ok(Node::Not(Box::new(Node::compile(inner, fields)?))),
            Expr::Compare(comparison) => Ok(Node::Test(Test::compile(comparison, fields)?)),
            Expr::Macro(reference) => Err(ConditionError::new(
                reference.position,
                format!("unknown macro or field `{}`", reference.name),
            )),
        }
    }

    /// Whether the event in `ctx` satisfies the condition.
    pub(super) fn eval(&self, ctx: &EvalContext<'_>) -> bool {
        match self {
            Node::All(children) => children.iter().all(|child| child.eval(ctx)),
            Node::Any(children) => children.iter().any(|child| child.eval(ctx)),
            Node::Not(child) => !child.eval(ctx),
            Node::Test(test) => test.matcher.test(&test.field.read(ctx)),
        }
    }
}

impl Test {
    fn compile(
        comparison: &Comparison,
        fields: &dyn FieldResolver,
    ) -> Result<Test, ConditionError> {
        let name = &comparison.field;
        let field = fields
            .resolve(&name.name, name.arg.as_deref())
            .map_err(|error| {
                let message = match error {
                    FieldError::Unknown => format!("unknown field `{}`", name.name),
                    FieldError::Argument(message) => message,
                };
                ConditionError::new(name.position, message)
            })?;
        Ok(Test {
            field,
            matcher: Matcher::compile(comparison)?,
        })
    }
}

/// The children of an `and` node, or the node back if it is something else.
fn all_children(node: Node) -> Result<Box<[Node]>, Node> {
    match node {
        Node::All(children) => Ok(children),
        other => Err(other),
    }
}

/// The children of an `or` node, or the node back if it is something else.
fn any_children(node: Node) -> Result<Box<[Node]>, Node> {
    match node {
        Node::Any(children) => Ok(children),
        other => Err(other),
    }
}

/// Compiles the children of an `and` (or `or`), lifting the children of nested ones of the same kind.
fn compile_flat(
    items: &[Expr],
    fields: &dyn FieldResolver,
    children_of: fn(Node) -> Result<Box<[Node]>, Node>,
) -> Result<Box<[Node]>, ConditionError> {
    let mut nodes = Vec::with_capacity(items.len());
    for item in items {
        match children_of(Node::compile(item, fields)?) {
            Ok(children) => nodes.extend(children.into_vec()),
            Err(node) => nodes.push(node),
        }
    }
    Ok(nodes.into_boxed_slice())
}
