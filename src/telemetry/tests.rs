//! The decision log as operators read it: real JSON lines through the real writer path.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing_appender::non_blocking::NonBlockingBuilder;
use tracing_subscriber::fmt::MakeWriter;

use super::decision_log::{
    AllowLogMode, DECISION_MESSAGE, DECISION_TARGET, DecisionLog, DecisionRecord, ScopeList,
    Verdict, emit_event,
};
use super::logging::{json_subscriber, parse_filter};

/// Keys every decision line carries.
const ALWAYS: [&str; 13] = [
    "timestamp",
    "level",
    "target",
    "message",
    "request.id",
    "decision",
    "http.status",
    "reason",
    "http.method",
    "http.path",
    "snapshot.version",
    "duration_us",
    "client.ip",
];

/// Keys present only when the fact is known.
const OPTIONAL: [&str; 6] = [
    "credential.id",
    "credential.source",
    "auth.method",
    "principal",
    "route",
    "scopes.required",
];

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `f` under the production subscriber writing through the non-blocking writer
/// into a buffer, then flushes and returns the buffer.
fn capture(filter: &str, f: impl FnOnce()) -> Capture {
    let sink = Capture::default();
    let (writer, guard) = NonBlockingBuilder::default().finish(sink.clone());
    let subscriber = json_subscriber(parse_filter(Some(filter)).unwrap(), writer);
    tracing::subscriber::with_default(subscriber, f);
    drop(guard);
    sink
}

fn allowed<'a>(path: &'a str) -> DecisionRecord<'a> {
    DecisionRecord {
        request_id: "req-0001abcd",
        decision: Verdict::Allow,
        status: 200,
        reason: "ok",
        credential_id: Some("ops-bot"),
        credential_source: Some("cp"),
        auth_method: Some("query"),
        principal: Some("fp:1a2b3c4d"),
        http_method: "GET",
        path,
        route: Some("/agents/v1/health"),
        required_scopes: Some(ScopeList::One("health:read")),
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        snapshot_version: 4,
        duration_us: 37,
    }
}

fn denied<'a>(path: &'a str) -> DecisionRecord<'a> {
    DecisionRecord {
        decision: Verdict::Deny,
        status: 401,
        reason: "missing_token",
        credential_id: None,
        credential_source: None,
        auth_method: None,
        principal: None,
        route: None,
        required_scopes: None,
        ..allowed(path)
    }
}

fn keys(line: &Value) -> BTreeSet<&str> {
    line.as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn one_line_per_emit_with_exactly_the_documented_fields() {
    let log = DecisionLog::default();
    let sink = capture("info", || {
        log.emit(&allowed("/agents/v1/health?apiToken=tok-secret-1"));
        log.emit(&denied("/agents/v1/health"));
    });
    let lines = sink.lines();
    assert_eq!(lines.len(), 2, "{}", sink.text());

    let all: BTreeSet<&str> = ALWAYS.iter().chain(OPTIONAL.iter()).copied().collect();
    assert_eq!(keys(&lines[0]), all);
    assert_eq!(keys(&lines[1]), ALWAYS.into_iter().collect());

    let allow = &lines[0];
    assert_eq!(allow["target"], DECISION_TARGET);
    assert_eq!(allow["level"], "INFO");
    assert_eq!(allow["message"], DECISION_MESSAGE);
    assert_eq!(allow["request.id"], "req-0001abcd");
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["http.status"], 200);
    assert_eq!(allow["reason"], "ok");
    assert_eq!(allow["credential.id"], "ops-bot");
    assert_eq!(allow["credential.source"], "cp");
    assert_eq!(allow["auth.method"], "query");
    assert_eq!(allow["principal"], "fp:1a2b3c4d");
    assert_eq!(allow["http.method"], "GET");
    assert_eq!(allow["http.path"], "/agents/v1/health?apiToken=REDACTED");
    assert_eq!(allow["route"], "/agents/v1/health");
    assert_eq!(allow["scopes.required"], "health:read");
    assert_eq!(allow["client.ip"], "10.1.2.3");
    assert_eq!(allow["snapshot.version"], 4);
    assert_eq!(allow["duration_us"], 37);
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["http.status"], 401);
}

