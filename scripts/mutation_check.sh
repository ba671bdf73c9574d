#!/usr/bin/env bash
# Mutation check (issue #16, item 6): every one-line bug in scripts/mutations.toml must make a
# fast test fail, in all --repeat runs. Extra args go to scripts/mutation_check.py, e.g.
#   bash scripts/mutation_check.sh --repeat 5          (the acceptance run; writes benchmarks/results/)
#   bash scripts/mutation_check.sh --repeat 1 --only pgd-linf-no-projection --no-write
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec "$VENV/bin/python" scripts/mutation_check.py "$@"
