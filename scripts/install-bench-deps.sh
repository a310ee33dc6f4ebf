#!/usr/bin/env bash
# Installs what the benchmark harness needs on top of the build (`make bench`
# and `make bench-quick` run it first), and only what is missing; safe to run
# again.
#
#   - wrk, the HTTP load generator (Debian's package; `apt-get update` first,
#     only when it is missing)
#   - taskset (util-linux), to pin the servers and the load generators to CPUs
#   - the Python packages pinned in bench/requirements.txt (uvloop,
#     matplotlib, the peer servers gunicorn, granian and uvicorn with
#     httptools, and Starlette), with pip, into the same python3 that the port program is
#     built against
#
# The build itself (Erlang/OTP, rebar3, the port program) is
# scripts/install-deps.sh's business (`make build`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
REQUIREMENTS=bench/requirements.txt

INSTALLER=install-bench-deps
# shellcheck source=scripts/install-common.sh
. scripts/install-common.sh

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

install_requirements "$REQUIREMENTS"

say "done"
