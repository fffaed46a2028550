//! The Envoy ext_authz gRPC adapter: `CheckRequest` in, core decision, `CheckResponse` out.

pub mod facts;
pub mod headers;
pub mod response;
pub mod service;
