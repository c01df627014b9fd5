#!/usr/bin/env bash
# Short cargo-fuzz (libFuzzer + ASan, nightly) runs of every parser of untrusted files: gguf,
# plan, trace, manifest. Each target runs FUZZ_SECONDS (default 20) from the committed seeds; a
# crash or sanitizer report fails the suite and leaves the input in engine/fuzz/artifacts/<target>/.
# Long campaigns are a developer command (engine/fuzz/README.md), not CI.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
secs="${FUZZ_SECONDS:-20}"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "installing the nightly toolchain (cargo-fuzz needs -Zsanitizer)"
    rustup toolchain install nightly --profile minimal >/dev/null || die "cannot install nightly"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz >/dev/null 2>&1 || die "cargo install cargo-fuzz failed"
fi
cd "$FLASHSLIM_ROOT/engine"
seeds() {   # committed, read-only seed directories for a target
    case "$1" in
        plan) echo tests/data/plans ;;
        gguf) [[ -d tests/data/gguf ]] && echo tests/data/gguf ;;
    esac
    return 0
}
log "building fuzz targets"
cargo +nightly fuzz build -O >/dev/null 2>&1 || { cargo +nightly fuzz build -O 2>&1 | tail -30 >&2; die "fuzz build failed"; }
for t in $(cargo +nightly fuzz list); do
    mkdir -p "fuzz/corpus/$t"
    log "--- fuzz $t (${secs}s)"
    # shellcheck disable=SC2046
    if ! out="$(cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" $(seeds "$t") -- \
            -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 2>&1)"; then
        printf '%s\n' "$out" | tail -40 >&2
        die "fuzz target $t found a failure (input saved under engine/fuzz/artifacts/$t/)"
    fi
    printf '%s\n' "$out" | grep -E "^Done|stat::number_of_executed_units" | tail -1 >&2 || true
done
