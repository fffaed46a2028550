//! The `keys` and `hash-token` subcommands: arguments in, one edit or read, a short
//! report out. A token reaches stdout exactly once, on its own line, from `create` and
//! `rotate`; everything else goes to stderr, so `TOKEN=$(agents-authz keys create ...)`
//! captures the token alone.

use super::document::KeyDocument;
use super::edit::{self, EditError, Expiry, KeyUpdate, NewKey, Outcome};
use super::status::status;
use super::store::{KeyFile, KeysError};
use super::token::{self, Token};
use crate::cli::{KeysArgs, KeysCommand};
use crate::core::credentials::fingerprint;
use crate::core::warning::ConfigWarning;
use crate::error_chain::error_chain;
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use time::OffsetDateTime;

const MISSING_FILE: &str =
    "agents-authz keys: no managed-keys file: pass --file FILE or set AGENTS_AUTHZ_MANAGED_KEYS";

pub fn run(args: &KeysArgs) -> ExitCode {
    let Some(path) = &args.file else {
        eprintln!("{MISSING_FILE}");
        return ExitCode::from(2);
    };
    let file = KeyFile::new(path);
    match dispatch(&file, &args.command, OffsetDateTime::now_utc()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agents-authz keys: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(file: &KeyFile, command: &KeysCommand, now: OffsetDateTime) -> Result<(), KeysError> {
    match command {
        KeysCommand::List { json } => list(file, *json, now),
        KeysCommand::Create {
            id,
            scopes,
            expires_in,
            ips,
        } => {
            let key = NewKey {
                id: id.clone(),
                scopes: scopes.scopes.clone(),
                expires_in_days: *expires_in,
                ip_allowlist: ips.clone(),
                allow_unknown_scopes: scopes.allow_unknown_scopes,
            };
            create(file, &key, now)
        }
        KeysCommand::Update { id, .. } => {
            let update = key_update(command);
            change(file, id, "updated", |doc, id| {
                edit::update(doc, id, &update, now)
            })
        }
        KeysCommand::Rotate { id } => rotate(file, &lookup_id(id), now),
        KeysCommand::Revoke { id } => {
            change(file, id, "revoked", |doc, id| edit::revoke(doc, id, now))
        }
        KeysCommand::Pause { id } => {
            change(file, id, "paused", |doc, id| edit::pause(doc, id, now))
        }
        KeysCommand::Resume { id } => change(file, id, "resumed", edit::resume),
        KeysCommand::Delete { id } => change(file, id, "deleted", |doc, id| {
            edit::delete(doc, id).map(|_| Outcome::Changed)
        }),
    }
}

/// The fields `keys update` was given; `KeyUpdate::default()` for any other command.
fn key_update(command: &KeysCommand) -> KeyUpdate {
    let KeysCommand::Update {
        scopes,
        allow_unknown_scopes,
        expires_in,
        no_expiry,
        ips,
        clear_ip,
        ..
    } = command
    else {
        return KeyUpdate::default();
    };
    KeyUpdate {
        scopes: scopes.clone(),
        expiry: expires_in
            .map(Expiry::InDays)
            .or(no_expiry.then_some(Expiry::Never)),
        ip_allowlist: ips.clone().or(clear_ip.then(Vec::new)),
        allow_unknown_scopes: *allow_unknown_scopes,
    }
}

/// Runs one edit on the key `raw_id` names and says what happened, on stderr.
fn change(
    file: &KeyFile,
    raw_id: &str,
    verb: &str,
    edit: impl FnOnce(&mut KeyDocument, &str) -> Result<Outcome, EditError>,
) -> Result<(), KeysError> {
    let id = lookup_id(raw_id);
    let done = file.edit(false, |doc| edit(doc, &id))?;
    show_warnings(&done.warnings);
    match done.value {
        Outcome::Changed => eprintln!("{verb} key {id:?} in {}", file.path().display()),
        Outcome::AlreadySo(why) => eprintln!("key {id:?} {why}; the file is unchanged"),
    }
    Ok(())
}

/// Ids on the command line are looked up as the loader names them, so `Ops-Bot` finds
/// `ops-bot`.
fn lookup_id(raw: &str) -> String {
    crate::config::credentials::normalize_id(raw, 0)
}

fn create(file: &KeyFile, key: &NewKey, now: OffsetDateTime) -> Result<(), KeysError> {
    let token = token::mint_os(&key.id).map_err(KeysError::Random)?;
    let hash = token.hash_hex();
    let done = file.edit(true, |doc| edit::create(doc, key, &hash, now))?;
    hand_over(&token);
    show_warnings(&done.warnings);
    eprintln!(
        "created key {:?} in {}; the token above is shown only this once",
        done.value,
        file.path().display()
    );
    Ok(())
}

fn rotate(file: &KeyFile, id: &str, now: OffsetDateTime) -> Result<(), KeysError> {
    let token = token::mint_os(id).map_err(KeysError::Random)?;
    let hash = token.hash_hex();
    let done = file.edit(false, |doc| {
        edit::rotate(doc, id, &hash, now)?;
        let index = doc.position(id).expect("rotate found it");
        Ok(status(
            doc.entries()[index].as_object().expect("an object"),
            now.unix_timestamp(),
        ))
    })?;
    hand_over(&token);
    show_warnings(&done.warnings);
    eprintln!(
        "rotated key {id:?} in {}; the old token stops working once the service reloads; \
         the new token above is shown only this once",
        file.path().display()
    );
    if !done.value.authenticates() {
        eprintln!(
            "note: key {id:?} is {}, so the new token does not authenticate yet",
            done.value.as_str()
        );
    }
    Ok(())
}

/// The only place a token is written anywhere: one line on stdout.
fn hand_over(token: &Token) {
    println!("{}", token.expose());
}

fn show_warnings(warnings: &[ConfigWarning]) {
    for w in warnings {
        eprintln!("warning: {w} (the service skips it; left as it is)");
    }
}

fn list(file: &KeyFile, as_json: bool, now: OffsetDateTime) -> Result<(), KeysError> {
    let (doc, warnings) = file.read()?;
    let rows: Vec<Value> = (0..doc.entries().len())
        .filter_map(|i| Some(row(doc.id_at(i)?, &doc.entries()[i], now)))
        .collect();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialise")
        );
    } else {
        print!("{}", render_rows(&rows));
    }
    show_warnings(&warnings);
    Ok(())
}

