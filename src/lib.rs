//! agents-authz: an Envoy ext_authz service enforcing the Agents API auth model.

pub mod config;
pub mod core;
