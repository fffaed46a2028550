//! Shared harness for the tests that drive real processes: the release `agents-authz` binary,
//! a real Envoy (from `ENVOY_BIN`), an in-process echo upstream and a blackhole listener.
//!
//! Every helper binds loopback only, on ports chosen at run time, and keeps its files in its own
//! temporary directory, so tests can run in parallel. Child processes are killed on drop; when a
//! test panics, their logs are printed so the failure explains itself.

pub mod blackhole;
pub mod envoy;
pub mod fixtures;
pub mod free_port;
pub mod http;
pub mod keys;
pub mod manifests;
pub mod ports;
pub mod process;
pub mod replicas;
pub mod service;
pub mod stack;
pub mod stub_authz;
pub mod upstream;
