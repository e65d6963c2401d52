#!/usr/bin/env bash
# One-time, idempotent set-up: Debian packages (espeak-ng, sox, libsndfile) when missing,
# a virtual environment in .venv, and geomjax with its test extras installed editable.
# Re-runs are cheap: the pip step is skipped while pyproject.toml/setup.py are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
ldconfig -p 2>/dev/null | grep -q libespeak-ng || need_apt+=(libespeak-ng1)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
command -v dpkg >/dev/null 2>&1 && { dpkg -s libsox-fmt-base >/dev/null 2>&1 || need_apt+=(libsox-fmt-base); }  # gsm / amr-nb
command -v flite >/dev/null 2>&1 || need_apt+=(flite)  # optional held-out voices
ldconfig -p 2>/dev/null | grep -q libsndfile || need_apt+=(libsndfile1)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "[setup] installing Debian packages: ${need_apt[*]}"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null \
      || echo "[setup] warning: could not install ${need_apt[*]}; speech synthesis will be unavailable"
  else
    echo "[setup] warning: no apt-get; install ${need_apt[*]} yourself for speech synthesis"
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.13 python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$c; break
    fi
  done
fi
[ -n "$PY" ] || { echo "[setup] error: geomjax needs Python >= 3.11" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.geomjax-installed
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing geomjax and its dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
