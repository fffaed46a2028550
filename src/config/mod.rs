//! Loading: the process environment, the env file, the managed-keys file and the routes
//! file, combined into one [`Snapshot`]. The only I/O here is reading those files.

pub mod credentials;
pub mod managed_stream;
pub mod routes_file;

use crate::core::credentials::CredentialSet;
use crate::core::posture::{EnvSource, Posture};
use crate::core::scopes::{SAFE_DEFAULT_SCOPES, normalize};
use crate::core::snapshot::Snapshot;
use credentials::{CREDENTIALS_VAR, CredentialBuilder, LEGACY_TOKEN_VAR, TOKEN_SCOPES_VAR};
use managed_stream::StreamError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Prefix of the variables the env file may set.
pub const SPEC_VAR_PREFIX: &str = "PLUGIN_AGENTS_";

/// A file that could not be used at all. Entry-level problems are warnings instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{kind} file {path}: cannot be read: {source}")]
    Read {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind} file {path}: not valid JSON at line {line}, column {column}")]
    Json {
        kind: &'static str,
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("{kind} file {path}: {reason}")]
    Shape {
        kind: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("env file {path}: {reason}")]
    EnvFile { path: PathBuf, reason: String },
}

/// Where the configuration comes from. The process environment is captured once at
/// start; live changes go through the env file.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub managed_keys: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub routes: Option<PathBuf>,
    pub process_env: BTreeMap<String, String>,
    /// Managed keys given inline (the demo), used when no managed-keys file is set.
    pub inline_managed_keys: Option<Value>,
}

impl ConfigSources {
    /// The files a reload should watch.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        [&self.managed_keys, &self.env_file, &self.routes]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// Reads every source and builds a complete snapshot, or fails without side effects.
pub fn load_snapshot(sources: &ConfigSources, version: u64) -> Result<Snapshot, ConfigError> {
    let env = effective_env(sources)?;
    let routes = match &sources.routes {
        Some(path) => Some((path.clone(), read_json("routes", path)?)),
        None => None,
    };
    let text;
    let managed = match (&sources.managed_keys, &sources.inline_managed_keys) {
        (Some(path), _) => {
            text = read_text("managed-keys", path)?;
            Managed::File(path, &text)
        }
        (None, Some(doc)) => Managed::Doc("inline managed keys", doc),
        (None, None) => Managed::None,
    };
    assemble(&env, managed, routes.as_ref(), version)
}

/// Where the managed keys come from.
enum Managed<'a> {
    None,
    /// An already parsed document, named for warnings.
    Doc(&'a str, &'a Value),
    /// A file's text, read entry by entry (see [`managed_stream`]).
    File(&'a Path, &'a str),
}

fn add_managed(builder: &mut CredentialBuilder, managed: Managed<'_>) -> Result<(), ConfigError> {
    let shape = |path: &Path, reason: String| ConfigError::Shape {
        kind: "managed-keys",
        path: path.to_path_buf(),
        reason,
    };
    match managed {
        Managed::None => Ok(()),
        Managed::Doc(name, doc) => builder
            .add_managed(name, doc)
            .map_err(|reason| shape(Path::new(name), reason)),
        Managed::File(path, text) => {
            let name = path.display().to_string();
            managed_stream::add_managed(builder, &name, text).map_err(|e| match e {
                StreamError::Shape => shape(path, managed_stream::SHAPE.into()),
                StreamError::Syntax { line, column } => ConfigError::Json {
                    kind: "managed-keys",
                    path: path.to_path_buf(),
                    line,
                    column,
                },
            })
        }
    }
}

/// Builds a snapshot from a managed-keys file's text, read entry by entry exactly as a
/// load or reload reads the file; `path` only names it in warnings and errors.
pub fn build_snapshot_from_keys_text(
    env: &impl EnvSource,
    path: &Path,
    text: &str,
    version: u64,
) -> Result<Snapshot, ConfigError> {
    assemble(env, Managed::File(path, text), None, version)
}

/// Builds a snapshot from already-read inputs. Pure apart from what it is given.
pub fn build_snapshot(
    env: &impl EnvSource,
    managed: Option<(&str, &Value)>,
    routes: Option<&(PathBuf, Value)>,
    version: u64,
) -> Result<Snapshot, ConfigError> {
    let managed = managed.map_or(Managed::None, |(name, doc)| Managed::Doc(name, doc));
    assemble(env, managed, routes, version)
}

