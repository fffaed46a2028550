//! `agents-authz`: load the configuration, exit non-zero with a clear message if it is
//! unusable, serve, drain on a signal.

use agents_authz::cli::{Cli, Command, ServeArgs};
use agents_authz::config::{ConfigSources, load_snapshot};
use agents_authz::state::AppState;
use agents_authz::{demo, server};
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let (args, sources, serve) = match cli.command {
        Command::Serve(args) => {
            let sources = sources(&args, false);
            (args, sources, true)
        }
        Command::Demo(args) => {
            let sources = sources(&args, true);
            (args, sources, true)
        }
        Command::CheckConfig(args) => {
            let sources = sources(&args, false);
            (args, sources, false)
        }
    };
    let snapshot = match load_snapshot(&sources, 1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agents-authz: {e}");
            tracing::error!(error = %e, "configuration unusable; not starting");
            return ExitCode::from(2);
        }
    };
    for w in &snapshot.warnings {
        tracing::warn!(
            config.source = %w.source,
            config.entry = w.entry.as_deref(),
            problem = %w.message,
            "configuration problem"
        );
    }
    if !serve {
        println!(
            "configuration usable: {} credentials, {} routes, {} problems",
            snapshot.credentials.len(),
            snapshot.routes.len(),
            snapshot.warnings.len()
        );
        return ExitCode::SUCCESS;
    }
    let state = Arc::new(AppState::new(snapshot));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    match runtime.block_on(server::run(&args, state)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agents-authz: {e}");
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

fn sources(args: &ServeArgs, demo: bool) -> ConfigSources {
    let mut process_env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    if demo {
        process_env
            .entry("ENVIRONMENT".into())
            .or_insert_with(|| "local".into());
    }
    ConfigSources {
        managed_keys: args.managed_keys.clone(),
        env_file: args.env_file.clone(),
        routes: args.routes.clone(),
        process_env,
        inline_managed_keys: demo.then(demo::managed_keys),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stdout)
        .init();
}
