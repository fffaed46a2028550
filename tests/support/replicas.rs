//! Several agents-authz replicas behind one Envoy: the shipped config rendered for loopback,
//! with one more `lb_endpoints` entry in the `agents_authz_grpc` cluster per extra replica.
//!
//! The shipped file names one authz host (a Kubernetes Service that resolves to every pod);
//! on loopback each replica has its own port, so the cluster needs one endpoint per replica.
//! Everything else stays the production config, rendered by `envoy::render_config`.

use std::net::SocketAddr;
use std::path::Path;

use super::envoy::{DEPLOY_CONFIG, Envoy, EnvoyAddrs, render_config};

/// The shipped config rendered for `addrs` (whose `authz_grpc` is the first replica), with an
/// endpoint for each of `more_grpc` added after the first one in the same cluster.
pub fn render_with_authz_replicas(
    template: &str,
    addrs: &EnvoyAddrs,
    more_grpc: &[SocketAddr],
) -> String {
    let rendered = render_config(template, addrs);
    let first = socket_line(addrs.authz_grpc);
    let lines: Vec<&str> = rendered.lines().collect();
    let hits: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim() == first)
        .collect();
    let [at] = hits[..] else {
        panic!("expected `{first}` once in the rendered {DEPLOY_CONFIG}, found {hits:?}");
    };
    // The endpoint is three lines: `- endpoint:`, `address:`, then the socket address.
    assert!(
        at >= 2 && lines[at - 2].trim() == "- endpoint:" && lines[at - 1].trim() == "address:",
        "the agents_authz_grpc endpoint in {DEPLOY_CONFIG} changed shape; update this renderer"
    );
    let mut out: Vec<String> = lines[..=at].iter().map(|l| (*l).to_owned()).collect();
    for addr in more_grpc {
        let indent = &lines[at][..lines[at].len() - lines[at].trim_start().len()];
        out.push(lines[at - 2].to_owned());
        out.push(lines[at - 1].to_owned());
        out.push(format!("{indent}{}", socket_line(*addr)));
    }
    out.extend(lines[at + 1..].iter().map(|l| (*l).to_owned()));
    out.join("\n") + "\n"
}

/// The `socket_address` line `render_config` writes for `addr`.
fn socket_line(addr: SocketAddr) -> String {
    format!(
        "socket_address: {{ address: {}, port_value: {} }}",
        addr.ip(),
        addr.port()
    )
}

/// Starts Envoy with every address in `authz_grpc` as an endpoint of its ext_authz cluster
/// (round robin, as shipped). `authz_http` serves whoami; the tests here do not call it.
pub async fn start_envoy(
    authz_grpc: &[SocketAddr],
    authz_http: SocketAddr,
    upstream: SocketAddr,
    dir: &Path,
) -> Envoy {
    let [first, more @ ..] = authz_grpc else {
        panic!("start_envoy needs at least one authz replica");
    };
    let addrs = EnvoyAddrs::new(*first, authz_http, upstream);
    let template = std::fs::read_to_string(DEPLOY_CONFIG).expect("read deploy/envoy/envoy.yaml");
    let path = dir.join("envoy.yaml");
    let text = render_with_authz_replicas(&template, &addrs, more);
    std::fs::write(&path, text).expect("write rendered envoy.yaml");
    Envoy::start_with_config(addrs, &path, dir).await
}
