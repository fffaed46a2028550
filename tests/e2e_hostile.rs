//! End to end through Envoy: hostile requests and a killed service. Each case asserts the
//! status the client gets and that a refused request never reached the upstream; where the
//! answer comes from Envoy itself (its codec, its path normalisation, its header limits)
//! rather than from agents-authz, the case says so.
//!
//! Requests go over raw TCP so that the test can send what HTTP clients refuse to: bytes
//! that are not UTF-8, control characters, fragments, repeated token headers.
//!
//! Each test starts its own stack on its own ports: a real Envoy running the shipped gateway
//! config (deploy/envoy/envoy.yaml rendered for loopback), the release `agents-authz` binary as
//! its ext_authz service, and an echo upstream that records what reached it.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fixtures::*;
use support::http::{Reply, client, client_from};
use support::stack::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `error` codes of the JSON answers Envoy's `local_reply_config` writes itself.
const ENVOY_CODES: [&str; 2] = ["AUTHORIZATION_UNAVAILABLE", "REQUEST_HEADERS_TOO_LARGE"];

/// Who answered a refusal: Envoy on its own, or agents-authz through ext_authz.
#[derive(Clone, Copy, Debug, PartialEq)]
enum By {
    Envoy,
    Service,
}

/// A raw answer: the status and, when it is JSON, the `error` field.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    error: Option<String>,
}

/// Sends `request` as bytes and reads the answer until the connection closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect to envoy");
    stream.write_all(request).await.expect("send request");
    let mut bytes = Vec::new();
    let read = stream.read_to_end(&mut bytes);
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        // A reset after the answer was written still leaves the answer in `bytes`.
        Ok(_) => {}
        Err(_) => panic!(
            "no answer within 10 s to {:?}",
            String::from_utf8_lossy(request)
        ),
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let error = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    RawReply {
        status,
        head: head.to_owned(),
        error,
    }
}

