#!/usr/bin/env python3
"""Hot-path benchmarks of agents-authz; see BENCHMARKS.md for what each figure means.

    scripts/bench.sh --quick   smoke check, about a minute after the builds
    scripts/bench.sh --full    the run BENCHMARKS.md reports, bounded to about 20 minutes

Variants are alternated round by round (the order flips every round) so that a noisy
neighbour hurts them alike; every figure is reported as the median of the rounds with its
min-max, and as a ratio to a baseline measured in the same rounds. No thresholds: the
script fails only when something does not work (a server does not start, an answer is
wrong, a request errors).
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SERVICE = RELEASE / "agents-authz"
EXAMPLES = RELEASE / "examples"

# Same route and key for every Envoy variant; key 1 holds products:read.
WRK_PATH = "/agents/v1/products?page=2"
WRK_TOKEN = "bench-key-1"

MODES = {
    "quick": dict(
        rounds=2, warmup=0.5, seconds=2.0, keys=10_000, rss_keys=[100_000], scale=False,
        breakdown=False,
    ),
    "full": dict(
        rounds=5, warmup=1.0, seconds=8.0, keys=10_000, rss_keys=[100_000, 1_000_000], scale=True,
        breakdown=True,
    ),
}  # fmt: skip
# Extra direct variants of the full mode, to show what each stage costs: allow lines off
# (denials are still logged), and the rate limiter off as well.
BREAKDOWN = {
    "authz-noallowlog": {"allow_log": "off"},
    "authz-nolog-nolim": {"allow_log": "off", "store": "off"},
}
CONCURRENCY = 32  # requests in flight, for the generator and for wrk alike
CONNECTIONS = 2  # gRPC connections of the generator (Envoy opens one per worker: 2)
ENVOY_WORKERS = 2


class BenchError(Exception):
    pass


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and ports

_used_ports = set()


def free_port():
    """A loopback port in 20000-31999 (below the ephemeral range) that nothing holds now."""
    for _ in range(2000):
        port = random.randint(20_000, 31_999)
        if port in _used_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise BenchError("no free loopback port in 20000-31999")


class Procs:
    """Every process this script started, stopped by pid at the end."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.children = []

    def start(self, name, argv, env=None, stdout=None):
        out = stdout or open(self.workdir / f"{name}.out", "ab")
        err = open(self.workdir / f"{name}.err", "ab")
        full_env = dict(os.environ, **(env or {}))
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=full_env, cwd=self.workdir)
        self.children.append((name, child))
        return child

    def stop(self, child):
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def stop_all(self):
        for _, child in reversed(self.children):
            self.stop(child)

    def check_alive(self):
        for name, child in self.children:
            if child.returncode is None and child.poll() is not None:
                tail = (self.workdir / f"{name}.err").read_text(errors="replace")[-2000:]
                raise BenchError(f"{name} exited with {child.returncode}:\n{tail}")


