//! A whole `CheckRequest` through the tonic handler Envoy calls, against a fixed
//! snapshot: arbitrary methods, targets, query strings, source addresses, and headers in
//! both encodings (`headers` map and `header_map` with raw bytes).
//!
//! Besides "no panic", every answer must hold:
//! - an allow names a credential only if that credential's token was in the request, and
//!   an allow without one is on a public route;
//! - a denial carries none of the identity headers an upstream would trust, and its body
//!   is the JSON error with the same status;
//! - no answer contains a token of the snapshot.
#![no_main]

use agents_authz::core::routes::{Access, RouteMatch};
use agents_authz::core::snapshot::Snapshot;
use agents_authz::grpc::response::IDENTITY_HEADERS;
use agents_authz::grpc::service::CheckService;
use agents_authz::state::AppState;
use agents_authz_fuzz::{KNOWN_TOKENS, contains_bytes, fixed_snapshot};
use arbitrary::Arbitrary;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::{Address, HeaderMap, HeaderValue, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Token {
    Known(u8),
    Made(String),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Authorization,
    AgentsToken,
    ContentType,
    RequestId,
    /// Spoofed identity headers and other `x-agents-*` names.
    Agents(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Bearer { spaces: u8, token: Token },
    Token(Token),
    Json,
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
    Text(String),
    Pipe(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: Method,
    /// An index into the snapshot's route paths, or `None` for `made_path` alone.
    route: Option<u8>,
    made_path: String,
    query: Option<String>,
    query_token: Option<Token>,
    headers: Vec<(Name, Value)>,
    raw_encoding: bool,
    /// Envoy may send the target only as the `:path` pseudo-header.
    path_in_header: bool,
    source: Option<Source>,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    service: CheckService,
    snapshot: Arc<Snapshot>,
    paths: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let state = Arc::new(AppState::new(fixed_snapshot()));
        let snapshot = state.snapshot.load_full();
        let mut paths: Vec<String> = snapshot
            .routes
            .routes()
            .map(|r| r.path.to_string())
            .collect();
        paths.extend([
            "/agents/v1/plugins/shop/items".into(),
            "/agents/v1/plugins/shop/items/7".into(),
        ]);
        paths.sort();
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime"),
            service: CheckService::new(state),
            snapshot,
            paths,
        }
    })
}

fn token(t: &Token) -> String {
    match t {
        Token::Known(i) => KNOWN_TOKENS[usize::from(*i) % KNOWN_TOKENS.len()]
            .token
            .to_string(),
        Token::Made(s) => s.clone(),
    }
}

fn header(name: &Name, value: &Value) -> (String, Vec<u8>) {
    let name = match name {
        Name::Authorization => "authorization".to_string(),
        Name::AgentsToken => "x-agents-token".to_string(),
        Name::ContentType => "content-type".to_string(),
        Name::RequestId => "x-request-id".to_string(),
        Name::Agents(i) => match IDENTITY_HEADERS.get(usize::from(*i)) {
            Some(h) => h.to_string(),
            None => format!("X-Agents-{i}"),
        },
        Name::Other(s) => s.clone(),
    };
    let value = match value {
        Value::Bearer { spaces, token: t } => {
            format!("Bearer{}{}", " ".repeat(usize::from(spaces % 4)), token(t)).into_bytes()
        }
        Value::Token(t) => token(t).into_bytes(),
        Value::Json => b"application/json".to_vec(),
        Value::Text(s) => s.clone().into_bytes(),
        Value::Bytes(b) => b.clone(),
    };
    (name, value)
}

