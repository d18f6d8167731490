//! Character-level scanning of condition text: names, operators, values.
//!
//! The parser drives the [`Cursor`] and says what to read next, because what a
//! token is depends on where it stands: after an operator, `/api/v1` or
//! `system:serviceaccount:ns:sa` is one bare value, while in field position a
//! name ends at the first character that cannot be part of one. Positions are
//! 1-based character columns, as [`ConditionError`] reports them; the end of
//! the text is one past its last character.

use super::ast::Operator;
use super::ConditionError;

/// Whether `c` can start a field or macro name.
pub(super) fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Whether `c` can continue a field or macro name (fields have dots: `ka.user.name`).
pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Whether `c` ends an unquoted value.
pub(super) fn ends_bare_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | ',' | '"' | '\'')
}

/// A position in the condition text, one character at a time.
pub(super) struct Cursor {
    chars: Vec<char>,
    index: usize,
}

impl Cursor {
    /// A cursor at the start of `text`.
    pub(super) fn new(text: &str) -> Cursor {
        Cursor {
            chars: text.chars().collect(),
            index: 0,
        }
    }

    /// The 1-based character column of the next character.
    pub(super) fn position(&self) -> usize {
        self.index + 1
    }

    /// The next character, if any.
    pub(super) fn peek(&self) -> Option<char> {
        self.peek_nth(0)
    }

    fn peek_nth(&self, n: usize) -> Option<char> {
        self.chars.get(self.index + n).copied()
    }

    /// Moves past the next character.
    pub(super) fn bump(&mut self) {
        self.advance(1);
    }

    fn advance(&mut self, n: usize) {
        self.index = (self.index + n).min(self.chars.len());
    }

    /// Whether the whole text has been read.
    pub(super) fn at_end(&self) -> bool {
        self.index >= self.chars.len()
    }

    /// Moves past whitespace.
    pub(super) fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// The run of name characters at the cursor (empty if there is none).
    pub(super) fn word(&self) -> String {
        self.chars
            .get(self.index..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| is_name_char(**c))
            .collect()
    }

    /// Moves past `word` if it stands whole at the cursor (`and`, not `android`).
    pub(super) fn eat_word(&mut self, word: &str) -> bool {
        let found = self.word() == word;
        if found {
            self.advance(word.chars().count());
        }
        found
    }

    /// Reads a field or macro name, if one starts at the cursor.
    pub(super) fn read_name(&mut self) -> Option<String> {
        if !self.peek().is_some_and(is_name_start) {
            return None;
        }
        let name = self.word();
        self.advance(name.chars().count());
        Some(name)
    }

    /// Reads a bracketed field argument (`[/objectRef/resource]`) directly at the cursor.
    pub(super) fn read_argument(&mut self) -> Result<Option<String>, ConditionError> {
        if self.peek() != Some('[') {
            return Ok(None);
        }
        let open = self.position();
        self.bump();
        let mut arg = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ConditionError::new(
                        open,
                        "unclosed `[`: expected `]` to end the field argument",
                    ))
                }
                Some(']') => {
                    self.bump();
                    return Ok(Some(arg));
                }
                Some(c) => {
                    arg.push(c);
                    self.bump();
                }
            }
        }
    }

    /// The symbolic operator at the cursor and its length in characters.
    fn symbol_operator(&self) -> Option<(Operator, usize)> {
        match (self.peek(), self.peek_nth(1)) {
            (Some('='), Some('=')) => Some((Operator::Eq, 2)),
            (Some('='), _) => Some((Operator::Eq, 1)),
            (Some('!'), Some('=')) => Some((Operator::Ne, 2)),
            (Some('<'), Some('=')) => Some((Operator::Le, 2)),
            (Some('<'), _) => Some((Operator::Lt, 1)),
            (Some('>'), Some('=')) => Some((Operator::Ge, 2)),
            (Some('>'), _) => Some((Operator::Gt, 1)),
            _ => None,
        }
    }

    /// Reads a symbolic operator (`=`, `==`, `!=`, `<`, `<=`, `>`, `>=`), if one is at the cursor.
    pub(super) fn read_symbol_operator(&mut self) -> Option<Operator> {
        let (operator, len) = self.symbol_operator()?;
        self.advance(len);
        Some(operator)
    }

    /// Reads a quoted string (`"..."` or `'...'`) starting at the cursor, resolving escapes.
    ///
    /// `\\`, `\"`, `\'`, `\n`, `\t` and `\r` are escapes; a backslash before
    /// any other character is kept as written.
    pub(super) fn read_quoted(&mut self) -> Result<String, ConditionError> {
        let open = self.position();
        let quote = self.peek().unwrap_or('"');
        self.bump();
        let mut text = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ConditionError::new(
                        open,
                        format!("unclosed string: expected a closing {quote}"),
                    ))
                }
                Some(c) if c == quote => {
                    self.bump();
                    return Ok(text);
                }
                Some('\\') => self.read_escape(&mut text),
                Some(c) => {
                    text.push(c);
                    self.bump();
                }
            }
        }
    }

    fn read_escape(&mut self, text: &mut String) {
        self.bump();
        let Some(c) = self.peek() else {
            return;
        };
        match c {
            'n' => text.push('\n'),
            't' => text.push('\t'),
            'r' => text.push('\r'),
            '\\' | '"' | '\'' => text.push(c),
            other => {
                text.push('\\');
                text.push(other);
            }
        }
        self.bump();
    }

    /// Reads an unquoted value: everything up to whitespace, a parenthesis, a comma or a quote.
    pub(super) fn read_bare(&mut self) -> String {
        let mut text = String::new();
        while let Some(c) = self.peek().filter(|c| !ends_bare_value(*c)) {
            text.push(c);
            self.bump();
        }
        text
    }

    /// Names the token at the cursor for an error message ("found ...").
    pub(super) fn describe_next(&self) -> String {
        const MAX_CHARS: usize = 24;
        let Some(c) = self.peek() else {
            return "the end of the condition".to_string();
        };
        if let Some((operator, _)) = self.symbol_operator() {
            return format!("`{operator}`");
        }
        match c {
            '"' | '\'' => "a quoted string".to_string(),
            '(' | ')' | ',' | '[' | ']' => format!("`{c}`"),
            _ if is_name_char(c) => format!("`{}`", self.word()),
            _ => {
                let rest = self.chars.get(self.index..).unwrap_or_default();
                let token: String = rest
                    .iter()
                    .take_while(|c| !ends_bare_value(**c))
                    .take(MAX_CHARS)
                    .collect();
                format!("`{token}`")
            }
        }
    }
}
