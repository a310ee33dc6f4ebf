# Helpers shared by the install-*.sh scripts; sourced, not run. The sourcing
# script sets INSTALLER (its name, for messages) and PYTHON first.

say() { printf '%s: %s\n' "$INSTALLER" "$*"; }
die() { printf '%s: error: %s\n' "$INSTALLER" "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# Prints the requirements of the pip requirements file $1 that $PYTHON lacks,
# or has at another version; prints nothing when all are satisfied.
unsatisfied_requirements() {
    "$PYTHON" - "$1" <<'PY'
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

# Installs the requirements file $1 into $PYTHON with pip, when anything in it
# is missing or at another version; fails if pip leaves any unsatisfied.
install_requirements() {
    local requirements=$1 todo stdlib pip_args
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
    todo=$(unsatisfied_requirements "$requirements")
    if [ -z "$todo" ]; then
        say "Python packages already present: $(grep -v '^#' "$requirements" | sed 's/ *#.*//' | paste -sd ' ' -)"
        return 0
    fi
    say "installing into $("$PYTHON" -c 'import sys; print(sys.executable)'):" $todo
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        say "$PYTHON has no pip: installing python3-pip"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-pip
    fi
    pip_args=(install --disable-pip-version-check -r "$requirements")
    # A Debian-managed interpreter refuses pip installs unless told otherwise.
    stdlib=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
    if [ -f "$stdlib/EXTERNALLY-MANAGED" ]; then
        pip_args+=(--break-system-packages)
    fi
    if [ "$(id -u)" -ne 0 ] && [ ! -w "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" ]; then
        pip_args+=(--user)
    fi
    "$PYTHON" -m pip "${pip_args[@]}"
    todo=$(unsatisfied_requirements "$requirements")
    [ -z "$todo" ] || die "still unsatisfied after pip install: $todo"
    say "Python packages installed"
}
