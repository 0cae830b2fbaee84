#!/usr/bin/env bash
# Installs Docker Engine, the Docker CLI, containerd and the Compose v2 plugin
# from Docker's apt repository on Ubuntu 20.04+ or Debian 11+, enables the
# service and adds the invoking user to the `docker` group.
# Idempotent: re-running it changes nothing that is already in place.
#
#   sudo scripts/setup_docker.sh            # install
#   sudo scripts/setup_docker.sh --upgrade  # also apt-get upgrade the system first
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E bash "$0" "$@"
fi

upgrade=false
for arg in "$@"; do
    case "$arg" in
        --upgrade) upgrade=true ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option: $arg" >&2; exit 2 ;;
    esac
done

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# shellcheck source=/dev/null
. /etc/os-release
case "${ID:-}" in
    ubuntu)
        major=${VERSION_ID%%.*}
        if [ "$major" -lt 20 ]; then
            echo "error: Ubuntu $VERSION_ID is too old; 20.04 or newer is required" >&2
            exit 1
        fi
        ;;
    debian)
        if [ "${VERSION_ID:-0}" -lt 11 ]; then
            echo "error: Debian ${VERSION_ID:-?} is too old; 11 or newer is required" >&2
            exit 1
        fi
        ;;
    *)
        echo "error: ${PRETTY_NAME:-this system} is not supported (Ubuntu 20.04+ or Debian 11+)" >&2
        exit 1
        ;;
esac
export DEBIAN_FRONTEND=noninteractive

log "Updating package lists"
apt-get update -qq
if [ "$upgrade" = true ]; then
    log "Upgrading installed packages"
    apt-get upgrade -y -qq
fi
apt-get install -y -qq ca-certificates curl gnupg

keyring=/etc/apt/keyrings/docker.asc
if [ ! -s "$keyring" ]; then
    log "Adding Docker's signing key"
    install -m 0755 -d /etc/apt/keyrings
    curl -fsSL "https://download.docker.com/linux/$ID/gpg" -o "$keyring"
    chmod a+r "$keyring"
fi

source_line="deb [arch=$(dpkg --print-architecture) signed-by=$keyring] https://download.docker.com/linux/$ID $VERSION_CODENAME stable"
list=/etc/apt/sources.list.d/docker.list
if [ "$(cat "$list" 2>/dev/null || true)" != "$source_line" ]; then
    log "Adding Docker's apt repository"
    echo "$source_line" > "$list"
    apt-get update -qq
fi

log "Installing Docker Engine, CLI, containerd and the Compose plugin"
apt-get install -y -qq docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin

if [ -d /run/systemd/system ]; then
    log "Enabling and starting the docker service"
    systemctl enable --now docker
fi

user="${SUDO_USER:-}"
if [ -n "$user" ] && [ "$user" != root ]; then
    if id -nG "$user" | tr ' ' '\n' | grep -qx docker; then
        log "$user is already in the docker group"
    else
        log "Adding $user to the docker group (log out and in again to use docker without sudo)"
        usermod -aG docker "$user"
    fi
fi

docker --version
docker compose version
