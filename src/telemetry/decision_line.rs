//! The decision line written straight from the record, without tracing's generic formatter.
//!
//! A decision line has a fixed schema, so serializing its known fields into a reused
//! per-thread buffer costs a fraction of what the generic JSON layer pays (a visitor per
//! field, serde's map machinery, a fresh timestamp string and a fresh line per event). The
//! bytes are the ones the JSON layer wrote: same keys, same order, same escaping, same
//! timestamp format, so operators' parsers and routes see no difference.

use std::cell::RefCell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;

use super::decision_log::{DECISION_MESSAGE, DECISION_TARGET, DecisionRecord, ScopeList};

/// A per-thread buffer that grew past this (a long escaped path) is given back after use.
const KEPT_BUFFER_BYTES: usize = 16 * 1024;

/// Takes one finished line; wraps the subscriber's writer.
type LineSink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// The decision lines' writer, installed as a layer so `emit` can find it on the current
/// subscriber by downcasting. The layer itself ignores events: `emit` hands it finished
/// records and never fires a tracing event while it is present.
pub struct DecisionLines {
    sink: LineSink,
}

impl DecisionLines {
    /// Lines go to `writer` whole, one `write_all` per line, so the non-blocking writer
    /// queues (or drops and counts) each line as one message.
    pub fn new<W>(writer: W) -> Self
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let sink = move |line: &[u8]| {
            // A failed or dropped write is the writer's to count; a Check never waits on it.
            let _ = writer.make_writer().write_all(line);
        };
        Self {
            sink: Box::new(sink),
        }
    }

    /// Formats the record (with its already redacted and cut path) and writes the line.
    pub fn write(&self, record: &DecisionRecord<'_>, path: &str) {
        with_buffer(|buf| {
            format_line(buf, SystemTime::now(), record, path);
            (self.sink)(buf);
        });
    }
}

impl<S: Subscriber> Layer<S> for DecisionLines {}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    static SECOND: RefCell<SecondStamp> = const { RefCell::new(SecondStamp::EMPTY) };
}

/// Runs `f` on this thread's cleared line buffer (a fresh one if it is already in use).
fn with_buffer(f: impl FnOnce(&mut Vec<u8>)) {
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf);
            if buf.capacity() > KEPT_BUFFER_BYTES {
                *buf = Vec::with_capacity(1024);
            }
        }
        Err(_) => f(&mut Vec::new()),
    });
}

/// Writes one decision line, newline included, into `buf`.
pub(crate) fn format_line(buf: &mut Vec<u8>, now: SystemTime, r: &DecisionRecord<'_>, path: &str) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\"");
    str_field(buf, "message", DECISION_MESSAGE);
    str_field(buf, "decision", r.decision.as_str());
    str_field(buf, "request.id", r.request_id);
    num_field(buf, "http.status", u64::from(r.status));
    str_field(buf, "reason", r.reason);
    opt_str_field(buf, "credential.id", r.credential_id);
    opt_str_field(buf, "credential.source", r.credential_source);
    opt_str_field(buf, "auth.method", r.auth_method);
    opt_str_field(buf, "principal", r.principal);
    str_field(buf, "http.method", r.http_method);
    str_field(buf, "http.path", path);
    opt_str_field(buf, "route", r.route);
    if let Some(scopes) = r.required_scopes {
        key(buf, "scopes.required");
        buf.push(b'"');
        push_scopes(buf, scopes);
        buf.push(b'"');
    }
    if let Some(ip) = r.client_ip {
        key(buf, "client.ip");
        // An address prints as digits, hex letters, dots and colons: nothing to escape.
        let _ = write!(buf, "\"{ip}\"");
    }
    num_field(buf, "snapshot.version", r.snapshot_version);
    num_field(buf, "duration_us", r.duration_us);
    str_field(buf, "target", DECISION_TARGET);
    buf.extend_from_slice(b"}\n");
}

/// The scopes as their `Display` form writes them, escaped, without building the string.
fn push_scopes(buf: &mut Vec<u8>, scopes: ScopeList<'_>) {
    match scopes {
        ScopeList::One(scope) => push_escaped(buf, scope),
        ScopeList::AnyOf(scopes) => {
            for (i, scope) in scopes.iter().enumerate() {
                if i > 0 {
                    buf.push(b'|');
                }
                push_escaped(buf, scope);
            }
        }
    }
}

fn key(buf: &mut Vec<u8>, name: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
}

fn str_field(buf: &mut Vec<u8>, name: &str, value: &str) {
    key(buf, name);
    buf.push(b'"');
    push_escaped(buf, value);
    buf.push(b'"');
}

fn opt_str_field(buf: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        str_field(buf, name, value);
    }
}

fn num_field(buf: &mut Vec<u8>, name: &str, value: u64) {
    key(buf, name);
    let _ = write!(buf, "{value}");
}

/// Appends `s` as the inside of a JSON string, escaped as serde_json escapes it: quote,
/// backslash and the short forms of the usual controls, `\u00XX` for the other controls
/// below 0x20, everything else (DEL and all non-ASCII included) as it is.
pub(crate) fn push_escaped(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let unicode = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            buf.extend_from_slice(&unicode);
        } else {
            buf.extend_from_slice(short);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// The `YYYY-MM-DDTHH:MM:SS.` part of the timestamp of one second, kept per thread
/// because every line of that second shares it.
struct SecondStamp {
    unix_secs: u64,
    text: [u8; 20],
}

impl SecondStamp {
    const EMPTY: SecondStamp = SecondStamp {
        unix_secs: u64::MAX,
        text: [0; 20],
    };
}

/// Appends `now` in the JSON layer's format, e.g. `2026-12-03T18:23:16.278177Z` (UTC,
/// microseconds).
fn push_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    SECOND.with(|cell| {
        let mut stamp = cell.borrow_mut();
        if stamp.unix_secs != secs {
            stamp.text = second_text(secs);
            stamp.unix_secs = secs;
        }
        buf.extend_from_slice(&stamp.text);
    });
    let _ = write!(buf, "{:06}Z", since_epoch.subsec_micros());
}

fn second_text(unix_secs: u64) -> [u8; 20] {
    let mut text = [0u8; 20];
    // Out of `time`'s range only for dates tens of thousands of years off; the
    // epoch then stands in rather than failing a Check over a log line.
    let at = i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut cursor = &mut text[..];
    // Years past 9999 print more digits than fit; they are far off, and the write just stops.
    let _ = write!(
        cursor,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn escaped(s: &str) -> String {
        let mut buf = Vec::new();
        push_escaped(&mut buf, s);
        format!("\"{}\"", String::from_utf8(buf).unwrap())
    }

    #[test]
    fn escapes_like_serde_json() {
        for c in (0u32..0x100).filter_map(char::from_u32) {
            let s = format!("a{c}b");
            assert_eq!(
                escaped(&s),
                serde_json::to_string(&s).unwrap(),
                "char {c:?}"
            );
        }
        for s in [
            "",
            "plain",
            "q\"uote\\back",
            "\u{7f}\u{2028}é€😀",
            "\0\u{1b}[31m\n",
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn timestamps_match_the_json_layer_format() {
        let at = |secs: u64, micros: u64| {
            let mut buf = Vec::new();
            push_timestamp(
                &mut buf,
                UNIX_EPOCH + Duration::from_micros(secs * 1_000_000 + micros),
            );
            String::from_utf8(buf).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(1_796_322_196, 278_177), "2026-12-03T18:23:16.278177Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(253_402_300_799, 1), "9999-12-31T23:59:59.000001Z");
    }
}
