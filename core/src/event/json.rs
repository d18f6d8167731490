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
/// One pass over the bytes, aware of strings and escapes; no allocation.
pub fn max_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut index = 0;
    while let Some(found) = memchr::memchr3(b'"', b'{', b'[', &bytes[index..]) {
        let at = index + found;
        match bytes[at] {
            b'"' => match skip_string(bytes, at + 1) {
                Some(end) => {
                    depth = depth.saturating_sub(closers(&bytes[index..at]));
                    index = end;
                    continue;
                }
                None => return false,
            },
            _ => {
                depth = depth.saturating_sub(closers(&bytes[index..at])) + 1;
                if depth > limit {
                    return true;
                }
            }
        }
        index = at + 1;
    }
    false
}

/// The number of closing brackets in a run of bytes that holds no string.
fn closers(run: &[u8]) -> usize {
    memchr::memchr2_iter(b'}', b']', run).count()
}

/// The index just past the closing quote of a string whose content starts at `start`.
fn skip_string(bytes: &[u8], start: usize) -> Option<usize> {
    let mut index = start;
    loop {
        let found = memchr::memchr2(b'"', b'\\', bytes.get(index..)?)?;
        let at = index + found;
        if bytes[at] == b'\\' {
            index = at + 2;
        } else {
            return Some(at + 1);
        }
    }
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
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
