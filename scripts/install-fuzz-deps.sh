#!/usr/bin/env bash
# Installs what the fuzz targets (fuzz/, docs/fuzzing.md) need, only when it
# is missing: cargo-fuzz, pinned, from crates.io, and a C++ compiler (the
# libfuzzer-sys crate builds libFuzzer from source). `make fuzz-quick` (run
# by `make test`) and `make fuzz` call it; `make deps` does not, so that
# building and running the port never pays for it.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
INSTALLER=install-fuzz-deps
# shellcheck source=scripts/install-common.sh
. scripts/install-common.sh

command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain first"

if ! command -v c++ >/dev/null 2>&1; then
    say "no C++ compiler: installing g++"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y g++
fi

have=$(cargo fuzz --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" = "$CARGO_FUZZ_VERSION" ]; then
    say "cargo-fuzz $have already present"
else
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION (found: ${have:-none})"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    have=$(cargo fuzz --version 2>/dev/null | awk '{print $2}' || true)
    [ "$have" = "$CARGO_FUZZ_VERSION" ] || die "cargo fuzz --version gives '${have}' after the install"
fi
