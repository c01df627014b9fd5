#!/usr/bin/env bash
# Kernel tests on aarch64 under qemu-user, twice: an emulated CPU with the dot-product extension
# (QEMU_CPU=max: the neon and neon-dotprod paths both run) and one without (cortex-a57: the plain
# neon path). Each run prints which paths it tested; every SIMD result must equal the scalar one.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cross="$FLASHSLIM_ROOT/scripts/cross-aarch64.sh"
"$cross" install
for cpu in max cortex-a57; do
    log "--- aarch64 kernel tests, QEMU_CPU=$cpu"
    out="$(QEMU_CPU=$cpu "$cross" test --release --lib -- kernels model::ops --nocapture 2>&1)" || {
        printf '%s\n' "$out" | tail -n 40 >&2
        die "aarch64 kernel tests failed (QEMU_CPU=$cpu)"
    }
    printf '%s\n' "$out" | grep -E "SIMD paths under test|test result" >&2
    case "$cpu" in
        max) want='"neon", "neon-dotprod"' ;;
        *) want='"neon"]' ;;
    esac
    printf '%s\n' "$out" | grep -q "SIMD paths under test: .*$want" \
        || die "QEMU_CPU=$cpu did not test the expected paths ($want)"
done
