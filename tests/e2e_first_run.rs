//! `scripts/first-run.sh` does what the README promises: it brings up the demo behind Envoy,
//! prints three requests that really answer 200, 401 and 403 when pasted into a shell, and
//! stops everything on Ctrl-C (SIGINT).

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::ports::{accepts, free_addr};

const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const READY_LINE: &str = "Press Ctrl-C to stop.";

/// The script's stdout, line by line, from a reader thread.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Everything printed up to and including the ready line; panics with what was seen on timeout.
fn read_until_ready(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(START_TIMEOUT) {
            Ok(line) => {
                let done = line == READY_LINE;
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(err) => panic!(
                "first-run never became ready ({err}); printed:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Runs a printed command exactly as a user would paste it, returning the HTTP status.
fn paste(command: &str) -> String {
    let probe = format!("{command} -s -o /dev/null -w '%{{http_code}}'");
    let output = Command::new("bash")
        .arg("-c")
        .arg(&probe)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("send SIGINT");
    assert!(status.success(), "kill -INT failed");
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for first-run") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("first-run did not stop within {timeout:?} of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_prints_working_requests_and_stops_on_ctrl_c() {
    support::envoy::envoy_bin();
    let (edge, probes, admin) = (free_addr(), free_addr(), free_addr());
    let (upstream, grpc, http) = (free_addr(), free_addr(), free_addr());
    let service_admin = free_addr();
    let mut child = Command::new("bash")
        .arg("scripts/first-run.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FIRST_RUN_BIN", support::service::SERVICE_BIN)
        .env("FIRST_RUN_EDGE_PORT", edge.port().to_string())
        .env("FIRST_RUN_PROBE_PORT", probes.port().to_string())
        .env("FIRST_RUN_ENVOY_ADMIN_PORT", admin.port().to_string())
        .env("FIRST_RUN_UPSTREAM_PORT", upstream.port().to_string())
        .env("FIRST_RUN_GRPC_PORT", grpc.port().to_string())
        .env("FIRST_RUN_HTTP_PORT", http.port().to_string())
        .env("FIRST_RUN_ADMIN_PORT", service_admin.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start scripts/first-run.sh");
    let lines = stdout_lines(&mut child);
    let printed = read_until_ready(&lines);
    let transcript = printed.join("\n");

    let commands: Vec<&String> = printed.iter().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(commands.len(), 3, "three requests to paste:\n{transcript}");
    for (command, expected) in commands.iter().zip(["200", "401", "403"]) {
        assert_eq!(
            paste(command),
            expected,
            "pasting `{command}`\n{transcript}"
        );
    }
    for expected in ["(answers 200)", "(answers 401)", "(answers 403)"] {
        assert!(
            transcript.contains(expected),
            "missing {expected}:\n{transcript}"
        );
    }

    interrupt(&child);
    let status = wait_with_timeout(&mut child, STOP_TIMEOUT);
    let rest: Vec<String> =
        std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(
        rest.iter().any(|l| l == "==> stopped"),
        "no clean stop: {status}\n{rest:?}"
    );
    for addr in [edge, grpc, http, upstream, admin, service_admin] {
        assert!(
            !accepts(addr).await,
            "{addr} still accepts connections after Ctrl-C"
        );
    }
}
