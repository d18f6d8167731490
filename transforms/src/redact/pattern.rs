//! Patterns searched in every string of the bodies, and the built-in ones.
//!
//! A pattern is a named regular expression (Rust `regex` syntax). Its whole
//! match is redacted, or only its `secret` group when it has one
//! (`(?P<secret>...)`), so context such as `Bearer ` or a URL's user name can
//! stay readable.
//!
//! Before parsing a body, the patterns are tried on its raw JSON text: when none
//! matches there, no string inside can match either, and the body is left
//! unparsed. That shortcut is only taken when it is sound: the body holds no
//! escape (`\`), so its strings read the same raw and decoded, and no pattern
//! uses an anchor (`^`, `$`, `\A`, `\z`), which could match inside a string and
//! not in the raw text.

use regex::{Regex, RegexSet};
use serde_json::Value;

use super::replacer::Replacer;

/// The built-in patterns, by name: (name, regex, what it finds).
pub const BUILTIN_PATTERNS: [(&str, &str, &str); 5] = [
    (
        "bearer_token",
        r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
        "the token of an `Authorization: Bearer ...` value",
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        "JSON Web Tokens (service account tokens, OIDC ID tokens)",
    ),
    (
        "aws_access_key",
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}\b",
        "AWS access key ids",
    ),
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY-----",
        "PEM private key blocks",
    ),
    (
        "basic_auth_url",
        r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/]+:(?P<secret>[^\s@/]+)@",
        "the password of a `scheme://user:password@host` URL",
    ),
];

/// One named pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The name (in the mask marker and the metrics).
    pub name: String,
    regex: Regex,
    secret_group: Option<usize>,
}

impl Pattern {
    /// Compiles a pattern; the error is the regex's own.
    pub fn new(name: &str, regex: &str) -> Result<Pattern, String> {
        let regex = Regex::new(regex).map_err(|error| error.to_string())?;
        let secret_group = regex
            .capture_names()
            .position(|group| group == Some("secret"));
        Ok(Pattern {
            name: name.to_string(),
            regex,
            secret_group,
        })
    }

    /// The built-in pattern of that name.
    pub fn builtin(name: &str) -> Option<Pattern> {
        BUILTIN_PATTERNS
            .iter()
            .find(|(builtin, _, _)| *builtin == name)
            .and_then(|(name, regex, _)| Pattern::new(name, regex).ok())
    }

    /// The text with every match (or its `secret` group) replaced; `None` when nothing matched.
    fn replace(&self, text: &str, replacer: &Replacer) -> Option<(String, u64)> {
        let mut out = String::new();
        let mut last = 0;
        let mut count = 0;
        for captures in self.regex.captures_iter(text) {
            let found = match self.secret_group {
                Some(group) => captures.get(group),
                None => captures.get(0),
            };
            let Some(found) = found.filter(|m| !m.is_empty()) else {
                continue;
            };
            out.push_str(text.get(last..found.start()).unwrap_or_default());
            out.push_str(&replacer.matched(&self.name, found.as_str()));
            last = found.end();
            count += 1;
        }
        if count == 0 {
            return None;
        }
        out.push_str(text.get(last..).unwrap_or_default());
        Some((out, count))
    }
}

/// The patterns of one transform.
#[derive(Debug, Clone)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    prefilter: Option<RegexSet>,
}

impl PatternSet {
    /// A set of compiled patterns.
    pub fn new(patterns: Vec<Pattern>) -> PatternSet {
        let anchored = patterns.iter().any(|p| uses_anchors(p.regex.as_str()));
        let prefilter = if anchored {
            None
        } else {
            RegexSet::new(patterns.iter().map(|p| p.regex.as_str())).ok()
        };
        PatternSet {
            patterns,
            prefilter,
        }
    }

    /// Whether there is no pattern.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether a body's raw JSON text may hold a string a pattern matches.
    pub fn may_match(&self, body: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        match &self.prefilter {
            Some(set) if !body.contains('\\') => set.is_match(body),
            _ => true,
        }
    }

