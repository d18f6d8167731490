//! The syntax tree of a condition, as [`parse`](super::parse) builds it.
//!
//! The tree is public so that a rule loader can rewrite it before compiling:
//! replace [`Expr::Macro`] references by the macros' own trees
//! ([`Expr::try_replace_macros`]) and splice Falco lists into value lists
//! ([`Expr::expand_lists`]). [`Expr`] prints back as condition text that parses
//! to the same tree (positions aside).

use std::fmt;

/// A condition's syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every sub-expression holds (two or more of them).
    And(Vec<Expr>),
    /// At least one sub-expression holds (two or more of them).
    Or(Vec<Expr>),
    /// The sub-expression does not hold.
    Not(Box<Expr>),
    /// A field compared with a value, a list of values, or tested for presence.
    Compare(Comparison),
    /// A bare identifier not followed by an operator: a reference to a macro.
    Macro(MacroRef),
}

/// A reference to a macro: a bare identifier in the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroRef {
    /// The identifier.
    pub name: String,
    /// Where it starts in the condition text (1-based character column).
    pub position: usize,
}

/// A field as written in a condition: its name and its bracketed argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldName {
    /// The dotted name, `ka.user.name`.
    pub name: String,
    /// The argument in brackets, `/objectRef/resource` in `jevt.value[/objectRef/resource]`.
    pub arg: Option<String>,
    /// Where the name starts in the condition text (1-based character column).
    pub position: usize,
}

/// One comparison: `field operator operand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The field on the left.
    pub field: FieldName,
    /// The operator.
    pub operator: Operator,
    /// Where the operator starts in the condition text (1-based character column).
    pub operator_position: usize,
    /// What the field is compared with.
    pub operand: Operand,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// Nothing: the operator is `exists`.
    None,
    /// One value: `= create`.
    Value(Literal),
    /// A parenthesized list of values: `in (create, update)`. Unquoted items may name Falco lists.
    List(Vec<Literal>),
}

