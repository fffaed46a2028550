//! The operator CLI through the real binary: `keys` on a managed-keys file (every
//! command, concurrent writers, a corrupt file), `hash-token`, `check`, and a round trip
//! against a running `serve` that picks each change up through hot reload.

mod reload_harness;

use agents_authz::core::credentials::digest;
use reload_harness::{Service, health_with};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agents-authz");
/// How long a change may take to reach the running service (its reload takes < 1 s).
const RELOAD_LIMIT: Duration = Duration::from_secs(5);

/// `agents-authz ARGS` in a clean environment, with `stdin` piped in.
fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("ENVIRONMENT", "test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agents-authz starts");
    // A command that does not read stdin may have exited already: a closed pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("agents-authz ends")
}

fn run(args: &[&str]) -> Output {
    run_with_stdin(args, "")
}

/// `keys --file FILE ARGS`.
fn keys(file: &Path, args: &[&str]) -> Output {
    let mut all = vec!["keys", "--file", file.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}{}", stdout(&o), stderr(&o));
    o
}

/// The token a `create` or `rotate` printed: exactly one line on stdout.
#[track_caller]
fn token_of(o: &Output) -> String {
    let out = stdout(o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {out:?}");
    lines[0].to_string()
}

fn listed(file: &Path) -> Vec<Value> {
    let out = ok(keys(file, &["list", "--json"]));
    serde_json::from_str::<Vec<Value>>(&stdout(&out)).expect("list --json is a JSON list")
}

fn status_of(file: &Path, id: &str) -> String {
    let rows = listed(file);
    let row = rows.iter().find(|r| r["id"] == id).expect("listed");
    row["status"].as_str().unwrap().to_string()
}

fn temp_file(text: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    if let Some(text) = text {
        fs::write(&path, text).unwrap();
    }
    (dir, path)
}

#[test]
fn every_keys_command_on_one_file() {
    let (_dir, file) = temp_file(None);
    let created = ok(keys(
        &file,
        &[
            "create",
            "--id",
            "ci-bot",
            "--scopes",
            "health:read,auth:read",
        ],
    ));
    let token = token_of(&created);
    assert!(token.starts_with("ci-bot-") && token.len() == "ci-bot-".len() + 64);
    assert!(stderr(&created).contains("shown only this once"));
    let text = fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&token), "the file never holds the token");
    assert!(text.contains(&hex::encode(digest(&token))));

    ok(keys(
        &file,
        &[
            "create",
            "--id",
            "edge",
            "--scopes",
            "health:read",
            "--expires-in",
            "3",
        ],
    ));
    ok(keys(
        &file,
        &[
            "create",
            "--id",
            "ops",
            "--scopes",
            "auth:read",
            "--ip",
            "10.0.0.0/8",
            "192.0.2.1",
        ],
    ));
    let rows = listed(&file);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["status"], "active");
    assert_eq!(rows[1]["status"], "expiring");
    assert_eq!(
        rows[2]["ipAllowlist"],
        serde_json::json!(["10.0.0.0/8", "192.0.2.1/32"])
    );
    let table = stdout(&ok(keys(&file, &["list"])));
    assert!(
        table.starts_with("ID") && table.contains("ci-bot  active"),
        "{table}"
    );
    assert!(!table.contains(&token) && !table.contains(&hex::encode(digest(&token))));

    ok(keys(
        &file,
        &["update", "edge", "--no-expiry", "--scopes", "products:read"],
    ));
    assert_eq!(status_of(&file, "edge"), "active");
    ok(keys(&file, &["update", "ops", "--clear-ip"]));
    assert_eq!(listed(&file)[2]["ipAllowlist"], serde_json::json!([]));

    let rotated = token_of(&ok(keys(&file, &["rotate", "ci-bot"])));
    assert_ne!(rotated, token);
    ok(keys(&file, &["pause", "ci-bot"]));
    assert_eq!(status_of(&file, "ci-bot"), "paused");
    ok(keys(&file, &["resume", "ci-bot"]));
    assert_eq!(status_of(&file, "ci-bot"), "active");
    let revoked = ok(keys(&file, &["revoke", "ci-bot"]));
    assert!(stdout(&revoked).is_empty());
    assert_eq!(status_of(&file, "ci-bot"), "revoked");
    let again = keys(&file, &["resume", "ci-bot"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("revoked, which is final"),
        "{}",
        stderr(&again)
    );
    ok(keys(&file, &["delete", "ci-bot"]));
    assert_eq!(listed(&file).len(), 2);

    // What keys wrote loads with no warning at all.
    let checked = run(&[
        "check",
        "--strict",
        "--managed-keys",
        file.to_str().unwrap(),
    ]);
    assert!(checked.status.success(), "{}", stdout(&checked));
}

