use super::*;
use crate::config::build_snapshot;
use crate::core::credentials::digest;
use crate::core::request::HeaderField;
use serde_json::json;
use std::collections::BTreeMap;

const NOW: i64 = 1_800_000_000;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [("ENVIRONMENT", "test")]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.entry("PLUGIN_AGENTS_ENABLE_ADDRESSES_API".into())
        .or_insert_with(|| "false".into());
    m
}

fn keys() -> serde_json::Value {
    let h = |t: &str| hex::encode(digest(t));
    json!({"credentials": [
        {"id": "reader", "tokenHash": h("tok-reader"), "scopes": ["products:read", "entries:read", "auth:read", "health:read"]},
        {"id": "all-entries", "tokenHash": h("tok-entries"), "scopes": ["entries:read", "entries:read_all_statuses"]},
        {"id": "consumer", "tokenHash": h("tok-consumer"), "scopes": ["consumers:read", "consumers:write"]},
        {"id": "approver", "tokenHash": h("tok-approver"), "scopes": ["control:approvals:write"]},
        {"id": "plugin", "tokenHash": h("tok-plugin"), "scopes": ["plugins:shop:items:read"]},
        {"id": "pinned", "tokenHash": h("tok-pinned"), "scopes": ["health:read"], "ipAllowlist": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]},
        {"id": "expired", "tokenHash": h("tok-expired"), "scopes": ["health:read"], "expiresAt": "2027-01-15T07:59:59Z"},
        {"id": "nowhere", "tokenHash": h("tok-nowhere"), "scopes": ["health:read"], "ipAllowlist": ["not-an-ip", "10.0.0.0/33"]}
    ]})
}

fn snapshot(pairs: &[(&str, &str)]) -> Snapshot {
    let k = keys();
    build_snapshot(&env(pairs), Some(("keys.json", &k)), None, 1).unwrap()
}

fn bare_snapshot(pairs: &[(&str, &str)]) -> Snapshot {
    build_snapshot(&env(pairs), None, None, 1).unwrap()
}

struct Req {
    method: &'static str,
    target: &'static str,
    bearer: Option<String>,
    agents: Option<&'static str>,
    content_type: Option<&'static str>,
    ip: &'static str,
}

fn get(target: &'static str) -> Req {
    Req {
        method: "GET",
        target,
        bearer: None,
        agents: None,
        content_type: None,
        ip: "192.168.1.7",
    }
}

impl Req {
    fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    fn token(mut self, t: &str) -> Self {
        self.bearer = Some(format!("Bearer {t}"));
        self
    }
    fn json(mut self) -> Self {
        self.content_type = Some("application/json");
        self
    }
    fn ip(mut self, ip: &'static str) -> Self {
        self.ip = ip;
        self
    }
    fn decide<'s>(&self, snap: &'s Snapshot) -> Decision<'s> {
        let (path, query) = RequestFacts::split_target(self.target);
        let facts = RequestFacts {
            method: self.method,
            path,
            query,
            authorization: field(self.bearer.as_deref()),
            agents_token: field(self.agents),
            content_type: field(self.content_type),
            request_id: HeaderField::Absent,
            method_override: HeaderField::Absent,
            client_ip: Some(self.ip.parse().unwrap()),
            now_epoch_seconds: NOW,
        };
        decide(snap, &facts)
    }
}

fn field(v: Option<&str>) -> HeaderField<'_> {
    v.map_or(HeaderField::Absent, HeaderField::Present)
}

fn deny_reason(d: &Decision<'_>) -> Option<DenyReason> {
    match &d.verdict {
        Verdict::Deny { reason, .. } => Some(*reason),
        Verdict::Allow { .. } => None,
    }
}

fn required(d: &Decision<'_>) -> Option<String> {
    match &d.verdict {
        Verdict::Deny { required_scope, .. } => required_scope.as_ref().map(|s| s.to_string()),
        _ => None,
    }
}

#[track_caller]
fn assert_allowed(d: &Decision<'_>) {
    assert!(d.is_allow(), "expected allow, got {:?}", deny_reason(d));
}

