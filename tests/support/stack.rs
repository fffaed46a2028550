//! The whole path under test: client -> Envoy (deploy config) -> echo upstream, with
//! agents-authz (or a blackhole in its place) as Envoy's ext_authz service.

use std::path::Path;

use tempfile::TempDir;

use super::blackhole::Blackhole;
use super::envoy::{Envoy, EnvoyAddrs};
use super::service::{Service, ServiceConfig};
use super::stub_authz::StubAuthz;
use super::upstream::EchoUpstream;

/// Field order is drop order: Envoy and the service stop before the directory holding their
/// logs is removed, so a failing test can still print them.
pub struct Stack {
    pub envoy: Envoy,
    pub service: Option<Service>,
    pub blackhole: Option<Blackhole>,
    pub stub: Option<StubAuthz>,
    pub upstream: EchoUpstream,
    pub dir: TempDir,
}

/// A fresh temporary directory for one test's files.
pub fn test_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("agents-authz-e2e-")
        .tempdir()
        .expect("create temp dir")
}

impl Stack {
    /// Starts the echo upstream, the service with `config`, then Envoy in front of both.
    pub async fn start(dir: TempDir, config: ServiceConfig) -> Self {
        let upstream = EchoUpstream::start().await;
        let service = Service::start(&config, dir.path()).await;
        let addrs = EnvoyAddrs::new(service.grpc_addr, service.http_addr, upstream.addr);
        let envoy = Envoy::start(addrs, dir.path()).await;
        Self {
            envoy,
            service: Some(service),
            blackhole: None,
            stub: None,
            upstream,
            dir,
        }
    }

    /// Like `start`, but Envoy's authz clusters point at a listener that never answers.
    pub async fn start_with_blackhole(dir: TempDir) -> Self {
        let upstream = EchoUpstream::start().await;
        let blackhole = Blackhole::start().await;
        let addrs = EnvoyAddrs::new(blackhole.addr, blackhole.addr, upstream.addr);
        let envoy = Envoy::start(addrs, dir.path()).await;
        Self {
            envoy,
            service: None,
            blackhole: Some(blackhole),
            stub: None,
            upstream,
            dir,
        }
    }

    /// Like `start`, but Envoy asks a stub that allows everything and strips nothing, so the
    /// upstream sees what Envoy's own config does to headers.
    pub async fn start_with_stub(dir: TempDir) -> Self {
        let upstream = EchoUpstream::start().await;
        let stub = StubAuthz::start().await;
        let addrs = EnvoyAddrs::new(stub.addr, stub.addr, upstream.addr);
        let envoy = Envoy::start(addrs, dir.path()).await;
        Self {
            envoy,
            service: None,
            blackhole: None,
            stub: Some(stub),
            upstream,
            dir,
        }
    }

    /// URL on Envoy's edge listener.
    pub fn url(&self, path_and_query: &str) -> String {
        self.envoy.url(path_and_query)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The running service; panics for a blackhole stack.
    pub fn service(&mut self) -> &mut Service {
        self.service.as_mut().expect("this stack runs no service")
    }
}