#[test]
fn refusals_leave_the_file_as_it_was() {
    let (_dir, file) = temp_file(None);
    ok(keys(
        &file,
        &["create", "--id", "a", "--scopes", "health:read"],
    ));
    let before = fs::read(&file).unwrap();
    for args in [
        &["create", "--id", "a", "--scopes", "health:read"][..],
        &["create", "--id", "Not Normal", "--scopes", "health:read"],
        &["create", "--id", "b", "--scopes", "helth:read"],
        &[
            "create",
            "--id",
            "b",
            "--scopes",
            "health:read",
            "--ip",
            "nowhere",
        ],
        &["update", "a"],
        &["rotate", "nobody"],
        &["delete", "nobody"],
    ] {
        let out = keys(&file, args);
        assert!(!out.status.success(), "{args:?} is refused");
        assert!(stdout(&out).is_empty(), "{args:?} prints no token");
        assert!(stderr(&out).contains("keys.json"), "{}", stderr(&out));
        assert_eq!(
            fs::read(&file).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
}

#[test]
fn keys_without_a_file_says_how_to_name_one() {
    let out = run(&["keys", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--file FILE or set AGENTS_AUTHZ_MANAGED_KEYS"));
}

#[test]
fn a_corrupt_file_is_never_touched() {
    let corrupt = "{\"credentials\": [{\"id\": \"a\", \"tokenHash\": ";
    let (dir, file) = temp_file(Some(corrupt));
    for args in [
        &["list"][..],
        &["create", "--id", "b", "--scopes", "health:read"],
        &["update", "a", "--no-expiry"],
        &["rotate", "a"],
        &["revoke", "a"],
        &["pause", "a"],
        &["resume", "a"],
        &["delete", "a"],
    ] {
        let out = keys(&file, args);
        assert!(!out.status.success(), "{args:?} refuses a corrupt file");
        let err = stderr(&out);
        assert!(
            err.contains(file.to_str().unwrap()) && err.contains("not valid JSON"),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "{args:?} prints no token");
        assert_eq!(fs::read_to_string(&file).unwrap(), corrupt);
    }
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["keys.json", "keys.json.lock"],
        "no temporary file left"
    );
}

#[test]
fn concurrent_writers_all_land() {
    let (_dir, file) = temp_file(Some("{\"credentials\": []}"));
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(BIN)
                .args(["keys", "create", "--scopes", "health:read", "--id"])
                .arg(format!("writer-{i}"))
                .env_clear()
                .env("AGENTS_AUTHZ_MANAGED_KEYS", &file)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("agents-authz starts")
        })
        .collect();
    let mut tokens = Vec::new();
    for child in children {
        tokens.push(token_of(&ok(child.wait_with_output().unwrap())));
    }
    let rows = listed(&file);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    let want: Vec<String> = (0..8).map(|i| format!("writer-{i}")).collect();
    assert_eq!(ids, want);
    let text = fs::read_to_string(&file).unwrap();
    for t in &tokens {
        assert!(text.contains(&hex::encode(digest(t))));
    }
}

#[test]
fn hash_token_reads_stdin_only() {
    let out = ok(run_with_stdin(&["hash-token"], "my-token-123\n"));
    assert_eq!(
        stdout(&out),
        format!("{}\n", hex::encode(digest("my-token-123")))
    );
    let empty = run_with_stdin(&["hash-token"], "\n");
    assert!(!empty.status.success());
    assert!(stdout(&empty).is_empty());
    let argument = run(&["hash-token", "my-token-123"]);
    assert!(!argument.status.success(), "a token argument is refused");
}

#[test]
fn check_exit_codes_and_json() {
    let (_dir, file) = temp_file(None);
    ok(keys(
        &file,
        &["create", "--id", "a", "--scopes", "health:read"],
    ));
    let path = file.to_str().unwrap();

    let clean = ok(run(&["check", "--strict", "--managed-keys", path]));
    let text = stdout(&clean);
    assert!(text.contains("profile: test (source: inferred)"), "{text}");
    assert!(text.contains("managed 1: a"), "{text}");
    assert!(
        text.ends_with("result: ok (0 errors, 0 warnings)\n"),
        "{text}"
    );

    // No credential while one is required: a warning.
    let warned = run(&["check", "--json"]);
    assert_eq!(warned.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&warned.stdout).expect("--json is JSON");
    assert_eq!(report["result"], "warnings");
    assert_eq!(report["posture"]["environmentProfile"], "test");
    assert!(report["routes"]["total"].as_u64().unwrap() > 0);
    assert_eq!(run(&["check", "--strict"]).status.code(), Some(1));

    // A file serve would refuse: an error, under both names of the command.
    fs::write(&file, "[{").unwrap();
    for name in ["check", "check-config"] {
        let failed = run(&[name, "--json", "--managed-keys", path]);
        assert_eq!(failed.status.code(), Some(2));
        let report: Value = serde_json::from_slice(&failed.stdout).unwrap();
        assert_eq!(report["result"], "errors");
        assert!(report["errors"][0].as_str().unwrap().contains(path));
    }
    let bad_store = run(&["check", "--rate-limit-store", "x"]);
    assert_eq!(bad_store.status.code(), Some(2));
    assert!(stdout(&bad_store).contains("error: --rate-limit-store"));
    let bad_filter = Command::new(BIN)
        .arg("check")
        .env_clear()
        .env("RUST_LOG", "agents_authz=loud")
        .output()
        .unwrap();
    assert_eq!(bad_filter.status.code(), Some(2));
    assert!(stdout(&bad_filter).contains("error: RUST_LOG: invalid log filter"));
}

/// Polls the service until `token` is allowed (or refused, with `want` false).
async fn until_allowed(service: &Service, token: &str, want: bool) {
    let mut client = service.client().await;
    let deadline = Instant::now() + RELOAD_LIMIT;
    loop {
        let answer = reload_harness::check(&mut client, health_with(token)).await;
        if answer.allowed() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "token still {} after {RELOAD_LIMIT:?}:\n{}",
            if want { "refused" } else { "allowed" },
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn round_trip_against_a_running_service() {
    let (dir, file) = temp_file(None);
    ok(keys(
        &file,
        &["create", "--id", "seed", "--scopes", "health:read"],
    ));
    let env_file = dir.path().join("agents.env");
    fs::write(&env_file, "PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=1000000\n").unwrap();
    let service = Service::start(&file, &env_file, &[]).await;

    let first = token_of(&ok(keys(
        &file,
        &["create", "--id", "round-trip", "--scopes", "health:read"],
    )));
    until_allowed(&service, &first, true).await;

    let second = token_of(&ok(keys(&file, &["rotate", "round-trip"])));
    until_allowed(&service, &first, false).await;
    until_allowed(&service, &second, true).await;

    ok(keys(&file, &["revoke", "round-trip"]));
    until_allowed(&service, &second, false).await;
    assert!(
        !service.log_text().contains(&second),
        "the service never logs a token"
    );
}