#[track_caller]
fn assert_denied(d: &Decision<'_>, reason: DenyReason, status: u16) {
    assert_eq!(deny_reason(d), Some(reason));
    assert_eq!(d.status(), status);
}

#[test]
fn valid_token_with_scope_is_allowed_with_its_principal() {
    let s = snapshot(&[]);
    let d = get("/agents/v1/products").token("tok-reader").decide(&s);
    assert_allowed(&d);
    let Verdict::Allow {
        principal: Some(p),
        reason,
    } = d.verdict
    else {
        panic!()
    };
    assert_eq!(reason, AllowReason::Authenticated);
    assert_eq!(p.credential_id(), "reader");
    assert_eq!(p.source_header(), "cp");
    assert_eq!(p.method, AuthMethod::Authorization);
    assert!(p.fingerprint().starts_with("fp_"));
    assert_eq!(
        p.grant.header_value(),
        "auth:read entries:read health:read products:read"
    );
}

#[test]
fn missing_and_unknown_tokens_are_401() {
    let s = snapshot(&[]);
    assert_denied(
        &get("/agents/v1/products").decide(&s),
        DenyReason::MissingToken,
        401,
    );
    assert_denied(
        &get("/agents/v1/products").token("nope").decide(&s),
        DenyReason::Auth(AuthFailure::UnknownToken),
        401,
    );
    assert_eq!(DenyReason::MissingToken.code(), "UNAUTHORIZED");
}

#[test]
fn token_without_scope_is_403_naming_the_scope() {
    let s = snapshot(&[]);
    let d = get("/agents/v1/orders").token("tok-reader").decide(&s);
    assert_denied(&d, DenyReason::MissingScope, 403);
    assert_eq!(required(&d).as_deref(), Some("orders:read"));
    assert_eq!(DenyReason::MissingScope.code(), "FORBIDDEN");
}

#[test]
fn query_token_disabled_is_401_and_enabled_works_for_reads() {
    let s = snapshot(&[]);
    assert_denied(
        &get("/agents/v1/health?apiToken=tok-reader").decide(&s),
        DenyReason::MissingToken,
        401,
    );
    let s = snapshot(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]);
    let d = get("/agents/v1/health?apiToken=tok-reader")
        .method("HEAD")
        .decide(&s);
    assert_allowed(&d);
    let Verdict::Allow {
        principal: Some(p), ..
    } = d.verdict
    else {
        panic!()
    };
    assert_eq!(p.method, AuthMethod::Query);
}

#[test]
fn write_with_query_token_is_400_even_when_query_tokens_are_on() {
    for pairs in [&[][..], &[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")][..]] {
        let s = snapshot(pairs);
        let d = get("/agents/v1/sync-state/checkpoint?apiToken=xyz")
            .method("POST")
            .token("tok-consumer")
            .json()
            .decide(&s);
        assert_denied(&d, DenyReason::QueryTokenOnWrite, 400);
        assert_eq!(DenyReason::QueryTokenOnWrite.code(), "INVALID_REQUEST");
    }
}

#[test]
fn put_with_query_token_is_400_as_the_worked_example_says() {
    let s = snapshot(&[]);
    let d = get("/agents/v1/sync-state/checkpoint?apiToken=xyz")
        .method("PUT")
        .token("tok-consumer")
        .json()
        .decide(&s);
    assert_denied(&d, DenyReason::QueryTokenOnWrite, 400);
}

#[test]
fn put_on_a_post_route_is_405_before_the_json_contract() {
    let s = snapshot(&[]);
    let d = get("/agents/v1/sync-state/checkpoint")
        .method("PUT")
        .decide(&s);
    assert_denied(&d, DenyReason::MethodNotAllowed, 405);
    assert_eq!(&*d.route.unwrap().allow_header, "POST");
}

#[test]
fn write_contract_needs_a_json_media_type() {
    let s = snapshot(&[]);
    let post = |ct: Option<&'static str>| {
        let mut r = get("/agents/v1/sync-state/checkpoint")
            .method("POST")
            .token("tok-consumer");
        r.content_type = ct;
        r.decide(&s)
    };
    for ok in [
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "Application/JSON",
        "application/vnd.api+json;v=1",
    ] {
        assert_allowed(&post(Some(ok)));
    }
    for bad in [
        None,
        Some("text/json"),
        Some("text/plain"),
        Some("application/+json"),
        Some("application/jsonx"),
    ] {
        assert_denied(&post(bad), DenyReason::NotJson, 400);
    }
}

