#!/usr/bin/env bash
# Installs what the fuzz targets (fuzz/, docs/fuzzing.md) need, only when it
# is missing: cargo-fuzz, pinned, from crates.io, and a C++ compiler (the
# libfuzzer-sys crate builds libFuzzer from source). `make fuzz-quick` (run
# by `make test`) and `make fuzz` call it; `make deps` does not, so that
# building and running the port never pays for it.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2

say() { printf 'install-fuzz-deps: %s\n' "$*"; }
die() { printf 'install-fuzz-deps: error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain first"

if ! command -v c++ >/dev/null 2>&1; then
    say "no C++ compiler: installing g++"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y g++
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
