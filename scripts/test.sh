#!/usr/bin/env bash
# The test command: install what the tests need, run the quality gates, then pytest.
#
#   ./scripts/test.sh                 everything (what .ci/run calls)
#   ./scripts/test.sh -m unit         extra arguments go to pytest (here: no services)
#   ./scripts/test.sh --no-install    skip the apt packages and ./scripts/install.sh
#   ./scripts/test.sh --no-install tests/test_zones.py -k heading
#
# Steps, each failing the run when it fails:
#   1. apt packages for the services the tests start themselves (redis-server, mosquitto,
#      openssl, ffmpeg, the GStreamer RTSP server, Chromium + ChromeDriver), via sudo
#      unless root; only the missing ones are installed
#   2. ./scripts/install.sh: the virtual environment, the project, tritonserver, weights
#   3. PostgreSQL started if installed and stopped (its tests skip when it is not running;
#      with --no-install only where that needs no sudo password)
#   4. quality gates: ruff check, ruff format --check, mypy (all from the venv)
#   5. pytest, with the extra arguments
# VENV=path chooses the virtual environment (default .venv), as for install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export VENV

install=1
pytest_args=()
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pytest_args+=("$arg") ;;
  esac
done

sudo_flags=()
[ "$install" = 1 ] || sudo_flags=(-n) # --no-install: never ask for a password

step() { printf '\n=== %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "${sudo_flags[@]}" "$@"
  else
    die "needs root for: $* (run as root, install sudo, or use --no-install)"
  fi
}

missing_packages() {
  command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || echo redis-server
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || echo mosquitto
  command -v openssl >/dev/null || echo openssl
  command -v ffmpeg >/dev/null || echo ffmpeg
  # loopback RTSP server for the camera-outage test (system Python + GStreamer)
  /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null ||
    echo python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  # headless browser for the dashboard tests (Debian's Chromium + its matching ChromeDriver)
  { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || echo chromium chromium-driver
}

if [ "$install" = 1 ]; then
  step "system packages"
  read -r -a need <<<"$(missing_packages | tr '\n' ' ')"
  if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null ||
      die "no apt-get: install ${need[*]} yourself, then run with --no-install"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "all present"
  fi

  step "virtual environment (./scripts/install.sh)"
  ./scripts/install.sh
fi
[ -x "$VENV/bin/python" ] || die "$VENV/bin/python missing: run ./scripts/install.sh first"

# PostgreSQL for the history tests: a service of the machine; start it if stopped.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  step "PostgreSQL"
  version="$(ls /etc/postgresql 2>/dev/null | head -1 || true)"
  if [ -z "$version" ] || ! as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  then
    echo "WARNING: PostgreSQL not running; its history tests will be skipped" >&2
  fi
fi

step "quality gates"
failed=()
"$VENV/bin/ruff" check . || failed+=("ruff check")
"$VENV/bin/ruff" format --check . || failed+=("ruff format --check (run: ruff format .)")
"$VENV/bin/mypy" || failed+=("mypy")
[ ${#failed[@]} -eq 0 ] || die "quality gates failed: ${failed[*]}"

step "pytest ${pytest_args[*]:-}"
exec "$VENV/bin/python" -m pytest -q "${pytest_args[@]}"
