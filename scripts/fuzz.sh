#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each for SECONDS (docs/fuzzing.md).
#
#   scripts/fuzz.sh SECONDS [TARGET...]     (default: every target)
#
# Works with the stable toolchain: `--sanitizer none` leaves out
# `-Zsanitizer`, the one nightly-only flag cargo-fuzz would pass; every other
# flag it passes (sanitizer coverage, `--cfg fuzzing`) is a stable `-C`
# flag. `--debug-assertions` adds overflow checks. Each target starts from
# its committed seeds (fuzz/corpus/TARGET, never written to) and from what
# earlier runs found (fuzz/target/corpus/TARGET, where new inputs go). A
# crash, a failed assertion, a timeout or too much memory fails the run and
# leaves the input in fuzz/artifacts/TARGET/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# Own target directory whatever the environment says: the instrumented
# build must not share (and thrash) the root package's.
flags=(--sanitizer none --debug-assertions --target-dir "$PWD/target")
# Per input: 10 s at most; per run: 2 GiB of memory at most.
libfuzzer=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

cargo fuzz build "${flags[@]}"
for target in "${targets[@]}"; do
    work="target/corpus/$target"
    mkdir -p "$work" "corpus/$target"
    printf 'fuzz: %s for %s s\n' "$target" "$seconds"
    # The outer timeout is a safety net only: libFuzzer stops itself.
    timeout --kill-after=30 "$((seconds + 120))" \
        cargo fuzz run "${flags[@]}" "$target" "$work" "corpus/$target" -- "${libfuzzer[@]}" 2>&1 \
        | grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)[[:space:]]'
done
