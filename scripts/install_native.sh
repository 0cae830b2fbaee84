#!/usr/bin/env bash
# Installs everything native mode needs on Debian 12 / Ubuntu 22.04+, without
# Docker: OS packages, the Python environment (.venv, exactly as uv.lock pins
# it), and the optional web UIs (.tools/pgadmin, .tools/redis-ui).
# Idempotent: re-running it only installs what is missing or changed.
# Run as a normal user with sudo rights, or as root.
set -euo pipefail

cd "$(dirname "$0")/.."
UV_VERSION=0.13.9   # the uv that wrote uv.lock

# Servers and exporters native mode runs as its own processes (on its own ports,
# with its own data directory), plus the clients it uses for backups and checks.
APT_PACKAGES=(
    postgresql postgresql-contrib postgresql-client
    # continuous WAL archiving and base backups; jq reads its status in the scheduler
    pgbackrest jq
    redis-server
    nginx
    prometheus prometheus-alertmanager
    prometheus-postgres-exporter prometheus-redis-exporter prometheus-nginx-exporter
    mtail
    python3 python3-venv
    ca-certificates curl
    # used by the test suite and the benchmarks (chromium and NSS's certutil for
    # the browser tests)
    shellcheck wrk chromium libnss3-tools
)
# Distribution services whose default instance the stack does not use; if this
# script installs them, it stops and disables that instance so it cannot hold
# the stack's ports.
DISTRO_SERVICES=(postgresql redis-server nginx prometheus prometheus-alertmanager
    prometheus-postgres-exporter prometheus-redis-exporter prometheus-nginx-exporter mtail)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

install_os_packages() {
    local missing=() pkg svc
    for pkg in "${APT_PACKAGES[@]}"; do
        installed "$pkg" || missing+=("$pkg")
    done
    if ! command -v node >/dev/null 2>&1; then
        missing+=(nodejs npm)
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        log "OS packages already installed"
        return
    fi
    log "Installing OS packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ -d /run/systemd/system ]; then
        for pkg in "${missing[@]}"; do
            for svc in "${DISTRO_SERVICES[@]}"; do
                if [ "$pkg" = "$svc" ]; then
                    log "Disabling the distribution's default $svc instance (the stack runs its own)"
                    as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
                fi
            done
        done
    fi
}

install_python_env() {
    local python
    python=$(command -v python3)
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "error: $python is $("$python" --version); prefectstack needs Python 3.11 or newer" >&2
        exit 1
    fi
    if [ ! -x .tools/uv/bin/uv ] || [ "$(.tools/uv/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
        log "Installing uv $UV_VERSION into .tools/uv"
        "$python" -m venv .tools/uv
        .tools/uv/bin/pip install -q "uv==$UV_VERSION"
    fi
    log "Creating .venv from uv.lock"
    UV_PYTHON="$python" .tools/uv/bin/uv sync --frozen --quiet
}

install_pgadmin() {
    log "Installing pgAdmin into .tools/pgadmin"
    [ -x .tools/pgadmin/bin/python ] || .tools/uv/bin/uv venv --quiet --python "$(command -v python3)" .tools/pgadmin
    .tools/uv/bin/uv pip install --quiet --python .tools/pgadmin/bin/python -r deploy/pgadmin/requirements.txt
}

install_redis_ui() {
    log "Installing redis-commander into .tools/redis-ui"
    mkdir -p .tools/redis-ui
    cp deploy/redis-ui/package.json deploy/redis-ui/package-lock.json .tools/redis-ui/
    # --ignore-scripts: its optional native bcrypt build is not needed (bcryptjs fallback).
    npm ci --prefix .tools/redis-ui --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
}

install_os_packages
install_python_env
install_pgadmin
install_redis_ui
log "Native mode is installed: .venv/bin/prefectstack --help"