    /// Redacts matches in every string of the tree; adds each pattern's count to `counts`.
    pub fn redact(&self, value: &mut Value, replacer: &Replacer, counts: &mut [u64]) {
        match value {
            Value::String(text) => {
                for (index, pattern) in self.patterns.iter().enumerate() {
                    if let Some((replaced, count)) = pattern.replace(text, replacer) {
                        *text = replaced;
                        if let Some(slot) = counts.get_mut(index) {
                            *slot += count;
                        }
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.redact(item, replacer, counts);
                }
            }
            Value::Object(map) => {
                for child in map.values_mut() {
                    self.redact(child, replacer, counts);
                }
            }
            _ => {}
        }
    }
}

/// Whether a regex asserts the start or end of the text or of a line (those
/// could match inside a JSON string and not in the raw text around it).
fn uses_anchors(regex: &str) -> bool {
    use regex_syntax::hir::Look;
    let Ok(hir) = regex_syntax::parse(regex) else {
        return true;
    };
    let looks = hir.properties().look_set();
    [
        Look::Start,
        Look::End,
        Look::StartLF,
        Look::EndLF,
        Look::StartCRLF,
        Look::EndCRLF,
    ]
    .into_iter()
    .any(|look| looks.contains(look))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::replacer::{HashEncoding, Mode};
    use serde_json::json;

    fn all_builtins() -> PatternSet {
        PatternSet::new(
            BUILTIN_PATTERNS
                .iter()
                .map(|(name, _, _)| Pattern::builtin(name).unwrap())
                .collect(),
        )
    }

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlX2J5dGVz";

    #[test]
    fn every_builtin_finds_its_secret() {
        let set = all_builtins();
        let mask = Replacer::new(Mode::Mask, None, HashEncoding::Hex).unwrap();
        let mut body = json!({
            "header": "Authorization: Bearer abcdef0123456789",
            "token": JWT,
            "env": [{"value": "AKIAIOSFODNN7EXAMPLE"}],
            "key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nxyz\n-----END RSA PRIVATE KEY-----\n",
            "url": "https://admin:hunter2@registry.example.com/v2/",
            "plain": "nothing to see",
            "n": 3
        });
        let mut counts = vec![0; 5];
        set.redact(&mut body, &mask, &mut counts);
        assert_eq!(counts, vec![1, 1, 1, 1, 1]);
        assert_eq!(
            body,
            json!({
                "header": "Authorization: Bearer [REDACTED:bearer_token]",
                "token": "[REDACTED:jwt]",
                "env": [{"value": "[REDACTED:aws_access_key]"}],
                "key": "[REDACTED:private_key]\n",
                "url": "https://admin:[REDACTED:basic_auth_url]@registry.example.com/v2/",
                "plain": "nothing to see",
                "n": 3
            })
        );
    }

    #[test]
    fn the_raw_text_prefilter_is_sound() {
        let set = all_builtins();
        assert!(!set.may_match(r#"{"a":"nothing here"}"#));
        assert!(set.may_match(&format!(r#"{{"a":"{JWT}"}}"#)));
        assert!(
            set.may_match(r#"{"a":"escaped\u0041"}"#),
            "escapes force a parse"
        );
        let anchored = PatternSet::new(vec![Pattern::new("p", "^secret").unwrap()]);
        assert!(
            anchored.may_match(r#"{"a":"other"}"#),
            "anchors force a parse"
        );
    }

    #[test]
    fn remove_and_hash_replace_only_the_match() {
        let set = PatternSet::new(vec![Pattern::new("tok", r"tok_[a-z0-9]{6}").unwrap()]);
        let remove = Replacer::new(Mode::Remove, None, HashEncoding::Hex).unwrap();
        let mut value = json!("a tok_abc123 b tok_xyz789");
        let mut counts = vec![0];
        set.redact(&mut value, &remove, &mut counts);
        assert_eq!(value, json!("a  b "));
        assert_eq!(counts, vec![2]);
        let hash = Replacer::new(Mode::Hash, Some("k"), HashEncoding::Hex).unwrap();
        let mut value = json!("x tok_abc123");
        set.redact(&mut value, &hash, &mut counts);
        assert!(value.as_str().unwrap().starts_with("x hmac-sha256:"));
    }
}
