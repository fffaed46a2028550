#!/usr/bin/env bash
# The fuzz targets in fuzz/ (cargo-fuzz + libFuzzer), on the stable toolchain.
#
#   scripts/fuzz.sh --smoke          build every target (unoptimised), run each 15 s from the
#                                    seed corpus (CI; part of scripts/test.sh)
#   scripts/fuzz.sh --long [RUNS]    run each target for RUNS executions (default 10000000)
#                                    into fuzz/corpus/<target> (not committed); logs in
#                                    fuzz/logs/<target>.log, a summary line per target at the end
#   scripts/fuzz.sh --long RUNS TARGET...   only those targets
#
# cargo-fuzz is installed from crates.io into .tools/ (skipped when that version is there).
# Its `-Z` flags need RUSTC_BOOTSTRAP=1 on stable. The targets are safe Rust, so they run
# without a sanitizer and with debug assertions on; a crash or a hang (over 10 s on one
# input) stops the run and leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly CARGO_FUZZ_VERSION="0.13.2"
readonly TOOLS="$PWD/.tools"
readonly TARGETS=(check_request credentials_json managed_keys env_file routes_file)
readonly SMOKE_SECONDS=15

export RUSTC_BOOTSTRAP=1
export PATH="$TOOLS/bin:$PATH"
# Long runs: optimised, with debug assertions. The smoke builds unoptimised instead
# (--dev): that compiles in a fraction of the time on a fresh CI machine, and 15 s per
# target only has to show that the targets build, load their seeds and run.
BUILD_FLAGS=(--sanitizer none --debug-assertions)

ensure_cargo_fuzz() {
    if cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
        return
    fi
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
    # A plain stable build: RUSTC_BOOTSTRAP is only for the fuzz targets.
    env -u RUSTC_BOOTSTRAP cargo install --quiet --locked --root "$TOOLS" \
        --version "$CARGO_FUZZ_VERSION" cargo-fuzz
}

# run_target TARGET CORPUS_DIR LIBFUZZER_ARGS...: seeds come from fuzz/corpus-seed/TARGET.
run_target() {
    local target="$1" corpus="$2"
    shift 2
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "$corpus" "fuzz/corpus-seed/$target" -- \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" "$@"
}

smoke() {
    BUILD_FLAGS+=(--dev)
    echo "==> cargo fuzz build --dev (${TARGETS[*]})"
    cargo fuzz build "${BUILD_FLAGS[@]}"
    local target
    # Global, so the EXIT trap still sees it after smoke returns.
    corpus="$(mktemp -d)"
    trap 'rm -rf "$corpus"' EXIT
    for target in "${TARGETS[@]}"; do
        echo "==> fuzz smoke: $target (${SMOKE_SECONDS}s)"
        # A scratch corpus: the smoke must not grow the committed seeds.
        if ! run_target "$target" "$corpus/$target" -max_total_time="$SMOKE_SECONDS" \
            >"$corpus/$target.log" 2>&1; then
            tail -40 "$corpus/$target.log" >&2
            echo "scripts/fuzz.sh: $target failed; the input is in fuzz/artifacts/$target/" >&2
            exit 1
        fi
        grep -E '^(Done|stat::number_of_executed_units)' "$corpus/$target.log" || true
    done
}

long() {
    local runs="${1:-10000000}"
    shift || true
    local -a targets=("$@")
    ((${#targets[@]})) || targets=("${TARGETS[@]}")
    cargo fuzz build "${BUILD_FLAGS[@]}"
    mkdir -p fuzz/logs
    local target log
    for target in "${targets[@]}"; do
        log="fuzz/logs/$target.log"
        echo "==> $target: $runs runs (log $log)"
        run_target "$target" "fuzz/corpus/$target" -runs="$runs" >"$log" 2>&1 || {
            echo "scripts/fuzz.sh: $target failed; see $log and fuzz/artifacts/$target/" >&2
            exit 1
        }
        summary "$target" "$log"
    done
}

# One line per target: executions, seconds, corpus files and bytes.
summary() {
    local target="$1" log="$2" execs seconds files bytes
    execs="$(grep -oP 'stat::number_of_executed_units: \K[0-9]+' "$log" | tail -1)"
    seconds="$(grep -oP '^Done [0-9]+ runs in \K[0-9]+' "$log" | tail -1)"
    files="$(find "fuzz/corpus/$target" -type f | wc -l)"
    bytes="$(du -sb "fuzz/corpus/$target" | cut -f1)"
    echo "$target: ${execs:-?} executions in ${seconds:-?} s, corpus $files files / $bytes bytes, no crash"
}

main() {
    ensure_cargo_fuzz
    case "${1:-}" in
        --smoke) smoke ;;
        --long)
            shift
            long "$@"
            ;;
        *)
            echo "usage: scripts/fuzz.sh --smoke | --long [RUNS [TARGET...]]" >&2
            exit 2
            ;;
    esac
}

main "$@"