#[test]
fn no_token_reaches_the_output() {
    let tokens: Vec<String> = (0..50).map(|i| format!("tok{i:04}-a1b2c3d4e5")).collect();
    let names = [
        "apiToken",
        "apitoken",
        "api%54oken",
        "apiToken[]",
        "%20apiToken",
    ];
    let log = DecisionLog::default();
    let sink = capture("trace", || {
        for (i, token) in tokens.iter().enumerate() {
            let name = names[i % names.len()];
            let path = format!("/agents/v1/entries?status=live&{name}={token}&limit=5");
            let record = if i % 2 == 0 {
                allowed(&path)
            } else {
                denied(&path)
            };
            log.emit(&record);
        }
    });
    let text = sink.text();
    assert_eq!(text.lines().count(), tokens.len());
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "token {token} leaked");
    }
}

#[test]
fn decision_lines_ignore_open_spans() {
    let sink = capture("info", || {
        let span = tracing::info_span!("check", grpc.method = "Check");
        let _entered = span.enter();
        DecisionLog::default().emit(&denied("/x"));
        tracing::info!(component = "test", "other event");
    });
    let lines = sink.lines();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].get("span").is_none());
    assert_eq!(lines[1]["span"]["grpc.method"], "Check");
    assert_eq!(lines[1]["component"], "test");
}

#[test]
fn allow_log_modes() {
    let run = |mode| {
        let log = DecisionLog::new(mode);
        let sink = capture("info", || {
            for _ in 0..10 {
                log.emit(&allowed("/a"));
            }
            log.emit(&denied("/d"));
        });
        let lines = sink.lines();
        let allows = lines.iter().filter(|l| l["decision"] == "allow").count();
        let denies = lines.iter().filter(|l| l["decision"] == "deny").count();
        (allows, denies)
    };
    assert_eq!(run(AllowLogMode::Info), (10, 1));
    assert_eq!(run(AllowLogMode::Off), (0, 1));
    let every_four = AllowLogMode::Sampled(NonZeroU32::new(4).unwrap());
    assert_eq!(run(every_four), (3, 1));
}

#[test]
fn the_filter_can_silence_decisions() {
    let sink = capture("info,agents_authz::decision=off", || {
        DecisionLog::default().emit(&denied("/x"));
        tracing::info!("kept");
    });
    let lines = sink.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "kept");
}

/// The record through the generic JSON layer, configured as the decision layer was before
/// the fixed-schema writer replaced it.
fn generic_json_line(record: &DecisionRecord<'_>, path: &str) -> String {
    let sink = Capture::default();
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(sink.clone());
    let subscriber =
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
    tracing::subscriber::with_default(subscriber, || emit_event(record, path));
    sink.text()
}

fn without_timestamp(line: &str) -> (String, String) {
    let value: Value = serde_json::from_str(line).unwrap();
    let stamp = value["timestamp"].as_str().unwrap().to_owned();
    (line.replacen(&stamp, "T", 1), stamp)
}

#[test]
fn fixed_schema_lines_equal_the_generic_json_lines() {
    let hostile = "/agents/v1/a\"b\\c\u{1}\n\t\u{7f}é?x=\"}{&apiToken=tok-x";
    let any_of: [Box<str>; 2] = ["syncstate:read".into(), "q\"x:read".into()];
    let mut allow = allowed(hostile);
    allow.request_id = "id-\"quoted\"\r\n\u{0}";
    allow.http_method = "GE\"T";
    allow.required_scopes = Some(ScopeList::AnyOf(&any_of));
    allow.client_ip = Some("2001:db8::1".parse().unwrap());
    let deny = denied(hostile);
    for record in [&allow, &deny] {
        let new = capture("info", || DecisionLog::default().emit(record)).text();
        let path = "/agents/v1/a\"b\\c\u{1}\n\t\u{7f}é?x=\"}{&apiToken=REDACTED";
        let old = generic_json_line(record, path);
        let (new_line, stamp) = without_timestamp(&new);
        let (old_line, _) = without_timestamp(&old);
        assert_eq!(new_line, old_line);
        assert_eq!(stamp.len(), "2026-12-03T18:23:16.278177Z".len(), "{stamp}");
        let parsed: Value = serde_json::from_str(&new).unwrap();
        assert_eq!(parsed["http.path"], path);
        assert_eq!(parsed["request.id"], record.request_id);
    }
}

#[test]
fn dropped_lines_are_counted() {
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_secs(1));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let (writer, _guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(1)
        .finish(Stuck);
    let dropped = writer.error_counter();
    let subscriber = json_subscriber(parse_filter(Some("info")).unwrap(), writer);
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..10 {
            DecisionLog::default().emit(&denied("/x"));
        }
    });
    assert!(dropped.dropped_lines() >= 5, "{}", dropped.dropped_lines());
}
