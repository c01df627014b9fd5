#!/usr/bin/env bash
# bench-stream.sh — decoding under a memory cap: llama.cpp (mmap, and dio where it survives) vs
# flashslim --weights stream, each run with a cold page cache in its own memory cgroup (v1
# memory.limit_in_bytes or v2 memory.max). Reports decode tok/s, TTFT, peak cgroup memory, OOM
# kills, storage bytes read per token, and the physical bound (streamed bytes/token over the
# O_DIRECT bandwidth of the model file at the engine's request size and queue depth, measured in
# the same run). Needs root. Speed goals live here, not in tests.
#
# Usage: scripts/bench-stream.sh [--caps "64 80 96 128"] [--model M] [--budgets "64:44 ..."]
#        [--n N] [--threads T] [--synth] [--out FILE.md]
#   --budgets CAP:BUDGET_MIB pairs (default: cap - 28 MiB, the measured non-weight overhead)
#   --synth  also the SYNTHETIC TinyLlama-1.1B-shaped Q4_0 scale point at a 256 MiB cap
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/lib.sh"
LLAMA_BIN="$ROOT/.cache/llama.cpp/build/bin"
# A run that takes longer than this is reported as failed (exit 124), never waited on forever.
RUN_TIMEOUT="${RUN_TIMEOUT:-240}"

# ---- cgroup helpers (also used by scripts/test.d/40-stream.sh) -------------------------------

# cg_version — 2 if the memory controller is on a unified (v2) hierarchy, 1 for v1, empty if none.
cg_version() {
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
        echo 2
    elif [[ -d /sys/fs/cgroup/memory ]]; then
        echo 1
    fi
}

# disk_read_bytes — bytes read so far from the disk holding the models (BENCH_DISK, e.g. vda).
disk_read_bytes() {
    local d="${BENCH_DISK:-$(basename "$(df --output=source "$ROOT/models/" | tail -1)")}"
    awk -v d="$d" '$3==d {printf "%.0f\n", $6*512}' /proc/diskstats | head -1 | grep . || echo 0
}

# cg_run CAP_BYTES OUT_PREFIX CMD... — run CMD (stdout > PREFIX.out, stderr > PREFIX.err) in a
# fresh memory cgroup capped at CAP_BYTES (0 = no cap) after dropping the page cache. Writes
# PREFIX.cg: `peak_bytes oom_kills failcnt read_bytes exit_code wall_ms`.
cg_run() {
    local cap="$1" out="$2"; shift 2
    local v name mem io=""
    v="$(cg_version)"; [[ -n "$v" ]] || die "no memory cgroup controller"
    name="flashslim-bench-$$-$RANDOM"
    sync; echo 3 > /proc/sys/vm/drop_caches
    if [[ "$v" == 1 ]]; then
        mem="/sys/fs/cgroup/memory/$name"; mkdir "$mem"
        [[ "$cap" -gt 0 ]] && echo "$cap" > "$mem/memory.limit_in_bytes"
        echo 0 > "$mem/memory.swappiness" 2>/dev/null || true
        if [[ -d /sys/fs/cgroup/blkio ]]; then io="/sys/fs/cgroup/blkio/$name"; mkdir "$io"; fi
    else
        mem="/sys/fs/cgroup/$name"; mkdir "$mem"
        [[ "$cap" -gt 0 ]] && echo "$cap" > "$mem/memory.max"
        echo 0 > "$mem/memory.swap.max" 2>/dev/null || true
    fi
    local t0 t1 rc d0
    d0=$(disk_read_bytes)
    t0=$(date +%s%N)
    bash -c 'echo $$ > "$1/cgroup.procs"; [[ -n "$2" ]] && echo $$ > "$2/cgroup.procs"; shift 2; exec timeout "$RUN_TIMEOUT" "$@"' \
        _ "$mem" "$io" "$@" > "$out.out" 2> "$out.err"
    rc=$?
    t1=$(date +%s%N)
    local peak oom fail rb
    if [[ "$v" == 1 ]]; then
        peak=$(cat "$mem/memory.max_usage_in_bytes")
        oom=$(awk '/oom_kill /{print $2}' "$mem/memory.oom_control"); oom=${oom:-0}
        fail=$(cat "$mem/memory.failcnt")
        rb=0
        [[ -n "$io" ]] && rb=$(awk '$2=="Read"{s+=$3} END{printf "%.0f\n", s}' "$io/blkio.throttle.io_service_bytes")
    else
        peak=$(cat "$mem/memory.peak" 2>/dev/null || echo 0)
        oom=$(awk '/^oom_kill /{print $2}' "$mem/memory.events")
        fail=$(awk '/^max /{print $2}' "$mem/memory.events")
        rb=$(awk '{for(i=1;i<=NF;i++) if($i ~ /^rbytes=/){split($i,a,"="); s+=a[2]}} END{printf "%.0f\n", s}' "$mem/io.stat" 2>/dev/null || echo 0)
    fi
    # blkio may not see reads on every setup (v1 without a blkio policy): fall back to the disk's
    # sectors-read delta (system-wide; run on a quiet machine).
    [[ "${rb:-0}" -gt 0 ]] || rb=$(( $(disk_read_bytes) - d0 ))
    echo "$peak $oom $fail $rb $rc $(( (t1 - t0) / 1000000 ))" > "$out.cg"
    rmdir "$mem" 2>/dev/null; [[ -n "$io" ]] && rmdir "$io" 2>/dev/null
    return 0
}

