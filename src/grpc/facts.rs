//! `CheckRequest` -> the core's request facts, borrowing every value.

use super::headers::HeaderView;
use crate::core::request::{HeaderField, METHOD_OVERRIDE_HEADERS, RequestFacts};
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use std::net::IpAddr;

/// A `CheckRequest` Envoy's HTTP filter could not have sent. Answered with a gRPC error
/// (`INVALID_ARGUMENT`): Envoy then applies the filter's `status_on_error`, and with
/// `failure_mode_allow: false` the request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactsError {
    #[error("CheckRequest has no attributes.request.http (only HTTP checks are supported)")]
    NotHttp,
    #[error("CheckRequest attributes.request.http.method is empty")]
    NoMethod,
    #[error("CheckRequest attributes.request.http.path is empty")]
    NoPath,
}

pub struct CheckInput<'a> {
    pub facts: RequestFacts<'a>,
    /// Path and query as Envoy sent them, for the (redacted) decision log.
    pub target: &'a str,
    pub headers: HeaderView<'a>,
}

pub fn check_input(
    req: &CheckRequest,
    now_epoch_seconds: i64,
) -> Result<CheckInput<'_>, FactsError> {
    let attributes = req.attributes.as_ref().ok_or(FactsError::NotHttp)?;
    let http = attributes
        .request
        .as_ref()
        .and_then(|r| r.http.as_ref())
        .ok_or(FactsError::NotHttp)?;
    if http.method.is_empty() {
        return Err(FactsError::NoMethod);
    }
    let headers = HeaderView::new(&http.headers, http.header_map.as_ref());
    let target = if http.path.is_empty() {
        headers.field(":path").value().unwrap_or("")
    } else {
        http.path.as_str()
    };
    if target.is_empty() {
        return Err(FactsError::NoPath);
    }
    let (path, query) = RequestFacts::split_target(target);
    let client_ip = attributes
        .source
        .as_ref()
        .and_then(|peer| peer.address.as_ref())
        .and_then(|a| match &a.address {
            Some(address::Address::SocketAddress(s)) => s.address.parse::<IpAddr>().ok(),
            _ => None,
        });
    let facts = RequestFacts {
        method: &http.method,
        path,
        query,
        authorization: headers.field("authorization"),
        agents_token: headers.field("x-agents-token"),
        content_type: headers.field("content-type"),
        request_id: headers.field("x-request-id"),
        method_override: METHOD_OVERRIDE_HEADERS
            .iter()
            .map(|name| headers.field(name))
            .find(|f| *f != HeaderField::Absent)
            .unwrap_or_default(),
        client_ip,
        now_epoch_seconds,
    };
    Ok(CheckInput {
        facts,
        target,
        headers,
    })
}
