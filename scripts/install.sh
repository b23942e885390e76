#!/usr/bin/env bash
# One-command set-up: virtual environment, project + Triton server binary, model weights.
#   ./scripts/install.sh            (PYTHON=python3.12 ./scripts/install.sh to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11) or sys.version_info >= (3, 14):
    sys.exit(f"OVR-ALPR needs Python 3.11-3.13 (Triton's bundled stubs), found {sys.version.split()[0]}")
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The development environment holds every process: edge client, gate, server, tests.
# (A deployment installs one extra: `pip install ".[edge]"`, `".[gate]"` or `".[server]"`.)
"$VENV/bin/python" -m pip install -q -e ".[edge,gate,server,api,dev]"
# The `bundled-triton` extra (same pin as pyproject.toml), without its Python deps: only
# the tritonserver binary inside the wheel is used.
"$VENV/bin/python" -m pip install -q --no-deps "nvidia-pytriton==0.7.0"

# Triton's Python-backend stub links against libpython3.X.so.1.0 of the same minor version.
PYVER="$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
LIBDIR="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"
if ! ldconfig -p 2>/dev/null | grep -q "libpython${PYVER}.so.1.0" && [ ! -e "$LIBDIR/libpython${PYVER}.so.1.0" ]; then
  echo "libpython${PYVER}.so.1.0 not found; installing it from the distribution" >&2
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "libpython${PYVER}" || \
      echo "WARNING: could not install libpython${PYVER}; tritonserver's Python backend may fail" >&2
  fi
fi

"$VENV/bin/alpr-models" fetch
echo "installed: activate with '. $VENV/bin/activate'"
