//! The recursive-descent parser: condition text to [`Expr`].
//!
//! Grammar (`not` binds tighter than `and`, which binds tighter than `or`):
//!
//! ```text
//! condition  := or END
//! or         := and ("or" and)*
//! and        := not ("and" not)*
//! not        := "not" not | primary
//! primary    := "(" or ")" | NAME ARG? (operator operand)?
//! operand    := nothing (exists) | value | "(" (value ("," value)*)? ")"
//! value      := "..." | '...' | bare word
//! ```
//!
//! A `NAME` with no operator after it is a macro reference; one with a dot or
//! an argument must be followed by an operator, since it can only be a field.

use super::ast::{Comparison, Expr, FieldName, Literal, MacroRef, Operand, OperandKind, Operator};
use super::lexer::{ends_bare_value, is_name_char, is_name_start, Cursor};
use super::ConditionError;

/// How deeply parentheses and `not`s may nest: deeper input is refused rather than overflowing the stack.
const MAX_DEPTH: usize = 100;

/// Falco operators this implementation does not support, named in the error when used.
const UNSUPPORTED_OPERATORS: [&str; 5] =
    ["regex", "iglob", "bcontains", "bstartswith", "iendswith"];

/// Parses condition text into its syntax tree.
///
/// Macro references are kept as [`Expr::Macro`]; fields are not checked here
/// (that happens when compiling, against a [`FieldResolver`](super::FieldResolver)).
pub fn parse(text: &str) -> Result<Expr, ConditionError> {
    let mut parser = Parser {
        cursor: Cursor::new(text),
        depth: 0,
    };
    let expr = parser.or()?;
    parser.cursor.skip_whitespace();
    if parser.cursor.at_end() {
        Ok(expr)
    } else {
        Err(parser.expected("`and`, `or` or the end of the condition"))
    }
}

/// Reads a field reference at the start of `text` (as output formats write
/// them after `%`): returns the field and how many bytes of `text` it spans.
///
/// `scan_field("ka.user.name)")` is the field `ka.user.name` and 12 bytes;
/// `scan_field("jevt.value[/a/b] x")` has the argument `/a/b` and spans 16
/// bytes. `None` when no name starts `text` or a `[` is not closed.
pub fn scan_field(text: &str) -> Option<(FieldName, usize)> {
    if !text.starts_with(is_name_start) {
        return None;
    }
    let name_len = text.find(|c| !is_name_char(c)).unwrap_or(text.len());
    let name = text.get(..name_len)?;
    let rest = text.get(name_len..)?;
    let (arg, arg_len) = match rest.strip_prefix('[') {
        Some(inner) => {
            let close = inner.find(']')?;
            (Some(inner.get(..close)?.to_string()), close + 2)
        }
        None => (None, 0),
    };
    let field = FieldName {
        name: name.to_string(),
        arg,
        position: 1,
    };
    Some((field, name_len + arg_len))
}

/// Where a value is being read, for error messages.
enum ValueContext {
    /// The single value after an operator.
    AfterOperator(Operator),
    /// An item of a value list opened at this position.
    InList(usize),
}

struct Parser {
    cursor: Cursor,
    depth: usize,
}

