//! Small JSON text helpers that work on bytes, without building a value tree.

/// Removes the whitespace outside strings from a JSON text, leaving every
/// token (numbers, strings and their escapes) exactly as written.
///
/// Used to turn a pretty-printed document into one NDJSON line losslessly.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for ch in text.chars() {
        if in_string {
            out.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if ch == '"' {
            in_string = true;
            out.push(ch);
        } else if !ch.is_ascii_whitespace() {
            out.push(ch);
        }
    }
    out
}

/// Cuts a text to at most `max` bytes on a character boundary.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_strings_and_numbers() {
        let pretty = "{\n  \"a\" : \"x \\\" y\\n\",\n  \"n\": 1.50e3 ,\"b\":[ 1, 2 ]\n}";
        assert_eq!(
            compact_json(pretty),
            r#"{"a":"x \" y\n","n":1.50e3,"b":[1,2]}"#
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