#[test]
fn reads_ignore_the_write_contract() {
    let s = snapshot(&[]);
    assert_allowed(&get("/agents/v1/health").token("tok-reader").decide(&s));
}

#[test]
fn flag_gated_routes_are_404_before_anything_else() {
    let s = snapshot(&[("PLUGIN_AGENTS_ENABLED", "false")]);
    for path in [
        "/agents/v1/addresses",
        "/agents/v1/users",
        "/agents/v1/control/audit",
    ] {
        let d = get(path).method("DELETE").decide(&s);
        assert_denied(&d, DenyReason::RouteDisabled, 404);
        assert_eq!(DenyReason::RouteDisabled.code(), "NOT_FOUND");
    }
}

#[test]
fn flagged_routes_work_when_their_flag_is_on() {
    let s = snapshot(&[("PLUGIN_AGENTS_WRITES_EXPERIMENTAL", "true")]);
    let d = get("/agents/v1/control/approvals/decide")
        .method("POST")
        .json()
        .token("tok-approver")
        .decide(&s);
    assert_allowed(&d);
    let s = snapshot(&[("PLUGIN_AGENTS_ENABLE_USERS_API", "true")]);
    assert_denied(
        &get("/agents/v1/users").token("tok-reader").decide(&s),
        DenyReason::MissingScope,
        403,
    );
}

#[test]
fn unknown_routes_are_404_under_the_api_and_elsewhere() {
    let s = snapshot(&[]);
    for p in ["/agents/v1/nope", "/agents/v1/Health", "/elsewhere"] {
        assert_denied(
            &get(p).token("tok-reader").decide(&s),
            DenyReason::UnknownRoute,
            404,
        );
    }
}

#[test]
fn public_files_need_no_token_even_when_disabled() {
    let s = snapshot(&[("PLUGIN_AGENTS_ENABLED", "false")]);
    for p in ["/llms.txt", "/commerce.txt"] {
        let d = get(p).decide(&s);
        assert_allowed(&d);
        assert_eq!(d.reason_str(), "public_route");
    }
    assert_denied(
        &get("/llms.txt").method("POST").decide(&s),
        DenyReason::MethodNotAllowed,
        405,
    );
}

#[test]
fn service_disabled_is_503_after_route_and_method() {
    let s = snapshot(&[("PLUGIN_AGENTS_ENABLED", "false")]);
    let d = get("/agents/v1/products").token("tok-reader").decide(&s);
    assert_denied(&d, DenyReason::ServiceDisabled, 503);
    assert_eq!(DenyReason::ServiceDisabled.code(), "SERVICE_DISABLED");
    assert_denied(
        &get("/agents/v1/products").method("POST").decide(&s),
        DenyReason::MethodNotAllowed,
        405,
    );
}

#[test]
fn no_credentials_while_required_is_503_misconfigured() {
    let s = bare_snapshot(&[]);
    let d = get("/agents/v1/health").token("anything").decide(&s);
    assert_denied(&d, DenyReason::Misconfigured, 503);
    assert_eq!(DenyReason::Misconfigured.code(), "SERVER_MISCONFIGURED");
    let s = bare_snapshot(&[("PLUGIN_AGENTS_FAIL_ON_MISSING_TOKEN_IN_PROD", "false")]);
    assert_denied(
        &get("/agents/v1/health").decide(&s),
        DenyReason::MissingToken,
        401,
    );
}

#[test]
fn token_not_required_grants_everything_as_none() {
    let s = bare_snapshot(&[("PLUGIN_AGENTS_REQUIRE_TOKEN", "false")]);
    let d = get("/agents/v1/orders").decide(&s);
    assert_allowed(&d);
    let Verdict::Allow {
        principal: Some(p),
        reason,
    } = d.verdict
    else {
        panic!()
    };
    assert_eq!(reason, AllowReason::TokenNotRequired);
    assert_eq!(p.method, AuthMethod::None);
    assert_eq!(p.grant.header_value(), "*");
    assert_eq!(p.credential_id(), ANONYMOUS);
}