/// `METHOD target HTTP/1.1` with `headers` (raw lines without CRLF), closing the connection.
fn request(method: &str, target: &[u8], headers: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: agents.test\r\nConnection: close\r\n");
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn auth_line(token: &str) -> Vec<u8> {
    format!("Authorization: Bearer {token}").into_bytes()
}

/// Sends one request and checks the status, who answered, and what reached the upstream:
/// nothing on a refusal, `upstream_path` on an allow.
async fn expect(
    stack: &Stack,
    what: &str,
    bytes: &[u8],
    status: u16,
    by: By,
    upstream_path: Option<&str>,
) -> RawReply {
    let before = stack.upstream.count();
    let reply = raw(stack.envoy.addrs.edge, bytes).await;
    assert_eq!(reply.status, status, "{what}: {}", reply.head);
    let after = stack.upstream.count();
    match upstream_path {
        Some(path) => {
            assert_eq!(after, before + 1, "{what}: not forwarded");
            assert_eq!(stack.upstream.last().path_and_query, path, "{what}");
        }
        None => assert_eq!(
            after, before,
            "{what}: a refused request reached the upstream"
        ),
    }
    if status != 200 {
        // Every answer of the service carries its Cache-Control (also on HEAD, which has no
        // body); of Envoy's own replies only the JSON ones its config maps do, and those
        // carry Envoy's own error codes.
        let head = reply.head.to_ascii_lowercase();
        let envoy_json = reply
            .error
            .as_deref()
            .is_some_and(|e| ENVOY_CODES.contains(&e));
        let from_service = head.contains("cache-control: no-store, private") && !envoy_json;
        assert_eq!(
            from_service,
            by == By::Service,
            "{what}: answered by {by:?}? {}",
            reply.head
        );
    }
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_are_normalised_by_envoy_or_refused() {
    let stack = standard_stack(&[]).await;
    let reader = auth_line(READER);
    let limited = auth_line(LIMITED);
    let products = Some("/agents/v1/products");
    type Case<'a> = (&'a [u8], &'a [u8], u16, By, Option<&'a str>);
    let cases: &[Case<'_>] = &[
        // Envoy resolves dot segments (also percent-encoded ones), merges "//", turns "\" into
        // "/" and decodes escaped unreserved characters: the service decides on the path the
        // upstream gets.
        (
            b"/agents/v1/../v1/products",
            &reader,
            200,
            By::Service,
            products,
        ),
        (
            b"/agents/v1/./products",
            &reader,
            200,
            By::Service,
            products,
        ),
        (
            b"/agents/v1/%2e%2e/v1/products",
            &reader,
            200,
            By::Service,
            products,
        ),
        (
            b"//agents/v1//products",
            &reader,
            200,
            By::Service,
            products,
        ),
        (
            b"/agents/v1/%70roducts",
            &reader,
            200,
            By::Service,
            products,
        ),
        (
            b"http://agents.test/agents/v1/products",
            &reader,
            200,
            By::Service,
            products,
        ),
        (
            b"/agents/v1/products/",
            &reader,
            200,
            By::Service,
            Some("/agents/v1/products/"),
        ),
        // ...so a detour through a route the key may use still ends at products: 403.
        (
            b"/agents/v1/health/../products",
            &limited,
            403,
            By::Service,
            None,
        ),
        (
            b"/agents/v1/health/%2E%2E/products",
            &limited,
            403,
            By::Service,
            None,
        ),
        (
            b"/agents/v1/health\\..\\products",
            &limited,
            403,
            By::Service,
            None,
        ),
        (
            b"/agents/v1/health;/../products",
            &limited,
            403,
            By::Service,
            None,
        ),
        // Envoy refuses escaped slashes and backslashes, fragments, NUL and raw non-ASCII.
        (
            b"/agents/v1/products%2F..%2Fusers",
            &reader,
            400,
            By::Envoy,
            None,
        ),
        (
            b"/agents/v1/health%5C..%5Cproducts",
            &reader,
            400,
            By::Envoy,
            None,
        ),
        (b"/agents/v1/products#frag", &reader, 400, By::Envoy, None),
        (
            b"/agents/v1/products?page=1#frag",
            &reader,
            400,
            By::Envoy,
            None,
        ),
        (b"/agents/v1/products%00", &reader, 400, By::Envoy, None),
        (b"/agents/v1/prod\xc3\xbccts", &reader, 400, By::Envoy, None),
        // What Envoy passes on but the route table cannot read unambiguously: the service's
        // own 400 INVALID_REQUEST.
        (
            b"/agents/v1/products;jsessionid=1",
            &reader,
            400,
            By::Service,
            None,
        ),
        (b"/agents/v1/products%3Bx", &reader, 400, By::Service, None),
        (
            b"/agents/v1/products%252F..%252Fusers",
            &reader,
            400,
            By::Service,
            None,
        ),
        // Paths are case-sensitive: a case variant is no route (Envoy's own 404 outside
        // /agents/v1/, the service's inside it).
        (b"/AGENTS/v1/products", &reader, 404, By::Envoy, None),
        (b"/agents/v1/PRODUCTS", &reader, 404, By::Service, None),
    ];
    for (target, auth, status, by, upstream) in cases {
        let what = String::from_utf8_lossy(target).into_owned();
        let bytes = request("GET", target, &[auth]);
        let reply = expect(&stack, &what, &bytes, *status, *by, *upstream).await;
        if *status == 400 && *by == By::Service {
            assert_eq!(reply.error.as_deref(), Some("INVALID_REQUEST"), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_are_refused_and_never_forwarded() {
    let stack = standard_stack(&[]).await;
    let products = b"/agents/v1/products";
    let reader = auth_line(READER);
    let token_line = format!("X-Agents-Token: {READER}").into_bytes();
    let mut bad_utf8_bearer = b"Authorization: Bearer ".to_vec();
    bad_utf8_bearer.extend_from_slice(&[0xff, 0xfe, b'x']);
    let bad_utf8_token: &[u8] = b"X-Agents-Token: \xff\xfe";
    let other = auth_line("someone-else");
    type Case<'a> = (&'a str, Vec<&'a [u8]>, u16, By);
    let cases: Vec<Case<'_>> = vec![
        // Envoy joins a repeated Authorization into one value ("a,b"), outside the token
        // grammar: no bearer token, so 401. Repeated X-Agents-Token arrives as two
        // entries, which the service refuses to choose between: 400.
        (
            "Authorization twice",
            vec![&reader, &reader],
            401,
            By::Service,
        ),
        (
            "two different Authorizations",
            vec![&reader, &other],
            401,
            By::Service,
        ),
        (
            "X-Agents-Token twice",
            vec![&token_line, &token_line],
            400,
            By::Service,
        ),
        ("non-UTF-8 bearer", vec![&bad_utf8_bearer], 400, By::Service),
        (
            "non-UTF-8 X-Agents-Token",
            vec![bad_utf8_token],
            400,
            By::Service,
        ),
        (
            "bearer with a space",
            vec![b"Authorization: Bearer e2e-reader 3f9a"],
            401,
            By::Service,
        ),
        (
            "bearer after a tab",
            vec![b"Authorization: Bearer\te2e-reader-3f9a1c7d5b2e"],
            401,
            By::Service,
        ),
        (
            "bearer with \\x01",
            vec![b"Authorization: Bearer e2e-reader-3f9a1c7d5b2e\x01"],
            400,
            By::Envoy,
        ),
        (
            "bearer with NUL",
            vec![b"Authorization: Bearer e2e-reader-3f9a1c7d5b2e\x00"],
            400,
            By::Envoy,
        ),
        (
            "space before the colon",
            vec![b"Authorization : Bearer e2e-reader-3f9a1c7d5b2e"],
            400,
            By::Envoy,
        ),
        (
            "X-HTTP-Method-Override",
            vec![&reader, b"X-HTTP-Method-Override: DELETE"],
            400,
            By::Service,
        ),
        (
            "X-HTTP-Method",
            vec![&reader, b"X-HTTP-Method: PUT"],
            400,
            By::Service,
        ),
        (
            "X-Method-Override",
            vec![&reader, b"X-Method-Override: POST"],
            400,
            By::Service,
        ),
    ];
    for (what, headers, status, by) in &cases {
        let bytes = request("GET", products, headers);
        let reply = expect(&stack, what, &bytes, *status, *by, None).await;
        if *by == By::Service && *status == 400 {
            assert_eq!(reply.error.as_deref(), Some("INVALID_REQUEST"), "{what}");
        }
    }
    // A non-UTF-8 X-Agents-Token is never read when a valid bearer comes first (spec order),
    // and it does not reach the upstream.
    let bytes = request("GET", products, &[&reader, bad_utf8_token]);
    expect(
        &stack,
        "bearer + junk token",
        &bytes,
        200,
        By::Service,
        Some("/agents/v1/products"),
    )
    .await;
    assert!(
        stack
            .upstream
            .last()
            .header_values("x-agents-token")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_too_many_headers_stop_at_envoy() {
    let stack = standard_stack(&[]).await;
    let products = b"/agents/v1/products";
    let reader = auth_line(READER);
    let ok = Some("/agents/v1/products");
    // Up to Envoy's 60 KiB of request headers, a large header is just carried along.
    let big = format!("X-Big: {}", "a".repeat(50_000)).into_bytes();
    expect(
        &stack,
        "50 kB header",
        &request("GET", products, &[&reader, &big]),
        200,
        By::Service,
        ok,
    )
    .await;
    // Beyond it, Envoy answers 431 itself; the service is never asked.
    let huge = format!("X-Big: {}", "a".repeat(70_000)).into_bytes();
    expect(
        &stack,
        "70 kB header",
        &request("GET", products, &[&reader, &huge]),
        431,
        By::Envoy,
        None,
    )
    .await;
    let huge_bearer = auth_line(&"a".repeat(70_000));
    expect(
        &stack,
        "70 kB bearer",
        &request("GET", products, &[&huge_bearer]),
        431,
        By::Envoy,
        None,
    )
    .await;

    let lines: Vec<Vec<u8>> = (0..120)
        .map(|i| format!("X-H{i}: v").into_bytes())
        .collect();
    let with = |n: usize| {
        let mut h: Vec<&[u8]> = vec![&reader];
        h.extend(lines[..n].iter().map(Vec::as_slice));
        request("GET", products, &h)
    };
    // Host, Connection, Authorization plus n more.
    expect(&stack, "83 headers", &with(80), 200, By::Service, ok).await;
    expect(&stack, "101 headers", &with(98), 431, By::Envoy, None).await;
    // Between the two, the request fits Envoy's limit of 100 headers but the identity
    // headers of an allow would not: Envoy refuses the mutation itself (ext_authz_invalid,
    // a bare 500 by default), which the shipped config answers as a JSON 431.
    let reply = expect(&stack, "95 headers", &with(92), 431, By::Envoy, None).await;
    assert_eq!(reply.error.as_deref(), Some("REQUEST_HEADERS_TOO_LARGE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_options_and_other_methods() {
    let stack = standard_stack(&[]).await;
    let reader = auth_line(READER);
    let reporter = auth_line(REPORTER);
    let run_report = b"/agents/v1/workflows/run-report";
    expect(
        &stack,
        "HEAD products",
        &request("HEAD", b"/agents/v1/products", &[&reader]),
        200,
        By::Service,
        Some("/agents/v1/products"),
    )
    .await;
    assert_eq!(stack.upstream.last().method, "HEAD");
    // HEAD on a POST route, OPTIONS and TRACE anywhere: 405 with Allow, from the service.
    for (method, target, auth, allow) in [
        ("HEAD", &run_report[..], &reporter, "POST"),
        ("OPTIONS", run_report, &reporter, "POST"),
        ("OPTIONS", b"/agents/v1/products", &reader, "GET, HEAD"),
        ("TRACE", b"/agents/v1/products", &reader, "GET, HEAD"),
        ("OPTIONS", b"/llms.txt", &reader, "GET, HEAD"),
    ] {
        let what = format!("{method} {}", String::from_utf8_lossy(target));
        let reply = expect(
            &stack,
            &what,
            &request(method, target, &[auth]),
            405,
            By::Service,
            None,
        )
        .await;
        let allow = format!("allow: {allow}\r\n");
        assert!(reply.head.contains(&allow), "{what}: {}", reply.head);
    }
    // Envoy refuses what is not an HTTP method token or not an origin-form request.
    expect(
        &stack,
        "lowercase get",
        &request("get", b"/agents/v1/products", &[&reader]),
        400,
        By::Envoy,
        None,
    )
    .await;
    expect(
        &stack,
        "OPTIONS *",
        &request("OPTIONS", b"*", &[&reader]),
        404,
        By::Envoy,
        None,
    )
    .await;
    expect(
        &stack,
        "CONNECT",
        &request("CONNECT", b"agents.test:443", &[&reader]),
        404,
        By::Envoy,
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_token_copies_are_all_stripped() {
    let stack = standard_stack(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]).await;
    for (query, status) in [
        (format!("apiToken=&apiToken={READER}&page=2"), 200),
        (format!("apiToken={READER}&apiToken={READER}&page=2"), 200),
        (format!("%61piToken={READER}&page=2"), 200),
        (
            format!("apiToken={}&page=2", READER.replace('-', "%2D")),
            200,
        ),
        (
            format!("apiToken={READER}&apiToken%5B%5D={READER}&page=2"),
            200,
        ),
        ("apiToken=&page=2".to_string(), 401),
    ] {
        let target = format!("/agents/v1/products?{query}");
        let reply = Reply::read(client().get(stack.url(&target))).await;
        assert_eq!(reply.status, status, "{query}\n{reply}");
        if status == 200 {
            let seen = stack.upstream.last();
            assert_eq!(
                seen.query(),
                "page=2",
                "{query}: upstream got {}",
                seen.path_and_query
            );
            assert_identity(&seen, "reader", "cp", "query", READER_SCOPES);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_do_not_unlock_an_ip_bound_key() {
    let stack = standard_stack(&[]).await;
    let pinned = bearer(PINNED);
    let spoofed = [
        ("x-forwarded-for", "127.0.0.2"),
        ("x-real-ip", "127.0.0.2"),
        ("forwarded", "for=127.0.0.2"),
        ("x-envoy-external-address", "127.0.0.2"),
        ("x-agents-client-ip", "127.0.0.2"),
    ];
    let before = stack.upstream.count();
    for path in ["/agents/v1/products", "/agents/v1/auth/whoami"] {
        let mut request = client()
            .get(stack.url(path))
            .header("authorization", &pinned);
        for (name, value) in spoofed {
            request = request.header(name, value);
        }
        Reply::read(request).await.expect_error(401, "UNAUTHORIZED");
    }
    assert_eq!(
        stack.upstream.count(),
        before,
        "a spoofed request was forwarded"
    );
    // From its own address the key works, whatever X-Forwarded-For claims.
    let from_pinned = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let request = from_pinned
        .get(stack.url("/agents/v1/products"))
        .header("authorization", &pinned)
        .header("x-forwarded-for", "203.0.113.9");
    Reply::read(request).await.expect_status(200);
}

/// Outcome counts of the load loop.
#[derive(Default, Debug)]
struct Tally {
    allowed: usize,
    refused: usize,
    allowed_while_down: usize,
    anonymous_allowed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_killed_under_load_fails_closed_then_recovers_on_restart() {
    let mut stack = standard_stack(&[("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE", "1000000")]).await;
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let url = stack.url("/agents/v1/products?who=reader");
    let anon_url = stack.url("/agents/v1/products?who=anonymous");
    let reader = bearer(READER);
    let load = {
        let (down, stop, reader) = (down.clone(), stop.clone(), reader.clone());
        async move {
            let http = client();
            let mut tally = Tally::default();
            let started = Instant::now();
            // Bounded: the loop also ends by itself after 60 s.
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                let was_down = down.load(Ordering::SeqCst);
                for (target, token) in [(&url, Some(&reader)), (&anon_url, None)] {
                    let mut request = http.get(target.as_str());
                    if let Some(t) = token {
                        request = request.header("authorization", t);
                    }
                    let status = match request.send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    if status == 200 {
                        tally.allowed += 1;
                        tally.allowed_while_down += usize::from(was_down);
                        tally.anonymous_allowed += usize::from(token.is_none());
                    } else {
                        assert!(
                            matches!(status, 401 | 503),
                            "unexpected answer {status} (down: {was_down})"
                        );
                        tally.refused += 1;
                    }
                }
            }
            tally
        }
    };
    let load = tokio::spawn(load);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stack.service().stop();
    down.store(true, Ordering::SeqCst);
    let forwarded_at_kill = stack.upstream.count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.upstream.count(),
        forwarded_at_kill,
        "a request reached the upstream while the service was dead"
    );
    let reply = get(&stack, "/agents/v1/products", &[("authorization", &reader)]).await;
    reply.expect_error(503, "AUTHORIZATION_UNAVAILABLE");

    down.store(false, Ordering::SeqCst);
    stack.service().restart().await;
    let restarted = Instant::now();
    let recovered = loop {
        let reply = get(&stack, "/agents/v1/products", &[("authorization", &reader)]).await;
        if reply.status == 200 {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "Envoy did not recover within 15 s: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let tally = load.await.expect("load loop");
    println!("recovered {recovered:?} after restart; {tally:?}");
    assert_eq!(tally.allowed_while_down, 0, "{tally:?}");
    assert_eq!(tally.anonymous_allowed, 0, "{tally:?}");
    assert!(tally.allowed > 0 && tally.refused > 0, "{tally:?}");
    for seen in stack.upstream.requests() {
        assert_ne!(
            seen.query(),
            "who=anonymous",
            "unauthorised request forwarded"
        );
        assert_eq!(seen.header("x-agents-credential-id"), Some("reader"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_with_a_trailing_slash_does_not_carry_the_token_to_the_api() {
    // Envoy sends only the exact whoami path to the service's own endpoint; with a trailing
    // slash the request goes to the Agents API like any other route, so the token must be
    // stripped as on any other route.
    let stack = standard_stack(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]).await;
    let target = format!("/agents/v1/auth/whoami/?apiToken={READER}&x=1");
    let reply = Reply::read(client().get(stack.url(&target))).await;
    reply.expect_status(200);
    let seen = stack.upstream.last();
    assert_eq!(seen.path_and_query, "/agents/v1/auth/whoami/?x=1");
    assert_no_token_forwarded(&seen);
    let authorization = bearer(READER);
    get(
        &stack,
        "/agents/v1/auth/whoami/",
        &[("authorization", &authorization)],
    )
    .await
    .expect_status(200);
    let seen = stack.upstream.last();
    assert!(
        seen.header("authorization").is_none(),
        "bearer forwarded to the API"
    );
    assert!(seen.header("x-agents-client-ip").is_none());
}