# ---- the benchmark ---------------------------------------------------------------------------

PROMPT="The history of the printing press begins in the fifteenth century, when"

# llama-completion run: prints `decode_tps ttft_ms gen_tokens` (or `- - 0` if it died).
llama_figures() {
    local err="$1"
    awk '/prompt eval time/ {for(i=1;i<=NF;i++) if($i=="=") {p=$(i+1)}}
         /[^t] eval time/ && !/prompt/ {for(i=1;i<=NF;i++) {if($i=="=") e=$(i+1); if($i=="runs") r=$(i-1)}}
         END { if (e > 0) printf "%.2f %.1f %d\n", (r-0)/(e/1000), p, r+1; else print "- - 0" }' "$err"
}

main() {
    local caps="64 80 96 128" model="$DEFAULT_MODEL" budgets="" n=48 threads=2 synth=0 out=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --caps) caps="$2"; shift 2 ;;
            --model) model="$2"; shift 2 ;;
            --budgets) budgets="$2"; shift 2 ;;
            --n) n="$2"; shift 2 ;;
            --threads) threads="$2"; shift 2 ;;
            --synth) synth=1; shift ;;
            --out) out="$2"; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ $(id -u) -eq 0 ]] || die "needs root (cgroups, drop_caches)"
    need_model
    LLAMA_BIN="$("$ROOT/scripts/build-llama-ref.sh" | tail -n 1)"
    local fs; fs="$(flashslim_bin)"
    local tmp; tmp="$(mktemp -d)"
    local rows=()
    bench_model "$model" "$caps" "$budgets"
    if [[ "$synth" == 1 ]]; then
        local syn="$ROOT/models/synthetic-tinyllama-1.1b-q4_0.gguf"
        [[ -f "$syn" ]] || "$fs" synth -o "$syn" >&2
        bench_model "$syn" "256" "256:200"
    fi
    local table
    table="$(printf '%s\n' "| model | engine | cap MiB | budget MiB | decode tok/s | TTFT ms | peak MiB | OOM kills | storage MiB/token | streamed MiB/token | device MB/s | bound tok/s | % of bound |" \
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" "${rows[@]}")"
    echo "$table"
    [[ -n "$out" ]] && echo "$table" > "$out"
    rm -rf "$tmp"
}

# bench_model MODEL CAPS BUDGETS — appends table rows for one model.
bench_model() {
    local model="$1" caps="$2" budgets="$3" name; name="$(basename "$model" .gguf)"
    log "== $name"
    # Uncapped references: llama.cpp mmap and flashslim ram.
    for cap in 0 $caps; do
        local capb=$(( cap * 1048576 )) label="${cap}"; [[ $cap == 0 ]] && label="none"
        for mode in mmap dio; do
            [[ $mode == dio && $cap == 0 ]] && continue
            cg_run "$capb" "$tmp/l-$cap-$mode" "$LLAMA_BIN/llama-completion" -m "$model" -p "$PROMPT" \
                -n "$n" -t "$threads" -no-cnv --temp 0 -c 512 --load-mode "$mode" --no-warmup
            read -r peak oom fail rb rc ms < "$tmp/l-$cap-$mode.cg"
            read -r tps ttft gen <<< "$(llama_figures "$tmp/l-$cap-$mode.err")"
            [[ "$rc" != 0 ]] && tps="killed (exit $rc)"; [[ "$rc" == 124 ]] && tps="timed out (${RUN_TIMEOUT} s)"
            local spt="-"; [[ "$gen" -gt 0 ]] && spt=$(awk -v b="$rb" -v g="$gen" 'BEGIN{printf "%.1f", b/g/1048576}')
            rows+=("| $name | llama.cpp $mode | $label | - | $tps | $ttft | $(( peak / 1048576 )) | $oom | $spt | - | - | - | - |")
            log "llama.cpp $mode cap $label: $tps tok/s, ttft $ttft ms, peak $(( peak / 1048576 )) MiB, oom $oom, rc $rc"
        done
        [[ $cap == 0 ]] && { flashslim_row "$model" 0 0; continue; }
        local budget=$(( cap - 28 ))
        for pair in $budgets; do [[ "${pair%%:*}" == "$cap" ]] && budget="${pair##*:}"; done
        flashslim_row "$model" "$cap" "$budget"
    done
}

