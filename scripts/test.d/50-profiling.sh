#!/usr/bin/env bash
# Profiling (issue #4): every bpftrace script parses (bpftrace -d) and uses only probes our binary
# has (bpftrace -l), then the real-run tests under bpftrace: token probe once per token, stages
# pair up, bpftrace block I/O and faults agree with the engine, and (once --weights stream
# exists) chunk bytes add up. Mounts tracefs and installs bpftrace if needed. Needs root.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
need_model
need_apt bpftrace binutils
[[ $(id -u) -eq 0 ]] || die "50-profiling needs root (bpftrace)"
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
cd "$FLASHSLIM_ROOT"
BIN="$(flashslim_bin)"
log "bpftrace $(bpftrace --version | awk '{print $2}'), kernel $(uname -r)"

# 1. Every probe is in the binary (readelf) and visible to bpftrace.
notes=$(readelf -n "$BIN" | grep -c 'Provider: flashslim')
[[ "$notes" -eq 12 ]] || die "readelf -n lists $notes flashslim probes, expected 12"
listed=$(bpftrace -l "usdt:$BIN:flashslim:*" 2>/dev/null | sort)
[[ $(wc -l <<<"$listed") -eq 12 ]] || die "bpftrace -l lists $(wc -l <<<"$listed") flashslim probes"

# 2. Each script: dry run, and each probe it names exists (USDT in our binary; tracepoints,
#    software and profile probes on this kernel; kprobes only where the kernel has them).
kprobes=1; [[ -e /sys/bus/event_source/devices/kprobe || -e /sys/kernel/tracing/kprobe_events ]] || kprobes=0
fail=0
for bt in engine/tracing/*.bt engine/tests/data/profiling/scripts/*.bt; do
    name=$(basename "$bt")
    head -3 "$bt" | grep -q "^ \* ${name%.bt}.bt" || { log "FAIL $name: header does not open with its name"; fail=1; }
    grep -q 'USAGE:' "$bt" || { log "FAIL $name: no USAGE in the header"; fail=1; }
    if ! out=$(bpftrace -d "$bt" 1 "$BIN" 2>&1 >/dev/null | grep ERROR | grep -v RLIMIT_MEMLOCK); then :; fi
    if [[ -n "$out" ]]; then log "FAIL $name: $out"; fail=1; continue; fi
    for p in $(grep -oE '^(usdt|tracepoint|kprobe|kretprobe|software):[^ /{,]+' "$bt" | sort -u); do
        case "$p" in
            usdt:*) q="usdt:$BIN:${p#usdt:\$2:}" ;;
            *) q="$p" ;;
        esac
        if [[ "$p" == k*probe:* && $kprobes -eq 0 ]]; then
            log "  $name: $p (kprobes not in this kernel: parse-checked only)"; continue
        fi
        if [[ "$p" == software:* ]]; then
            # bpftrace 0.17 cannot list software events; they are perf's built-in PMU.
            ev="${p#software:}"; ev="${ev%%:*}"
            [[ -d /sys/bus/event_source/devices/software ]] \
                && grep -qw -- "$ev" <<<"cpu-clock task-clock page-faults faults context-switches cs cpu-migrations migrations minor-faults major-faults alignment-faults emulation-faults dummy bpf-output" \
                || { log "FAIL $name: $p is not a software event here"; fail=1; }
            continue
        fi
        [[ -n "$(bpftrace -l "$q" 2>/dev/null)" ]] || { log "FAIL $name: probe $p not found ($q)"; fail=1; }
    done
    log "  ok $name"
done
[[ $fail -eq 0 ]] || die "bpftrace script checks failed"

# 3. Real runs under bpftrace (and the trace/manifest/run-dir tests).
cargo test -q --release -p flashslim-engine --test profiling --test trace_formats -- --include-ignored --test-threads 1 2>&1 | tail -n 30