/// What `keys list` shows of one entry: never the token hash, only the fingerprint the
/// service's logs use for the key.
fn row(id: String, entry: &Value, now: OffsetDateTime) -> Value {
    let obj = entry.as_object().expect("id_at only names objects");
    let scopes = match obj.get("scopes") {
        Some(Value::String(s)) => crate::core::scopes::normalize([s.as_str()]),
        Some(Value::Array(items)) => {
            crate::core::scopes::normalize(items.iter().filter_map(Value::as_str))
        }
        _ => Vec::new(),
    };
    let fp = obj.get("tokenHash").and_then(Value::as_str).and_then(|h| {
        let mut d = [0u8; 32];
        hex::decode_to_slice(h, &mut d)
            .ok()
            .map(|()| fingerprint(&d))
    });
    json!({
        "id": id,
        "status": status(obj, now.unix_timestamp()).as_str(),
        "scopes": scopes,
        "expiresAt": obj.get("expiresAt"),
        "ipAllowlist": obj.get("ipAllowlist").cloned().unwrap_or_else(|| json!([])),
        "pausedAt": obj.get("pausedAt"),
        "revokedAt": obj.get("revokedAt"),
        "fingerprint": fp,
    })
}

fn render_rows(rows: &[Value]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let text = |v: &Value| v.as_str().map_or_else(|| "-".to_string(), str::to_string);
            let join = |v: &Value| {
                let items: Vec<&str> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if items.is_empty() {
                    "-".to_string()
                } else {
                    items.join(",")
                }
            };
            [
                text(&r["id"]),
                text(&r["status"]),
                text(&r["expiresAt"]),
                join(&r["ipAllowlist"]),
                join(&r["scopes"]),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "EXPIRES", "IP ALLOWLIST", "SCOPES"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `hash-token`: the first line of stdin, trimmed, to its SHA-256 hex digest.
pub fn hash_token() -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("paste the token and press Enter (it is not echoed anywhere else)");
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        eprintln!("agents-authz hash-token: cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    let token = line.trim();
    if token.is_empty() {
        eprintln!("agents-authz hash-token: no token on stdin");
        return ExitCode::from(2);
    }
    if !token.bytes().all(is_bearer_byte) {
        eprintln!(
            "warning: the token has characters a Bearer header cannot carry; \
             clients must send it in X-Agents-Token"
        );
    }
    println!("{}", token::hash_hex(token));
    ExitCode::SUCCESS
}

/// The characters spec section 1 allows in a Bearer token.
fn is_bearer_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'-' | b'=')
}
