//! Generates the admin API from `proto/` at build time.
//!
//! The build needs no system `protoc`: it uses the one vendored by `protoc-bin-vendored`
//! unless `PROTOC` names another (for example Debian's `protobuf-compiler`).

use std::error::Error;

const ADMIN_PROTO: &str = "proto/agents/authz/v1/admin.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={ADMIN_PROTO}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // It carries a token: src/admin_proto.rs gives it a Debug that hides the value.
        .skip_debug(["agents.authz.v1.WhoAmIRequest"])
        .compile_with_config(config, &[ADMIN_PROTO], &["proto"])?;
    Ok(())
}
