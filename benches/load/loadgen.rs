//! Load generator for the direct Check benchmark: real `CheckRequest`s over gRPC, a fixed
//! number of requests in flight for a fixed time, one JSON line of results on stdout.
//!
//! The mix, in every block of 20 requests (see [`Kind`]):
//! - 18 allowed (90%): a managed key on one of four routes it holds the scope for, the token
//!   in `Authorization: Bearer` (three in four) or `X-Agents-Token` (one in four);
//! - 1 unknown token (5%), which agents-authz answers 401;
//! - 1 known key on a route it lacks the scope for (5%), answered 403.
//!
//! The keys are those of the managed-keys file that `loadgen --write-keys FILE --keys N`
//! writes: token `bench-key-<i>` for i in 0..N, every key with the scopes of
//! `mix::KEY_SCOPES`. The
//! floor server gets exactly the same requests (it answers them all OK; `--verify` is off).
//!
//! Server CPU per Check is the server process's utime+stime from `/proc/<pid>/stat`, read at
//! the start and the end of the measured window, divided by the Checks completed in it.

mod keys;
mod mix;
mod proc_stat;

use clap::Parser;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use mix::{Kind, Outcome};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Parser)]
#[command(about = "Drives an ext_authz server with Check RPCs and reports Check/s and latency")]
struct Args {
    /// The server's gRPC address (host:port).
    #[arg(long)]
    target: String,
    /// Requests in flight at any time.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the requests are spread over (Envoy opens one per worker).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Seconds of load before the measured window starts.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Length of the measured window in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// The server's pid, for its CPU time; without it no CPU figure is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How many `bench-key-<i>` keys the server holds; requests spread over all of them.
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
    /// Check every answer against the mix (agents-authz); off for the floor.
    #[arg(long)]
    verify: bool,
    /// Name printed in the JSON line.
    #[arg(long, default_value = "run")]
    label: String,
    /// Instead of generating load, write the managed-keys file for --keys to this path.
    #[arg(long)]
    write_keys: Option<std::path::PathBuf>,
}

/// What one worker task saw in the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    outcomes: [u64; 4],
    mismatches: u64,
    errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
        self.mismatches += other.mismatches;
        self.errors += other.errors;
    }
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

async fn worker(
    mut client: AuthorizationClient<Channel>,
    task: u64,
    args_keys: u32,
    verify: bool,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0u64;
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            return tally;
        }
        let seq = task.wrapping_mul(1_000_003).wrapping_add(n);
        let kind = Kind::of(n + task);
        let request = mix::request(kind, seq, args_keys);
        n += 1;
        let answer = client.check(request).await;
        if sent < window.start {
            continue;
        }
        tally
            .latencies_us
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        match answer {
            Ok(resp) => {
                let outcome = Outcome::of(resp.get_ref());
                tally.outcomes[outcome as usize] += 1;
                if verify && outcome != kind.expected() {
                    tally.mismatches += 1;
                }
            }
            Err(_) => tally.errors += 1,
        }
    }
}

async fn connect(args: &Args) -> Result<Vec<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{}", args.target))
        .map_err(|e| format!("bad target '{}': {e}", args.target))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", args.target))?;
        channels.push(channel);
    }
    Ok(channels)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    let channels = connect(&args).await?;
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let duration = Duration::from_secs_f64(args.duration_secs);
    let start = Instant::now() + warmup;
    let window = Window {
        start,
        end: start + duration,
    };
    let mut tasks = Vec::new();
    for t in 0..args.concurrency {
        let client = AuthorizationClient::new(channels[t % channels.len()].clone());
        tasks.push(tokio::spawn(worker(
            client,
            t as u64,
            args.keys,
            args.verify,
            window,
        )));
    }
    tokio::time::sleep_until(window.start.into()).await;
    let cpu_before = proc_stat::cpu_snapshot(args.server_pid)?;
    tokio::time::sleep_until(window.end.into()).await;
    let cpu_after = proc_stat::cpu_snapshot(args.server_pid)?;
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await.map_err(|e| format!("worker failed: {e}"))?);
    }
    Ok(report(&args, tally, duration, cpu_before, cpu_after))
}

fn report(
    args: &Args,
    mut tally: Tally,
    duration: Duration,
    before: proc_stat::CpuSnapshot,
    after: proc_stat::CpuSnapshot,
) -> serde_json::Value {
    tally.latencies_us.sort_unstable();
    let checks = tally.latencies_us.len() as f64;
    let per_check = |seconds: Option<f64>| seconds.map(|s| s * 1e6 / checks.max(1.0));
    serde_json::json!({
        "label": args.label,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "duration_s": duration.as_secs_f64(),
        "checks": checks as u64,
        "checks_per_s": checks / duration.as_secs_f64(),
        "p50_us": percentile(&tally.latencies_us, 50.0),
        "p99_us": percentile(&tally.latencies_us, 99.0),
        "p999_us": percentile(&tally.latencies_us, 99.9),
        "server_cpu_us_per_check": per_check(after.server_secs(&before)),
        "loadgen_cpu_us_per_check": per_check(Some(after.own_secs(&before))),
        "allowed": tally.outcomes[Outcome::Allowed as usize],
        "denied_401": tally.outcomes[Outcome::Unauthorized as usize],
        "denied_403": tally.outcomes[Outcome::Forbidden as usize],
        "other_answers": tally.outcomes[Outcome::Other as usize],
        "mismatches": tally.mismatches,
        "errors": tally.errors,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.write_keys {
        return match keys::write(path, args.keys) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
