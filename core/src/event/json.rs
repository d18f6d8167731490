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

/// Whether a JSON text nests arrays and objects deeper than `limit`.
///
/// Most texts hold fewer opening brackets than `limit` in all, which a
/// vectorised count shows at once; only the others are scanned precisely,
/// byte by byte, aware of strings and escapes. No allocation.
pub fn max_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let openers = bytes.iter().filter(|&&b| b == b'{' || b == b'[').count();
    openers > limit && precise_depth_exceeds(bytes, limit)
}

fn precise_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
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
    fn depth_is_measured_outside_strings() {
        assert!(!max_depth_exceeds(br#"{"a":[{"b":"[[[[[[["}]}"#, 3));
        assert!(max_depth_exceeds(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!max_depth_exceeds(
            br#"{"a":[1],"b":[2],"c":[3],"d":{"e":"\"["}}"#,
            2
        ));
        assert!(!max_depth_exceeds(br#"[[]],[[]],[[]]"#, 2));
        assert!(max_depth_exceeds("[".repeat(10_000).as_bytes(), 128));
        let wide = format!("[{}]", "[],".repeat(500) + "[]");
        assert!(!max_depth_exceeds(wide.as_bytes(), 128));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
