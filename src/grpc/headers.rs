//! Request headers as Envoy sends them: the `headers` map, or `header_map` with raw
//! byte values when the filter's `encode_raw_headers` is on. Both are read the same way.

use crate::core::request::HeaderField;
use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use std::collections::HashMap;

/// A borrowed view over either encoding. Envoy sends header names in lowercase.
#[derive(Debug, Clone, Copy)]
pub enum HeaderView<'a> {
    Map(&'a HashMap<String, String>),
    Raw(&'a HeaderMap),
}

impl<'a> HeaderView<'a> {
    /// Prefers `header_map` when Envoy filled it.
    pub fn new(map: &'a HashMap<String, String>, raw: Option<&'a HeaderMap>) -> Self {
        match raw {
            Some(raw) if !raw.headers.is_empty() => HeaderView::Raw(raw),
            _ => HeaderView::Map(map),
        }
    }

    /// One header by lowercase name. In the raw encoding a repeated header, or one that is
    /// not UTF-8, is `Malformed` (the map encoding has already joined repeats with commas).
    pub fn field(&self, name: &str) -> HeaderField<'a> {
        match self {
            HeaderView::Map(map) => map
                .get(name)
                .map_or(HeaderField::Absent, |v| HeaderField::Present(v.as_str())),
            HeaderView::Raw(raw) => {
                let mut found = HeaderField::Absent;
                for h in raw
                    .headers
                    .iter()
                    .filter(|h| h.key.eq_ignore_ascii_case(name))
                {
                    if found != HeaderField::Absent {
                        return HeaderField::Malformed;
                    }
                    found = match raw_value(h) {
                        Some(v) => HeaderField::Present(v),
                        None => return HeaderField::Malformed,
                    };
                }
                found
            }
        }
    }

    /// Every header name, for finding client-sent `x-agents-*` headers.
    pub fn names(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (map, raw) = match *self {
            HeaderView::Map(map) => (Some(map), None),
            HeaderView::Raw(raw) => (None, Some(raw)),
        };
        let from_map = map.into_iter().flat_map(|m| m.keys().map(String::as_str));
        let from_raw = raw
            .into_iter()
            .flat_map(|r| r.headers.iter().map(|h| h.key.as_str()));
        from_map.chain(from_raw)
    }
}

/// Envoy puts the value in `raw_value` when encoding raw headers, in `value` otherwise.
fn raw_value(h: &envoy_types::pb::envoy::config::core::v3::HeaderValue) -> Option<&str> {
    if h.raw_value.is_empty() {
        Some(h.value.as_str())
    } else {
        std::str::from_utf8(&h.raw_value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderValue;

    fn raw(pairs: &[(&str, &[u8])]) -> HeaderMap {
        HeaderMap {
            headers: pairs
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: k.to_string(),
                    value: String::new(),
                    raw_value: v.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn reads_the_map_encoding() {
        let map: HashMap<String, String> =
            [("authorization".to_string(), "Bearer x".to_string())].into();
        let v = HeaderView::new(&map, None);
        assert_eq!(v.field("authorization"), HeaderField::Present("Bearer x"));
        assert_eq!(v.field("x-agents-token"), HeaderField::Absent);
    }

    #[test]
    fn reads_the_raw_encoding_and_prefers_it() {
        let map = HashMap::new();
        let r = raw(&[("authorization", b"Bearer y"), ("x-agents-scopes", b"*")]);
        let v = HeaderView::new(&map, Some(&r));
        assert_eq!(v.field("authorization"), HeaderField::Present("Bearer y"));
        assert_eq!(
            v.names().collect::<Vec<_>>(),
            ["authorization", "x-agents-scopes"]
        );
    }

    #[test]
    fn repeated_or_non_utf8_raw_headers_are_malformed() {
        let map = HashMap::new();
        let r = raw(&[
            ("authorization", b"Bearer a"),
            ("authorization", b"Bearer b"),
        ]);
        assert_eq!(
            HeaderView::new(&map, Some(&r)).field("authorization"),
            HeaderField::Malformed
        );
        let r = raw(&[("x-agents-token", &[0xff, 0xfe])]);
        assert_eq!(
            HeaderView::new(&map, Some(&r)).field("x-agents-token"),
            HeaderField::Malformed
        );
    }
}