# flashslim_row MODEL CAP_MIB BUDGET_MIB (cap 0: --weights ram, uncapped)
flashslim_row() {
    local model="$1" cap="$2" budget="$3" name; name="$(basename "$model" .gguf)"
    local args=(--weights ram) label="none" blabel="-"
    if [[ "$cap" -gt 0 ]]; then args=(--weights stream --budget "${budget}MiB"); label="$cap"; blabel="$budget"; fi
    local p="$tmp/f-$cap"
    if "$fs" tokenize -m "$model" -p hi >/dev/null 2>&1; then
        cg_run $(( cap * 1048576 )) "$p" "$fs" run -m "$model" -p "$PROMPT" -n "$n" -t "$threads" -c 512 \
            --temp 0 --ignore-eos --summary "$p.json" "${args[@]}"
    else
        # No tokenizer in this build yet: llama-bench-style random prompt of the same length.
        cg_run $(( cap * 1048576 )) "$p" "$fs" bench -m "$model" \
            -p 16 -n "$n" -r 1 -t "$threads" -o json "${args[@]}"
    fi
    read -r peak oom fail rb rc ms < "$p.cg"
    local figs
    figs="$(python3 - "$p" "$rb" "$cap" <<'EOF'
import json, sys, os
p, rb, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    s = json.load(open(p + ".json"))
    tps, ttft, n = s["decode_tokens_per_second"], s["ttft_ms"], s["decode_tokens"] + s["prefill_tokens"]
    spt = s.get("streamed_bytes_per_token")
except Exception:
    try:
        rows = json.load(open(p + ".out"))
        pp = next(r for r in rows if r["n_prompt"] > 0); tg = next(r for r in rows if r["n_gen"] > 0)
        tps, ttft = tg["avg_ts"], pp["avg_ns"] / 1e6
        n = 2 * (pp["n_prompt"] + tg["n_gen"])   # warmup + 1 repetition of each test
        spt = None
    except Exception:
        print("- - - -"); sys.exit()
err = open(p + ".err").read()
import re
m = re.search(r"streaming ([0-9.]+) MiB/pass", err)
if spt is None and m: spt = float(m.group(1)) * 1048576
print(f"{tps:.2f} {ttft:.1f} {rb/n/1048576:.1f} " + (f"{spt/1048576:.1f}" if spt else "-"))
EOF
)"
    read -r tps ttft spt streamed <<< "$figs"
    [[ "$rc" != 0 ]] && tps="failed (exit $rc)"; [[ "$rc" == 124 ]] && tps="timed out (${RUN_TIMEOUT} s)"
    local bw="-" bound="-" pct="-"
    if [[ "$cap" -gt 0 && "$streamed" != "-" ]]; then
        # Device bandwidth at the engine's request size and queue depth, on this file, now.
        local req qd
        req=$(grep -o '[0-9]* x [0-9.]* MiB requests' "$p.err" | head -1)
        qd=${req%% x*}; req=$(awk -v m="$(echo "$req" | awk '{print $3}')" 'BEGIN{printf "%d", m*1048576/4096+0.5}')
        req=$(( req * 4096 ))
        bw=$("$fs" plan -m "$model" --device-only --request "$req" --queue-depth "$qd" --sweep-mib 64 2>/dev/null \
            | python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["sweep"][0]["bytes_per_s"]/1e6))')
        bound=$(awk -v bw="$bw" -v s="$streamed" 'BEGIN{printf "%.2f", bw*1e6/(s*1048576)}')
        [[ "$tps" =~ ^[0-9.]+$ ]] && pct=$(awk -v t="$tps" -v b="$bound" 'BEGIN{printf "%.0f", 100*t/b}')
    fi
    local eng="flashslim ${args[1]}"
    rows+=("| $name | $eng | $label | $blabel | $tps | $ttft | $(( peak / 1048576 )) | $oom | $spt | $streamed | $bw | $bound | $pct |")
    log "flashslim ${args[1]} cap $label budget $blabel: $tps tok/s, ttft $ttft ms, peak $(( peak / 1048576 )) MiB, oom $oom, rc $rc, bound $bound ($pct%)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