fn assemble(
    env: &impl EnvSource,
    managed: Managed<'_>,
    routes: Option<&(PathBuf, Value)>,
    version: u64,
) -> Result<Snapshot, ConfigError> {
    let posture = Posture::from_env(env);
    let mut warnings = posture.warnings.clone();

    let default_scopes = match env.get(TOKEN_SCOPES_VAR).map(|raw| normalize([raw])) {
        Some(scopes) if !scopes.is_empty() => scopes,
        _ => SAFE_DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
    };

    let mut builder = CredentialBuilder::new();
    add_managed(&mut builder, managed)?;
    if let Some(raw) = env.get(CREDENTIALS_VAR).filter(|v| !v.trim().is_empty()) {
        builder.add_json_set(raw);
    }
    if let Some(raw) = env.get(LEGACY_TOKEN_VAR) {
        builder.add_legacy(raw);
    }
    let (creds, cred_warnings) = builder.build(&default_scopes, posture.flags);
    warnings.extend(cred_warnings);

    let route_table = match routes {
        Some((path, doc)) => {
            let name = path.display().to_string();
            routes_file::merge_routes(&name, Some(doc), &mut warnings).map_err(|reason| {
                ConfigError::Shape {
                    kind: "routes",
                    path: path.clone(),
                    reason,
                }
            })?
        }
        None => routes_file::merge_routes("", None, &mut warnings).expect("built-in table"),
    };

    if posture.require_token && creds.is_empty() {
        warnings.push(crate::core::warning::ConfigWarning::new(
            "credentials",
            "a token is required but no credential is configured: guarded routes answer 503",
        ));
    }

    Ok(Snapshot {
        version,
        posture,
        credentials: CredentialSet::new(creds),
        routes: route_table,
        default_scopes,
        warnings,
    })
}

/// The process environment with the env file's `PLUGIN_AGENTS_*` values on top.
pub fn effective_env(sources: &ConfigSources) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut env = sources.process_env.clone();
    if let Some(path) = &sources.env_file {
        for (k, v) in read_env_file(path)? {
            if k.starts_with(SPEC_VAR_PREFIX) {
                env.insert(k, v);
            }
        }
    }
    Ok(env)
}

fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::EnvFile {
        path: path.to_path_buf(),
        reason: format!("cannot be read: {e}"),
    })?;
    parse_env_file(path, &text)
}

/// The assignments of an env file's text, in order; `path` only names it in errors.
/// Public so the fuzz targets drive the same parser as a reload.
pub fn parse_env_file(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    dotenvy::from_read_iter(text.as_bytes())
        .map(|item| {
            item.map_err(|e| ConfigError::EnvFile {
                path: path.to_path_buf(),
                reason: describe_dotenv_error(&e, text),
            })
        })
        .collect()
}

/// dotenvy's parse errors quote the offending line, which may hold a token: report only
/// where it is and which variable it sets.
fn describe_dotenv_error(e: &dotenvy::Error, text: &str) -> String {
    let dotenvy::Error::LineParse(line, index) = e else {
        return "cannot be parsed; the file is ignored as a whole".to_string();
    };
    let first = line.lines().next().unwrap_or_default();
    let number = text
        .lines()
        .position(|l| !first.is_empty() && l.contains(first))
        .map_or_else(String::new, |n| format!("line {}, ", n + 1));
    let name = first
        .trim_start()
        .trim_start_matches("export ")
        .split('=')
        .next()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map_or_else(String::new, |n| format!(" (variable {n})"));
    format!(
        "{number}column {}{name}: cannot be parsed (unclosed quote or malformed assignment); \
         the file is ignored as a whole",
        index + 1
    )
}

fn read_text(kind: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        kind,
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(kind: &'static str, path: &Path) -> Result<Value, ConfigError> {
    let text = read_text(kind, path)?;
    parse_json(kind, path, &text)
}

/// A routes (or other JSON) file's text as JSON; `kind` and `path` only name it in errors.
pub fn parse_json(kind: &'static str, path: &Path, text: &str) -> Result<Value, ConfigError> {
    serde_json::from_str(text).map_err(|e| ConfigError::Json {
        kind,
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn env_file_overrides_only_spec_variables() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "PLUGIN_AGENTS_ALLOW_QUERY_TOKEN=true\nENVIRONMENT=local").unwrap();
        let sources = ConfigSources {
            env_file: Some(f.path().to_path_buf()),
            process_env: [
                (
                    "PLUGIN_AGENTS_ALLOW_QUERY_TOKEN".to_string(),
                    "false".to_string(),
                ),
                ("ENVIRONMENT".to_string(), "production".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let env = effective_env(&sources).unwrap();
        assert_eq!(env["PLUGIN_AGENTS_ALLOW_QUERY_TOKEN"], "true");
        assert_eq!(env["ENVIRONMENT"], "production");
    }

    #[test]
    fn unreadable_or_non_json_files_are_errors_naming_the_file() {
        let sources = ConfigSources {
            managed_keys: Some("/nonexistent/keys.json".into()),
            ..Default::default()
        };
        let err = load_snapshot(&sources, 1).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/keys.json"), "{err}");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, "{{not json").unwrap();
        let sources = ConfigSources {
            routes: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let err = load_snapshot(&sources, 1).unwrap_err().to_string();
        assert!(
            err.contains("routes file") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn env_file_parse_errors_never_echo_the_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "PLUGIN_AGENTS_API_TOKEN='s3cr3t-unclosed").unwrap();
        let sources = ConfigSources {
            env_file: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let err = load_snapshot(&sources, 1).unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("env file"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("PLUGIN_AGENTS_API_TOKEN"), "{err}");
    }

    #[test]
    fn missing_credentials_are_reported_when_required() {
        let snap = load_snapshot(&ConfigSources::default(), 7).unwrap();
        assert_eq!(snap.version, 7);
        assert!(snap.credentials.is_empty());
        assert!(snap.warnings.iter().any(|w| w.source == "credentials"));
    }
}
