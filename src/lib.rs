//! agents-authz: an Envoy ext_authz service enforcing the Agents API auth model.
//!
//! `core` is the pure decision (request facts + snapshot -> decision); everything else
//! adapts it to the outside: `config` loads snapshots, `grpc` answers Envoy's Check,
//! `http` serves whoami, `authz` runs the phases with rate limits between them,
//! `telemetry` writes decision logs and metrics.

pub mod admin;
pub mod admin_proto;
pub mod answer;
pub mod authz;
pub mod check;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;
pub mod error_chain;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod ratelimit;
pub mod reload;
pub mod report;
pub mod server;
pub mod state;
pub mod telemetry;
