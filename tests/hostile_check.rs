//! Hostile requests at the Check level: the tonic handler called in-process with the
//! CheckRequests an attacker can make Envoy send (or that a misconfigured Envoy would pass
//! on). Every case must get the answer the spec implies or a 400, never an allow it should
//! not, and never a panic. Headers go in both encodings Envoy uses: the `headers` map and
//! `header_map` with raw byte values (`encode_raw_headers`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents_authz::config::build_snapshot;
use agents_authz::core::credentials::digest;
use agents_authz::core::routes::{Access, RouteTable};
use agents_authz::grpc::service::CheckService;
use agents_authz::state::AppState;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, HeaderValueOption, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use serde_json::{Value, json};

const READER: &str = "tok-reader-1c9e";
const PINNED: &str = "tok-pinned-7a2b";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Encoding {
    Map,
    Raw,
}

const BOTH: [Encoding; 2] = [Encoding::Map, Encoding::Raw];

fn service(env: &[(&str, &str)]) -> CheckService {
    let keys = json!([
        {"id": "reader", "tokenHash": hex::encode(digest(READER)),
         "scopes": ["products:read", "health:read", "jobs:report"]},
        {"id": "pinned", "tokenHash": hex::encode(digest(PINNED)),
         "scopes": ["health:read"], "ipAllowlist": ["127.0.0.2"]}
    ]);
    let env: BTreeMap<String, String> = [("ENVIRONMENT", "test")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let snapshot = build_snapshot(&env, Some(("keys.json", &keys)), None, 1).expect("snapshot");
    CheckService::new(Arc::new(AppState::new(snapshot)))
}

/// A request as Envoy's filter builds it; header values are raw bytes so that the raw
/// encoding can carry what is not UTF-8 (the map encoding gets them lossily).
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    source: Option<String>,
}

fn req(method: &str, path: &str) -> Req {
    Req {
        method: method.into(),
        path: path.into(),
        headers: Vec::new(),
        source: Some("127.0.0.1".into()),
    }
}

impl Req {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    fn from(mut self, ip: &str) -> Self {
        self.source = Some(ip.into());
        self
    }

