//! The admin address of the real binary: `/healthz`, `/readyz`, `/metrics`, `/posture`,
//! the `agents.authz.v1.Admin` gRPC API on the same port, and the `agents-authz admin`
//! subcommands that call it.

mod service_harness;

use agents_authz::admin_proto::admin_client::AdminClient;
use agents_authz::admin_proto::{
    GetPostureRequest, GetStatusRequest, ProfileSource, ReloadRequest, ReloadResult, WhoAmIRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::{Value, json};
use service_harness::{
    Launch, Service, WAIT, admin_command, check_request, closed_port, http_get, managed_key,
    wait_until,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const READER: &str = "adm-reader-6b1e0c4f9a2d";
const LIMITED: &str = "adm-limited-2f7a9c3e5b81";
const PINNED: &str = "adm-pinned-8c4d2e1a7f60";
const ADDED: &str = "adm-added-4e9b3f0d6a15";

struct Fixture {
    _dir: tempfile::TempDir,
    keys: PathBuf,
    service: Service,
}

fn keys(extra: &[Value]) -> Value {
    let mut list = vec![
        managed_key("reader", READER, &["auth:read", "products:read"]),
        managed_key("limited", LIMITED, &["health:read"]),
        json!({
            "id": "pinned",
            "tokenHash": managed_key("x", PINNED, &[])["tokenHash"],
            "scopes": ["auth:read"],
            "ipAllowlist": ["10.0.0.0/8"],
        }),
    ];
    list.extend_from_slice(extra);
    json!({ "credentials": list })
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn start(extra_args: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys_path = dir.path().join("keys.json");
    write_json(&keys_path, &keys(&[]));
    let env_path = dir.path().join("authz.env");
    std::fs::write(&env_path, "PLUGIN_AGENTS_ENV_PROFILE=test\n").unwrap();
    let mut launch = Launch::serve()
        .env("ENVIRONMENT", "staging")
        .file_arg("--managed-keys", &keys_path)
        .file_arg("--env-file", &env_path);
    for arg in extra_args {
        launch = launch.arg(arg);
    }
    Fixture {
        _dir: dir,
        keys: keys_path,
        service: launch.start(),
    }
}

async fn admin_client(service: &Service) -> AdminClient<Channel> {
    AdminClient::connect(service.admin_url(""))
        .await
        .expect("admin gRPC answers on the admin address")
}

async fn get_json(url: &str) -> (u16, Value) {
    let reply = reqwest::get(url).await.expect("admin HTTP answers");
    let status = reply.status().as_u16();
    (status, reply.json().await.expect("JSON body"))
}

fn assert_no_tokens(text: &str) {
    for token in [READER, LIMITED, PINNED, ADDED] {
        assert!(!text.contains(token), "a token leaked into: {text}");
    }
}

#[tokio::test]
async fn health_and_readiness_report_the_snapshot() {
    let f = start(&[]);
    let (status, alive) = get_json(&f.service.admin_url("/healthz")).await;
    assert_eq!((status, alive), (200, json!({"status": "alive"})));
    let (status, ready) = get_json(&f.service.admin_url("/readyz")).await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["snapshotVersion"], 1);
    assert_eq!(ready["reload"]["lastReloadResult"], "initial");
    let missing = reqwest::get(f.service.admin_url("/no-such-endpoint"))
        .await
        .unwrap();
    assert_eq!(
        missing.status().as_u16(),
        404,
        "unknown paths stay plain 404s"
    );
}

#[tokio::test]
async fn posture_reports_spec_section_5_with_ids_never_tokens() {
    let f = start(&[]);
    let reply = reqwest::get(f.service.admin_url("/posture")).await.unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let text = reply.text().await.unwrap();
    assert_no_tokens(&text);
    for key in keys(&[])["credentials"].as_array().unwrap() {
        let hash = key["tokenHash"].as_str().unwrap();
        assert!(!text.contains(hash), "token hashes stay out of the posture");
    }
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(p["environment"], "staging");
    assert_eq!(p["environmentProfile"], "test");
    assert_eq!(p["environmentProfileSource"], "env");
    assert_eq!(p["profileDefaultsApplied"], true);
    assert_eq!(
        p["profileDefaultsAppliedFields"],
        json!(["rateLimitPerMinute"])
    );
    assert_eq!(p["effectivePolicyVersion"], "env-profile-v1");
    assert_eq!(p["requireToken"], true);
    assert_eq!(p["allowQueryToken"], false);
    assert_eq!(p["rateLimitPerMinute"], 300);
    assert!(p["flags"].is_object());
    assert_eq!(p["credentialCounts"]["managed"], 3);
    assert_eq!(p["credentialCounts"]["total"], 3);
    assert_eq!(
        p["credentialIds"]["managed"],
        json!(["reader", "limited", "pinned"])
    );
    assert!(p["warnings"].is_array());
    assert_eq!(p["snapshotVersion"], 1);
}

#[tokio::test]
async fn metrics_carry_the_documented_names_after_a_check() {
    let f = start(&[]);
    let mut check = AuthorizationClient::connect(f.service.grpc_url())
        .await
        .unwrap();
    let request = check_request(
        "GET",
        "/agents/v1/products",
        &[("authorization", &format!("Bearer {READER}"))],
        "127.0.0.1",
    );
    check.check(request).await.expect("Check answers");
    let reply = reqwest::get(f.service.admin_url("/metrics")).await.unwrap();
    let content_type = reply.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = reply.text().await.unwrap();
    assert!(
        text.contains("agents_authz_checks_total{decision=\"allow\",reason=\"authenticated\"} 1"),
        "{text}"
    );
    for name in [
        "agents_authz_check_duration_seconds_bucket",
        "agents_authz_credentials_loaded{source=\"managed\"} 3",
        "agents_authz_snapshot_version 1",
        "agents_authz_last_reload_timestamp_seconds",
        "agents_authz_last_reload_success",
        "agents_authz_reloads_total{result=\"success\"}",
        "agents_authz_decision_log_dropped_lines_total",
        "agents_authz_rate_limit_store_errors_total",
        "agents_authz_build_info{version=",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    assert_no_tokens(&text);
}

#[tokio::test]
async fn grpc_status_posture_and_whoami() {
    let f = start(&[]);
    let mut admin = admin_client(&f.service).await;
    let status = admin
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.snapshot_version, 1);
    assert!(status.last_reload.is_none());
    assert!(status.snapshot_loaded_at_unix_ms > 0);

    let posture = admin
        .get_posture(GetPostureRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(posture.environment_profile, "test");
    assert_eq!(posture.environment_profile_source(), ProfileSource::Env);
    let ids: Vec<&str> = posture.credentials.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["reader", "limited", "pinned"]);
    assert_no_tokens(&format!("{posture:?}"));

    let who = |token: &str, ip: &str| WhoAmIRequest {
        token: token.into(),
        client_ip: ip.into(),
    };
    let me = admin.who_am_i(who(READER, "")).await.unwrap().into_inner();
    assert!(me.authenticated);
    assert_eq!(me.credential_id, "reader");
    assert_eq!(me.granted_scopes, ["auth:read", "products:read"]);
    assert_no_tokens(&format!("{me:?}"));
    for (token, ip, code, reason) in [
        (LIMITED, "", Code::PermissionDenied, "missing_scope"),
        (
            "adm-unknown-000000000000",
            "",
            Code::Unauthenticated,
            "invalid_token",
        ),
        (PINNED, "", Code::Unauthenticated, "ip_not_allowed"),
        (PINNED, "192.0.2.1", Code::Unauthenticated, "ip_not_allowed"),
    ] {
        let err = admin.who_am_i(who(token, ip)).await.unwrap_err();
        assert_eq!(err.code(), code, "{token} from '{ip}'");
        assert!(err.message().starts_with(reason), "{}", err.message());
        assert!(!err.message().contains(token));
    }
    let pinned = admin.who_am_i(who(PINNED, "10.2.3.4")).await.unwrap();
    assert_eq!(pinned.get_ref().credential_id, "pinned");
}

#[tokio::test]
async fn grpc_reload_swaps_or_keeps_the_snapshot() {
    let f = start(&[]);
    let mut admin = admin_client(&f.service).await;
    let unknown = admin.who_am_i(WhoAmIRequest {
        token: ADDED.into(),
        client_ip: String::new(),
    });
    assert_eq!(unknown.await.unwrap_err().code(), Code::Unauthenticated);

    write_json(
        &f.keys,
        &keys(&[managed_key("added", ADDED, &["auth:read"])]),
    );
    let reload = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
    assert_eq!(reload.result(), ReloadResult::Success);
    assert_eq!(
        (reload.previous_snapshot_version, reload.snapshot_version),
        (1, 2)
    );
    let added = admin.who_am_i(WhoAmIRequest {
        token: ADDED.into(),
        client_ip: String::new(),
    });
    assert_eq!(added.await.unwrap().get_ref().credential_id, "added");

    std::fs::write(&f.keys, "{ not json").unwrap();
    let failed = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
    assert_eq!(failed.result(), ReloadResult::Failure);
    assert_eq!(failed.snapshot_version, 2);
    assert!(failed.error.contains("keys.json"), "{}", failed.error);

    let status = admin
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.snapshot_version, 2);
    assert_eq!((status.reloads_succeeded, status.reloads_failed), (1, 1));
    assert_eq!(status.last_reload.unwrap().result(), ReloadResult::Failure);
    let (_, ready) = get_json(&f.service.admin_url("/readyz")).await;
    assert_eq!(ready["reload"]["lastReloadResult"], "failed");
    assert_eq!(ready["snapshotVersion"], 2);
}

fn json_stdout(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn subcommands_print_json_from_the_running_service() {
    let f = start(&[]);
    let admin = f.service.ports.admin;
    let status = admin_command(admin, &["status"], &[], None);
    assert!(status.status.success());
    assert_eq!(json_stdout(&status)["snapshotVersion"], 1);

    let posture = admin_command(admin, &["posture"], &[], None);
    assert!(posture.status.success());
    let p = json_stdout(&posture);
    assert_eq!(p["environmentProfile"], "test");
    assert_eq!(p["credentialCounts"]["managed"], 3);

    let reload = admin_command(admin, &["reload"], &[], None);
    assert!(reload.status.success());
    let r = json_stdout(&reload);
    assert_eq!(
        (r["result"].as_str(), r["snapshotVersion"].as_u64()),
        (Some("success"), Some(2))
    );

    let from_env = admin_command(admin, &["whoami"], &[("AGENTS_AUTHZ_TOKEN", READER)], None);
    assert!(from_env.status.success());
    assert_eq!(json_stdout(&from_env)["credentialId"], "reader");
    let from_stdin = admin_command(admin, &["whoami"], &[], Some(&format!("{READER}\n")));
    assert!(from_stdin.status.success());
    assert_eq!(
        json_stdout(&from_stdin)["grantedScopes"],
        json!(["auth:read", "products:read"])
    );
    let with_ip = admin_command(
        admin,
        &["whoami", "--client-ip", "10.9.8.7"],
        &[("AGENTS_AUTHZ_TOKEN", PINNED)],
        None,
    );
    assert!(with_ip.status.success());
    for out in [&from_env, &from_stdin, &with_ip] {
        assert_no_tokens(&String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn subcommands_fail_clearly() {
    let f = start(&[]);
    let admin = f.service.ports.admin;
    let denied = admin_command(admin, &["whoami"], &[("AGENTS_AUTHZ_TOKEN", LIMITED)], None);
    assert_eq!(denied.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("missing_scope"), "{stderr}");
    assert!(!stderr.contains(LIMITED));

    let no_token = admin_command(admin, &["whoami"], &[], Some(""));
    assert_eq!(no_token.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("AGENTS_AUTHZ_TOKEN"));

    std::fs::write(&f.keys, "[").unwrap();
    let failed = admin_command(admin, &["reload"], &[], None);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(json_stdout(&failed)["result"], "failure");

    let nowhere = closed_port();
    let unreachable = admin_command(nowhere, &["status"], &[], None);
    assert_eq!(unreachable.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("cannot reach the admin API"), "{stderr}");
    assert!(stderr.contains(&nowhere.to_string()), "{stderr}");
}

#[test]
fn readiness_fails_while_shutting_down_then_the_process_exits_0() {
    let mut f = start(&["--shutdown-delay-ms", "3000"]);
    let admin = f.service.ports.admin;
    assert_eq!(http_get(admin, "/readyz").unwrap().status, 200);
    f.service.sigterm();
    let mut draining = None;
    let flipped = wait_until(WAIT, || {
        draining = http_get(admin, "/readyz").filter(|r| r.status == 503);
        draining.is_some()
    });
    assert!(flipped, "/readyz never answered 503 after SIGTERM");
    let body: Value = serde_json::from_str(&draining.unwrap().body).unwrap();
    assert_eq!(
        (body["ready"].as_bool(), body["draining"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(
        http_get(admin, "/healthz").map(|r| r.status),
        Some(200),
        "still alive"
    );
    let status = f
        .service
        .wait_exit(Duration::from_secs(3 + 10 + 5))
        .expect("exits after the delay and the drain");
    assert!(status.success(), "{status}");
}
