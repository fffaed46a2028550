//! Property tests of the normalisers and matchers, through the public API (issue 8).
//! The core's own files hold the narrower ones (scope alphabet, bearer alphabet, route
//! lookup); these state the laws: idempotent and order-free normalisation, the spec's id
//! rule, the bearer grammar both ways, CIDR matching against an arithmetic model, and
//! "no request without a valid token is allowed on a guarded route".

use agents_authz::config::build_snapshot;
use agents_authz::config::credentials::normalize_id;
use agents_authz::core::credentials::digest;
use agents_authz::core::decision::decide;
use agents_authz::core::request::{HeaderField, RequestFacts};
use agents_authz::core::routes::Access;
use agents_authz::core::scopes::normalize;
use agents_authz::core::snapshot::Snapshot;
use agents_authz::core::token::bearer_token;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---- scopes ---------------------------------------------------------------------------

/// Scope text: real scope characters mixed with case, separators and noise.
fn scope_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:_*.,\\- \t\n!#é]{0,48}"
}

proptest! {
    #[test]
    fn scope_normalisation_is_idempotent(raw in scope_text()) {
        let once = normalize([raw.as_str()]);
        let joined = once.join(" ");
        prop_assert_eq!(normalize([joined.as_str()]), once.clone());
        let comma = once.join(",");
        prop_assert_eq!(normalize([comma.as_str()]), once);
    }

    #[test]
    fn scope_normalisation_ignores_order_and_grouping(
        parts in proptest::collection::vec(scope_text(), 0..6),
        seed in any::<u64>(),
    ) {
        let forward = normalize(parts.iter().map(String::as_str));
        let mut shuffled = parts.clone();
        // A cheap deterministic shuffle: rotate, then reverse when the seed says so.
        if !shuffled.is_empty() {
            let n = shuffled.len();
            shuffled.rotate_left((seed as usize) % n);
        }
        if seed & 1 == 1 {
            shuffled.reverse();
        }
        prop_assert_eq!(normalize(shuffled.iter().map(String::as_str)), forward.clone());
        // One string with every part, or a list of parts: the same set.
        let one = parts.join(" ");
        prop_assert_eq!(normalize([one.as_str()]), forward);
    }

    #[test]
    fn scope_normalisation_matches_case_insensitively(raw in scope_text()) {
        let upper = raw.to_ascii_uppercase();
        prop_assert_eq!(normalize([upper.as_str()]), normalize([raw.as_str()]));
    }
}

// ---- credential ids -------------------------------------------------------------------

/// The spec's id rule written out independently: lowercase, runs outside the alphabet
/// become one `-`, `-` trimmed at both ends, empty becomes `credential-<n>`.
fn id_model(raw: &str, position: usize) -> String {
    let mut out = String::new();
    let mut previous_was_foreign = false;
    for c in raw.chars().map(|c| c.to_ascii_lowercase()) {
        let keep = c.is_ascii_lowercase() || c.is_ascii_digit() || ":_-".contains(c);
        if keep {
            out.push(c);
        } else if !previous_was_foreign {
            out.push('-');
        }
        previous_was_foreign = !keep;
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        format!("credential-{position}")
    } else {
        trimmed.to_string()
    }
}

proptest! {
    #[test]
    fn ids_follow_the_spec_rule(raw in "[a-zA-Z0-9:_\\- #!.é]{0,32}", pos in 1usize..100) {
        prop_assert_eq!(normalize_id(&raw, pos), id_model(&raw, pos));
    }

    #[test]
    fn id_normalisation_is_idempotent(raw in "\\PC{0,32}", pos in 1usize..100) {
        let once = normalize_id(&raw, pos);
        prop_assert_eq!(normalize_id(&once, pos + 1), once);
    }
}

#[test]
fn id_examples_from_the_spec() {
    assert_eq!(normalize_id(" Ops Bot #2 ", 1), "ops-bot-2");
    assert_eq!(normalize_id("!!!", 3), "credential-3");
    assert_eq!(normalize_id("a--b", 1), "a--b");
}

// ---- bearer grammar -------------------------------------------------------------------

proptest! {
    #[test]
    fn a_bearer_header_yields_exactly_its_token(
        token in "[A-Za-z0-9._~+=-]{1,64}",
        spaces in 1usize..6,
    ) {
        let header = format!("Bearer{}{token}", " ".repeat(spaces));
        prop_assert_eq!(bearer_token(&header), Some(token.as_str()));
    }

    #[test]
    fn a_foreign_character_anywhere_voids_the_token(
        head in "[A-Za-z0-9._~+=-]{0,16}",
        bad in "[^A-Za-z0-9._~+=\\- ]",
        tail in "[A-Za-z0-9._~+=-]{0,16}",
    ) {
        let header = format!("Bearer {head}{bad}{tail}");
        prop_assert_eq!(bearer_token(&header), None);
    }

    #[test]
    fn the_scheme_is_case_sensitive_and_needs_a_space(
        scheme in "(bearer|BEARER|BeArEr|Bearer\t|Bearer:|Bearerx|Basic)",
        token in "[A-Za-z0-9._~+=-]{1,16}",
    ) {
        let (spaced, glued) = (format!("{scheme} {token}"), format!("Bearer{token}"));
        prop_assert_eq!(bearer_token(&spaced), None);
        prop_assert_eq!(bearer_token(&glued), None);
    }

    #[test]
    fn inner_or_trailing_spaces_void_the_token(
        a in "[A-Za-z0-9._~+=-]{1,8}",
        b in "[A-Za-z0-9._~+=-]{0,8}",
    ) {
        let header = format!("Bearer {a} {b}");
        prop_assert_eq!(bearer_token(&header), None);
    }
}

