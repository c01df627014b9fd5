#!/usr/bin/env bash
# The aarch64 build under qemu-user. Kernel tests twice: an emulated CPU with the dot-product
# extension (QEMU_CPU=max: the neon and neon-dotprod paths both run) and one without (cortex-a57:
# the plain neon path); every SIMD result must equal the scalar one. Then a greedy generation on
# the default model with each CPU, whose text must equal the x86-64 binary's, and `readelf -n`:
# every USDT probe is in the aarch64 binary with arm64 register/stack arguments.
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

log "--- aarch64 release binary: greedy text must equal x86-64's"
need_model
x86="$(flashslim_bin)"
"$cross" build --release --bin flashslim >/dev/null 2>&1 || {
    "$cross" build --release --bin flashslim 2>&1 | tail -n 30 >&2
    die "aarch64 release build failed"
}
a64="$FLASHSLIM_ROOT/target/aarch64-cross/aarch64-unknown-linux-gnu/release/flashslim"
err="$(mktemp)"; trap 'rm -f "$err"' EXIT
prompts=("The capital of France is" $'<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n')
for p in "${prompts[@]}"; do
    args=(run -p "$p" -n 16 --temp 0 --ignore-eos -t 2)
    want="$("$x86" "${args[@]}" 2>/dev/null)" || die "x86-64 flashslim run failed"
    [[ -n "$want" ]] || die "x86-64 flashslim printed nothing"
    for cpu in max cortex-a57; do
        got="$(QEMU_CPU=$cpu timeout 900 "$cross" run "$a64" "${args[@]}" 2>"$err")" \
            || { tail -n 5 "$err" >&2; die "aarch64 flashslim run failed (QEMU_CPU=$cpu)"; }
        path="$(grep -o 'weights [a-z]* ([a-z-]*' "$err" | sed 's/.*(//')"
        if [[ "$got" != "$want" ]]; then
            printf 'x86-64:  %q\naarch64: %q\n' "$want" "$got" >&2
            die "aarch64 ($path, QEMU_CPU=$cpu) greedy text differs from x86-64 for prompt ${p:0:30}"
        fi
        log "greedy equal on aarch64 ($path, QEMU_CPU=$cpu): $(head -c 40 <<<"$want" | tr '\n' ' ')..."
    done
done

log "--- readelf -n: USDT probes with arm64 arguments"
notes="$(readelf -n "$a64")" || die "readelf -n failed on $a64"
n="$(grep -c 'Provider: flashslim' <<<"$notes" || true)"
want_n="$(grep -c 'Provider: flashslim' < <(readelf -n "$x86") || true)"
[[ "$n" -gt 0 && "$n" == "$want_n" ]] || die "aarch64 binary has $n flashslim probes, x86-64 has $want_n"
args="$(grep -A3 'Provider: flashslim' <<<"$notes" | grep 'Arguments:' | sed 's/.*Arguments: *//')"
bad="$(sed 's/, */,/g' <<<"$args" | tr ' ' '\n' | grep -v -E '^-?[0-9]+@(x[0-9]+|\[sp(,-?[0-9]+)?\]|-?[0-9]+)$' | grep -v '^$' || true)"
[[ -z "$bad" ]] || die "non-arm64 probe arguments in the aarch64 binary: $(echo $bad | head -c 200)"
log "$n probes, arguments e.g.: $(head -3 <<<"$args" | tr '\n' ' ')"
