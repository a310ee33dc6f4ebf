#!/usr/bin/env bash
# Builds the port program against each CPython named on the command line
# (minor versions such as 3.10, or paths of interpreters) and runs its port
# test suites (cargo test) and its Python test suite (pytest inside the
# port) with it: `make test-pythons`, and `make test` for one version
# besides the default.
#
# Each version gets its own cargo output directory, target/python-X.Y, so
# that builds for several interpreters neither overwrite nor invalidate each
# other (pyo3 rebuilds when the interpreter changes). An interpreter is
# looked up as pythonX.Y on PATH, then among pyenv's versions; pytest is
# installed into it from requirements-dev.txt when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

INSTALLER=test-pythons
PYTHON=python3
# shellcheck source=scripts/install-common.sh
. scripts/install-common.sh

[ $# -gt 0 ] || die "usage: $0 VERSION|PYTHON... (for instance 3.10 3.13)"

find_python() {
    local want=$1 candidate
    case $want in
        */*) [ -x "$want" ] && { echo "$want"; return 0; }; return 1 ;;
    esac
    # A pyenv shim is on PATH for every version pyenv has, and fails when
    # that version is not selected: a candidate must run.
    if candidate=$(command -v "python$want" 2>/dev/null) \
            && "$candidate" -c 'import sys' >/dev/null 2>&1; then
        echo "$candidate"
        return 0
    fi
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/python"$want"; do
        [ -x "$candidate" ] && { echo "$candidate"; return 0; }
    done
    return 1
}

# Inside the interpreter under test, only what the test suites import:
# pytest, Flask and Starlette for the HTTP tests (test/python/wsgi_apps.py,
# test/python/asgi_apps.py).
pytest_requirements=$(mktemp)
trap 'rm -f "$pytest_requirements"' EXIT
grep -E '^(pytest|flask|starlette)==' requirements-dev.txt > "$pytest_requirements"

for want in "$@"; do
    python=$(find_python "$want") || die "no CPython $want found (on PATH as python$want, or in pyenv)"
    python=$("$python" -c 'import sys; print(sys.executable)')
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    shared=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED") or 0)')
    [ "$shared" = 1 ] || die "$python has no shared libpython, which the port embeds"
    say "Python $version: $python"
    PYTHON=$python install_requirements "$pytest_requirements"
    export PYO3_PYTHON=$python
    export CARGO_TARGET_DIR=target/python-$version
    say "Python $version: port test suites (cargo test, in $CARGO_TARGET_DIR)"
    cargo test
    say "Python $version: Python test suite"
    "$CARGO_TARGET_DIR/debug/py_reactor_port" python -c \
        'import sys; v = sys.version_info; assert "%d.%d" % v[:2] == sys.argv[1], v' "$version"
    "$CARGO_TARGET_DIR/debug/py_reactor_port" python -m pytest -q -p no:cacheprovider test/python
    say "Python $version: passed"
done