impl Parser {
    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.and()?];
        loop {
            self.cursor.skip_whitespace();
            if !self.cursor.eat_word("or") {
                break;
            }
            items.push(self.and()?);
        }
        Ok(collapse(items, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.not()?];
        loop {
            self.cursor.skip_whitespace();
            if !self.cursor.eat_word("and") {
                break;
            }
            items.push(self.not()?);
        }
        Ok(collapse(items, Expr::And))
    }

    fn not(&mut self) -> Result<Expr, ConditionError> {
        self.cursor.skip_whitespace();
        let position = self.cursor.position();
        if !self.cursor.eat_word("not") {
            return self.primary();
        }
        self.enter(position)?;
        let inner = self.not()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        self.cursor.skip_whitespace();
        match self.cursor.peek() {
            Some('(') => self.parenthesized(),
            Some(c) if is_name_start(c) && !self.at_logical_keyword() => self.field_or_macro(),
            _ => Err(self.expected("a field, a macro, `not` or `(`")),
        }
    }

    fn at_logical_keyword(&self) -> bool {
        matches!(self.cursor.word().as_str(), "and" | "or")
    }

    fn parenthesized(&mut self) -> Result<Expr, ConditionError> {
        let open = self.cursor.position();
        self.cursor.bump();
        self.enter(open)?;
        let inner = self.or()?;
        self.cursor.skip_whitespace();
        match self.cursor.peek() {
            Some(')') => {
                self.cursor.bump();
                self.depth -= 1;
                Ok(inner)
            }
            None => Err(ConditionError::new(
                open,
                "unclosed `(`: expected `)` before the end of the condition",
            )),
            Some(_) => Err(self.expected("`)`, `and` or `or`")),
        }
    }

    fn field_or_macro(&mut self) -> Result<Expr, ConditionError> {
        let position = self.cursor.position();
        let name = self.cursor.read_name().unwrap_or_default();
        let arg = self.cursor.read_argument()?;
        if arg.is_none() && self.cursor.peek() == Some('(') {
            return Err(ConditionError::new(
                position,
                format!("`{name}(`: field transformers and function calls are not supported"),
            ));
        }
        self.cursor.skip_whitespace();
        let operator_position = self.cursor.position();
        let field = FieldName {
            name,
            arg,
            position,
        };
        match self.operator(&field)? {
            Some(operator) => {
                let operand = self.operand(operator)?;
                Ok(Expr::Compare(Comparison {
                    field,
                    operator,
                    operator_position,
                    operand,
                }))
            }
            None => Ok(Expr::Macro(MacroRef {
                name: field.name,
                position,
            })),
        }
    }

    /// Reads the operator after a name; `None` when there is none and the name can be a macro.
    fn operator(&mut self, field: &FieldName) -> Result<Option<Operator>, ConditionError> {
        if let Some(operator) = self.cursor.read_symbol_operator() {
            return Ok(Some(operator));
        }
        let word = self.cursor.word();
        if let Some(operator) = Operator::from_keyword(&word) {
            self.cursor.eat_word(&word);
            return Ok(Some(operator));
        }
        if UNSUPPORTED_OPERATORS.contains(&word.as_str()) {
            return Err(ConditionError::new(
                self.cursor.position(),
                format!(
                    "the operator `{word}` is not supported; expected one of {}",
                    Operator::list()
                ),
            ));
        }
        if field.name.contains('.') || field.arg.is_some() {
            return Err(self.expected(&format!(
                "an operator ({}) after the field `{field}`",
                Operator::list()
            )));
        }
        Ok(None)
    }

    fn operand(&mut self, operator: Operator) -> Result<Operand, ConditionError> {
        match operator.operand_kind() {
            OperandKind::None => Ok(Operand::None),
            OperandKind::Value => Ok(Operand::Value(
                self.value(ValueContext::AfterOperator(operator))?,
            )),
            OperandKind::List => Ok(Operand::List(self.list(operator)?)),
        }
    }

    fn list(&mut self, operator: Operator) -> Result<Vec<Literal>, ConditionError> {
        self.cursor.skip_whitespace();
        if self.cursor.peek() != Some('(') {
            return Err(self.expected(&format!("`(` and a list of values after `{operator}`")));
        }
        let open = self.cursor.position();
        self.cursor.bump();
        let mut items = Vec::new();
        self.cursor.skip_whitespace();
        if self.cursor.peek() == Some(')') {
            self.cursor.bump();
            return Ok(items);
        }
        loop {
            items.push(self.value(ValueContext::InList(open))?);
            self.cursor.skip_whitespace();
            match self.cursor.peek() {
                Some(',') => self.cursor.bump(),
                Some(')') => {
                    self.cursor.bump();
                    return Ok(items);
                }
                None => return Err(unclosed_list(open)),
                Some(_) => return Err(self.expected("`,` or `)` in the list of values")),
            }
        }
    }

    fn value(&mut self, context: ValueContext) -> Result<Literal, ConditionError> {
        self.cursor.skip_whitespace();
        let position = self.cursor.position();
        match (self.cursor.peek(), &context) {
            (Some('"' | '\''), _) => Ok(Literal {
                text: self.cursor.read_quoted()?,
                quoted: true,
                position,
            }),
            (Some(c), _) if !ends_bare_value(c) => Ok(Literal {
                text: self.cursor.read_bare(),
                quoted: false,
                position,
            }),
            (None, ValueContext::InList(open)) => Err(unclosed_list(*open)),
            (_, ValueContext::InList(_)) => Err(self.expected("a value in the list")),
            (_, ValueContext::AfterOperator(operator)) => {
                Err(self.expected(&format!("a value after `{operator}`")))
            }
        }
    }

    /// Goes one level deeper, refusing to go past [`MAX_DEPTH`].
    fn enter(&mut self, position: usize) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ConditionError::new(
                position,
                format!("the condition nests `not` and parentheses more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    /// An error at the cursor: "expected {what}, found {the next token}".
    fn expected(&self, what: &str) -> ConditionError {
        ConditionError::new(
            self.cursor.position(),
            format!("expected {what}, found {}", self.cursor.describe_next()),
        )
    }
}

fn unclosed_list(open: usize) -> ConditionError {
    ConditionError::new(open, "unclosed `(`: expected `)` to end the list of values")
}

/// One item stays itself; several become an `and` or `or` node.
fn collapse(mut items: Vec<Expr>, combine: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return only;
        }
    }
    combine(items)
}