fn request(input: &Input, fx: &Fixture) -> CheckRequest {
    let method = match &input.method {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Other(s) => s.clone(),
    };
    let mut target = match input.route {
        Some(i) => fx.paths[usize::from(i) % fx.paths.len()].clone() + &input.made_path,
        None => input.made_path.clone(),
    };
    let mut query: Vec<String> = input.query.iter().cloned().collect();
    if let Some(t) = &input.query_token {
        query.push(format!("apiToken={}", token(t)));
    }
    if !query.is_empty() {
        target = format!("{target}?{}", query.join("&"));
    }
    let headers: Vec<(String, Vec<u8>)> = input.headers.iter().map(|(n, v)| header(n, v)).collect();
    let mut http = HttpRequest {
        method,
        ..Default::default()
    };
    if input.raw_encoding {
        let mut raw: Vec<HeaderValue> = headers
            .into_iter()
            .map(|(key, raw_value)| HeaderValue {
                key,
                value: String::new(),
                raw_value,
            })
            .collect();
        if input.path_in_header {
            raw.push(HeaderValue {
                key: ":path".into(),
                value: String::new(),
                raw_value: target.into_bytes(),
            });
        } else {
            http.path = target;
        }
        http.header_map = Some(HeaderMap { headers: raw });
    } else {
        let mut map: HashMap<String, String> = headers
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        if input.path_in_header {
            map.insert(":path".into(), target);
        } else {
            http.path = target;
        }
        http.headers = map;
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: input.source.as_ref().map(peer),
            request: Some(AttrRequest {
                time: None,
                http: Some(http),
            }),
            ..Default::default()
        }),
    }
}

fn peer(source: &Source) -> Peer {
    let address = match source {
        Source::V4(b) => std::net::Ipv4Addr::from(*b).to_string(),
        Source::V6(b) => std::net::Ipv6Addr::from(*b).to_string(),
        Source::Text(s) | Source::Pipe(s) => s.clone(),
    };
    let kind = match source {
        Source::Pipe(_) => AddressKind::Pipe(Default::default()),
        _ => AddressKind::SocketAddress(SocketAddress {
            address,
            ..Default::default()
        }),
    };
    Peer {
        address: Some(Address {
            address: Some(kind),
        }),
        ..Default::default()
    }
}

/// Every place a token can come from, in the form the service reads it.
fn request_text(req: &CheckRequest) -> Vec<u8> {
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .expect("built with http");
    let mut text = http.path.clone().into_bytes();
    for (k, v) in &http.headers {
        text.extend_from_slice(k.as_bytes());
        text.extend_from_slice(v.as_bytes());
    }
    for h in http.header_map.iter().flat_map(|m| &m.headers) {
        text.extend_from_slice(&h.raw_value);
    }
    // The query token may be percent-encoded.
    let decoded = agents_authz::core::query::decode(&String::from_utf8_lossy(&text)).into_owned();
    text.extend_from_slice(decoded.as_bytes());
    text
}

/// The request path without its query, from wherever the request carried it.
fn path_bytes(req: &CheckRequest) -> Vec<u8> {
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let Some(http) = http else {
        return Vec::new();
    };
    let mut target = http.path.as_bytes().to_vec();
    target.extend_from_slice(&header_bytes(req, ":path"));
    target
        .split(|b| *b == b'?')
        .next()
        .unwrap_or_default()
        .to_vec()
}

/// Every header name the request sent, in either encoding.
fn header_names(req: &CheckRequest) -> impl Iterator<Item = &str> {
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let map = http
        .into_iter()
        .flat_map(|h| h.headers.keys().map(String::as_str));
    let raw = http
        .into_iter()
        .flat_map(|h| h.header_map.iter().flat_map(|m| &m.headers))
        .map(|h| h.key.as_str());
    map.chain(raw)
}

/// Every value the request sent under `name`, in either encoding, run together.
fn header_bytes(req: &CheckRequest, name: &str) -> Vec<u8> {
    let Some(http) = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in &http.headers {
        if k.eq_ignore_ascii_case(name) {
            out.extend_from_slice(v.as_bytes());
        }
    }
    for h in http.header_map.iter().flat_map(|m| &m.headers) {
        if h.key.eq_ignore_ascii_case(name) {
            out.extend_from_slice(&h.raw_value);
        }
    }
    out
}

fn header_value<'r>(
    headers: &'r [envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
    name: &str,
) -> Option<&'r str> {
    headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

