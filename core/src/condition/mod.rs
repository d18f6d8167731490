//! Falco's condition language over pipeline events: the parser.
//!
//! A condition is text such as
//!
//! ```text
//! ka.verb in (create, update) and ka.target.resource = pods
//!   and not ka.user.name startswith "system:serviceaccount:kube-system:"
//! ```
//!
//! [`parse`] turns it into a syntax tree ([`Expr`]), which a rule loader may
//! rewrite (expand macros and lists) before compiling it.
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
//!   `jevt.value[/objectRef/resource]`.
//! - Values: bare words (`create`, `kube-system`, `/api/v1`,
//!   `system:serviceaccount:ns:sa`: anything up to whitespace, a parenthesis,
//!   a comma or a quote), quoted strings (`"..."` or `'...'`, with `\\`, `\"`,
//!   `\'`, `\n`, `\t`, `\r` escapes), numbers (written like any other value).
//! - A bare identifier without an operator after it is a macro reference
//!   ([`Expr::Macro`]).

mod ast;
mod lexer;
mod parser;

#[cfg(test)]
mod tests;

pub use ast::{Comparison, Expr, FieldName, Literal, MacroRef, Operand, OperandKind, Operator};
pub use parser::{parse, scan_field};

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
