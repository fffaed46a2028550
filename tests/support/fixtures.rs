//! What the end-to-end suites share: test tokens and their managed keys, the standard stack,
//! request helpers, and the assertions on what reached the upstream.

use reqwest::Method;

use super::http::{Reply, client};
use super::keys::{ManagedKey, write_managed_keys};
use super::service::ServiceConfig;
use super::stack::{Stack, test_dir};
use super::upstream::Recorded;

pub const READER: &str = "e2e-reader-3f9a1c7d5b2e";
pub const LIMITED: &str = "e2e-limited-8c4e2a6f0d1b";
pub const PINNED: &str = "e2e-pinned-1a2b3c4d5e6f";
pub const REPORTER: &str = "e2e-reporter-9d8c7b6a5f4e";
pub const ENV_TOKEN: &str = "e2e-env-token-77aa88bb99cc";

pub const READER_SCOPES: &str = "auth:read entries:read health:read products:read";

/// The identity headers the contract sets on every allowed guarded request.
pub const IDENTITY_HEADERS: [&str; 6] = [
    "x-agents-auth-method",
    "x-agents-credential-id",
    "x-agents-credential-source",
    "x-agents-principal",
    "x-agents-redact-email",
    "x-agents-scopes",
];

/// Client-supplied identity that must never reach the upstream.
pub const FORGED: [(&str, &str); 7] = [
    ("x-agents-credential-id", "forged-admin"),
    ("x-agents-credential-source", "forged"),
    ("x-agents-auth-method", "forged"),
    ("x-agents-principal", "forged"),
    ("x-agents-scopes", "*"),
    ("x-agents-debug", "forged"),
    ("x_agents_credential_id", "forged-underscore"),
];

pub fn managed_keys() -> Vec<ManagedKey> {
    vec![
        ManagedKey::new(
            "reader",
            READER,
            &["products:read", "auth:read", "health:read", "entries:read"],
        ),
        ManagedKey::new("limited", LIMITED, &["health:read"]),
        ManagedKey::new("pinned", PINNED, &["products:read"]).allow_ips(&["127.0.0.2"]),
        ManagedKey::new("reporter", REPORTER, &["jobs:report"]),
    ]
}

/// Managed keys plus one JSON-set credential; production profile (the strict defaults).
pub async fn standard_stack(extra_env: &[(&str, &str)]) -> Stack {
    let dir = test_dir();
    let keys = write_managed_keys(dir.path(), &managed_keys());
    let env_credential =
        format!(r#"{{"id": "Env Bot", "token": "{ENV_TOKEN}", "scopes": "products:read"}}"#);
    let mut config = ServiceConfig::default()
        .managed_keys(&keys)
        .env("ENVIRONMENT", "production")
        .env("PLUGIN_AGENTS_API_CREDENTIALS", &env_credential);
    for (key, value) in extra_env {
        config = config.env(key, value);
    }
    Stack::start(dir, config).await
}

pub async fn get(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(stack, Method::GET, path, headers, None).await
}

pub async fn send(
    stack: &Stack,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut request = client().request(method, stack.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    Reply::read(request).await
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Panics unless the upstream received nothing: a refused request must stop at Envoy.
pub fn assert_nothing_forwarded(stack: &Stack, context: &str) {
    let requests = stack.upstream.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path_and_query.as_str()).collect();
    assert!(
        requests.is_empty(),
        "{context}: the upstream received {paths:?}"
    );
}

/// Panics unless the upstream saw exactly the contract's identity headers with these values
/// and no other x-agents-* header.
pub fn assert_identity(seen: &Recorded, id: &str, source: &str, method: &str, scopes: &str) {
    let mut names: Vec<&str> = seen.agents_headers().iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        IDENTITY_HEADERS,
        "x-agents-* headers upstream: {:?}",
        seen.agents_headers()
    );
    assert_eq!(seen.header("x-agents-credential-id"), Some(id));
    assert_eq!(seen.header("x-agents-credential-source"), Some(source));
    assert_eq!(seen.header("x-agents-auth-method"), Some(method));
    assert_eq!(seen.header("x-agents-scopes"), Some(scopes));
    assert_eq!(seen.header("x-agents-redact-email"), Some("true"));
    let principal = seen.header("x-agents-principal").unwrap_or_default();
    assert!(!principal.is_empty(), "empty x-agents-principal");
    for token in [READER, LIMITED, PINNED, REPORTER, ENV_TOKEN] {
        assert!(
            !principal.contains(token),
            "x-agents-principal carries a token"
        );
    }
}

/// Panics if any token appears anywhere in what the upstream received, or in its query.
pub fn assert_no_token_forwarded(seen: &Recorded) {
    assert!(
        !seen.query().contains("apiToken"),
        "apiToken forwarded: {}",
        seen.path_and_query
    );
    assert!(
        seen.header("x-agents-token").is_none(),
        "x-agents-token forwarded"
    );
}
