//! Hot reload end to end: the real `agents-authz serve` process, its managed keys in a
//! ConfigMap volume laid out as the kubelet does it, Envoy-shaped Check calls over gRPC
//! and the admin readiness report.

mod reload_harness;

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use reload_harness::{
    Answer, Service, Volume, check, check_request, health_with, key, keys_json, replace_file,
    time_until,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// The bound: a removed or revoked key stops working this soon after the swap.
const REVOKE_LIMIT: Duration = Duration::from_secs(2);
/// How long to wait for things with no stated bound (a failure being reported).
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

const ALPHA: &str = "tok-alpha-5d1c0e";
const BETA: &str = "tok-beta-92af31";
const GAMMA: &str = "tok-gamma-40b7d2";

type Client = AuthorizationClient<Channel>;

fn alpha_and_beta() -> String {
    keys_json(&[
        key("alpha", ALPHA, &["health:read"]),
        key("beta", BETA, &["health:read"]),
    ])
}

/// The env file: rate limits high enough never to interfere, query tokens as asked.
fn env_text(allow_query_token: bool) -> String {
    format!(
        "PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=1000000\n\
         PLUGIN_AGENTS_ALLOW_QUERY_TOKEN={allow_query_token}\n"
    )
}

struct Setup {
    volume: Volume,
    env_file: PathBuf,
    service: Service,
    client: Client,
}

/// Keys alpha and beta in a kubelet volume, a plain env file beside them, the service
/// started with `extra` flags.
async fn setup(extra: &[&str]) -> Setup {
    let volume = Volume::new(&[("keys.json", &alpha_and_beta())]);
    let env_file = volume.root().join("agents.env");
    replace_file(&env_file, &env_text(false));
    let service = Service::start(&volume.path("keys.json"), &env_file, extra).await;
    let client = service.client().await;
    Setup {
        volume,
        env_file,
        service,
        client,
    }
}

async fn health(client: &mut Client, token: &str) -> Answer {
    check(client, health_with(token)).await
}

async fn allowed(client: &mut Client, token: &str) -> bool {
    health(client, token).await.allowed()
}

/// Polls readiness until `done` holds for its `reload` block, and returns that block.
async fn reload_report(service: &Service, done: impl Fn(&Value) -> bool) -> Value {
    let since = Instant::now();
    while since.elapsed() < SETTLE_LIMIT {
        let report = service.readyz().await["reload"].clone();
        if done(&report) {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "readiness never showed the expected reload state; last: {}\n{}",
        service.readyz().await,
        service.log_text()
    );
}

#[tokio::test]
async fn added_removed_and_revoked_keys_follow_configmap_swaps() {
    let Setup {
        mut volume,
        service,
        mut client,
        env_file: _,
    } = setup(&[]).await;
    assert!(allowed(&mut client, ALPHA).await && allowed(&mut client, BETA).await);
    let unknown = health(&mut client, GAMMA).await;
    assert_eq!(
        (unknown.allowed(), unknown.denied_status),
        (false, Some(401))
    );

    let with_gamma = keys_json(&[
        key("alpha", ALPHA, &["health:read"]),
        key("beta", BETA, &["health:read"]),
        key("gamma", GAMMA, &["health:read"]),
    ]);
    let swapped = volume.publish(&[("keys.json", &with_gamma)]);
    let added = time_until(swapped, REVOKE_LIMIT, async || {
        allowed(&mut client, GAMMA).await
    })
    .await
    .unwrap_or_else(|| panic!("gamma never authenticated\n{}", service.log_text()));
    let gamma = health(&mut client, GAMMA).await;
    assert_eq!(gamma.upstream("x-agents-credential-id"), Some("gamma"));
    println!("key added: authenticating {added:?} after the swap");

    let mut revoked_beta = key("beta", BETA, &["health:read"]);
    revoked_beta["revokedAt"] = json!("2026-01-01T00:00:00Z");
    let alpha_gone = keys_json(&[revoked_beta, key("gamma", GAMMA, &["health:read"])]);
    let swapped = volume.publish(&[("keys.json", &alpha_gone)]);
    let stopped = time_until(swapped, REVOKE_LIMIT, async || {
        !allowed(&mut client, ALPHA).await && !allowed(&mut client, BETA).await
    })
    .await
    .unwrap_or_else(|| panic!("removed/revoked keys still work\n{}", service.log_text()));
    println!("key removed and key revoked: refused {stopped:?} after the swap");
    assert!(stopped < REVOKE_LIMIT);
    for token in [ALPHA, BETA] {
        assert_eq!(health(&mut client, token).await.denied_status, Some(401));
    }
    assert!(
        allowed(&mut client, GAMMA).await,
        "the kept key still works"
    );
    assert_eq!(service.version().await, 3, "one reload per swap");
}

#[tokio::test]
async fn a_swap_to_invalid_json_keeps_the_previous_keys_and_is_reported() {
    let Setup {
        mut volume,
        service,
        mut client,
        env_file: _,
    } = setup(&[]).await;
    let keys_path = volume.path("keys.json").display().to_string();

    volume.publish(&[("keys.json", "{\"credentials\": [{\"id\": ")]);
    let report = reload_report(&service, |r| r["lastReloadResult"] == "failed").await;
    let error = report["lastError"].as_str().expect("lastError is set");
    assert!(
        error.contains(&keys_path),
        "lastError names the file: {error}"
    );
    assert_eq!(report["snapshotVersion"], 1, "the last good snapshot stays");
    assert!(allowed(&mut client, ALPHA).await && allowed(&mut client, BETA).await);

    let with_gamma = keys_json(&[key("gamma", GAMMA, &["health:read"])]);
    volume.publish(&[("keys.json", &with_gamma)]);
    let report = reload_report(&service, |r| r["lastReloadResult"] == "ok").await;
    assert_eq!(
        report["lastError"],
        Value::Null,
        "a good file clears the error"
    );
    assert!(allowed(&mut client, GAMMA).await);
    assert!(!allowed(&mut client, ALPHA).await);
}

#[tokio::test]
async fn a_deleted_keys_file_keeps_the_keys_and_is_reported() {
    let Setup {
        volume,
        service,
        mut client,
        env_file: _,
    } = setup(&[]).await;
    let keys_path = volume.path("keys.json");

    volume.delete("keys.json");
    let shown = keys_path.display().to_string();
    let report = reload_report(&service, |r| r["missingFiles"] == json!([shown])).await;
    assert_eq!(report["lastReloadResult"], "failed");
    assert_eq!(report["snapshotVersion"], 1);
    assert!(allowed(&mut client, ALPHA).await && allowed(&mut client, BETA).await);

    symlink("..data/keys.json", &keys_path).expect("restore the visible link");
    let report = reload_report(&service, |r| r["missingFiles"] == json!([])).await;
    assert_eq!(report["lastReloadResult"], "ok");
    assert!(allowed(&mut client, ALPHA).await);
}

#[tokio::test]
async fn the_env_file_switches_query_tokens_without_a_restart() {
    let Setup {
        volume: _kept_until_the_end,
        env_file,
        service,
        mut client,
    } = setup(&[]).await;
    let by_query = || check_request("GET", &format!("/agents/v1/health?apiToken={ALPHA}"), &[]);
    let before = check(&mut client, by_query()).await;
    assert_eq!(
        before.denied_status,
        Some(401),
        "query tokens start disabled"
    );

    let written = replace_file(&env_file, &env_text(true));
    let took = time_until(written, SETTLE_LIMIT, async || {
        check(&mut client, by_query()).await.allowed()
    })
    .await
    .unwrap_or_else(|| panic!("query token never accepted\n{}", service.log_text()));
    println!("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN=true in force {took:?} after the rename");
    let after = check(&mut client, by_query()).await;
    assert_eq!(after.upstream("x-agents-auth-method"), Some("query"));
    assert_eq!(after.upstream("x-agents-credential-id"), Some("alpha"));

    let written = replace_file(&env_file, &env_text(false));
    time_until(written, SETTLE_LIMIT, async || {
        !check(&mut client, by_query()).await.allowed()
    })
    .await
    .expect("switching query tokens off again takes effect");
}

#[tokio::test]
async fn sighup_forces_a_reload() {
    // With the watcher off, only the signal can pick up the change.
    let Setup {
        mut volume,
        service,
        mut client,
        env_file: _,
    } = setup(&["--watch", "off"]).await;
    let with_gamma = keys_json(&[key("gamma", GAMMA, &["health:read"])]);
    volume.publish(&[("keys.json", &with_gamma)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!allowed(&mut client, GAMMA).await, "nothing reloaded yet");
    assert_eq!(service.version().await, 1);

    service.sighup().await;
    let report = reload_report(&service, |r| r["snapshotVersion"] == 2).await;
    assert_eq!(report["lastReloadResult"], "ok");
    assert!(allowed(&mut client, GAMMA).await);
    assert!(!allowed(&mut client, ALPHA).await);

    service.sighup().await;
    let report = reload_report(&service, |r| r["snapshotVersion"] == 3).await;
    assert_eq!(
        report["reloadsOk"], 2,
        "every SIGHUP reloads, changed or not"
    );
}