/// A value written in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// The value, quotes removed and escapes resolved.
    pub text: String,
    /// Whether it was written in quotes (an unquoted item of a value list may name a Falco list).
    pub quoted: bool,
    /// Where it starts in the condition text (1-based character column).
    pub position: usize,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=` (or `==`).
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `contains`.
    Contains,
    /// `icontains` (ASCII case-insensitive `contains`).
    IContains,
    /// `startswith`.
    StartsWith,
    /// `endswith`.
    EndsWith,
    /// `glob`.
    Glob,
    /// `in (...)`.
    In,
    /// `intersects (...)`.
    Intersects,
    /// `pmatch (...)`: path prefix match.
    PMatch,
    /// `exists`.
    Exists,
}

/// What an operator takes on its right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperandKind {
    /// Nothing (`exists`).
    None,
    /// One value.
    Value,
    /// A parenthesized list of values.
    List,
}

impl Operator {
    /// Every operator, in the order error messages list them.
    pub const ALL: [Operator; 15] = [
        Operator::Eq,
        Operator::Ne,
        Operator::Lt,
        Operator::Le,
        Operator::Gt,
        Operator::Ge,
        Operator::In,
        Operator::Intersects,
        Operator::PMatch,
        Operator::Contains,
        Operator::IContains,
        Operator::StartsWith,
        Operator::EndsWith,
        Operator::Glob,
        Operator::Exists,
    ];

    /// The operator as written in conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::Ne => "!=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::Contains => "contains",
            Operator::IContains => "icontains",
            Operator::StartsWith => "startswith",
            Operator::EndsWith => "endswith",
            Operator::Glob => "glob",
            Operator::In => "in",
            Operator::Intersects => "intersects",
            Operator::PMatch => "pmatch",
            Operator::Exists => "exists",
        }
    }

    /// The operator a word names (`in`, `contains`, ...); symbols are not words.
    pub fn from_keyword(word: &str) -> Option<Operator> {
        Operator::ALL
            .into_iter()
            .find(|op| op.is_keyword() && op.as_str() == word)
    }

    /// Whether the operator is written as a word rather than a symbol.
    pub fn is_keyword(self) -> bool {
        self.as_str().starts_with(|c: char| c.is_ascii_alphabetic())
    }

    /// What the operator takes on its right.
    pub fn operand_kind(self) -> OperandKind {
        match self {
            Operator::Exists => OperandKind::None,
            Operator::In | Operator::Intersects | Operator::PMatch => OperandKind::List,
            _ => OperandKind::Value,
        }
    }

    /// The operators as a comma-separated list, for error messages.
    pub fn list() -> String {
        Operator::ALL.map(Operator::as_str).join(", ")
    }
}

impl Expr {
    /// Calls `visit` on this expression and every expression inside it, parents first.
    pub fn visit<'a>(&'a self, visit: &mut impl FnMut(&'a Expr)) {
        visit(self);
        match self {
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| e.visit(visit)),
            Expr::Not(inner) => inner.visit(visit),
            Expr::Compare(_) | Expr::Macro(_) => {}
        }
    }

    /// The macro references in the expression, in order of appearance.
    pub fn macros(&self) -> Vec<&MacroRef> {
        let mut found = Vec::new();
        self.visit(&mut |expr| {
            if let Expr::Macro(reference) = expr {
                found.push(reference);
            }
        });
        found
    }

    /// Replaces macro references: `replace` returns the expression to put in
    /// place of a reference, `None` to keep it, or an error to stop.
    ///
    /// A returned expression is not searched for further references: expand
    /// macros inside macros in `replace` itself.
    pub fn try_replace_macros<E>(
        self,
        replace: &mut impl FnMut(&MacroRef) -> Result<Option<Expr>, E>,
    ) -> Result<Expr, E> {
        Ok(match self {
            Expr::And(items) => Expr::And(replace_all(items, replace)?),
            Expr::Or(items) => Expr::Or(replace_all(items, replace)?),
            Expr::Not(inner) => Expr::Not(Box::new(inner.try_replace_macros(replace)?)),
            Expr::Compare(comparison) => Expr::Compare(comparison),
            Expr::Macro(reference) => match replace(&reference)? {
                Some(expr) => expr,
                None => Expr::Macro(reference),
            },
        })
    }

    /// Calls `visit` on every value list (of `in`, `intersects`, `pmatch`), with its operator.
    pub fn for_each_list_mut(&mut self, visit: &mut impl FnMut(Operator, &mut Vec<Literal>)) {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                items.iter_mut().for_each(|e| e.for_each_list_mut(visit))
            }
            Expr::Not(inner) => inner.for_each_list_mut(visit),
            Expr::Compare(comparison) => {
                if let Operand::List(list) = &mut comparison.operand {
                    visit(comparison.operator, list);
                }
            }
            Expr::Macro(_) => {}
        }
    }

    /// Splices lists into value lists: each unquoted item for which `lookup`
    /// returns items is replaced by them, as Falco expands `in (list_name)`.
    pub fn expand_lists(&mut self, lookup: &mut impl FnMut(&str) -> Option<Vec<Literal>>) {
        self.for_each_list_mut(&mut |_, list| {
            let items = std::mem::take(list);
            for item in items {
                match lookup_unquoted(&item, lookup) {
                    Some(expansion) => list.extend(expansion),
                    None => list.push(item),
                }
            }
        });
    }

    /// How tightly the expression binds when printed: higher binds tighter.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => 1,
            Expr::And(_) => 2,
            Expr::Not(_) | Expr::Compare(_) | Expr::Macro(_) => 3,
        }
    }

    fn fmt_within(&self, f: &mut fmt::Formatter<'_>, min_precedence: u8) -> fmt::Result {
        if self.precedence() < min_precedence {
            write!(f, "(")?;
            self.fmt_bare(f)?;
            write!(f, ")")
        } else {
            self.fmt_bare(f)
        }
    }

    fn fmt_bare(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) => fmt_joined(f, items, " or ", 2),
            Expr::And(items) => fmt_joined(f, items, " and ", 3),
            Expr::Not(inner) => {
                write!(f, "not ")?;
                inner.fmt_within(f, 3)
            }
            Expr::Compare(comparison) => write!(f, "{comparison}"),
            Expr::Macro(reference) => write!(f, "{}", reference.name),
        }
    }
}

fn replace_all<E>(
    items: Vec<Expr>,
    replace: &mut impl FnMut(&MacroRef) -> Result<Option<Expr>, E>,
) -> Result<Vec<Expr>, E> {
    items
        .into_iter()
        .map(|item| item.try_replace_macros(replace))
        .collect()
}

fn lookup_unquoted(
    item: &Literal,
    lookup: &mut impl FnMut(&str) -> Option<Vec<Literal>>,
) -> Option<Vec<Literal>> {
    if item.quoted {
        None
    } else {
        lookup(&item.text)
    }
}

fn fmt_joined(
    f: &mut fmt::Formatter<'_>,
    items: &[Expr],
    separator: &str,
    min_precedence: u8,
) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        item.fmt_within(f, min_precedence)?;
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_bare(f)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.arg {
            Some(arg) => write!(f, "[{arg}]"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.operator)?;
        match &self.operand {
            Operand::None => Ok(()),
            Operand::Value(value) => write!(f, " {value}"),
            Operand::List(items) => {
                f.write_str(" (")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Literal {
    /// Bare when it was written bare and reads back the same; quoted otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.quoted && is_bare_safe(&self.text) {
            return f.write_str(&self.text);
        }
        f.write_str("\"")?;
        for c in self.text.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                other => write!(f, "{other}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Whether a value can be written without quotes and read back unchanged.
fn is_bare_safe(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(super::lexer::ends_bare_value)
}
