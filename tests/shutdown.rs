//! SIGTERM under load: health turns NOT_SERVING, no Check that was already sent fails,
//! and the process exits 0 within the grace period.

mod service_harness;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use service_harness::{Launch, check_request, managed_key};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const TOKEN: &str = "shutdown-reader-3e8a1c7f0b52";
const CONNECTIONS: usize = 2;
const TASKS_PER_CONNECTION: usize = 8;
const MAX_CHECKS_PER_TASK: usize = 200_000;
const LOAD_LIMIT: Duration = Duration::from_secs(30);
const WARM_UP_CHECKS: u64 = 500;
const GRACE_SECONDS: u64 = 5;
const CHECK_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// One Check as the client saw it.
struct Sent {
    /// Its `x-request-id`, which the service's decision line repeats.
    id: String,
    launched: Instant,
    finished: Instant,
    result: Result<(), (Code, String)>,
}

fn request(id: &str) -> CheckRequest {
    let bearer = format!("Bearer {TOKEN}");
    let headers = [("authorization", bearer.as_str()), ("x-request-id", id)];
    check_request("GET", "/agents/v1/products", &headers, "127.0.0.1")
}

/// An allow as Envoy expects it: status OK and an OK HTTP response.
fn is_valid_allow(response: &CheckResponse) -> bool {
    response.status.as_ref().is_some_and(|s| s.code == 0)
        && matches!(response.http_response, Some(HttpResponse::OkResponse(_)))
}

/// Sends Checks back to back until one fails (the service is gone) or a bound is hit.
async fn load(task: usize, channel: Channel, done: Arc<AtomicU64>) -> Vec<Sent> {
    let mut client = AuthorizationClient::new(channel);
    let stop_at = Instant::now() + LOAD_LIMIT;
    let mut sent = Vec::new();
    for n in 0..MAX_CHECKS_PER_TASK {
        if Instant::now() > stop_at {
            break;
        }
        let id = format!("shutdown-{task}-{n}");
        let launched = Instant::now();
        let result = match client.check(request(&id)).await {
            Ok(r) if is_valid_allow(r.get_ref()) => Ok(()),
            Ok(r) => Err((
                Code::Ok,
                format!("not a valid allow: {:?}", r.get_ref().status),
            )),
            Err(status) => Err((status.code(), status.message().to_owned())),
        };
        let failed = result.is_err();
        sent.push(Sent {
            id,
            launched,
            finished: Instant::now(),
            result,
        });
        done.fetch_add(1, Ordering::Relaxed);
        if failed {
            break;
        }
    }
    sent
}

/// The request ids of every decision line the service wrote.
fn answered_request_ids(stdout: &str) -> HashSet<String> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["target"] == "agents_authz::decision")
        .filter_map(|v| v["request.id"].as_str().map(str::to_owned))
        .collect()
}

async fn next_status(stream: &mut tonic::Streaming<HealthCheckResponse>) -> Option<ServingStatus> {
    let message = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    message.ok()?.ok()?.map(|m| m.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_every_check_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let list = serde_json::json!([managed_key("reader", TOKEN, &["products:read"])]);
    std::fs::write(&keys, list.to_string()).unwrap();
    let mut service = Launch::serve()
        .file_arg("--managed-keys", &keys)
        .arg("--shutdown-grace-seconds")
        .arg(GRACE_SECONDS.to_string())
        // This test is about draining; rate limits would refuse the load first.
        .arg("--rate-limit-store")
        .arg("off")
        // As in production: keep serving briefly after SIGTERM, so the load is still
        // running when the signal lands and some Checks span it.
        .arg("--shutdown-delay-ms")
        .arg("300")
        .start();
    let endpoint = Endpoint::from_shared(service.grpc_url()).unwrap();

    // A watch opened before the signal sees the switch to NOT_SERVING as it happens.
    let mut health = HealthClient::new(endpoint.connect().await.unwrap());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: CHECK_SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, Some(ServingStatus::Serving));

    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        // One HTTP/2 connection per channel, shared by its tasks' concurrent streams.
        let channel = endpoint.connect().await.unwrap();
        for _ in 0..TASKS_PER_CONNECTION {
            let task = tokio::spawn(load(tasks.len(), channel.clone(), done.clone()));
            tasks.push(task);
        }
    }
    let warm = tokio::time::timeout(LOAD_LIMIT, async {
        while done.load(Ordering::Relaxed) < WARM_UP_CHECKS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    warm.await.expect("the service answers Checks under load");

    let signalled = Instant::now();
    service.sigterm();
    let kill_returned = Instant::now();
    let after_signal = next_status(&mut watch).await;
    drop(watch);
    drop(health);

    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    let exited = tokio::task::spawn_blocking(move || {
        let status = service.wait_exit(Duration::from_secs(GRACE_SECONDS + 10));
        (status, Instant::now(), service.stdout.text())
    });
    let (status, exited_at, stdout) = exited.await.unwrap();

    let answered = answered_request_ids(&stdout);
    let completed = sent.iter().filter(|s| s.result.is_ok()).count();
    let spanning_signal = sent
        .iter()
        // Overlapping the `kill` call: in flight while the signal was being delivered.
        .filter(|s| s.result.is_ok() && s.launched < kill_returned && s.finished > signalled)
        .count();
    // A Check has started once the service handled it (its decision line exists), or
    // surely once it was sent before the signal. Any other failure is a stream the
    // service never took: refused on a closing connection or a closed port.
    let (in_flight_failures, refused): (Vec<&Sent>, Vec<&Sent>) = sent
        .iter()
        .filter(|s| s.result.is_err())
        .partition(|s| s.launched < signalled || answered.contains(s.id.as_str()));
    let refused_codes: BTreeMap<String, usize> =
        refused.iter().fold(BTreeMap::new(), |mut counts, s| {
            let (code, _) = s.result.as_ref().unwrap_err();
            *counts.entry(format!("{code:?}")).or_default() += 1;
            counts
        });
    println!(
        "checks: {} sent, {completed} completed ({spanning_signal} in flight at the signal), \
         {} never started (refused after shutdown began: {refused_codes:?}), {} failed in flight",
        sent.len(),
        refused.len(),
        in_flight_failures.len(),
    );

    let failed: Vec<_> = in_flight_failures
        .iter()
        .map(|s| (&s.id, s.result.as_ref().unwrap_err()))
        .collect();
    assert!(failed.is_empty(), "Checks failed mid-flight: {failed:?}");
    assert!(
        spanning_signal > 0,
        "no Check was in flight when SIGTERM was sent"
    );
    assert_eq!(after_signal, Some(ServingStatus::NotServing));
    let status = status.expect("the process exits");
    assert!(status.success(), "exit status {status}");
    let took = exited_at - signalled;
    assert!(
        took < Duration::from_secs(GRACE_SECONDS),
        "exit took {took:?}, beyond the {GRACE_SECONDS}s grace period"
    );
    assert!(stdout.contains("drained; exiting"), "{stdout}");
}
