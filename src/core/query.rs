//! Query-string reading without allocation on the common path.

use std::borrow::Cow;

/// One `name=value` pair of a query string, raw (still percent-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryPair<'a> {
    pub raw_name: &'a str,
    pub raw_value: &'a str,
}

pub fn pairs(query: &str) -> impl Iterator<Item = QueryPair<'_>> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        QueryPair {
            raw_name,
            raw_value,
        }
    })
}

/// Percent-decodes a query component. `+` is kept as is: it is part of the token
/// alphabet, and treating it as a space would corrupt tokens. Invalid escapes are kept
/// literally, so a malformed name never matches a parameter it does not spell.
pub fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The parameter that carries a query token.
pub const API_TOKEN_PARAM: &str = "apiToken";

/// True when a raw parameter name decodes to `apiToken` (or its PHP array form
/// `apiToken[...]`, which the upstream would also read).
pub fn is_api_token_name(raw_name: &str) -> bool {
    let name = decode(raw_name);
    name == API_TOKEN_PARAM
        || name
            .strip_prefix(API_TOKEN_PARAM)
            .is_some_and(|rest| rest.starts_with('['))
}

/// True when the query carries `apiToken` in any form.
pub fn has_api_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| pairs(q).any(|p| is_api_token_name(p.raw_name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_plus() {
        assert_eq!(decode("a%2Bb+c"), "a+b+c");
        assert_eq!(decode("%61piToken"), "apiToken");
        assert_eq!(decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(decode("end%"), "end%");
    }

    #[test]
    fn finds_api_token_in_any_spelling_envoy_forwards() {
        assert!(has_api_token(Some("apiToken=x")));
        assert!(has_api_token(Some("a=1&%61piToken=x")));
        assert!(has_api_token(Some("apiToken[]=x")));
        assert!(has_api_token(Some("apiToken")));
        assert!(!has_api_token(Some("apitoken=x")));
        assert!(!has_api_token(Some("apiTokens=x")));
        assert!(!has_api_token(None));
    }

    #[test]
    fn splits_pairs_without_values() {
        let p: Vec<_> = pairs("a=1&&b&c=").collect();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].raw_name, "b");
        assert_eq!(p[1].raw_value, "");
    }
}