// ---- CIDR matching --------------------------------------------------------------------

/// A snapshot with one managed key restricted to `allowlist`.
fn key_with_allowlist(allowlist: &[String]) -> Snapshot {
    let doc = json!([{
        "id": "k", "tokenHash": hex(&digest("prop-token")), "ipAllowlist": allowlist,
    }]);
    build_snapshot(&env(&[]), Some(("props.json", &doc)), None, 1).expect("loads")
}

fn permits(snapshot: &Snapshot, ip: IpAddr) -> bool {
    let key = snapshot.credentials.iter().next().expect("one key");
    key.allowlist.permits(Some(ip))
}

fn v4_in(net: u32, prefix: u8, ip: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    net & mask == ip & mask
}

fn v6_in(net: u128, prefix: u8, ip: u128) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    net & mask == ip & mask
}

/// An address near `base`: equal, or differing only in one bit, so boundaries are hit.
fn near_v4() -> impl Strategy<Value = (u32, u32)> {
    (
        any::<u32>(),
        prop_oneof![Just(None), (0u32..32).prop_map(Some)],
    )
        .prop_map(|(base, flip)| (base, flip.map_or(base, |b| base ^ (1 << b))))
}

fn near_v6() -> impl Strategy<Value = (u128, u128)> {
    (
        any::<u128>(),
        prop_oneof![Just(None), (0u32..128).prop_map(Some)],
    )
        .prop_map(|(base, flip)| (base, flip.map_or(base, |b| base ^ (1 << b))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v4_cidrs_match_by_prefix_bits((net, ip) in near_v4(), prefix in 0u8..=32) {
        let s = key_with_allowlist(&[format!("{}/{prefix}", Ipv4Addr::from(net))]);
        let expected = v4_in(net, prefix, ip);
        prop_assert_eq!(permits(&s, IpAddr::V4(ip.into())), expected);
        // The same client as an IPv4-mapped IPv6 address is the same client.
        let mapped = Ipv4Addr::from(ip).to_ipv6_mapped();
        prop_assert_eq!(permits(&s, IpAddr::V6(mapped)), expected);
        // No IPv4 network holds a native IPv6 client.
        let native = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(ip));
        prop_assert!(!permits(&s, IpAddr::V6(native)));
    }

    #[test]
    fn v6_cidrs_match_by_prefix_bits((net, ip) in near_v6(), prefix in 0u8..=128) {
        let net_addr = Ipv6Addr::from(net);
        prop_assume!(net_addr.to_ipv4_mapped().is_none());
        let s = key_with_allowlist(&[format!("{net_addr}/{prefix}")]);
        let client = Ipv6Addr::from(ip);
        let expected = client.to_ipv4_mapped().is_none() && v6_in(net, prefix, ip);
        prop_assert_eq!(permits(&s, IpAddr::V6(client)), expected);
        // No IPv6 network holds an IPv4 client, not even ::/0.
        prop_assert!(!permits(&s, IpAddr::V4(Ipv4Addr::from(ip as u32))));
    }

    #[test]
    fn a_bare_address_is_a_host_route(ip in any::<u32>(), other in any::<u32>()) {
        let s = key_with_allowlist(&[Ipv4Addr::from(ip).to_string()]);
        prop_assert!(permits(&s, IpAddr::V4(ip.into())));
        prop_assert_eq!(permits(&s, IpAddr::V4(other.into())), ip == other);
    }

    #[test]
    fn v4_mapped_networks_are_v4_networks(net in any::<u32>(), prefix in 0u8..=32, ip in any::<u32>()) {
        let written = format!("{}/{}", Ipv4Addr::from(net).to_ipv6_mapped(), u16::from(prefix) + 96);
        let s = key_with_allowlist(&[written]);
        prop_assert_eq!(permits(&s, IpAddr::V4(ip.into())), v4_in(net, prefix, ip));
    }
}

#[test]
fn cidr_edges() {
    let any4 = key_with_allowlist(&["0.0.0.0/0".into()]);
    assert!(permits(&any4, "255.255.255.255".parse().unwrap()));
    assert!(permits(&any4, "::ffff:1.2.3.4".parse().unwrap()));
    assert!(!permits(&any4, "::1".parse().unwrap()));
    let any6 = key_with_allowlist(&["::/0".into()]);
    assert!(permits(&any6, "::1".parse().unwrap()));
    assert!(!permits(&any6, "1.2.3.4".parse().unwrap()));
    let host6 = key_with_allowlist(&["2001:db8::1/128".into()]);
    assert!(permits(&host6, "2001:db8::1".parse().unwrap()));
    assert!(!permits(&host6, "2001:db8::2".parse().unwrap()));
    let host4 = key_with_allowlist(&["10.0.0.1/32".into()]);
    assert!(permits(&host4, "10.0.0.1".parse().unwrap()));
    assert!(!permits(&host4, "10.0.0.0".parse().unwrap()));
    // Spec worked example.
    let example = key_with_allowlist(&[
        "10.0.0.0/8".into(),
        "2001:db8::/32".into(),
        "192.168.1.7".into(),
    ]);
    assert!(permits(&example, "192.168.1.7".parse().unwrap()));
    assert!(!permits(&example, "192.168.1.8".parse().unwrap()));
    assert!(permits(&example, "10.255.255.255".parse().unwrap()));
    assert!(!permits(&example, "11.0.0.0".parse().unwrap()));
    assert!(permits(&example, "2001:db8:ffff::1".parse().unwrap()));
    assert!(!permits(&example, "2001:db9::".parse().unwrap()));
    // Invalid entries never widen access: the key works from nowhere.
    let invalid = key_with_allowlist(&["not-an-ip".into(), "10.0.0.0/33".into()]);
    assert!(!permits(&invalid, "10.0.0.1".parse().unwrap()));
    let key = invalid.credentials.iter().next().unwrap();
    assert!(!key.allowlist.permits(None));
}

// ---- no token, no entry ---------------------------------------------------------------

const LIVE_TOKENS: [&str; 3] = [
    "prop-live-token-3f9a1c",
    "prop-json-token-77b2e0",
    "prop-legacy-token-c4d1",
];

/// Production posture with every route reachable and three live credentials.
fn guarded_snapshot() -> Snapshot {
    let managed = json!([
        {"id": "m", "tokenHash": hex(&digest(LIVE_TOKENS[0])), "scopes": ["*"]},
        {"id": "gone", "tokenHash": hex(&digest("prop-revoked-token-00")), "scopes": ["*"],
         "revokedAt": "2026-01-01T00:00:00Z"},
    ]);
    let credentials = format!(r#"[{{"token": "{}", "scopes": "*"}}]"#, LIVE_TOKENS[1]);
    let e = env(&[
        ("ENVIRONMENT", "production"),
        ("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true"),
        ("PLUGIN_AGENTS_WRITES_EXPERIMENTAL", "true"),
        ("PLUGIN_AGENTS_ENABLE_USERS_API", "true"),
        ("PLUGIN_AGENTS_ENABLE_ADDRESSES_API", "true"),
        ("PLUGIN_AGENTS_API_CREDENTIALS", &credentials),
        ("PLUGIN_AGENTS_API_TOKEN", LIVE_TOKENS[2]),
    ]);
    build_snapshot(&e, Some(("props.json", &managed)), None, 1).expect("loads")
}

/// A header as a strategy can own it; [`field`] borrows it as the core reads it.
#[derive(Debug, Clone)]
enum Header {
    Absent,
    Malformed,
    Present(String),
}

fn header() -> impl Strategy<Value = Header> {
    prop_oneof![
        Just(Header::Absent),
        Just(Header::Malformed),
        "(Bearer +)?[ -~]{0,40}".prop_map(Header::Present),
        Just(Header::Present("Bearer prop-revoked-token-00".into())),
        Just(Header::Present("prop-revoked-token-00".into())),
    ]
}

fn field(h: &Header) -> HeaderField<'_> {
    match h {
        Header::Absent => HeaderField::Absent,
        Header::Malformed => HeaderField::Malformed,
        Header::Present(v) => HeaderField::Present(v),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn no_request_without_a_live_token_is_allowed_on_a_guarded_route(
        method in "(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS|get|[A-Z]{1,7})",
        route in any::<proptest::sample::Index>(),
        suffix in "(|/|/x|/show|/[a-z]{1,8}/[a-z0-9]{1,8})",
        query in proptest::option::of("[ -~]{0,40}"),
        authorization in header(),
        agents_token in header(),
        content_type in prop_oneof![Just(Header::Present("application/json".into())), header()],
        method_override in prop_oneof![Just(Header::Absent), header()],
        ip in proptest::option::of(any::<[u8; 16]>()),
    ) {
        static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(guarded_snapshot);
        let snapshot = &*SNAPSHOT;
        let paths: Vec<&str> = snapshot.routes.routes().map(|r| &*r.path).collect();
        let path = format!("{}{suffix}", route.get(&paths));
        let facts = RequestFacts {
            method: &method,
            path: &path,
            query: query.as_deref(),
            authorization: field(&authorization),
            agents_token: field(&agents_token),
            content_type: field(&content_type),
            request_id: HeaderField::Absent,
            method_override: field(&method_override),
            client_ip: ip.map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            now_epoch_seconds: 1_800_000_000,
        };
        let decision = decide(snapshot, &facts);
        if decision.is_allow() {
            let public = decision.route.is_some_and(|r| r.access == Access::Public);
            prop_assert!(public, "guarded route {path} allowed without a live token");
        }
    }
}
