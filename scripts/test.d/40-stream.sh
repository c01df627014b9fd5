#!/usr/bin/env bash
# Streaming under a memory budget (issue #3): streamed results bit-identical to --weights ram at
# several budgets, prefetch depths and backends; the pread and buffered fallbacks; fault
# injection (EIO, short and slow reads); plan refusal; the minimum-budget error; the plan-reader
# corpus and mutations; then one short run in a 64 MiB memory cgroup that must finish with no OOM
# kill and its peak under the cap (root only; skipped otherwise).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
need_model
cd "$FLASHSLIM_ROOT"
cargo test -q --release -p flashslim-engine --test stream --test stream_cli --test stream_plan_corpus 2>&1 | tail -n 30

if [[ $(id -u) -ne 0 || ! -d /sys/fs/cgroup/memory && ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
    log "SKIP cgroup run: needs root and a memory cgroup"
    exit 0
fi
. "$FLASHSLIM_ROOT/scripts/bench-stream.sh"
# Regression (mawk_prints_large_counts_in_e_notation): Debian's awk printed the disk's read-byte
# count past 2^31 as "6.98081e+10", which broke the shell arithmetic of every cgroup run.
[[ "$(disk_read_bytes)" =~ ^[0-9]+$ ]] || die "disk_read_bytes is not an integer: $(disk_read_bytes)"
fs="$(flashslim_bin)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cap=$(( 64 << 20 ))
RUN_TIMEOUT=240 cg_run "$cap" "$tmp/run" "$fs" bench -m "$DEFAULT_MODEL" --weights stream --budget 36MiB \
    -t 2 -p 8 -n 8 -r 1
read -r peak oom fail rb rc ms < "$tmp/run.cg"
log "64 MiB cgroup: exit $rc, peak $(( peak >> 20 )) MiB, oom kills $oom, failcnt $fail, read $(( rb >> 20 )) MiB, ${ms} ms"
[[ "$rc" == 0 ]] || { cat "$tmp/run.err" >&2; die "streamed run under a 64 MiB cap failed (exit $rc)"; }
[[ "$oom" == 0 ]] || die "OOM kill under the 64 MiB cap"
[[ "$peak" -le "$cap" ]] || die "cgroup peak $peak exceeds the cap $cap"
echo "1 passed, 0 failed: stream cgroup run"
