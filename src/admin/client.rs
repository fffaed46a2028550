//! `agents-authz admin status|posture|reload|whoami`: ask a running service through its
//! admin gRPC API and print the answer as JSON on stdout.
//!
//! Exit codes: 0 answered; 1 the service answered with a refusal or a failed reload;
//! 2 bad input (address, missing token); 3 the service could not be reached.

use super::print;
use crate::admin_proto::admin_client::AdminClient;
use crate::admin_proto::{
    GetPostureRequest, GetStatusRequest, ReloadRequest, ReloadResult, WhoAmIRequest,
};
use crate::cli::{AdminArgs, AdminCommand};
use crate::error_chain::error_chain;
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Where `admin whoami` reads the token from before falling back to stdin. Never a
/// flag: arguments are visible to every user through `ps`.
pub const TOKEN_ENV: &str = "AGENTS_AUTHZ_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum AdminCliError {
    #[error("'{addr}' is not a usable admin address (expected host:port): {reason}")]
    BadAddress { addr: String, reason: String },
    #[error(
        "cannot reach the admin API at {addr}: {reason} \
         (is agents-authz running with --admin-addr {addr}?)"
    )]
    Unreachable { addr: String, reason: String },
    #[error("no token given: set {TOKEN_ENV} or write the token on stdin")]
    NoToken,
    #[error("cannot read the token from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("the admin API answered {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("cannot start the client runtime: {0}")]
    Runtime(std::io::Error),
}

impl AdminCliError {
    fn exit_code(&self) -> u8 {
        match self {
            AdminCliError::Refused { .. } => 1,
            AdminCliError::BadAddress { .. }
            | AdminCliError::NoToken
            | AdminCliError::Stdin(_)
            | AdminCliError::Runtime(_) => 2,
            AdminCliError::Unreachable { .. } => 3,
        }
    }
}

/// What a subcommand prints, and whether the answer counts as success.
struct Answer {
    json: Value,
    /// A reload that failed prints its answer and still exits 1.
    failure: Option<&'static str>,
}

/// Runs one admin subcommand to completion and returns the process exit code.
pub fn run(args: &AdminArgs) -> ExitCode {
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AdminCliError::Runtime)
        .and_then(|rt| rt.block_on(execute(args)));
    match answer {
        Ok(answer) => {
            // A closed pipe (`| head`) is the reader's choice, not an error to report.
            let _ = writeln!(std::io::stdout().lock(), "{:#}", answer.json);
            match answer.failure {
                None => ExitCode::SUCCESS,
                Some(why) => {
                    eprintln!("agents-authz admin: {why}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("agents-authz admin: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn execute(args: &AdminArgs) -> Result<Answer, AdminCliError> {
    // Read the token before connecting, so a missing token is reported as such even
    // when the service is down.
    let whoami = match &args.command {
        AdminCommand::Whoami { client_ip } => Some(WhoAmIRequest {
            token: read_token()?,
            client_ip: client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        }),
        _ => None,
    };
    let mut client = connect(&args.admin_addr, Duration::from_secs(args.timeout_seconds)).await?;
    let ok = |json| Answer {
        json,
        failure: None,
    };
    match &args.command {
        AdminCommand::Status => {
            let r = client
                .get_status(GetStatusRequest {})
                .await
                .map_err(refused)?;
            Ok(ok(print::status(r.get_ref())))
        }
        AdminCommand::Posture => {
            let r = client
                .get_posture(GetPostureRequest {})
                .await
                .map_err(refused)?;
            Ok(ok(print::posture(r.get_ref())))
        }
        AdminCommand::Reload => {
            let r = client.reload(ReloadRequest {}).await.map_err(refused)?;
            let failed = r.get_ref().result() == ReloadResult::Failure;
            Ok(Answer {
                json: print::reload(r.get_ref()),
                failure: failed.then_some("reload failed; the previous snapshot keeps serving"),
            })
        }
        AdminCommand::Whoami { .. } => {
            let request = whoami.expect("whoami request was built above");
            let r = client.who_am_i(request).await.map_err(refused)?;
            Ok(ok(print::whoami(r.get_ref())))
        }
    }
}

async fn connect(addr: &str, timeout: Duration) -> Result<AdminClient<Channel>, AdminCliError> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| AdminCliError::BadAddress {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| AdminCliError::Unreachable {
            addr: addr.to_owned(),
            reason: error_chain(&e),
        })?;
    Ok(AdminClient::new(channel))
}

fn refused(status: tonic::Status) -> AdminCliError {
    AdminCliError::Refused {
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// `AGENTS_AUTHZ_TOKEN`, else the first line of stdin, trimmed.
fn read_token() -> Result<String, AdminCliError> {
    if let Ok(token) = std::env::var(TOKEN_ENV)
        && !token.trim().is_empty()
    {
        return Ok(token.trim().to_owned());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("agents-authz admin: {TOKEN_ENV} is not set; reading the token from stdin");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(AdminCliError::Stdin)?;
    match line.trim() {
        "" => Err(AdminCliError::NoToken),
        token => Ok(token.to_owned()),
    }
}