    /// In the map encoding Envoy joins a repeated header's values with `,`.
    fn build(&self, enc: Encoding) -> CheckRequest {
        let mut http = HttpRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            ..Default::default()
        };
        match enc {
            Encoding::Map => {
                let mut map: HashMap<String, String> = HashMap::new();
                for (k, v) in &self.headers {
                    let v = String::from_utf8_lossy(v);
                    map.entry(k.clone())
                        .and_modify(|joined| {
                            joined.push(',');
                            joined.push_str(&v);
                        })
                        .or_insert_with(|| v.into_owned());
                }
                http.headers = map;
            }
            Encoding::Raw => {
                let headers = self.headers.iter().map(|(k, v)| HeaderValue {
                    key: k.clone(),
                    value: String::new(),
                    raw_value: v.clone(),
                });
                http.header_map = Some(HeaderMap {
                    headers: headers.collect(),
                });
            }
        }
        let source = self.source.as_ref().map(|ip| Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.clone(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(40000)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        });
        CheckRequest {
            attributes: Some(AttributeContext {
                source,
                request: Some(AttrRequest {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

/// What Envoy acts on: the HTTP status (200 for an allow) and the parts we assert on.
#[derive(Debug)]
struct Answer {
    status: i32,
    error: Option<String>,
    headers: BTreeMap<String, String>,
    removed: Vec<String>,
    query_removed: Vec<String>,
}

fn pairs(options: &[HeaderValueOption]) -> BTreeMap<String, String> {
    let headers = options.iter().filter_map(|o| o.header.as_ref());
    headers.map(|h| (h.key.clone(), h.value.clone())).collect()
}

impl From<CheckResponse> for Answer {
    fn from(resp: CheckResponse) -> Self {
        let code = resp.status.as_ref().map_or(0, |s| s.code);
        match resp.http_response {
            Some(HttpResponse::OkResponse(ok)) => {
                assert_eq!(code, 0, "an OkResponse with a non-OK status");
                Answer {
                    status: 200,
                    error: None,
                    headers: pairs(&ok.headers),
                    removed: ok.headers_to_remove,
                    query_removed: ok.query_parameters_to_remove,
                }
            }
            Some(HttpResponse::DeniedResponse(d)) => {
                assert_ne!(
                    code, 0,
                    "a DeniedResponse with an OK status lets it through"
                );
                let body: Value = serde_json::from_str(&d.body).expect("deny body is JSON");
                Answer {
                    status: d.status.map_or(0, |s| s.code),
                    error: body["error"].as_str().map(str::to_owned),
                    headers: pairs(&d.headers),
                    removed: Vec::new(),
                    query_removed: Vec::new(),
                }
            }
            other => panic!("no http_response: {other:?}"),
        }
    }
}

impl Answer {
    #[track_caller]
    fn expect(&self, status: i32, what: &str) -> &Self {
        assert_eq!(self.status, status, "{what}: {self:?}");
        self
    }

    fn credential(&self) -> Option<&str> {
        self.headers
            .get("x-agents-credential-id")
            .map(String::as_str)
    }
}

async fn check(svc: &CheckService, r: &Req, enc: Encoding) -> Answer {
    let response = svc
        .check(tonic::Request::new(r.build(enc)))
        .await
        .unwrap_or_else(|status| panic!("{} {}: gRPC error {status}", r.method, r.path));
    response.into_inner().into()
}

#[tokio::test]
async fn very_large_and_very_many_headers_are_answered_quickly() {
    let svc = service(&[]);
    let big = "A".repeat(1 << 20);
    let started = Instant::now();
    for enc in BOTH {
        let huge_bearer = req("GET", "/agents/v1/products").bearer(&big);
        check(&svc, &huge_bearer, enc)
            .await
            .expect(401, "1 MiB bearer");
        let huge_token = req("GET", "/agents/v1/products").header("x-agents-token", &big);
        check(&svc, &huge_token, enc)
            .await
            .expect(401, "1 MiB x-agents-token");

        let mut many = req("GET", "/agents/v1/products").bearer(READER);
        for i in 0..20_000 {
            many = many.header(&format!("x-agents-junk-{i}"), "forged");
            many = many.header(&format!("x-other-{i}"), "v");
        }
        let answer = check(&svc, &many, enc).await;
        answer.expect(200, "20k headers with a valid token");
        assert_eq!(answer.credential(), Some("reader"));
        let junk = answer
            .removed
            .iter()
            .filter(|n| n.starts_with("x-agents-junk-"));
        assert_eq!(
            junk.count(),
            20_000,
            "every forged x-agents-* header removed"
        );

        let long_query = format!("/agents/v1/products?{}", "a=1&".repeat(250_000));
        let q = req("GET", &long_query).bearer(READER);
        check(&svc, &q, enc).await.expect(200, "1 MB query");
    }
    // Linear work only: a quadratic scan of 40k headers would take far longer.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn duplicate_token_headers_never_authenticate() {
    let svc = service(&[]);
    for second in [READER, "someone-else"] {
        let dup = req("GET", "/agents/v1/products")
            .bearer(READER)
            .bearer(second);
        // Raw: the service sees two entries and refuses to pick one.
        let raw = check(&svc, &dup, Encoding::Raw).await;
        raw.expect(400, "raw duplicate Authorization");
        assert_eq!(raw.error.as_deref(), Some("INVALID_REQUEST"));
        // Map: Envoy joined them with ',' which is outside the token alphabet.
        check(&svc, &dup, Encoding::Map)
            .await
            .expect(401, "joined duplicate Authorization");

        let dup = req("GET", "/agents/v1/products")
            .header("x-agents-token", READER)
            .header("x-agents-token", second);
        check(&svc, &dup, Encoding::Raw)
            .await
            .expect(400, "raw duplicate X-Agents-Token");
        check(&svc, &dup, Encoding::Map)
            .await
            .expect(401, "joined duplicate X-Agents-Token");
    }
    // Header names are case-insensitive: two spellings are still two copies.
    let mixed = req("GET", "/agents/v1/products")
        .header("authorization", format!("Bearer {READER}"))
        .header("Authorization", format!("Bearer {READER}"));
    check(&svc, &mixed, Encoding::Raw)
        .await
        .expect(400, "Authorization in two spellings");
}

#[tokio::test]
async fn bearer_tokens_outside_the_grammar_do_not_authenticate() {
    let svc = service(&[]);
    let bad = [
        format!("Bearer {READER} extra"),
        format!("Bearer {READER} "),
        format!("Bearer\t{READER}"),
        format!("bearer {READER}"),
        format!("Bearer {READER}\u{0}"),
        format!("Bearer {READER}\u{1}"),
        format!("Bearer {READER}\r\nX-Agents-Scopes: *"),
        format!("Bearer {READER},Bearer {READER}"),
        format!("Bearer \"{READER}\""),
        "Bearer".to_string(),
        "Bearer ".to_string(),
    ];
    for enc in BOTH {
        for value in &bad {
            let r = req("GET", "/agents/v1/products").header("authorization", value);
            check(&svc, &r, enc)
                .await
                .expect(401, &format!("{value:?}"));
        }
        let two_spaces =
            req("GET", "/agents/v1/products").header("authorization", format!("Bearer  {READER}"));
        check(&svc, &two_spaces, enc)
            .await
            .expect(200, "two spaces (spec example)");
        // X-Agents-Token is trimmed (spec), but inner spaces or control bytes stay in it.
        for (value, status) in [
            (format!("  {READER}  "), 200),
            (format!("{READER} x"), 401),
            (format!("{READER}\u{0}"), 401),
            (" \t ".to_string(), 401),
        ] {
            let r = req("GET", "/agents/v1/products").header("x-agents-token", &value);
            check(&svc, &r, enc)
                .await
                .expect(status, &format!("{value:?}"));
        }
    }
}

#[tokio::test]
async fn invalid_utf8_raw_values_are_refused_or_ignored_never_guessed() {
    let svc = service(&[]);
    let junk: &[u8] = &[0xff, 0xfe, b'x'];
    let mut bearer_bytes = b"Bearer ".to_vec();
    bearer_bytes.extend_from_slice(junk);
    for name in ["authorization", "x-agents-token"] {
        let value = if name == "authorization" {
            bearer_bytes.as_slice()
        } else {
            junk
        };
        let r = req("GET", "/agents/v1/products").header(name, value);
        let a = check(&svc, &r, Encoding::Raw).await;
        a.expect(400, name);
        assert_eq!(a.error.as_deref(), Some("INVALID_REQUEST"));
        // Even with a valid token in the other header: no guessing which one counts.
        let other = if name == "authorization" {
            ("x-agents-token", READER.to_string())
        } else {
            ("authorization", format!("Bearer {READER}"))
        };
        let r = r.header(other.0, other.1);
        let status = if name == "authorization" { 400 } else { 200 };
        check(&svc, &r, Encoding::Raw).await.expect(status, name);
    }
    // A non-UTF-8 content type fails the write contract.
    let write = req("POST", "/agents/v1/workflows/run-report")
        .bearer(READER)
        .header("content-type", [0xffu8, b'/', b'j']);
    check(&svc, &write, Encoding::Raw)
        .await
        .expect(400, "non-UTF-8 content type");
    // Headers the decision does not read are not its business; a bad request id is replaced.
    let r = req("GET", "/agents/v1/products")
        .bearer(READER)
        .header("user-agent", junk)
        .header("x-request-id", junk);
    let a = check(&svc, &r, Encoding::Raw).await;
    a.expect(200, "junk in unread headers");
    let id = &a.headers["x-request-id"];
    assert!(id.is_ascii() && id.len() >= 8, "fresh request id: {id:?}");
}

#[tokio::test]
async fn api_token_repeated_empty_or_encoded() {
    let on = service(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]);
    let off = service(&[]);
    let cases: &[(&str, i32, &[&str])] = &[
        // The first non-empty copy counts; every copy is removed before the upstream.
        ("apiToken=&apiToken=READER", 200, &["apiToken"]),
        ("apiToken=READER&apiToken=wrong", 200, &["apiToken"]),
        ("apiToken=wrong&apiToken=READER", 401, &[]),
        ("apiToken=", 401, &[]),
        ("apiToken", 401, &[]),
        // Escapes in the name and value decode as the upstream would decode them, and both
        // spellings of the name are removed.
        ("%61piToken=READER", 200, &["%61piToken", "apiToken"]),
        ("apiToken=tok%2Dreader%2D1c9e", 200, &["apiToken"]),
        // Not the parameter: case differs, or the PHP array form (removed, never read).
        ("apitoken=READER", 401, &[]),
        ("apiToken[]=READER", 401, &[]),
    ];
    for enc in BOTH {
        for (query, status, removed) in cases {
            let target = format!("/agents/v1/products?{}", query.replace("READER", READER));
            let a = check(&on, &req("GET", &target), enc).await;
            a.expect(*status, query);
            if *status == 200 {
                assert_eq!(a.credential(), Some("reader"), "{query}");
                assert_eq!(a.query_removed, *removed, "{query}");
            }
            check(&off, &req("GET", &target), enc)
                .await
                .expect(401, &format!("{query} with query tokens off"));
        }
        for query in [
            "apiToken=READER",
            "%61piToken=x",
            "apiToken[]=x",
            "apiToken=",
        ] {
            let target = format!(
                "/agents/v1/workflows/run-report?{}",
                query.replace("READER", READER)
            );
            let write = req("POST", &target)
                .bearer(READER)
                .header("content-type", "application/json");
            check(&on, &write, enc)
                .await
                .expect(400, &format!("write with {query}"));
        }
    }
}

#[tokio::test]
async fn path_tricks_are_400_case_changes_404_one_trailing_slash_the_route() {
    let svc = service(&[]);
    let refused = [
        "/agents/v1/../v1/products",
        "/agents/v1/health/../products",
        "/agents/v1/./products",
        "/agents/v1/%2e%2e/v1/products",
        "/agents/v1/%2E%2E/v1/products",
        "/agents/v1/health/%2e%2e/products",
        "/agents/v1/products%2F",
        "/agents/v1/health%2F..%2Fproducts",
        "/agents/v1/health%5C..%5Cproducts",
        "/agents/v1/health\\..\\products",
        "/agents/v1//products",
        "//agents/v1/products",
        "/agents/v1/products//",
        "/agents/v1/products;x=1",
        "/agents/v1/products;",
        "/agents/v1/health;/../products",
        "/agents/v1/products#frag",
        "/agents/v1/products?page=1#frag",
        "/agents/v1/products%00",
        "/agents/v1/products%252F",
        "/agents/v1/pro ducts",
        "/agents/v1/prodücts",
        "agents/v1/products",
        "http://evil/agents/v1/products",
        "*",
    ];
    for enc in BOTH {
        for path in refused {
            let a = check(&svc, &req("GET", path).bearer(READER), enc).await;
            a.expect(400, path);
            assert_eq!(a.error.as_deref(), Some("INVALID_REQUEST"), "{path}");
        }
        for path in [
            "/AGENTS/v1/products",
            "/agents/V1/products",
            "/agents/v1/PRODUCTS",
            "/agents/v1/products/x",
            "/agents/v1/%70roducts",
        ] {
            check(&svc, &req("GET", path).bearer(READER), enc)
                .await
                .expect(404, path);
        }
        check(
            &svc,
            &req("GET", "/agents/v1/products/").bearer(READER),
            enc,
        )
        .await
        .expect(200, "one trailing slash");
    }
}

/// Every route of the built-in table, with its concrete path and whether it is a read.
fn builtin_routes() -> Vec<(String, bool)> {
    RouteTable::builtin()
        .routes()
        .map(|r| {
            let path = if r.access == Access::PluginRead {
                "/agents/v1/plugins/shop/items".to_string()
            } else {
                r.path.to_string()
            };
            (path, r.methods.allows("GET"))
        })
        .collect()
}

#[tokio::test]
async fn head_follows_get_and_options_is_405_on_every_route() {
    let open = service(&[
        ("PLUGIN_AGENTS_REQUIRE_TOKEN", "false"),
        ("PLUGIN_AGENTS_WRITES_EXPERIMENTAL", "true"),
        ("PLUGIN_AGENTS_ENABLE_ADDRESSES_API", "true"),
        ("PLUGIN_AGENTS_ENABLE_USERS_API", "true"),
    ]);
    let guarded = service(&[]);
    let routes = builtin_routes();
    assert!(routes.len() > 60, "the whole table: {}", routes.len());
    for (path, is_read) in &routes {
        let head = check(&open, &req("HEAD", path), Encoding::Map).await;
        let options = check(&open, &req("OPTIONS", path), Encoding::Map).await;
        options.expect(405, &format!("OPTIONS {path}"));
        let allow = &options.headers["allow"];
        if *is_read {
            head.expect(200, &format!("HEAD {path}"));
            assert_eq!(allow, "GET, HEAD", "{path}");
        } else {
            head.expect(405, &format!("HEAD {path}"));
            assert_eq!(allow, "POST", "{path}");
        }
        // With tokens enforced, HEAD gets exactly GET's answer.
        let get = check(&guarded, &req("GET", path).bearer(READER), Encoding::Map).await;
        let head = check(&guarded, &req("HEAD", path).bearer(READER), Encoding::Map).await;
        if *is_read {
            assert_eq!(head.status, get.status, "HEAD vs GET {path}");
        }
    }
    // Methods are case-sensitive tokens: "get" is not GET.
    check(&open, &req("get", "/agents/v1/products"), Encoding::Map)
        .await
        .expect(405, "lowercase get");
}

#[tokio::test]
async fn method_override_headers_are_400() {
    let svc = service(&[]);
    for enc in BOTH {
        for name in [
            "x-http-method-override",
            "X-HTTP-Method-Override",
            "x-http-method",
            "x-method-override",
        ] {
            // Envoy sends lowercase names in the map encoding; raw names keep the client's case.
            if enc == Encoding::Map && name != name.to_ascii_lowercase() {
                continue;
            }
            for value in ["DELETE", "GET", ""] {
                let r = req("GET", "/agents/v1/products")
                    .bearer(READER)
                    .header(name, value);
                let a = check(&svc, &r, enc).await;
                a.expect(400, &format!("{name}: {value}"));
                assert_eq!(a.error.as_deref(), Some("INVALID_REQUEST"));
            }
        }
        let write = req("POST", "/agents/v1/workflows/run-report")
            .bearer(READER)
            .header("content-type", "application/json")
            .header("x-http-method-override", "GET");
        check(&svc, &write, enc)
            .await
            .expect(400, "override on POST");
    }
}

#[tokio::test]
async fn forwarded_headers_do_not_move_the_client_address() {
    let svc = service(&[]);
    let spoofs = [
        ("x-forwarded-for", "127.0.0.2"),
        ("x-real-ip", "127.0.0.2"),
        ("forwarded", "for=127.0.0.2"),
        ("x-envoy-external-address", "127.0.0.2"),
        ("x-agents-client-ip", "127.0.0.2"),
        ("true-client-ip", "127.0.0.2"),
    ];
    for enc in BOTH {
        let mut spoofed = req("GET", "/agents/v1/health").bearer(PINNED);
        for (name, value) in spoofs {
            spoofed = spoofed.header(name, value);
        }
        check(&svc, &spoofed, enc)
            .await
            .expect(401, "pinned key from 127.0.0.1 with forged hops");
        let real = req("GET", "/agents/v1/health")
            .bearer(PINNED)
            .header("x-forwarded-for", "10.0.0.1")
            .from("127.0.0.2");
        check(&svc, &real, enc)
            .await
            .expect(200, "pinned key from its address");
        let mut unknown = req("GET", "/agents/v1/health").bearer(PINNED);
        unknown.source = None;
        check(&svc, &unknown, enc)
            .await
            .expect(401, "no source address");
    }
}

#[tokio::test]
async fn only_the_exact_whoami_path_keeps_the_token() {
    let keys =
        json!([{"id": "me", "tokenHash": hex::encode(digest(READER)), "scopes": ["auth:read"]}]);
    let env: BTreeMap<String, String> = [
        ("ENVIRONMENT".to_string(), "test".to_string()),
        (
            "PLUGIN_AGENTS_ALLOW_QUERY_TOKEN".to_string(),
            "true".to_string(),
        ),
    ]
    .into();
    let whoami = CheckService::new(Arc::new(AppState::new(
        build_snapshot(&env, Some(("k", &keys)), None, 1).expect("snapshot"),
    )));
    for enc in BOTH {
        let exact = req("GET", "/agents/v1/auth/whoami").bearer(READER);
        let a = check(&whoami, &exact, enc).await;
        a.expect(200, "exact whoami");
        assert!(!a.removed.contains(&"authorization".to_string()), "{a:?}");
        // A trailing slash is routed by Envoy to the Agents API, not to the service.
        let slash = req("GET", "/agents/v1/auth/whoami/?apiToken=x&b=1").bearer(READER);
        let a = check(&whoami, &slash, enc).await;
        a.expect(200, "whoami/");
        assert!(a.removed.contains(&"authorization".to_string()), "{a:?}");
        assert_eq!(a.query_removed, ["apiToken"]);
        assert!(!a.headers.contains_key("x-agents-client-ip"));
    }
}
