#!/usr/bin/env bash
# bash run.sh [ARGS...]   set up (once), then run `geomjax ARGS` (default: `geomjax reproduce`)
# bash run.sh test [...]  set up (once), then run the default test suite (extra args go to pytest)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ "${1:-}" = "test" ]; then
  shift
  exec python -m pytest -m "not slow and not gpu" "$@"
fi
[ $# -eq 0 ] && set -- reproduce
exec geomjax "$@"
