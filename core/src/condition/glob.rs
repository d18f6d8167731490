//! Glob patterns, compiled to anchored regular expressions.
//!
//! `*` matches any run of characters and `?` any one character, neither
//! crossing a `/` (so `/var/*` matches `/var/run` but not `/var/run/x`, as
//! Falco documents for `glob`); `[abc]`, `[a-z]` and `[!a-z]` (or `[^a-z]`)
//! are character classes, and a `[` without its `]` is a plain character.
//! Backslash has no special meaning. The `regex` crate matches in linear time,
//! so no pattern can make matching slow.

use regex::Regex;

/// Whether `text` contains glob wildcards.
pub(super) fn has_wildcards(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// How much of the text the pattern must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anchor {
    /// The whole text (`glob`).
    Whole,
    /// A leading run of whole path segments (`pmatch`): the match ends at a `/` or at the end.
    PathPrefix,
}

/// Compiles a glob pattern.
pub(super) fn compile(pattern: &str, anchor: Anchor) -> Result<Regex, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut regex = String::with_capacity(pattern.len() * 2 + 12);
    regex.push('^');
    let mut index = 0;
    while let Some(&c) = chars.get(index) {
        index += 1;
        match c {
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            '[' => match class(&chars, index) {
                Some((class, next)) => {
                    regex.push_str(&class);
                    index = next;
                }
                None => regex.push_str(r"\["),
            },
            other => regex.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
        }
    }
    regex.push_str(match anchor {
        Anchor::Whole => "$",
        Anchor::PathPrefix => "(?:/|$)",
    });
    Regex::new(&regex).map_err(|error| format!("invalid glob pattern `{pattern}`: {error}"))
}

/// Translates the class that starts at `start` (just after its `[`): the regex
/// class and the index after its `]`, or `None` if it is not closed.
fn class(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut index = start;
    let negated = matches!(chars.get(index), Some('!' | '^'));
    if negated {
        index += 1;
    }
    let mut out = String::from(if negated { "[^/" } else { "[" });
    let mut first = true;
    loop {
        let c = *chars.get(index)?;
        if c == ']' && !first {
            break;
        }
        first = false;
        let range_end = match (chars.get(index + 1), chars.get(index + 2)) {
            (Some('-'), Some(&end)) if end != ']' => Some(end),
            _ => None,
        };
        push_class_char(&mut out, c);
        match range_end {
            Some(end) => {
                out.push('-');
                push_class_char(&mut out, end);
                index += 3;
            }
            None => index += 1,
        }
    }
    out.push(']');
    Some((out, index + 1))
}

/// Writes a character inside a regex class as a hex escape, which no class syntax can misread.
fn push_class_char(out: &mut String, c: char) {
    out.push_str(&format!("\\x{{{:x}}}", u32::from(c)));
}
