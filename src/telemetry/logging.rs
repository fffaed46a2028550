//! Process-wide logging: JSON lines on stdout through a lossy non-blocking writer.
//!
//! A Check only pushes its line into a bounded queue; a worker thread writes to stdout.
//! When the queue is full (stdout is slower than the Check rate) the line is dropped,
//! never waited for, and the writer counts it; `Metrics::track_dropped_log_lines` turns
//! that count into `agents_authz_decision_log_dropped_lines_total`.

use std::io::BufWriter;

use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{ParseError, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{Layer, fmt};

use super::decision_line::DecisionLines;
use super::decision_log::DECISION_TARGET;

/// Filter used when neither the config nor `RUST_LOG` gives one.
pub const DEFAULT_FILTER: &str = "info";

/// Default number of lines the writer queues before dropping.
pub const DEFAULT_BUFFERED_LINES: usize = 16_384;

/// The writer thread's stdout buffer. The thread writes every queued line, then flushes
/// once the queue is empty, so under load one `write` carries many lines instead of one
/// (stdout alone flushes at every newline), and a quiet service still flushes each line
/// as soon as it is written.
const STDOUT_BUFFER_BYTES: usize = 64 * 1024;

/// How logging is set up.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `RUST_LOG`-style directives (e.g. `info,agents_authz::decision=off`); `None`
    /// means [`DEFAULT_FILTER`].
    pub filter: Option<String>,
    /// Lines queued for the writer thread before new ones are dropped.
    pub buffered_lines: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: None,
            buffered_lines: DEFAULT_BUFFERED_LINES,
        }
    }
}

impl LogConfig {
    /// The default config with the filter taken from `RUST_LOG` when set and non-empty.
    pub fn from_env() -> Self {
        let filter = std::env::var("RUST_LOG")
            .ok()
            .filter(|f| !f.trim().is_empty());
        Self {
            filter,
            ..Self::default()
        }
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("invalid log filter '{filter}': {source}")]
    Filter {
        filter: String,
        #[source]
        source: ParseError,
    },
    #[error("cannot install the log subscriber: {0}")]
    Install(#[from] TryInitError),
}

/// Keeps the writer thread alive; dropping it flushes the queued lines. Hold it until
/// the very end of `main`.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: WorkerGuard,
    dropped: ErrorCounter,
}

impl LogGuard {
    /// The writer's count of dropped lines, for `Metrics::track_dropped_log_lines`.
    pub fn dropped_lines(&self) -> ErrorCounter {
        self.dropped.clone()
    }
}

/// Parses the filter directives, defaulting to [`DEFAULT_FILTER`].
pub fn parse_filter(filter: Option<&str>) -> Result<EnvFilter, LogInitError> {
    let directives = filter.unwrap_or(DEFAULT_FILTER);
    EnvFilter::builder()
        .parse(directives)
        .map_err(|source| LogInitError::Filter {
            filter: directives.to_owned(),
            source,
        })
}

/// Installs the global subscriber writing JSON lines to stdout.
pub fn init_logging(config: LogConfig) -> Result<LogGuard, LogInitError> {
    let filter = parse_filter(config.filter.as_deref())?;
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(config.buffered_lines.max(1))
        .thread_name("agents-authz-log")
        .finish(BufWriter::with_capacity(
            STDOUT_BUFFER_BYTES,
            std::io::stdout(),
        ));
    let dropped = writer.error_counter();
    json_subscriber(filter, writer).try_init()?;
    Ok(LogGuard {
        _worker: worker,
        dropped,
    })
}

/// The subscriber [`init_logging`] installs, over any writer (tests pass a buffer).
///
/// Two layers share the writer. Decision lines are written by [`DecisionLines`] from the
/// record's fields only, so their schema stays fixed whatever spans the caller has open;
/// all other events go through the JSON layer, with the current span's fields. Both put
/// event fields at the top level of the line.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    let decisions = DecisionLines::new(writer.clone())
        .with_filter(filter_fn(|meta| meta.target() == DECISION_TARGET));
    let general = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(filter_fn(|meta| meta.target() != DECISION_TARGET));
    tracing_subscriber::registry()
        .with(filter)
        .with(decisions)
        .with(general)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_is_info() {
        assert_eq!(parse_filter(None).unwrap().to_string(), "info");
    }

    #[test]
    fn bad_filter_names_the_input() {
        let err = parse_filter(Some("agents_authz=loud")).unwrap_err();
        assert!(err.to_string().contains("'agents_authz=loud'"), "{err}");
    }
}
