//! One structured line per decision, on its own target so operators can route it.
//! Never a token, a header dump, a body, or a `Debug` print of a request.

use crate::core::decision::{Decision, Verdict};
use crate::core::request::RequestFacts;
use std::time::Duration;

pub const TARGET: &str = "agents_authz::decision";

pub struct Entry<'a, 's> {
    pub decision: &'a Decision<'s>,
    pub facts: &'a RequestFacts<'a>,
    pub request_id: &'a str,
    pub snapshot_version: u64,
    pub elapsed: Duration,
}

pub fn record(entry: &Entry<'_, '_>) {
    let d = entry.decision;
    let (credential, method) = match &d.verdict {
        Verdict::Allow { principal, .. } => (
            principal.and_then(|p| p.credential),
            principal.map(|p| p.method.as_str()),
        ),
        Verdict::Deny {
            credential,
            auth_method,
            ..
        } => (*credential, auth_method.map(|m| m.as_str())),
    };
    tracing::info!(
        target: TARGET,
        request_id = entry.request_id,
        decision = if d.is_allow() { "allow" } else { "deny" },
        status = d.status(),
        reason = d.reason_str(),
        credential.id = credential.map(|c| &*c.id),
        credential.source = credential.map(|c| c.source.header_value()),
        auth.method = method,
        principal = credential.map(|c| &*c.fingerprint),
        http.method = entry.facts.method,
        http.path = entry.facts.path,
        route = d.route.map(|r| &*r.path),
        client.ip = entry.facts.client_ip.map(tracing::field::display),
        snapshot.version = entry.snapshot_version,
        duration_us = entry.elapsed.as_micros() as u64,
        "decision"
    );
}