#[test]
fn token_still_required_in_production_when_forced() {
    let s = bare_snapshot(&[
        ("ENVIRONMENT", "production"),
        ("PLUGIN_AGENTS_REQUIRE_TOKEN", "false"),
    ]);
    assert!(!get("/agents/v1/orders").decide(&s).is_allow());
}

#[test]
fn aliases_satisfy_their_routes() {
    let s = snapshot(&[]);
    assert_allowed(
        &get("/agents/v1/sync-state/lag")
            .token("tok-consumer")
            .decide(&s),
    );
    assert_allowed(
        &get("/agents/v1/consumers/lag")
            .token("tok-consumer")
            .decide(&s),
    );
    assert_allowed(
        &get("/agents/v1/consumers/checkpoint")
            .method("POST")
            .json()
            .token("tok-consumer")
            .decide(&s),
    );
}

#[test]
fn entries_with_non_live_status_need_the_elevated_scope() {
    let s = snapshot(&[]);
    assert_allowed(&get("/agents/v1/entries").token("tok-reader").decide(&s));
    assert_allowed(
        &get("/agents/v1/entries?status=live")
            .token("tok-reader")
            .decide(&s),
    );
    for target in [
        "/agents/v1/entries?status=all",
        "/agents/v1/entries/show?status=pending",
        "/agents/v1/entries?status=any",
        "/agents/v1/entries?status=disabled",
        "/agents/v1/entries?status=expired",
        "/agents/v1/entries?status=live&status=pending",
        "/agents/v1/entries?status%5B%5D=pending",
        "/agents/v1/entries?status=weird",
    ] {
        let d = get(target).token("tok-reader").decide(&s);
        assert_denied(&d, DenyReason::MissingScope, 403);
        assert_eq!(
            required(&d).as_deref(),
            Some("entries:read_all_statuses"),
            "{target}"
        );
        assert_allowed(&get(target).token("tok-entries").decide(&s));
    }
}

#[test]
fn plugin_routes_need_their_derived_scope() {
    let s = snapshot(&[]);
    assert_allowed(
        &get("/agents/v1/plugins/shop/items")
            .token("tok-plugin")
            .decide(&s),
    );
    assert_allowed(
        &get("/agents/v1/plugins/shop/items/7")
            .token("tok-plugin")
            .decide(&s),
    );
    let d = get("/agents/v1/plugins/shop/orders")
        .token("tok-plugin")
        .decide(&s);
    assert_denied(&d, DenyReason::MissingScope, 403);
    assert_eq!(required(&d).as_deref(), Some("plugins:shop:orders:read"));
}

#[test]
fn ip_allowlist_is_enforced_as_401() {
    let s = snapshot(&[]);
    assert_allowed(&get("/agents/v1/health").token("tok-pinned").decide(&s));
    assert_allowed(
        &get("/agents/v1/health")
            .token("tok-pinned")
            .ip("2001:db8::5")
            .decide(&s),
    );
    assert_denied(
        &get("/agents/v1/health")
            .token("tok-pinned")
            .ip("192.168.1.8")
            .decide(&s),
        DenyReason::Auth(AuthFailure::IpNotAllowed),
        401,
    );
    assert_denied(
        &get("/agents/v1/health")
            .token("tok-nowhere")
            .ip("127.0.0.1")
            .decide(&s),
        DenyReason::Auth(AuthFailure::IpNotAllowed),
        401,
    );
}

#[test]
fn expired_key_is_401() {
    let s = snapshot(&[]);
    // expiresAt is 2027-01-15T07:59:59Z, one second before NOW.
    assert_eq!(NOW - 1, 1_800_000_000 - 1);
    assert_denied(
        &get("/agents/v1/health").token("tok-expired").decide(&s),
        DenyReason::Auth(AuthFailure::Expired),
        401,
    );
}

#[test]
fn x_agents_token_header_authenticates() {
    let s = snapshot(&[]);
    let mut r = get("/agents/v1/health");
    r.agents = Some(" tok-reader ");
    r.bearer = Some("Basic abc".into());
    let d = r.decide(&s);
    let Verdict::Allow {
        principal: Some(p), ..
    } = d.verdict
    else {
        panic!()
    };
    assert_eq!(p.method, AuthMethod::AgentsTokenHeader);
}

