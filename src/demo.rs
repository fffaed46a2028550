//! The embedded demo configuration: two well-known keys so a newcomer sees allows,
//! 401s and 403s at once. `agents-authz demo` only; `serve` never uses it.

use crate::core::credentials::digest;
use serde_json::{Value, json};

pub const AGENT_TOKEN: &str = "demo-agent-7f3c9a1e5b";
pub const LIMITED_TOKEN: &str = "demo-limited-4b2d8e60c1";

pub fn managed_keys() -> Value {
    json!({"credentials": [
        {
            "id": "demo-agent",
            "tokenHash": hex::encode(digest(AGENT_TOKEN)),
            "scopes": ["auth:read", "health:read", "products:read", "entries:read"]
        },
        {
            "id": "demo-limited",
            "tokenHash": hex::encode(digest(LIMITED_TOKEN)),
            "scopes": ["health:read"]
        }
    ]})
}
