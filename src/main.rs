//! `agents-authz`: load the configuration, exit non-zero with a clear message if it is
//! unusable, serve, drain on a signal.

use agents_authz::cli::{Cli, Command, ServeArgs};
use agents_authz::config::{ConfigSources, load_snapshot};
use agents_authz::core::snapshot::Snapshot;
use agents_authz::ratelimit::RateLimiter;
use agents_authz::reload::Reloader;
use agents_authz::state::AppState;
use agents_authz::telemetry::{DecisionLog, LogConfig, Metrics, MetricsConfig, init_logging};
use agents_authz::{admin, check, keys, server};
use arc_swap::ArcSwap;
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, demo) = match cli.command {
        // Clients and tools: their stdout is the answer, so no log subscriber writes there.
        Command::Admin(args) => return admin::client::run(&args),
        Command::Check(args) => return check::run(&args),
        Command::Keys(args) => return keys::cli::run(&args),
        Command::HashToken => return keys::cli::hash_token(),
        Command::Serve(args) => (args, false),
        Command::Demo(args) => (args, true),
    };
    let _log_guard = match init_logging(LogConfig::from_env()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("agents-authz: {e}");
            return ExitCode::from(2);
        }
    };
    let sources = args.config_sources(demo);
    let snapshot = match load_snapshot(&sources, 1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agents-authz: {e}");
            tracing::error!(error = %e, "configuration unusable; not starting");
            return ExitCode::from(2);
        }
    };
    report_warnings(&snapshot);
    let metrics = Arc::new(Metrics::new(MetricsConfig {
        per_credential: args.metrics_per_credential,
    }));
    metrics.track_dropped_log_lines(_log_guard.dropped_lines());
    metrics.record_initial_load(SystemTime::now());
    let limiter = match RateLimiter::from_spec(&args.rate_limit_store) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("agents-authz: --rate-limit-store: {e}");
            return ExitCode::from(2);
        }
    };
    let state = Arc::new(build_state(
        &args,
        sources.clone(),
        snapshot,
        metrics,
        limiter,
    ));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let watched = sources.watched_files();
    match runtime.block_on(server::run(&args, state, watched)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agents-authz: {e}");
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// The shared state, with a reloader that rebuilds the snapshot from the same sources.
fn build_state(
    args: &ServeArgs,
    sources: ConfigSources,
    snapshot: Snapshot,
    metrics: Arc<Metrics>,
    limiter: RateLimiter,
) -> AppState {
    let current = Arc::new(ArcSwap::from_pointee(snapshot));
    let reload_metrics = metrics.clone();
    let inputs = sources.watched_files();
    let reloader = Reloader::new(current.clone(), 1, move |version| {
        let result = load_snapshot(&sources, version);
        reload_metrics.record_reload(result.is_ok(), SystemTime::now());
        if let Ok(snapshot) = &result {
            report_warnings(snapshot);
        }
        result
    })
    // A SIGHUP reload with the watcher off must also see every input file move.
    .with_inputs(inputs);
    AppState {
        snapshot: current,
        metrics,
        decision_log: DecisionLog::new(args.allow_log),
        limiter,
        reloader: Some(Arc::new(reloader)),
    }
}

/// Each problem once per snapshot, with where it is and why; never a token.
fn report_warnings(snapshot: &Snapshot) {
    for w in &snapshot.warnings {
        tracing::warn!(
            snapshot.version = snapshot.version,
            config.source = %w.source,
            config.entry = w.entry.as_deref(),
            problem = %w.message,
            "configuration problem"
        );
    }
}
