#!/usr/bin/env bash
# Install (first run only) and run the main job: the dial demo on embedded data.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec "$VENV/bin/robustdial" demo "$@"