def wait_until(what, probe, procs, timeout=60.0):
    """Polls until `probe` holds; fails at once if one of our processes has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        if probe():
            return
        time.sleep(0.05)
    raise BenchError(f"{what} not ready after {timeout:.0f}s")


def tcp_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


# ---------------------------------------------------------------- servers


def start_floor(procs):
    port = free_port()
    child = procs.start("floor", [str(EXAMPLES / "floor_server"), f"127.0.0.1:{port}"])
    wait_until("floor server", lambda: tcp_open(port), procs)
    return child, port


def authz_env():
    # Production posture, every stage on. The in-memory rate limiter runs on every Check (its
    # bucket lookups are part of the cost) with a limit no benchmark reaches.
    return {
        "ENVIRONMENT": "production",
        "PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE": "1000000000",
        "RUST_LOG": "info",
    }


def start_authz(procs, name, keys_file, log_path, allow_log="info", store="memory"):
    grpc, http, admin = free_port(), free_port(), free_port()
    argv = [
        str(SERVICE), "serve",
        "--grpc-addr", f"127.0.0.1:{grpc}",
        "--http-addr", f"127.0.0.1:{http}",
        "--admin-addr", f"127.0.0.1:{admin}",
        "--managed-keys", str(keys_file),
        "--rate-limit-store", store,
        "--allow-log", allow_log,
        "--watch", "off",
    ]  # fmt: skip
    # Decision logs go to a file opened for appending, truncated between rounds.
    started = time.monotonic()
    child = procs.start(name, argv, env=authz_env(), stdout=open(log_path, "ab"))
    wait_until(f"{name} /readyz", lambda: http_ok(f"http://127.0.0.1:{admin}/readyz"), procs, 300)
    return child, grpc, time.monotonic() - started


def start_upstream(procs):
    port = free_port()
    procs.start("upstream", [str(EXAMPLES / "bench_upstream"), f"127.0.0.1:{port}"])
    wait_until("upstream", lambda: tcp_open(port), procs)
    return port


def write_keys(path, count):
    run([str(EXAMPLES / "loadgen"), "--write-keys", str(path), "--keys", str(count),
         "--target", "unused"])  # fmt: skip


def run(argv, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise BenchError(f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


# ---------------------------------------------------------------- Envoy


def envoy_bin():
    candidates = [os.environ.get("ENVOY_BIN"), ROOT / ".venv/bin/envoy"]
    for c in candidates:
        if c and Path(c).is_file():
            return str(c)
    raise BenchError("Envoy not found: set ENVOY_BIN or run scripts/test.sh (makes .venv)")


def cluster(name, port, http2=False):
    c = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }  # fmt: skip
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return c


def ext_authz_filter():
    # The ext_authz settings of deploy/envoy/envoy.yaml.
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "0.5s"},
            "failure_mode_allow": False,
            "status_on_error": {"code": "ServiceUnavailable"},
            "encode_raw_headers": True,
            "validate_mutations": True,
        },
    }


def api_key_filter(keys):
    return {
        "name": "envoy.filters.http.api_key_auth",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
            "credentials": [{"key": f"bench-key-{i}", "client": f"bench-{i}"} for i in range(keys)],
            "key_sources": [{"header": "Authorization"}],
        },
    }


def envoy_config(edge, admin, upstream, auth_filter, authz_port):
    filters = ([auth_filter] if auth_filter else []) + [{
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }]  # fmt: skip
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "edge",
        "route_config": {"virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
        }]},
        "http_filters": filters,
    }  # fmt: skip
    clusters = [cluster("upstream", upstream)]
    if authz_port:
        clusters.append(cluster("authz", authz_port, http2=True))
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "edge",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": edge}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm,
                }]}],
            }],
            "clusters": clusters,
        },
    }  # fmt: skip


def start_envoy(procs, workdir, name, upstream, auth_filter=None, authz_port=None):
    edge, admin = free_port(), free_port()
    cfg = workdir / f"{name}.json"
    cfg.write_text(json.dumps(envoy_config(edge, admin, upstream, auth_filter, authz_port)))
    envoy = envoy_bin()
    run([envoy, "--mode", "validate", "-c", str(cfg), "--log-level", "error"])
    argv = [envoy, "-c", str(cfg), "--concurrency", str(ENVOY_WORKERS), "--log-level", "warn",
            "--disable-hot-restart"]  # fmt: skip
    procs.start(name, argv)
    wait_until(name, lambda: http_ok(f"http://127.0.0.1:{admin}/ready"), procs)
    return edge


# ---------------------------------------------------------------- measuring

LATENCY_RE = re.compile(r"^\s*(50|99|99\.9)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def wrk(port, seconds):
    url = f"http://127.0.0.1:{port}{WRK_PATH}"
    out = run(["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency",
               "-H", f"Authorization: Bearer {WRK_TOKEN}", url])  # fmt: skip
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rate:
        raise BenchError(f"wrk printed no Requests/sec:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if bad or errors:
        raise BenchError(f"wrk saw failures on {url}:\n{out}")
    lat = {p: float(v) * UNIT_US[u] for p, v, u in LATENCY_RE.findall(out)}
    return {"rate": float(rate.group(1)), "p50_us": lat.get("50"), "p99_us": lat.get("99")}


def loadgen(port, pid, keys, mode, label, verify):
    argv = [str(EXAMPLES / "loadgen"), "--target", f"127.0.0.1:{port}",
            "--server-pid", str(pid), "--keys", str(keys),
            "--concurrency", str(CONCURRENCY), "--connections", str(CONNECTIONS),
            "--warmup-secs", str(mode["warmup"]), "--duration-secs", str(mode["seconds"]),
            "--label", label] + (["--verify"] if verify else [])  # fmt: skip
    r = json.loads(run(argv))
    if r["errors"] or r["mismatches"] or r["checks"] == 0:
        raise BenchError(f"{label}: wrong or failed answers: {r}")
    return {
        "rate": r["checks_per_s"],
        "p50_us": r["p50_us"],
        "p99_us": r["p99_us"],
        "p999_us": r["p999_us"],
        "cpu_us": r["server_cpu_us_per_check"],
        "mix": (r["allowed"], r["denied_401"], r["denied_403"]),
    }


def alternate(variants, rounds, measure, procs):
    """{name: [result per round]}, the order flipped every round."""
    results = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            procs.check_alive()
            results[name].append(measure(name))
        log(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{n} {results[n][-1]['rate']:.0f}/s" for n in variants))  # fmt: skip
    return results


# ---------------------------------------------------------------- reporting


def spread(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def paired_ratios(results, name, base, key):
    return [a[key] / b[key] for a, b in zip(results[name], results[base]) if a[key] and b[key]]


def table(title, results, base, extra_cols):
    lines = [f"\n{title} (median [min-max] of {len(results[base])} rounds; ratio = per-round "
             f"variant/{base}, median [min-max])"]  # fmt: skip
    head = f"{'variant':<16}{'req/s':>24}{'ratio':>22}"
    for col, _ in extra_cols:
        head += f"{col:>24}"
    lines.append(head)
    for name, rounds in results.items():
        row = f"{name:<16}{spread([r['rate'] for r in rounds]):>24}"
        row += f"{spread(paired_ratios(results, name, base, 'rate'), '{:.3f}'):>22}"
        for _, key in extra_cols:
            fmt = "{:.1f}" if key == "cpu_us" else "{:.0f}"
            row += f"{spread([r.get(key) for r in rounds], fmt):>24}"
        lines.append(row)
    return "\n".join(lines)


def cpu_ratio_line(results, name, base):
    ratios = paired_ratios(results, name, base, "cpu_us")
    return f"server CPU per Check, {name}/{base}: {spread(ratios, '{:.3f}')}"


# ---------------------------------------------------------------- sections


def direct_section(procs, workdir, mode, keys_file):
    log(f"direct Check: floor vs agents-authz ({mode['keys']} keys, decision logs on)")
    floor, floor_port = start_floor(procs)
    log_path = workdir / "decisions.log"
    authz, authz_port, _ = start_authz(procs, "authz-direct", keys_file, log_path)
    servers = {"floor": (floor, floor_port, False), "agents-authz": (authz, authz_port, True)}
    if mode["breakdown"]:
        for name, extra in BREAKDOWN.items():
            log_file = workdir / f"{name}.log"
            child, port, _ = start_authz(procs, name, keys_file, log_file, **extra)
            servers[name] = (child, port, True)

    def measure(name):
        child, port, verify = servers[name]
        result = loadgen(port, child.pid, mode["keys"], mode, name, verify)
        if name == "agents-authz":
            lines = log_path.read_bytes().count(b"\n")
            if lines < result["rate"] * mode["seconds"] * 0.5:
                raise BenchError(f"decision log has {lines} lines: is logging on?")
            os.truncate(log_path, 0)
        elif name in BREAKDOWN:
            os.truncate(workdir / f"{name}.log", 0)
        return result

    results = alternate(list(servers), mode["rounds"], measure, procs)
    for child, _, _ in servers.values():
        procs.stop(child)
    mix = results["agents-authz"][0]["mix"]
    cols = [("p50 us", "p50_us"), ("p99 us", "p99_us"), ("p99.9 us", "p999_us"),
            ("CPU us/Check", "cpu_us")]  # fmt: skip
    out = table("Direct Check RPCs (loadgen)", results, "floor", cols)
    for name in list(servers)[1:]:
        out += "\n" + cpu_ratio_line(results, name, "floor")
    out += f"\nagents-authz answers in round 1: {mix[0]} allowed, {mix[1]} 401, {mix[2]} 403"
    return out, results


def envoy_section(procs, workdir, mode, keys_file):
    log("through Envoy (wrk): no auth, api_key_auth, floor, agents-authz")
    upstream = start_upstream(procs)
    _, floor_port = start_floor(procs)
    _, authz_port, _ = start_authz(procs, "authz-envoy", keys_file, workdir / "envoy-dec.log")
    edges = {
        "no-auth": start_envoy(procs, workdir, "envoy-noauth", upstream),
        "api_key_auth": start_envoy(procs, workdir, "envoy-apikey", upstream,
                                    api_key_filter(mode["keys"])),
        "floor": start_envoy(procs, workdir, "envoy-floor", upstream, ext_authz_filter(),
                             floor_port),
        "agents-authz": start_envoy(procs, workdir, "envoy-authz", upstream, ext_authz_filter(),
                                    authz_port),
    }  # fmt: skip
    seconds = max(1, round(mode["seconds"]))

    def measure(name):
        # wrk's own warm-up: a short run whose figures are dropped.
        wrk(edges[name], 1)
        result = wrk(edges[name], seconds)
        os.truncate(workdir / "envoy-dec.log", 0)
        return result

    results = alternate(list(edges), mode["rounds"], measure, procs)
    cols = [("p50 us", "p50_us"), ("p99 us", "p99_us")]
    out = table("Through Envoy (wrk, GET " + WRK_PATH + ")", results, "no-auth", cols)
    ratio = paired_ratios(results, "agents-authz", "floor", "rate")
    out += f"\nagents-authz / floor through Envoy: {spread(ratio, '{:.3f}')}"
    return out, results


def rss_section(procs, workdir, mode):
    lines = ["\nMemory with N managed keys (real binary, after /readyz)"]
    lines.append(f"{'keys':>10}{'VmRSS MB':>12}{'VmHWM MB':>12}{'start to ready s':>18}")
    for n in mode["rss_keys"]:
        keys_file = workdir / f"keys-{n}.json"
        write_keys(keys_file, n)
        child, _, ready_s = start_authz(procs, f"authz-rss-{n}", keys_file, workdir / "rss.log")
        status = Path(f"/proc/{child.pid}/status").read_text()
        mem = {k: int(v.split()[0]) / 1024 for k, v in
               (l.split(":", 1) for l in status.splitlines()) if k in ("VmRSS", "VmHWM")}  # fmt: skip
        procs.stop(child)
        keys_file.unlink()
        lines.append(f"{n:>10}{mem['VmRSS']:>12.1f}{mem['VmHWM']:>12.1f}{ready_s:>18.2f}")
    return "\n".join(lines)


def scale_section():
    log("criterion: decision at 10 / 10k / 1M credentials, snapshot builds")
    out = run(["cargo", "bench", "--quiet", "--bench", "scale"], cwd=ROOT)
    return "\n" + out.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--quick", action="store_true")
    group.add_argument("--full", action="store_true")
    parser.add_argument("--json", help="also write the raw per-round results here")
    args = parser.parse_args()
    mode = MODES["full" if args.full else "quick"]
    if not shutil.which("wrk"):
        raise BenchError("wrk not found: apt-get install wrk")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="agents-bench-"))
    procs = Procs(workdir)
    report = [f"agents-authz benchmarks, {'full' if args.full else 'quick'} mode, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"]  # fmt: skip
    raw = {}
    try:
        keys_file = workdir / "keys.json"
        write_keys(keys_file, mode["keys"])
        text, raw["direct"] = direct_section(procs, workdir, mode, keys_file)
        report.append(text)
        text, raw["envoy"] = envoy_section(procs, workdir, mode, keys_file)
        report.append(text)
        procs.stop_all()
        report.append(rss_section(procs, workdir, mode))
        if mode["scale"]:
            report.append(scale_section())
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    report.append(f"\ntook {time.monotonic() - started:.0f}s, load average "
                  f"{os.getloadavg()[0]:.2f} at the end")  # fmt: skip
    print("\n".join(report))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
