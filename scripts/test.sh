#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: native-mode stacks and a compose
# stack on the registry-free local images, all on free loopback ports.
# Installs what the compose tests need when it is missing (Debian's docker.io
# and debootstrap), starts a Docker engine when none answers and stops it (by
# PID) when the tests end. Arguments go to pytest, e.g. scripts/test.sh -k compose
set -euo pipefail

cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    echo "==> Installing a Docker engine and debootstrap (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io debootstrap
fi

dockerd_pid=
stop_engine() {
    if [ -n "$dockerd_pid" ]; then
        echo "==> Stopping the Docker engine this run started (pid $dockerd_pid)"
        as_root kill "$dockerd_pid" 2>/dev/null || true
        while kill -0 "$dockerd_pid" 2>/dev/null; do sleep 1; done
    fi
}
trap stop_engine EXIT

if ! docker info >/dev/null 2>&1; then
    log=$(mktemp /tmp/prefectstack-dockerd.XXXXXX.log)
    echo "==> Starting a Docker engine (log: $log)"
    # No systemd here: dockerd runs in the background for this run only.
    # Started directly (not through a shell function, which would put a subshell
    # between this script and dockerd), so $! is the engine (or sudo, which
    # forwards the signal to it).
    # shellcheck disable=SC2024  # the log is this user's file on purpose
    if [ "$(id -u)" -eq 0 ]; then dockerd >"$log" 2>&1 & else sudo dockerd >"$log" 2>&1 & fi
    dockerd_pid=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || { tail -20 "$log"; exit 1; }
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "the Docker engine did not start: $log" >&2; exit 1; }
fi

.venv/bin/pytest "$@"
