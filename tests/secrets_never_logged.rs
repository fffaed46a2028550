//! Runs the real binary with every credential source at once and about fifty distinct
//! tokens presented every way a client can (and some ways it should not), feeds it
//! broken configuration that holds token-like strings, then reads everything it wrote:
//! no token may appear, and every Check has its decision line.
//!
//! The service logs at `info,agents_authz=trace`, so every level of our own code is
//! covered; third-party crates stay at the shipped default (info).

mod service_harness;

use agents_authz::admin_proto::admin_client::AdminClient;
use agents_authz::admin_proto::{GetPostureRequest, ReloadRequest, ReloadResult, WhoAmIRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::{Value, json};
use service_harness::{Launch, Service, admin_command, check_request, managed_key, run_bounded};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use tonic::transport::Channel;

/// Fields every decision line carries (the optional ones are checked per decision).
const DECISION_FIELDS: [&str; 12] = [
    "timestamp",
    "level",
    "target",
    "message",
    "decision",
    "request.id",
    "http.status",
    "reason",
    "http.method",
    "http.path",
    "snapshot.version",
    "duration_us",
];

/// A token-shaped secret that is unique and not a substring of any other.
fn token(kind: &str, n: usize) -> String {
    let suffix = hex::encode(&Sha256::digest(format!("{kind}/{n}").as_bytes())[..10]);
    format!("sec-{kind}-{n:02}-{suffix}")
}

/// Every secret of this run, by how it is used.
struct Secrets {
    managed: Vec<String>,
    expired: String,
    paused: String,
    revoked: String,
    pinned: String,
    json: Vec<String>,
    legacy_file: String,
    legacy_overridden: String,
    unknown: Vec<String>,
    malformed: Vec<String>,
    /// Only in broken configuration: never valid, must still never be printed.
    in_bad_config: Vec<String>,
}

impl Secrets {
    fn new() -> Self {
        let many = |kind, count| (1..=count).map(|n| token(kind, n)).collect::<Vec<_>>();
        Self {
            managed: many("managed", 5),
            expired: token("expired", 1),
            paused: token("paused", 1),
            revoked: token("revoked", 1),
            pinned: token("pinned", 1),
            json: many("json", 6),
            legacy_file: token("legacy-file", 1),
            legacy_overridden: token("legacy-env", 1),
            unknown: many("unknown", 22),
            // Outside the token alphabet: the core treats them as no bearer token.
            malformed: (1..=8).map(|n| token("malformed", n) + "!#$").collect(),
            in_bad_config: many("badconfig", 4),
        }
    }

    /// Tokens a client presents.
    fn presented(&self) -> Vec<&str> {
        let singles = [
            &self.expired,
            &self.paused,
            &self.revoked,
            &self.pinned,
            &self.legacy_file,
            &self.legacy_overridden,
        ];
        self.managed
            .iter()
            .chain(singles)
            .chain(&self.json)
            .chain(&self.unknown)
            .chain(&self.malformed)
            .map(String::as_str)
            .collect()
    }

    fn all(&self) -> Vec<&str> {
        let mut all = self.presented();
        all.extend(self.in_bad_config.iter().map(String::as_str));
        all
    }
}

struct Files {
    keys: PathBuf,
    env: PathBuf,
}

fn write_config(dir: &Path, s: &Secrets) -> Files {
    let mut keys: Vec<Value> = s
        .managed
        .iter()
        .enumerate()
        .map(|(i, t)| managed_key(&format!("managed-{i}"), t, &["auth:read", "products:read"]))
        .collect();
    let hash = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let past = "2001-01-01T00:00:00Z";
    keys.extend([
        json!({"id": "expired", "tokenHash": hash(&s.expired), "expiresAt": past}),
        json!({"id": "paused", "tokenHash": hash(&s.paused), "pausedAt": past}),
        json!({"id": "revoked", "tokenHash": hash(&s.revoked), "revokedAt": past}),
        json!({"id": "pinned", "tokenHash": hash(&s.pinned), "ipAllowlist": ["10.0.0.0/8"]}),
        // Operator mistakes: a plaintext token where the hash belongs, and beside it.
        json!({"id": "hash-is-a-token", "tokenHash": s.in_bad_config[0]}),
        json!({"id": "plaintext", "token": s.in_bad_config[1], "tokenHash": "zz"}),
    ]);
    let files = Files {
        keys: dir.join("keys.json"),
        env: dir.join("authz.env"),
    };
    std::fs::write(&files.keys, json!({ "credentials": keys }).to_string()).unwrap();
    write_env_file(
        &files.env,
        &[format!("PLUGIN_AGENTS_API_TOKEN={}", s.legacy_file)],
    );
    files
}

fn write_env_file(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn credentials_json(s: &Secrets) -> String {
    let entries: Vec<Value> = s
        .json
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let scopes = "auth:read products:read";
            json!({"id": format!("json-{i}"), "token": t, "scopes": scopes})
        })
        .collect();
    Value::from(entries).to_string()
}