/// Every text of an answer, field by field: the `Debug` form quotes each string apart (so
/// no token can be spelled across two fields, or by a field and the next field's tag, as
/// it can in the wire encoding), and raw header values, which it prints as numbers, follow
/// one per line.
fn answer_text(resp: &CheckResponse) -> Vec<u8> {
    let mut text = format!("{resp:?}").into_bytes();
    let (first, second) = match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => (&ok.headers, &ok.response_headers_to_add[..]),
        Some(HttpResponse::DeniedResponse(denied)) => (&denied.headers, &[][..]),
        Some(HttpResponse::ErrorResponse(error)) => (&error.headers, &[][..]),
        None => return text,
    };
    for header in first.iter().chain(second).filter_map(|o| o.header.as_ref()) {
        text.push(b'\n');
        text.extend_from_slice(&header.raw_value);
    }
    text
}

fn check_answer(req: &CheckRequest, resp: &CheckResponse, fx: &Fixture) {
    let text = answer_text(resp);
    // A client may write a token's text into its X-Request-Id, its path (a plugin
    // route's 403 names the scope built from the path) or a header name (an allow lists
    // client `x-agents-*` names to remove, lowercased) and get it back: not a leak.
    let mut echoed = header_bytes(req, "x-request-id");
    echoed.extend_from_slice(&path_bytes(req));
    echoed.extend(
        header_names(req).flat_map(|n| n.bytes().map(|b| b.to_ascii_lowercase()).chain([b'\n'])),
    );
    for known in &KNOWN_TOKENS {
        let token = known.token.as_bytes();
        if !contains_bytes(&echoed, token) {
            assert!(
                !contains_bytes(&text, token),
                "an answer carries the token {}: {resp:?}",
                known.token
            );
        }
    }
    match resp
        .http_response
        .as_ref()
        .expect("every answer has an HTTP part")
    {
        HttpResponse::OkResponse(ok) => {
            assert_eq!(resp.status.as_ref().map(|s| s.code), Some(0));
            match header_value(&ok.headers, "x-agents-credential-id") {
                Some(id) => {
                    let known = KNOWN_TOKENS
                        .iter()
                        .find(|k| k.live_id == Some(id))
                        .expect("an allow names a live credential");
                    assert!(
                        contains_bytes(&request_text(req), known.token.as_bytes()),
                        "an allow without the credential's token"
                    );
                }
                None => assert!(
                    on_public_route(req, &fx.snapshot),
                    "a guarded route allowed without a token"
                ),
            }
        }
        HttpResponse::ErrorResponse(_) => {
            panic!("the service never answers with an error response")
        }
        HttpResponse::DeniedResponse(denied) => {
            let status = denied.status.as_ref().expect("a denial has a status").code;
            assert!((400..600).contains(&status));
            assert_ne!(resp.status.as_ref().map(|s| s.code), Some(0));
            for h in denied.headers.iter().filter_map(|h| h.header.as_ref()) {
                assert!(
                    !IDENTITY_HEADERS.contains(&h.key.as_str()),
                    "a denial carries identity headers"
                );
            }
            let body: serde_json::Value =
                serde_json::from_str(&denied.body).expect("a denial's body is JSON");
            assert_eq!(body["status"].as_i64(), Some(i64::from(status)));
            assert!(body["error"].is_string() && body["requestId"].is_string());
        }
    }
}

fn on_public_route(req: &CheckRequest, snapshot: &Snapshot) -> bool {
    let facts =
        agents_authz::grpc::facts::check_input(req, 0).expect("an answered request has facts");
    match snapshot.routes.lookup(facts.facts.path) {
        RouteMatch::Route(r) => r.access == Access::Public,
        _ => false,
    }
}

fuzz_target!(|input: Input| {
    let fx = fixture();
    let req = request(&input, fx);
    let result = fx
        .runtime
        .block_on(fx.service.check(tonic::Request::new(req.clone())));
    match result {
        Ok(resp) => check_answer(&req, resp.get_ref(), fx),
        // Only a request Envoy could not have sent is a gRPC error.
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument),
    }
});
