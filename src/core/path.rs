//! The request target as the decision reads it. Envoy normalises paths before ext_authz
//! (dot segments, `//`, escaped slashes); this check refuses, on its own, any target that
//! is not already in that one canonical form. A path the upstream could read as another
//! route than the table does then gets a 400 instead of a decision, even behind an Envoy
//! that normalises nothing.

/// Why a request target cannot be read unambiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// The path does not start with `/` (an absolute-form or asterisk-form target).
    NotAbsolute,
    /// A control character, space, DEL, backslash or non-ASCII byte.
    ForbiddenByte,
    /// `//`: an empty segment, which servers merge or keep as they please.
    EmptySegment,
    /// A `.` or `..` segment.
    DotSegment,
    /// `;` starts path parameters, which some servers strip before routing.
    PathParameter,
    /// A `#`: a fragment is never sent to a server.
    Fragment,
    /// A percent escape that is malformed, or decodes to a delimiter (`/ \ . ; % # ?`) or a
    /// control byte: the upstream would route on the decoded form.
    EncodedDelimiter,
}

impl PathProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "not_absolute",
            PathProblem::ForbiddenByte => "forbidden_byte",
            PathProblem::EmptySegment => "empty_segment",
            PathProblem::DotSegment => "dot_segment",
            PathProblem::PathParameter => "path_parameter",
            PathProblem::Fragment => "fragment",
            PathProblem::EncodedDelimiter => "encoded_delimiter",
        }
    }
}

/// Accepts a path (and query) already in canonical form; one trailing `/` is allowed, as
/// the route table reads it as the same resource. No allocation.
pub fn check_target(path: &str, query: Option<&str>) -> Result<(), PathProblem> {
    if query.is_some_and(|q| q.contains('#')) {
        return Err(PathProblem::Fragment);
    }
    let rest = path.strip_prefix('/').ok_or(PathProblem::NotAbsolute)?;
    if rest.is_empty() {
        return Ok(());
    }
    rest.strip_suffix('/')
        .unwrap_or(rest)
        .split('/')
        .try_for_each(check_segment)
}

fn check_segment(segment: &str) -> Result<(), PathProblem> {
    match segment {
        "" => return Err(PathProblem::EmptySegment),
        "." | ".." => return Err(PathProblem::DotSegment),
        _ => {}
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| Some(hex_value(hex[0])? << 4 | hex_value(hex[1])?));
                match decoded {
                    Some(b) if !is_ambiguous_when_decoded(b) => i += 2,
                    _ => return Err(PathProblem::EncodedDelimiter),
                }
            }
            b';' => return Err(PathProblem::PathParameter),
            b'#' => return Err(PathProblem::Fragment),
            b'\\' => return Err(PathProblem::ForbiddenByte),
            0x21..=0x7e => {}
            _ => return Err(PathProblem::ForbiddenByte),
        }
        i += 1;
    }
    Ok(())
}

/// Bytes whose escaped form would let the decoded path differ in structure from the raw
/// one: delimiters, `.` (dot segments), `%` (double decoding) and control bytes (C string
/// truncation). Other escapes (a space, UTF-8 in an id) decode inside their segment.
fn is_ambiguous_when_decoded(b: u8) -> bool {
    b < 0x20 || b == 0x7f || matches!(b, b'/' | b'\\' | b'.' | b';' | b'%' | b'#' | b'?')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::PathProblem::*;
    use super::*;

    fn path(p: &str) -> Result<(), PathProblem> {
        check_target(p, None)
    }

    #[test]
    fn canonical_paths_pass() {
        for p in [
            "/",
            "/agents/v1/products",
            "/agents/v1/products/",
            "/agents/v1/openapi.json",
            "/agents/v1/plugins/shop/items/a%20b",
            "/agents/v1/plugins/shop/items/caf%C3%A9",
            "/agents/v1/plugins/shop/items/...",
            "/AGENTS/v1/products",
        ] {
            assert_eq!(path(p), Ok(()), "{p}");
        }
        assert_eq!(check_target("/agents/v1/products", Some("a=1&b")), Ok(()));
    }

    #[test]
    fn dot_segments_are_refused_raw_or_encoded() {
        for p in [
            "/agents/v1/../v1/products",
            "/agents/v1/./products",
            "/agents/v1/products/..",
            "/agents/v1/products/../",
        ] {
            assert_eq!(path(p), Err(DotSegment), "{p}");
        }
        for p in [
            "/agents/v1/%2e%2e/v1/products",
            "/agents/v1/%2E%2E/v1/products",
            "/agents/v1/.%2e/v1/products",
            "/agents/v1/%2e/products",
        ] {
            assert_eq!(path(p), Err(EncodedDelimiter), "{p}");
        }
    }

    #[test]
    fn encoded_delimiters_and_bad_escapes_are_refused() {
        for p in [
            "/agents/v1/products%2F..%2Fusers",
            "/agents/v1/products%2fx",
            "/agents/v1/products%5Cx",
            "/agents/v1/products%3Bx",
            "/agents/v1/products%252Fx",
            "/agents/v1/products%23x",
            "/agents/v1/products%3Fx",
            "/agents/v1/products%00",
            "/agents/v1/products%0a",
            "/agents/v1/products%7F",
            "/agents/v1/products%",
            "/agents/v1/products%2",
            "/agents/v1/products%zz",
        ] {
            assert_eq!(path(p), Err(EncodedDelimiter), "{p}");
        }
    }

    #[test]
    fn empty_segments_are_refused_but_one_trailing_slash_is_kept() {
        for p in [
            "//agents/v1/products",
            "/agents//v1/products",
            "/agents/v1/products//",
        ] {
            assert_eq!(path(p), Err(EmptySegment), "{p}");
        }
        assert_eq!(path("//"), Err(EmptySegment));
        assert_eq!(path("/agents/v1/products/"), Ok(()));
    }

    #[test]
    fn parameters_fragments_and_raw_bytes_are_refused() {
        assert_eq!(path("/agents/v1/products;jsessionid=1"), Err(PathParameter));
        assert_eq!(path("/agents/v1/products;/x"), Err(PathParameter));
        assert_eq!(path("/agents/v1/products#frag"), Err(Fragment));
        assert_eq!(
            check_target("/agents/v1/products", Some("a=1#frag")),
            Err(Fragment)
        );
        for p in [
            "/agents/v1/products\\..\\users",
            "/agents/v1/pro ducts",
            "/agents/v1/products\t",
            "/agents/v1/products\0",
            "/agents/v1/products\u{7f}",
            "/agents/v1/prodücts",
        ] {
            assert_eq!(path(p), Err(ForbiddenByte), "{p:?}");
        }
    }

    #[test]
    fn targets_that_are_not_origin_form_are_refused() {
        for p in ["", "*", "agents/v1/products", "http://x/agents/v1/products"] {
            assert_eq!(path(p), Err(NotAbsolute), "{p}");
        }
    }
}