#[test]
fn order_of_checks_follows_the_spec() {
    // 3 before 5: disabled service wins over the write contract.
    let s = snapshot(&[("PLUGIN_AGENTS_ENABLED", "false")]);
    let d = get("/agents/v1/workflows/run-report")
        .method("POST")
        .decide(&s);
    assert_denied(&d, DenyReason::ServiceDisabled, 503);
    // 5 before 6: write contract before authentication.
    let s = snapshot(&[]);
    let d = get("/agents/v1/workflows/run-report")
        .method("POST")
        .decide(&s);
    assert_denied(&d, DenyReason::NotJson, 400);
    // 6 before 8: authentication before scopes.
    let d = get("/agents/v1/orders").token("bad").decide(&s);
    assert_denied(&d, DenyReason::Auth(AuthFailure::UnknownToken), 401);
}

#[test]
fn every_status_maps_to_its_code() {
    for (reason, status, code) in [
        (DenyReason::NotJson, 400, "INVALID_REQUEST"),
        (DenyReason::MissingToken, 401, "UNAUTHORIZED"),
        (DenyReason::MissingScope, 403, "FORBIDDEN"),
        (DenyReason::UnknownRoute, 404, "NOT_FOUND"),
        (DenyReason::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
        (DenyReason::RateLimited, 429, "RATE_LIMIT_EXCEEDED"),
        (DenyReason::ServiceDisabled, 503, "SERVICE_DISABLED"),
        (DenyReason::Misconfigured, 503, "SERVER_MISCONFIGURED"),
    ] {
        assert_eq!((reason.status(), reason.code()), (status, code));
    }
}

#[test]
fn targets_not_in_canonical_form_are_400_before_routing() {
    let snap = snapshot(&[]);
    for target in [
        "/agents/v1/users/../products",
        "/agents/v1/%2e%2e/v1/products",
        "/agents/v1//products",
        "/agents/v1/products%2Fx",
        "/agents/v1/products;x=1",
        "/agents/v1/products#x",
        "/agents/v1/products?a=1#x",
        "/agents/v1/pro\tducts",
    ] {
        let d = get(target).token("tok-reader").decide(&snap);
        assert!(
            matches!(deny_reason(&d), Some(DenyReason::InvalidPath(_))),
            "{target}: {d:?}"
        );
        assert_eq!(d.status(), 400, "{target}");
        assert!(d.route.is_none(), "{target}");
    }
    // Refused even on a public route and with no token at all.
    let d = get("/llms.txt/..").decide(&snap);
    assert_eq!(d.status(), 400);
}

#[test]
fn case_variants_and_one_trailing_slash_are_routes_or_404_not_400() {
    let snap = snapshot(&[]);
    assert_denied(
        &get("/AGENTS/v1/products").token("tok-reader").decide(&snap),
        DenyReason::UnknownRoute,
        404,
    );
    assert_denied(
        &get("/agents/v1/Products").token("tok-reader").decide(&snap),
        DenyReason::UnknownRoute,
        404,
    );
    assert_allowed(
        &get("/agents/v1/products/")
            .token("tok-reader")
            .decide(&snap),
    );
}

#[test]
fn a_method_override_header_is_400_on_every_kind_of_route() {
    let snap = snapshot(&[]);
    for (method, path) in [
        ("GET", "/agents/v1/products"),
        ("POST", "/agents/v1/workflows/run-report"),
        ("GET", "/llms.txt"),
    ] {
        let bearer = "Bearer tok-reader";
        let facts = RequestFacts {
            method,
            path,
            authorization: HeaderField::Present(bearer),
            content_type: HeaderField::Present("application/json"),
            method_override: HeaderField::Present("DELETE"),
            client_ip: Some("192.168.1.7".parse().unwrap()),
            now_epoch_seconds: NOW,
            ..RequestFacts::default()
        };
        assert_denied(&decide(&snap, &facts), DenyReason::MethodOverride, 400);
    }
}
