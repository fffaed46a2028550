//! What a decision answers, independent of transport: the request id, the JSON error
//! body and the headers every answer carries. The gRPC and HTTP adapters both use it.

use crate::core::decision::{Decision, Verdict};
use crate::core::request::{HeaderField, is_valid_request_id};
use serde::Serialize;
use std::borrow::Cow;

pub const CACHE_CONTROL: &str = "no-store, private";
pub const JSON: &str = "application/json";

/// The incoming `X-Request-Id` when it has the documented shape, else a fresh one.
pub fn request_id<'a>(incoming: HeaderField<'a>) -> Cow<'a, str> {
    match incoming {
        HeaderField::Present(id) if is_valid_request_id(id) => Cow::Borrowed(id),
        _ => Cow::Owned(fresh_request_id()),
    }
}

pub fn fresh_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'static str,
    status: u16,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    required_scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

/// The JSON body of a refusal; `None` for an allow.
pub fn error_body(
    decision: &Decision<'_>,
    request_id: &str,
    retry_after: Option<u64>,
) -> Option<String> {
    let Verdict::Deny {
        reason,
        required_scope,
        ..
    } = &decision.verdict
    else {
        return None;
    };
    let body = ErrorBody {
        error: reason.code(),
        message: reason.message(),
        status: reason.status(),
        request_id,
        required_scope: required_scope.as_deref(),
        retry_after,
    };
    Some(serde_json::to_string(&body).expect("error body serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decision::DenyReason;

    #[test]
    fn keeps_valid_request_ids_and_replaces_others() {
        assert_eq!(
            request_id(HeaderField::Present("req-12345678")),
            "req-12345678"
        );
        let fresh = request_id(HeaderField::Present("abc"));
        assert_eq!(fresh.len(), 32);
        assert!(is_valid_request_id(&fresh));
        assert_ne!(
            request_id(HeaderField::Absent),
            request_id(HeaderField::Absent)
        );
    }

    #[test]
    fn error_bodies_have_the_documented_fields() {
        let d = Decision {
            verdict: Verdict::Deny {
                reason: DenyReason::MissingScope,
                credential: None,
                auth_method: None,
                required_scope: Some(Cow::Borrowed("orders:read")),
            },
            route: None,
        };
        let v: serde_json::Value =
            serde_json::from_str(&error_body(&d, "rid-00000001", None).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "FORBIDDEN", "message": DenyReason::MissingScope.message(),
                "status": 403, "requestId": "rid-00000001", "requiredScope": "orders:read"})
        );
    }
}
