//! `${VAR}` and `${VAR:-default}` in configuration strings.
//!
//! Interpolation runs on the string values of the parsed TOML, never on the
//! file's text, so a variable's value cannot change the file's structure
//! (a quote or newline in a secret stays part of that one string). `$$`
//! writes a literal `$`. With `:-`, an unset or empty variable takes the
//! default, as in a POSIX shell.

/// Replaces every `${VAR}` / `${VAR:-default}` in `text` using `lookup`.
///
/// An unset variable without a default is an error naming it.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in \"{text}\""))?;
            out.push_str(&expand(&body[..end], lookup)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(expression: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match expression.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (expression, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`${{{expression}}}` is not a variable reference; write ${{NAME}} or ${{NAME:-default}}"
        ));
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_string()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set; set it, or write ${{{name}:-default}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr\"et".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(interpolate("a ${TOKEN} b", &env).unwrap(), "a s3cr\"et b");
        assert_eq!(interpolate("${MISSING:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate("cost $$5 $x", &env).unwrap(), "cost $5 $x");
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let error = interpolate("${NOPE}", &env).unwrap_err();
        assert!(error.contains("`NOPE` is not set"), "{error}");
        assert!(interpolate("${unclosed", &env).is_err());
        assert!(interpolate("${bad name}", &env).is_err());
    }
}
