#!/usr/bin/env bash
# Create .venv with the pinned CPU torch and robustdial (editable) if missing.
# Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
STAMP="$VENV/.robustdial-installed"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  # torch is pinned: an unpinned torch would pull a multi-GB CUDA build.
  "$VENV/bin/pip" install -q "torch==2.13.0"
  "$VENV/bin/pip" install -q -e "$ROOT[dev]"
  # Test oracles and AutoAttack: their own metadata pins old torch/torchvision,
  # so install them without dependencies (they import only torch and numpy).
  "$VENV/bin/pip" install -q --no-deps "torchattacks==3.5.1" "pyautoattack==0.2.0"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
