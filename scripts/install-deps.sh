#!/usr/bin/env bash
# Installs what building and testing py_reactor needs, and only what is
# missing; safe to run again (`make deps` runs it before every build).
#
#   - Erlang/OTP with erts headers, rebar3, Common Test, EUnit and Dialyzer,
#     and Elixir with mix (the tests build a mix project depending on
#     py_reactor) (Debian packages; `apt-get update` first, only when
#     something is missing)
#   - the Python tools pinned in requirements-dev.txt (pytest, ruff), with pip,
#     into the same python3 that the port program is built against
#
# Not installed here: the Rust toolchain (cargo) and python3 itself, which the
# machine provides; their absence is reported as an error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
REQUIREMENTS=requirements-dev.txt
APT_PACKAGES=(erlang-nox erlang-dev rebar3 erlang-common-test erlang-eunit erlang-dialyzer elixir)

INSTALLER=install-deps
# shellcheck source=scripts/install-common.sh
. scripts/install-common.sh

# --- Erlang/OTP and rebar3 --------------------------------------------------

missing_erlang() {
    local tool
    for tool in erl erlc rebar3 elixir mix; do
        command -v "$tool" >/dev/null 2>&1 || { echo "$tool"; return 0; }
    done
    # The OTP applications the build and tests use, and the erts headers
    # (erlang-dev), checked in one VM start: prints what is missing.
    local out
    out=$(erl -noshell -eval '
        Mods = [M || M <- [ct, eunit, dialyzer], code:which(M) =:= non_existing],
        Hdr = filelib:wildcard(code:root_dir() ++ "/erts-*/include/erl_nif.h"),
        Missing = [io_lib:format("the OTP module ~s", [M]) || M <- Mods]
            ++ [ "the erts headers (erl_nif.h)" || Hdr =:= [] ],
        io:put_chars(lists:join(", ", Missing)),
        halt().' 2>/dev/null) || out="a working erl"
    if [ -n "$out" ]; then
        echo "$out"
        return 0
    fi
    return 1
}

if what=$(missing_erlang); then
    say "missing $what: installing ${APT_PACKAGES[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${APT_PACKAGES[@]}"
    hash -r
    if what=$(missing_erlang); then
        die "still missing $what after apt-get install"
    fi
    say "Erlang/OTP, rebar3 and Elixir installed"
else
    say "Erlang/OTP, rebar3, common_test, eunit, dialyzer and Elixir already present"
fi

# --- Rust --------------------------------------------------------------------

command -v cargo >/dev/null 2>&1 \
    || die "cargo not found: install a Rust toolchain (rustup) and put cargo on PATH"
say "cargo present: $(cargo --version)"

# --- Python tools --------------------------------------------------------------

install_requirements "$REQUIREMENTS"

say "done"
