#!/usr/bin/env bash
# The emulated device (image/vm/, issue #7) in CI: the full x86_64 run of `image/vm/e2e.sh` (cached
# Debian base image, boot, guest checks, install through engine/dist/install.sh, a profiling
# session by flashslim-profile.target, slim-pull-logs, slim report, assertions), then the cleanup
# check: an e2e.sh stopped by SIGTERM while its VM is up leaves no qemu and no overlay.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
E2E="$FLASHSLIM_ROOT/image/vm/e2e.sh"
tmp="$(mktemp -d /tmp/flashslim-vm-e2e.XXXXXX)"
child=""
cleanup() {
    # Our e2e.sh, if still running, cleans up its own VM on TERM.
    [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

passed=0; failed=0
check() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi; }

# 1. the whole flow. Its outputs are kept in runs/vm-e2e/ci-x86_64 for a failed CI run.
# All six shipped scripts (SCRIPTS=all of profile.conf). `flashslim profile` repeats SIGINT only
# after 15 s: cpuprofile.bt needs 8-9 s to print its END maps under TCG and bpftrace 0.17 dies on
# a second SIGINT (see docs/emulated-device.md).
SCRIPTS="all"
# A guest kernel lockup under TCG (e2e.sh names it: "guest kernel lockup") is the emulator's, not
# ours (docs/emulated-device.md): that one failure gets a second, fresh run; any other failure, or
# a second lockup, fails the suite. The first run's serial log is kept for the post-mortem.
full_run() {
    local out="$FLASHSLIM_ROOT/runs/vm-e2e/ci-x86_64" try
    for try in 1 2; do
        if "$E2E" --arch x86_64 --out "$out" --scripts "$SCRIPTS" 2>&1 | tee "$tmp/full-$try.log"; then
            log "vm-e2e: full run passed ($(cat "$out/vm/accel")): $(sed -n 's/^ok   \(complete\|files-verify\|second-pull\) *//p' "$out/assert.txt" | head -n 3 | paste -sd';')"
            return 0
        fi
        if (( try == 1 )) && grep -q 'guest kernel lockup during the session' "$tmp/full-$try.log"; then
            cp "$out/vm/serial.log" "$out/../ci-x86_64-lockup-serial.log" 2>/dev/null || true
            log "vm-e2e: the guest kernel locked up under TCG (serial log kept as runs/vm-e2e/ci-x86_64-lockup-serial.log); running the whole flow once more"
            continue
        fi
        break
    done
    log "vm-e2e: FAILED: image/vm/e2e.sh --arch x86_64 (outputs: $out; assertions: $out/assert.txt; serial log: $out/vm/serial.log)"
    return 1
}
check full_run

# 2. cleanup on a signal: start a run, wait until its qemu is up, TERM e2e.sh, check nothing is left.
cleanup_on_signal() {
    local out="$tmp/sig" tag="" i pid
    "$E2E" --arch x86_64 --out "$out" --boot-only >"$tmp/sig.log" 2>&1 &
    child=$!
    for i in $(seq 600); do
        [[ -s "$out/vm/qemu.pid" ]] && break
        kill -0 "$child" 2>/dev/null || break
        sleep 0.5
    done
    pid="$(cat "$out/vm/qemu.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] || { log "vm-e2e: FAILED: the signal test's qemu never started"; cat "$tmp/sig.log" >&2; return 1; }
    tag="$(sed -n 's/.* tag \(flashslim-vm-[^ ]*\).*/\1/p' "$tmp/sig.log" | head -n1)"
    kill -TERM "$child"
    wait "$child" 2>/dev/null && { log "vm-e2e: FAILED: e2e.sh exited 0 after SIGTERM"; return 1; }
    child=""
    if [[ -z "$tag" ]]; then log "vm-e2e: FAILED: no tag in the e2e.sh log"; return 1; fi
    # A qemu killed but not yet reaped (its parent is PID 1) is a zombie: it has no cmdline.
    if pgrep -f -- "-name $tag" >/dev/null || grep -qa -- "$tag" "/proc/$pid/cmdline" 2>/dev/null; then
        log "vm-e2e: FAILED: qemu ($tag, pid $pid) still running after e2e.sh got SIGTERM"
        return 1
    fi
    [[ ! -e "$out/vm/overlay.qcow2" ]] || { log "vm-e2e: FAILED: overlay left behind"; return 1; }
    log "vm-e2e: SIGTERM during boot: qemu stopped, overlay removed"
}
check cleanup_on_signal

echo "vm-e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
