#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine to a running stack (native
# mode, no Docker): installs everything, creates .env with random secrets if
# there is none, and starts the stack. Safe to re-run.
set -euo pipefail

cd "$(dirname "$0")/.."
scripts/install_native.sh
if [ ! -f .env ]; then
    .venv/bin/prefectstack init
fi
.venv/bin/prefectstack up
