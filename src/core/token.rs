//! Where the presented token comes from (spec section 1).

use super::query;
use super::request::{HeaderField, RequestFacts};
use std::borrow::Cow;

/// How the caller authenticated, as reported upstream in `x-agents-auth-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Authorization,
    AgentsTokenHeader,
    Query,
    /// Token enforcement is off, or the route is public.
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Authorization => "authorization",
            AuthMethod::AgentsTokenHeader => "x-agents-token",
            AuthMethod::Query => "query",
            AuthMethod::None => "none",
        }
    }
}

/// A token as presented, borrowed from the request where possible.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedToken<'a> {
    pub secret: Cow<'a, str>,
    pub method: AuthMethod,
}

// Deliberately no Debug derive: the secret must never reach a log line.
impl std::fmt::Debug for PresentedToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedToken")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Why no token could be read, when that is itself a client error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// A token header was sent twice or is not UTF-8.
    MalformedHeader(&'static str),
}

/// Extracts a token from `Authorization: Bearer <token>` under the strict grammar:
/// scheme case-sensitive, one or more spaces, token of `A-Z a-z 0-9 . _ ~ + - =` only.
pub fn bearer_token(header: &str) -> Option<&str> {
    let rest = header.strip_prefix("Bearer")?;
    let token = rest.trim_start_matches(' ');
    if token.len() == rest.len() || token.is_empty() {
        return None;
    }
    token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'-' | b'='))
        .then_some(token)
}

/// Finds the token in precedence order; the first non-empty source wins.
pub fn presented_token<'a>(
    facts: &RequestFacts<'a>,
    allow_query_token: bool,
) -> Result<Option<PresentedToken<'a>>, TokenError> {
    match facts.authorization {
        HeaderField::Malformed => return Err(TokenError::MalformedHeader("authorization")),
        HeaderField::Present(value) => {
            if let Some(secret) = bearer_token(value) {
                return Ok(Some(PresentedToken {
                    secret: Cow::Borrowed(secret),
                    method: AuthMethod::Authorization,
                }));
            }
        }
        HeaderField::Absent => {}
    }
    match facts.agents_token {
        HeaderField::Malformed => return Err(TokenError::MalformedHeader("x-agents-token")),
        HeaderField::Present(value) => {
            let secret = value.trim();
            if !secret.is_empty() {
                return Ok(Some(PresentedToken {
                    secret: Cow::Borrowed(secret),
                    method: AuthMethod::AgentsTokenHeader,
                }));
            }
        }
        HeaderField::Absent => {}
    }
    if allow_query_token && facts.is_read_method() {
        return Ok(query_token(facts.query));
    }
    Ok(None)
}

fn query_token(query: Option<&str>) -> Option<PresentedToken<'_>> {
    query::pairs(query?)
        .filter(|p| query::decode(p.raw_name) == query::API_TOKEN_PARAM)
        .map(|p| query::decode(p.raw_value))
        .find(|v| !v.is_empty())
        .map(|secret| PresentedToken {
            secret,
            method: AuthMethod::Query,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        method: &'a str,
        authorization: Option<&'a str>,
        agents: Option<&'a str>,
        query: Option<&'a str>,
    ) -> RequestFacts<'a> {
        let field = |v: Option<&'a str>| v.map_or(HeaderField::Absent, HeaderField::Present);
        RequestFacts {
            method,
            path: "/agents/v1/health",
            query,
            authorization: field(authorization),
            agents_token: field(agents),
            ..RequestFacts::default()
        }
    }

    fn found(f: &RequestFacts<'_>, allow_query: bool) -> Option<(String, AuthMethod)> {
        presented_token(f, allow_query)
            .unwrap()
            .map(|t| (t.secret.into_owned(), t.method))
    }

    #[test]
    fn bearer_accepts_the_full_token_alphabet() {
        assert_eq!(
            bearer_token("Bearer abc.DEF_12~+-="),
            Some("abc.DEF_12~+-=")
        );
    }

    #[test]
    fn bearer_allows_several_spaces() {
        assert_eq!(bearer_token("Bearer  abc"), Some("abc"));
    }

    #[test]
    fn bearer_rejects_bad_shapes() {
        for bad in [
            "Bearer abc def",
            "bearer abc",
            "BEARER abc",
            "Bearerabc",
            "Bearer ",
            "Bearer",
            "Bearer\tabc",
            "Bearer abc/def",
            "Bearer ab\u{e9}",
            "Basic abc",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn invalid_bearer_falls_through_to_agents_header() {
        let f = facts("GET", Some("Bearer abc def"), Some("xyz"), None);
        assert_eq!(
            found(&f, false),
            Some(("xyz".into(), AuthMethod::AgentsTokenHeader))
        );
        let f = facts("GET", Some("Basic abc"), Some("xyz"), None);
        assert_eq!(
            found(&f, false),
            Some(("xyz".into(), AuthMethod::AgentsTokenHeader))
        );
    }

    #[test]
    fn authorization_wins_over_agents_header_and_query() {
        let f = facts("GET", Some("Bearer aaa"), Some("bbb"), Some("apiToken=ccc"));
        assert_eq!(
            found(&f, true),
            Some(("aaa".into(), AuthMethod::Authorization))
        );
    }

    #[test]
    fn agents_header_is_trimmed_and_empty_falls_through() {
        let f = facts("GET", None, Some("  tok  "), None);
        assert_eq!(
            found(&f, false),
            Some(("tok".into(), AuthMethod::AgentsTokenHeader))
        );
        let f = facts("GET", None, Some("   "), Some("apiToken=q"));
        assert_eq!(found(&f, true), Some(("q".into(), AuthMethod::Query)));
    }

    #[test]
    fn query_token_only_when_enabled_and_only_for_reads() {
        let f = facts("GET", None, None, Some("apiToken=xyz"));
        assert_eq!(found(&f, false), None);
        let f = facts("HEAD", None, None, Some("apiToken=xyz"));
        assert_eq!(found(&f, true), Some(("xyz".into(), AuthMethod::Query)));
        let f = facts("POST", None, None, Some("apiToken=xyz"));
        assert_eq!(found(&f, true), None);
    }

    #[test]
    fn query_token_is_percent_decoded_and_first_non_empty_wins() {
        let f = facts("GET", None, None, Some("apiToken=&apiToken=a%2Bb"));
        assert_eq!(found(&f, true), Some(("a+b".into(), AuthMethod::Query)));
    }

    #[test]
    fn duplicated_token_headers_are_refused() {
        let mut f = facts("GET", None, None, None);
        f.authorization = HeaderField::Malformed;
        assert_eq!(
            presented_token(&f, false),
            Err(TokenError::MalformedHeader("authorization"))
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let t = PresentedToken {
            secret: Cow::Borrowed("s3cret-value"),
            method: AuthMethod::Query,
        };
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bearer_tokens_only_ever_hold_the_alphabet(header in "\\PC{0,40}") {
            if let Some(t) = bearer_token(&header) {
                prop_assert!(!t.is_empty());
                prop_assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_~+=".contains(&b)));
                prop_assert!(header.starts_with("Bearer "));
            }
        }

        #[test]
        fn valid_tokens_round_trip(token in "[A-Za-z0-9._~+=-]{1,64}", spaces in 1usize..4) {
            let header = format!("Bearer{}{token}", " ".repeat(spaces));
            prop_assert_eq!(bearer_token(&header), Some(token.as_str()));
        }
    }
}
