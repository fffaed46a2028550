//! Every Envoy config the project ships passes `envoy --mode validate`, and so does the
//! loopback rendering the end-to-end suite runs.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use support::envoy::{EnvoyAddrs, render_config, validate, write_rendered_config};

fn envoy_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read deploy/envoy") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(envoy_files(&path));
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn every_shipped_envoy_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/envoy");
    let files = envoy_files(&dir);
    assert!(
        !files.is_empty(),
        "no Envoy config found under {}",
        dir.display()
    );
    for file in files {
        if let Err(output) = validate(&file) {
            panic!(
                "envoy --mode validate failed for {}:\n{output}",
                file.display()
            );
        }
    }
}

#[test]
fn rendered_test_config_validates() {
    let dir = support::stack::test_dir();
    let addrs = EnvoyAddrs::new(loopback(19191), loopback(19192), loopback(18000));
    let config = write_rendered_config(&addrs, dir.path());
    if let Err(output) = validate(&config) {
        panic!("envoy --mode validate failed for the rendered config:\n{output}");
    }
}

#[test]
fn rendering_replaces_every_deploy_address() {
    let template = std::fs::read_to_string(support::envoy::DEPLOY_CONFIG).expect("read config");
    let addrs = EnvoyAddrs::new(loopback(19191), loopback(19192), loopback(18000));
    let rendered = render_config(&template, &addrs);
    for host in ["agents-authz", "agents-api", "0.0.0.0"] {
        let leftover = rendered
            .lines()
            .find(|l| l.contains("socket_address") && l.contains(host));
        assert!(
            leftover.is_none(),
            "rendered config still points at {host}: {leftover:?}"
        );
    }
    for port in [19191, 19192, 18000, addrs.edge.port(), addrs.admin.port()] {
        assert!(
            rendered.contains(&format!("port_value: {port} ")),
            "port {port} missing"
        );
    }
}