fn launch(files: &Files, s: &Secrets) -> Launch {
    Launch::serve()
        .env("ENVIRONMENT", "staging")
        .env("RUST_LOG", "info,agents_authz=trace")
        .env("PLUGIN_AGENTS_API_CREDENTIALS", credentials_json(s))
        .env("PLUGIN_AGENTS_API_TOKEN", &s.legacy_overridden)
        .env("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")
        .file_arg("--managed-keys", &files.keys)
        .file_arg("--env-file", &files.env)
}

/// One way of presenting a token to a Check.
struct Presentation {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
}

fn get(target: String, headers: &[(&'static str, String)]) -> Presentation {
    Presentation {
        method: "GET",
        target,
        headers: headers.to_vec(),
    }
}

/// Every way one token reaches a Check, well-formed or not.
fn presentations(t: &str) -> Vec<Presentation> {
    let products = "/agents/v1/products";
    vec![
        get(products.into(), &[("authorization", format!("Bearer {t}"))]),
        get(
            "/agents/v1/auth/whoami".into(),
            &[("authorization", format!("Bearer   {t}"))],
        ),
        get(products.into(), &[("x-agents-token", format!(" {t} "))]),
        get(format!("{products}?limit=5&apiToken={t}"), &[]),
        get(format!("{products}?apitoken={t}&apiToken[]={t}"), &[]),
        Presentation {
            method: "POST",
            target: format!("/agents/v1/sync-state/checkpoint?apiToken={t}"),
            headers: vec![("content-type", "application/json".into())],
        },
        get(products.into(), &[("authorization", format!("bearer {t}"))]),
        get(
            products.into(),
            &[
                ("authorization", format!("Basic {t}")),
                ("x-agents-token", t.to_string()),
            ],
        ),
    ]
}

/// Sends every presentation of every token; returns the request ids sent.
async fn send_checks(service: &Service, s: &Secrets) -> BTreeSet<String> {
    let mut client = AuthorizationClient::connect(service.grpc_url())
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    for (i, t) in s.presented().into_iter().enumerate() {
        for (j, mut p) in presentations(t).into_iter().enumerate() {
            let id = format!("sec-check-{i}-{j}");
            p.headers.push(("x-request-id", id.clone()));
            let headers: Vec<(&str, &str)> =
                p.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let ip = if j % 2 == 0 { "127.0.0.1" } else { "10.1.2.3" };
            let response = client
                .check(check_request(p.method, &p.target, &headers, ip))
                .await
                .expect("every Check is answered");
            let text = format!("{:?}", response.get_ref());
            assert!(!text.contains(t), "Check {id} echoed its token to Envoy");
            ids.insert(id);
        }
    }
    ids
}

/// whoami over HTTP (the endpoint Envoy routes), the admin gRPC API and the subcommand.
async fn ask_whoami(service: &Service, admin: &mut AdminClient<Channel>, s: &Secrets) -> String {
    let http = reqwest::Client::new();
    let url = format!("http://{}/agents/v1/auth/whoami", service.ports.http);
    let mut seen = String::new();
    for (i, t) in s.presented().into_iter().enumerate() {
        let request = match i % 3 {
            0 => http
                .get(&url)
                .header("authorization", format!("Bearer {t}")),
            1 => http.get(&url).header("x-agents-token", t),
            _ => http.get(format!("{url}?apiToken={t}")),
        };
        let reply = request.send().await.expect("whoami answers");
        seen.push_str(&format!("{:?}", reply.headers()));
        seen.push_str(&reply.text().await.unwrap());
        let who = admin
            .who_am_i(WhoAmIRequest {
                token: t.to_string(),
                client_ip: if i % 2 == 0 {
                    String::new()
                } else {
                    "10.9.9.9".into()
                },
            })
            .await;
        seen.push_str(&match who {
            Ok(r) => format!("{:?}", r.get_ref()),
            Err(status) => format!("{status:?}"),
        });
    }
    for t in [&s.managed[0], &s.unknown[0], &s.malformed[0]] {
        let by_env = admin_command(
            service.ports.admin,
            &["whoami"],
            &[("AGENTS_AUTHZ_TOKEN", t)],
            None,
        );
        let by_stdin = admin_command(service.ports.admin, &["whoami"], &[], Some(t));
        for out in [by_env, by_stdin] {
            seen.push_str(&String::from_utf8_lossy(&out.stdout));
            seen.push_str(&String::from_utf8_lossy(&out.stderr));
        }
    }
    seen
}

/// Broken configuration holding token-like strings, reloaded through the admin API.
async fn reload_bad_config(files: &Files, admin: &mut AdminClient<Channel>, s: &Secrets) -> String {
    let mut seen = String::new();
    // A valid env line whose JSON value is cut off: the snapshot loads, with a warning.
    let truncated_json = format!(
        "PLUGIN_AGENTS_API_CREDENTIALS='{{\"id\": \"x\", \"token\": \"{}\", '",
        s.in_bad_config[2]
    );
    write_env_file(&files.env, &[truncated_json]);
    let reply = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
    assert_eq!(reply.result(), ReloadResult::Success, "{}", reply.error);
    let reported = reply
        .warnings
        .iter()
        .any(|w| w.message.contains("PLUGIN_AGENTS_API_CREDENTIALS"));
    assert!(reported, "unparseable credentials are reported: {reply:?}");
    seen.push_str(&format!("{reply:?}"));

    let unterminated = format!("PLUGIN_AGENTS_API_TOKEN=\"{}", s.in_bad_config[3]);
    write_env_file(
        &files.env,
        &["PLUGIN_AGENTS_ENABLED=true".into(), unterminated],
    );
    let reply = admin.reload(ReloadRequest {}).await.unwrap().into_inner();
    assert_eq!(
        reply.result(),
        ReloadResult::Failure,
        "a bad env line fails the reload"
    );
    seen.push_str(&format!("{reply:?}"));

    let posture = admin.get_posture(GetPostureRequest {}).await.unwrap();
    seen.push_str(&format!("{:?}", posture.get_ref()));
    seen
}

/// The same bad env file at startup: `check-config` and `serve` refuse it, quietly.
fn start_with_bad_env_file(files: &Files, s: &Secrets) -> String {
    let mut seen = String::new();
    for subcommand in ["check-config", "serve"] {
        let out = run_bounded(
            Command::new(service_harness::BIN)
                .arg(subcommand)
                .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
                .args(["--admin-addr", "127.0.0.1:0"])
                .arg("--env-file")
                .arg(&files.env)
                .env_clear()
                .env("PLUGIN_AGENTS_API_TOKEN", &s.legacy_overridden)
                .env("RUST_LOG", "info,agents_authz=trace"),
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{subcommand} refuses the bad env file"
        );
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    seen
}

fn assert_secret_free(what: &str, text: &str, s: &Secrets) {
    let leaked: Vec<&str> = s.all().into_iter().filter(|t| text.contains(t)).collect();
    assert!(leaked.is_empty(), "{what} holds tokens {leaked:?}:\n{text}");
}

fn decision_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["target"] == "agents_authz::decision")
        .collect()
}

fn assert_decision_lines(lines: &[Value], sent: &BTreeSet<String>) {
    let logged: Vec<&str> = lines
        .iter()
        .map(|l| l["request.id"].as_str().unwrap())
        .collect();
    assert_eq!(logged.len(), sent.len(), "one decision line per Check");
    assert_eq!(
        logged
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        *sent
    );
    for line in lines {
        for field in DECISION_FIELDS {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
        assert_eq!(line["message"], "check decision");
        assert!(line["client.ip"].is_string(), "{line}");
        if line["reason"] == "authenticated" {
            for field in [
                "credential.id",
                "credential.source",
                "auth.method",
                "principal",
                "route",
            ] {
                assert!(line[field].is_string(), "no {field} in {line}");
            }
        }
        let path = line["http.path"].as_str().unwrap();
        if path.contains("piToken") || path.contains("pitoken") {
            assert!(path.contains("=REDACTED"), "{path}");
        }
    }
    let reasons: BTreeSet<&str> = lines.iter().filter_map(|l| l["reason"].as_str()).collect();
    for expected in [
        "authenticated",
        "invalid_token",
        "missing_token",
        "credential_expired",
        "credential_paused",
        "credential_revoked",
        "ip_not_allowed",
        "query_token_on_write",
    ] {
        assert!(
            reasons.contains(expected),
            "no {expected} among {reasons:?}"
        );
    }
}

#[tokio::test]
async fn no_token_reaches_any_output() {
    let secrets = Secrets::new();
    assert!(secrets.all().len() >= 50);
    let dir = tempfile::tempdir().unwrap();
    let files = write_config(dir.path(), &secrets);
    let service = launch(&files, &secrets).start();
    let mut admin = AdminClient::connect(service.admin_url("")).await.unwrap();

    let sent = send_checks(&service, &secrets).await;
    let answers = ask_whoami(&service, &mut admin, &secrets).await;
    assert_secret_free("whoami answers", &answers, &secrets);
    let reloads = reload_bad_config(&files, &mut admin, &secrets).await;
    assert_secret_free("reload answers", &reloads, &secrets);
    let posture = reqwest::get(service.admin_url("/posture")).await.unwrap();
    assert_secret_free("/posture", &posture.text().await.unwrap(), &secrets);

    // Clients go first, and the wait runs off the runtime, so their connections close
    // promptly instead of holding the drain open.
    drop(admin);
    let stopped = tokio::task::spawn_blocking(move || service.stop());
    let (status, stdout, stderr) = stopped.await.unwrap();
    assert!(status.success(), "{status}");
    assert_secret_free("stderr", &stderr, &secrets);
    assert_secret_free("stdout", &stdout, &secrets);
    assert_decision_lines(&decision_lines(&stdout), &sent);
    assert!(
        stdout.contains("reload failed"),
        "the failed reload is logged"
    );
    assert!(
        stdout.contains("configuration problem"),
        "config warnings are logged"
    );

    let refused = start_with_bad_env_file(&files, &secrets);
    assert_secret_free("startup with a bad env file", &refused, &secrets);
}
