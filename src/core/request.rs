//! The facts of one request that a decision depends on, borrowed from the adapter's input.

use std::net::IpAddr;

/// A header as the adapter found it. Duplicates of a header the decision reads are
/// kept apart so the core can refuse them instead of guessing which one counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderField<'a> {
    #[default]
    Absent,
    Present(&'a str),
    /// Sent more than once, or not valid UTF-8.
    Malformed,
}

impl<'a> HeaderField<'a> {
    pub fn value(self) -> Option<&'a str> {
        match self {
            HeaderField::Present(v) => Some(v),
            _ => None,
        }
    }
}

/// Everything the decision core reads from a request. Built by an adapter (gRPC Check,
/// the whoami endpoint, tests) without copying header values.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// Raw query string without the leading `?`.
    pub query: Option<&'a str>,
    pub authorization: HeaderField<'a>,
    pub agents_token: HeaderField<'a>,
    pub content_type: HeaderField<'a>,
    pub request_id: HeaderField<'a>,
    /// Any of [`METHOD_OVERRIDE_HEADERS`]; a request carrying one is refused.
    pub method_override: HeaderField<'a>,
    /// The downstream peer address as Envoy saw it; `None` fails every IP allowlist.
    pub client_ip: Option<IpAddr>,
    /// Seconds since the Unix epoch, for key expiry.
    pub now_epoch_seconds: i64,
}

/// Headers that web frameworks read as the request's real method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

impl<'a> RequestFacts<'a> {
    /// Splits a request target (`/path?query`) as Envoy forwards it. A `#` stays where it
    /// is, so that `core::path` refuses it instead of the fragment being silently dropped.
    pub fn split_target(target: &'a str) -> (&'a str, Option<&'a str>) {
        match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        }
    }

    pub fn is_read_method(&self) -> bool {
        matches!(self.method, "GET" | "HEAD")
    }
}

/// True when an incoming `X-Request-Id` may be kept: `[A-Za-z0-9._:-]{8,128}`.
pub fn is_valid_request_id(id: &str) -> bool {
    (8..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_of_the_documented_shape_are_kept() {
        assert!(is_valid_request_id("abcd-1234"));
        assert!(is_valid_request_id("a.b_c:d-e"));
        assert!(is_valid_request_id(&"x".repeat(128)));
        assert!(!is_valid_request_id("abc"));
        assert!(!is_valid_request_id(&"x".repeat(129)));
        assert!(!is_valid_request_id("abcd 1234"));
        assert!(!is_valid_request_id("abcd/1234"));
    }

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(RequestFacts::split_target("/a?b=1"), ("/a", Some("b=1")));
        assert_eq!(RequestFacts::split_target("/a"), ("/a", None));
        assert_eq!(
            RequestFacts::split_target("/a?b#frag"),
            ("/a", Some("b#frag"))
        );
        assert_eq!(RequestFacts::split_target("/a#frag"), ("/a#frag", None));
    }
}
