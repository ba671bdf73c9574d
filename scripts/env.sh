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
  # [dev] brings the test tools and the oracles (torchattacks, pyautoattack),
  # versions whose metadata pulls no other torch (see pyproject.toml).
  "$VENV/bin/pip" install -q -e "$ROOT[dev]"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
