#!/usr/bin/env bash
# Set up the environment, lint (ruff), and run the fast test set (pass -m slow, or any pytest args, to change it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/setup.sh | tail -n 1)"
export HF_HUB_OFFLINE=1
"$PY" -m ruff check --no-cache .   # lint first: the [tool.ruff] section of pyproject.toml
exec "$PY" -m pytest -p no:cacheprovider "$@"
