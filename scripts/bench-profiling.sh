#!/usr/bin/env bash
# bench-profiling.sh — overhead of the profiling stack on decode tok/s (issue #4), alternating
# A/B runs so machine noise hits both sides alike. Goals (checked here, not in timed tests):
#   probes compiled in, not attached      vs --no-default-features build : loss <= 1%
#   blockio+iouring+syscalls+faults attached (flashslim profile)  vs none : loss <= 5%
#   --trace tensors                        vs no trace                    : loss <= 10%
# Usage: scripts/bench-profiling.sh [REPEATS=7] [TOKENS=48]   (root for the bpftrace pair)
# Prints one line per pair: median ratio (B/A tok/s), min..max of the per-round ratios, verdict.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_rust
need_model
REPEATS="${1:-7}"
TOKENS="${2:-48}"
cd "$FLASHSLIM_ROOT"
WITH="$(flashslim_bin)"
NOPROBES_DIR="$FLASHSLIM_ROOT/target/noprobes"
cargo build -q --release -p flashslim-engine --bin flashslim --no-default-features --target-dir "$NOPROBES_DIR" >&2
WITHOUT="$NOPROBES_DIR/release/flashslim"
readelf -n "$WITHOUT" | grep -q 'Provider: flashslim' && die "the no-probes build still has SDT notes"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
COMMON=(-m "$DEFAULT_MODEL" --prompt-ids 1,504,3458,282,253,1691,28,446 -n "$TOKENS" -t 1 --weights ram)
RUNARGS=(--temp 0 --ignore-eos)

tps() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["decode_tokens_per_second"])' "$1"; }
tps_manifest() { python3 -c 'import json,sys,glob; m=json.load(open(glob.glob(sys.argv[1]+"/*/manifest.json")[0])); print(m["metrics"]["decode_tokens_per_second"])' "$1"; }

# run_a / run_b print decode tok/s of one run.
pair() {  # name goal_pct
    local name="$1" goal="$2" ratios=()
    for ((i = 0; i < REPEATS; i++)); do
        local a b
        if (( i % 2 == 0 )); then a=$(run_a "$i"); b=$(run_b "$i"); else b=$(run_b "$i"); a=$(run_a "$i"); fi
        ratios+=("$(python3 -c "print($b/$a)")")
        log "  $name round $i: A $a tok/s, B $b tok/s"
    done
    python3 - "$name" "$goal" "${ratios[@]}" <<'PY'
import statistics, sys
name, goal, rs = sys.argv[1], float(sys.argv[2]), [float(x) for x in sys.argv[3:]]
med = statistics.median(rs); loss = (1 - med) * 100
print(f"{name}: median B/A {med:.4f} (loss {loss:+.2f}%, rounds {min(rs):.4f}..{max(rs):.4f}, n={len(rs)}) goal <= {goal:.0f}%: {'PASS' if loss <= goal else 'FAIL'}")
PY
}

# 1. probes compiled in but not attached vs compiled out.
run_a() { "$WITHOUT" run "${COMMON[@]}" "${RUNARGS[@]}" --summary "$TMP/a.json" >/dev/null 2>&1; tps "$TMP/a.json"; }
run_b() { "$WITH" run "${COMMON[@]}" "${RUNARGS[@]}" --summary "$TMP/b.json" >/dev/null 2>&1; tps "$TMP/b.json"; }
pair "probes-not-attached" 1

# 2. tensor trace on vs off (both logged to a run directory).
run_a() { rm -rf "$TMP/ta"; "$WITH" run "${COMMON[@]}" "${RUNARGS[@]}" --trace-dir "$TMP/ta" >/dev/null 2>&1; tps_manifest "$TMP/ta"; }
run_b() { rm -rf "$TMP/tb"; "$WITH" run "${COMMON[@]}" "${RUNARGS[@]}" --trace-dir "$TMP/tb" --trace tensors >/dev/null 2>&1; tps_manifest "$TMP/tb"; }
pair "tensor-trace" 10

# 3. stage + I/O bpftrace scripts attached vs none (root).
if [[ $(id -u) -eq 0 ]] && command -v bpftrace >/dev/null; then
    mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
    run_a() { rm -rf "$TMP/pa"; "$WITH" profile "${COMMON[@]}" --trace-dir "$TMP/pa" -- "${RUNARGS[@]}" >/dev/null 2>&1; tps_manifest "$TMP/pa"; }
    run_b() { rm -rf "$TMP/pb"; "$WITH" profile "${COMMON[@]}" --scripts blockio,iouring,syscalls,faults --trace-dir "$TMP/pb" -- "${RUNARGS[@]}" >/dev/null 2>&1; tps_manifest "$TMP/pb"; }
    pair "bpftrace-stage+io-scripts" 5
else
    log "skipping the bpftrace pair (needs root and bpftrace)"
fi
