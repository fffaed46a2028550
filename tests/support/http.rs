//! HTTP client side: a proxy-free client, and a captured reply whose assertion failures print
//! the whole exchange (status, headers, body).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client from 127.0.0.1 that ignores any proxy settings of the environment.
pub fn client() -> reqwest::Client {
    builder().build().expect("build reqwest client")
}

/// A client whose connections come from `local` (e.g. 127.0.0.2 for allowlist tests).
pub fn client_from(local: IpAddr) -> reqwest::Client {
    builder()
        .local_address(local)
        .build()
        .expect("build reqwest client")
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
}

/// A finished response, read in full.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub async fn read(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.expect("request through envoy");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("response body");
        Self {
            status,
            headers,
            body,
        }
    }

    /// Panics, printing the reply, unless the status is `expected`.
    pub fn expect_status(&self, expected: u16) -> &Self {
        assert_eq!(self.status, expected, "unexpected status\n{self}");
        self
    }

    /// The body as JSON; panics, printing the reply, when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err})\n{self}"))
    }

    /// The single value of a response header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header value"))
    }

    /// Panics, printing the reply, unless the JSON error body has this code and status and the
    /// shape the spec gives every error: message, requestId equal to the X-Request-Id header,
    /// and `Cache-Control: no-store, private`.
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        self.expect_status(status);
        let body = self.json();
        assert_eq!(body["error"], code, "error code\n{self}");
        assert_eq!(body["status"], status, "status field\n{self}");
        assert!(body["message"].is_string(), "message field\n{self}");
        let request_id = self.header("x-request-id");
        assert!(request_id.is_some(), "X-Request-Id header\n{self}");
        assert_eq!(body["requestId"].as_str(), request_id, "requestId\n{self}");
        let cache_control = self.header("cache-control").unwrap_or_default();
        assert!(cache_control.contains("no-store"), "Cache-Control\n{self}");
        assert!(cache_control.contains("private"), "Cache-Control\n{self}");
        body
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", value.to_str().unwrap_or("<non-ASCII>"))?;
        }
        write!(f, "\n{}", self.body)
    }
}
