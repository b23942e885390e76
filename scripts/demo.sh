#!/usr/bin/env bash
# Clone-to-demo in one command: install (idempotent), then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/python scripts/demo.py "$@"
