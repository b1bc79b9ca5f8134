#!/usr/bin/env bash
# Install what Tollgate needs on a Debian 12 machine: system packages, the venv, pinned deps, the project.
#
# Idempotent and quick when nothing changed: apt runs only for missing packages, pip only when
# requirements*.txt or pyproject.toml changed since the last successful run (a stamp file in the venv).
# Knobs (deliberately not TOLLGATE_*, which Settings reserves): PYTHON (interpreter for a new venv,
# default python3.11), VENV (default .venv). TOLLGATE_REDIS_URL decides whether redis-server is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
STAMP="$VENV/.tollgate-bootstrap.sha256"
REDIS_URL=${TOLLGATE_REDIS_URL:-redis://127.0.0.1:6379/0}

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

# --- helpers shared with scripts/test_services.sh -------------------------------------------------------------

# redis_answers HOST PORT: true when a Redis server at HOST:PORT replies +PONG (no client needed: bash /dev/tcp).
redis_answers() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r -t 2 reply <&3 || exit 1
        [[ "$reply" == +PONG* || "$reply" == -NOAUTH* ]]
    ' _ "$1" "$2" 2>/dev/null
}

# url_host_port URL DEFAULT_PORT: print "HOST PORT" of a redis://, postgresql://… URL (no userinfo, no path).
url_host_port() {
    local rest=${1#*://}
    rest=${rest#*@}
    rest=${rest%%/*}
    local host=${rest%:*} port=${rest##*:}
    [[ "$rest" == *:* ]] || { host=$rest; port=$2; }
    [[ -n "$host" ]] || host=127.0.0.1
    printf '%s %s\n' "${host//[\[\]]/}" "$port"
}

# apt_install PKG…: install Debian packages without letting their maintainer scripts start services
# (a packaged docker-registry would otherwise take port 5000 before `make run` does).
apt_install() {
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root to install: $* (run: sudo apt-get install $*)"
        sudo="sudo"
    fi
    command -v apt-get >/dev/null || die "no apt-get: install these yourself: $*"
    local blocker=/usr/sbin/policy-rc.d placed=""
    if [[ ! -e $blocker ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$blocker" >/dev/null
        $sudo chmod 0755 "$blocker"
        placed=1
        trap "$sudo rm -f $blocker" EXIT  # never leave services blocked if apt is interrupted
    fi
    say "apt-get install $*"
    local rc=0
    if [[ -z "${_APT_UPDATED:-}" ]]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
        _APT_UPDATED=1
    fi
    if [[ $rc -eq 0 ]]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || rc=$?
    fi
    if [[ -n "$placed" ]]; then
        $sudo rm -f "$blocker"
        trap - EXIT
    fi
    [[ $rc -eq 0 ]] || die "apt-get install $* failed (exit $rc)"
}

# Sourced by other scripts for the helpers above: stop here.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    return 0
fi

# --- 1. system packages -----------------------------------------------------------------------------------------

missing=()
[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
# The browser tests drive Debian's chromium through Playwright (never Playwright's own browser downloads).
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -d /usr/share/fonts/truetype/dejavu ]] || missing+=(fonts-dejavu-core)  # legible screenshots
read -r redis_host redis_port < <(url_host_port "$REDIS_URL" 6379)
if ! command -v redis-server >/dev/null && ! redis_answers "$redis_host" "$redis_port"; then
    missing+=(redis-server)
fi
if ! command -v "$PYTHON" >/dev/null; then
    [[ "$PYTHON" == python3.11 ]] || die "$PYTHON not found"
    missing+=(python3.11 python3.11-venv)
elif [[ ! -x "$VENV/bin/python" ]] && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3.11-venv)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
fi

# --- 2. virtualenv ----------------------------------------------------------------------------------------------

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating $VENV with $PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# --- 3. pinned dependencies and the project itself (only when something changed) -------------------------------

want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ "$want" != "$have" || ! -x "$VENV/bin/tollgate" ]]; then
    say "installing pinned requirements into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt
    say "installing tollgate (editable)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
    printf '%s\n' "$want" >"$STAMP"
fi
"$VENV/bin/tollgate" --help >/dev/null || die "$VENV/bin/tollgate does not run"
say "ready: $VENV/bin/tollgate, $(/usr/bin/docker-registry --version 2>/dev/null | head -1 || echo docker-registry), $(skopeo --version), $(/usr/bin/chromium --version 2>/dev/null | head -1 || echo chromium)"
