#!/usr/bin/env bash
# Installs what the benchmark harness needs on top of the build (`make bench`
# and `make bench-quick` run it first), and only what is missing; safe to run
# again.
#
#   - wrk, the HTTP load generator (Debian's package; `apt-get update` first,
#     only when it is missing)
#   - taskset (util-linux), to pin the servers and the load generators to CPUs
#   - the Python packages pinned in bench/requirements.txt (uvloop,
#     matplotlib), with pip, into the same python3 that the port program is
#     built against
#
# The build itself (Erlang/OTP, rebar3, the port program) is
# scripts/install-deps.sh's business (`make build`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
REQUIREMENTS=bench/requirements.txt

say() { printf 'install-bench-deps: %s\n' "$*"; }
die() { printf 'install-bench-deps: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# --- wrk and taskset ---------------------------------------------------------

apt_missing=()
command -v wrk >/dev/null 2>&1 || apt_missing+=(wrk)
command -v taskset >/dev/null 2>&1 || apt_missing+=(util-linux)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    say "missing ${apt_missing[*]}: installing from Debian"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${apt_missing[@]}"
    hash -r
    command -v wrk >/dev/null 2>&1 || die "still no wrk after apt-get install"
    command -v taskset >/dev/null 2>&1 || die "still no taskset after apt-get install"
    say "installed ${apt_missing[*]}"
else
    say "wrk and taskset already present"
fi

# --- Python packages -----------------------------------------------------------

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"

# Prints the requirements of bench/requirements.txt that the interpreter lacks,
# or has at another version; prints nothing when all are satisfied.
unsatisfied() {
    "$PYTHON" - "$REQUIREMENTS" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, wanted = line.partition("==")
    try:
        have = version(name.strip())
    except PackageNotFoundError:
        have = None
    if have is None or (wanted and have != wanted.strip()):
        print(line)
PY
}

todo=$(unsatisfied)
if [ -n "$todo" ]; then
    say "installing into $("$PYTHON" -c 'import sys; print(sys.executable)'):" $todo
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        say "$PYTHON has no pip: installing python3-pip"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-pip
    fi
    pip_args=(install --disable-pip-version-check -r "$REQUIREMENTS")
    # A Debian-managed interpreter refuses pip installs unless told otherwise.
    stdlib=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
    if [ -f "$stdlib/EXTERNALLY-MANAGED" ]; then
        pip_args+=(--break-system-packages)
    fi
    if [ "$(id -u)" -ne 0 ] && [ ! -w "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" ]; then
        pip_args+=(--user)
    fi
    "$PYTHON" -m pip "${pip_args[@]}"
    todo=$(unsatisfied)
    [ -z "$todo" ] || die "still unsatisfied after pip install: $todo"
    say "Python packages installed"
else
    say "Python packages already present: $(grep -v '^#' "$REQUIREMENTS" | sed 's/ *#.*//' | paste -sd ' ' -)"
fi

say "done"
