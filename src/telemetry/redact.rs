//! Removing query tokens from paths before they reach a log line.
//!
//! This errs towards redacting too much: a log is the wrong place to discover that a
//! client spelled the parameter oddly. The name is percent-decoded, trimmed of spaces
//! and `+`, and compared without regard to ASCII case; PHP's array form `apiToken[...]`
//! counts too. Besides `&`, the characters `;`, `?` and `#` also end a parameter here,
//! so a token glued to a neighbour by one of them is still caught. Everything except a
//! redacted value is copied through unchanged.

use std::borrow::Cow;

/// What a redacted `apiToken` value is replaced with.
pub const REDACTED: &str = "REDACTED";

const TOKEN_PARAM_LOWER: &str = "apitoken";

/// Returns `path_and_query` with the value of every `apiToken` parameter replaced by
/// [`REDACTED`]. Borrows when there is nothing to redact.
pub fn redact_api_token(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    if !params(query).any(|p| needs_redaction(p.1)) {
        return Cow::Borrowed(path_and_query);
    }
    let mut out = String::with_capacity(path_and_query.len());
    out.push_str(path);
    out.push('?');
    for (segment, param) in params(query) {
        if needs_redaction(param) {
            let separator = &segment[param.len()..];
            let name = param.split_once('=').map_or(param, |(name, _)| name);
            out.push_str(name);
            out.push('=');
            out.push_str(REDACTED);
            out.push_str(separator);
        } else {
            out.push_str(segment);
        }
    }
    Cow::Owned(out)
}

fn is_separator(c: char) -> bool {
    matches!(c, '&' | ';' | '?' | '#')
}

/// Yields each parameter twice: with its trailing separator (to copy it through) and
/// without it (to inspect it).
fn params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split_inclusive(is_separator)
        .map(|segment| (segment, segment.trim_end_matches(is_separator)))
}

fn needs_redaction(param: &str) -> bool {
    match param.split_once('=') {
        Some((name, value)) => !value.is_empty() && is_token_name(name),
        None => false,
    }
}

fn is_token_name(raw_name: &str) -> bool {
    let decoded = crate::core::query::decode(raw_name);
    let name = decoded.trim_matches(|c: char| c.is_ascii_whitespace() || c == '+');
    let Some(head) = name.get(..TOKEN_PARAM_LOWER.len()) else {
        return false;
    };
    let rest = &name[TOKEN_PARAM_LOWER.len()..];
    head.eq_ignore_ascii_case(TOKEN_PARAM_LOWER) && (rest.is_empty() || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(input: &str) -> String {
        redact_api_token(input).into_owned()
    }

    #[test]
    fn leaves_paths_without_a_token_borrowed() {
        for input in [
            "/agents/v1/health",
            "/agents/v1/entries?status=live&limit=5",
            "/agents/v1/health?",
            "/agents/v1/health?apiToken",
            "/agents/v1/health?apiToken=",
            "/agents/v1/health?myapiToken=x&apiTokens=y",
            "/agents/v1/health?x=apiToken%3Dabc",
        ] {
            assert!(
                matches!(redact_api_token(input), Cow::Borrowed(_)),
                "{input}"
            );
        }
    }

    #[test]
    fn redacts_the_plain_parameter() {
        assert_eq!(
            redact("/agents/v1/health?apiToken=s3cr3t"),
            "/agents/v1/health?apiToken=REDACTED"
        );
        assert_eq!(
            redact("/agents/v1/entries?status=live&apiToken=s3cr3t&limit=5"),
            "/agents/v1/entries?status=live&apiToken=REDACTED&limit=5"
        );
    }

    #[test]
    fn redacts_every_repeat() {
        assert_eq!(
            redact("/p?apiToken=one&a=1&apiToken=two&apiToken=three"),
            "/p?apiToken=REDACTED&a=1&apiToken=REDACTED&apiToken=REDACTED"
        );
    }

    #[test]
    fn redacts_percent_encoded_and_odd_spellings() {
        assert_eq!(redact("/p?api%54oken=s3cr3t"), "/p?api%54oken=REDACTED");
        assert_eq!(
            redact("/p?%61%70%69%74%6f%6b%65%6e=s3cr3t"),
            "/p?%61%70%69%74%6f%6b%65%6e=REDACTED"
        );
        assert_eq!(redact("/p?APITOKEN=s3cr3t"), "/p?APITOKEN=REDACTED");
        assert_eq!(redact("/p?%20apiToken+=s3cr3t"), "/p?%20apiToken+=REDACTED");
        assert_eq!(redact("/p?apiToken[]=s3cr3t"), "/p?apiToken[]=REDACTED");
        assert_eq!(
            redact("/p?apiToken%5B0%5D=s3cr3t"),
            "/p?apiToken%5B0%5D=REDACTED"
        );
    }

    #[test]
    fn keeps_everything_after_the_first_equals_out() {
        assert_eq!(redact("/p?apiToken=a=b=c&x=1"), "/p?apiToken=REDACTED&x=1");
        assert_eq!(redact("/p?apiToken=abc%26def"), "/p?apiToken=REDACTED");
    }

    #[test]
    fn treats_other_separators_as_parameter_ends() {
        assert_eq!(redact("/p?a=1;apiToken=s3cr3t"), "/p?a=1;apiToken=REDACTED");
        assert_eq!(redact("/p?a=1?apiToken=s3cr3t"), "/p?a=1?apiToken=REDACTED");
        assert_eq!(redact("/p?a=1#apiToken=s3cr3t"), "/p?a=1#apiToken=REDACTED");
        assert_eq!(
            redact("/p?apiToken=s3cr3t&&b=2&"),
            "/p?apiToken=REDACTED&&b=2&"
        );
    }

    #[test]
    fn malformed_escapes_do_not_panic_or_match() {
        assert_eq!(redact("/p?api%Token=x&%=y&%4=z"), "/p?api%Token=x&%=y&%4=z");
        assert_eq!(redact("/p?%FFapiToken=x"), "/p?%FFapiToken=x");
        assert_eq!(redact("/p?apiToken%=x"), "/p?apiToken%=x");
    }

    #[test]
    fn never_leaks_a_token_value() {
        let token = "tok-9f8e7d6c5b";
        for name in [
            "apiToken",
            "apitoken",
            "api%54oken",
            "apiToken[]",
            "+apiToken",
        ] {
            for template in [
                "/p?{n}={t}",
                "/p?a=1&{n}={t}&b=2",
                "/p?{n}=x&{n}={t}",
                "/p?a;{n}={t}",
            ] {
                let input = template.replace("{n}", name).replace("{t}", token);
                let out = redact(&input);
                assert!(!out.contains(token), "{input} -> {out}");
            }
        }
    }
}
