//! The request mix of the load generator and how answers are classified.

use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, SocketAddress, address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};

/// Scopes every generated key holds.
pub const KEY_SCOPES: [&str; 4] = [
    "health:read",
    "products:read",
    "entries:read",
    "orders:read",
];

/// Routes the allowed requests rotate over; each needs one of [`KEY_SCOPES`].
const ALLOWED_TARGETS: [&str; 4] = [
    "/agents/v1/products?page=2&limit=50",
    "/agents/v1/health",
    "/agents/v1/entries?section=news&status=live",
    "/agents/v1/orders/show?id=42",
];

/// Needs `transfers:read`, which no generated key holds.
const FORBIDDEN_TARGET: &str = "/agents/v1/transfers?page=1";

/// What a request is meant to provoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Allowed,
    UnknownToken,
    MissingScope,
}

impl Kind {
    /// Slot `n` of the repeating block of 20: 18 allowed, one 401, one 403.
    pub fn of(n: u64) -> Self {
        match n % 20 {
            7 => Kind::UnknownToken,
            17 => Kind::MissingScope,
            _ => Kind::Allowed,
        }
    }

    pub fn expected(self) -> Outcome {
        match self {
            Kind::Allowed => Outcome::Allowed,
            Kind::UnknownToken => Outcome::Unauthorized,
            Kind::MissingScope => Outcome::Forbidden,
        }
    }
}

/// How the server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed = 0,
    Unauthorized = 1,
    Forbidden = 2,
    Other = 3,
}

impl Outcome {
    pub fn of(resp: &CheckResponse) -> Self {
        let code = resp.status.as_ref().map_or(0, |s| s.code);
        if code == 0 {
            return Outcome::Allowed;
        }
        let http = match &resp.http_response {
            Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map(|s| s.code),
            _ => None,
        };
        match http {
            Some(401) => Outcome::Unauthorized,
            Some(403) => Outcome::Forbidden,
            _ => Outcome::Other,
        }
    }
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.to_string(),
        raw_value: value.into_bytes(),
        ..Default::default()
    }
}

fn peer(ip: &str, port: u32) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// The Check Envoy would send for this request: raw headers in `header_map`, as with the
/// shipped config's `encode_raw_headers: true`, the path with its query (Envoy does not
/// fill `query`), and the usual headers Envoy adds.
pub fn request(kind: Kind, seq: u64, keys: u32) -> CheckRequest {
    let key = (seq.wrapping_mul(2_654_435_761) % u64::from(keys.max(1))) as u32;
    let (target, token) = match kind {
        Kind::Allowed => (ALLOWED_TARGETS[(seq % 4) as usize], crate::keys::token(key)),
        Kind::UnknownToken => (ALLOWED_TARGETS[0], format!("bench-unknown-{seq}")),
        Kind::MissingScope => (FORBIDDEN_TARGET, crate::keys::token(key)),
    };
    let auth = if seq % 4 == 3 {
        header("x-agents-token", token)
    } else {
        header("authorization", format!("Bearer {token}"))
    };
    let headers = vec![
        header(":authority", "api.example.test".into()),
        header(":path", target.into()),
        header(":method", "GET".into()),
        header(":scheme", "http".into()),
        header("user-agent", "agents-bench/1.0".into()),
        header("accept", "application/json".into()),
        auth,
        header("x-forwarded-proto", "http".into()),
        header(
            "x-request-id",
            format!("3f1c9a2e-0b7d-4e55-9c1a-{seq:012x}"),
        ),
    ];
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer("127.0.0.1", 40_000 + (seq % 20_000) as u32)),
            destination: Some(peer("127.0.0.1", 8080)),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: seq.to_string(),
                    method: "GET".into(),
                    path: target.into(),
                    host: "api.example.test".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    header_map: Some(HeaderMap { headers }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}
