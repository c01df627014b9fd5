#!/usr/bin/env bash
# guest-check.sh — runs inside the emulated device (e2e.sh pipes it through `ssh bash -s`) and
# checks what the profiling flow relies on: systemd as PID 1 and booted, BTF, tracefs mounted by
# systemd, bpftrace running a probe, and a uprobe (plus USDT when libc has notes) attaching.
# Prints one line per check, `ok NAME detail` / `FAIL NAME detail` / `skip NAME why`; exits 1 if
# any check failed.
set -uo pipefail
export LC_ALL=C
failed=0
ok()   { printf 'ok   %-18s %s\n' "$1" "$2"; }
fail() { printf 'FAIL %-18s %s\n' "$1" "$2"; failed=1; }
skip() { printf 'skip %-18s %s\n' "$1" "$2"; }

# systemd is PID 1 and the boot finished (degraded is accepted: the failed units are listed).
comm="$(cat /proc/1/comm)"
[[ "$comm" == systemd ]] && ok pid1 "systemd $(systemctl --version | awk 'NR==1 {print $2}')" \
    || fail pid1 "PID 1 is '$comm', not systemd"
state="$(timeout "${BOOT_WAIT:-300}" systemctl is-system-running --wait 2>/dev/null)"
case "$state" in
    running) ok system-state running ;;
    degraded) ok system-state "degraded; failed units: $(systemctl --failed --no-legend --plain | awk '{print $1}' | xargs)" ;;
    *) fail system-state "systemctl is-system-running: '${state:-timeout}'" ;;
esac

ok kernel "$(uname -r) $(uname -m)"
[[ -r /sys/kernel/btf/vmlinux ]] && ok btf "/sys/kernel/btf/vmlinux $(stat -c %s /sys/kernel/btf/vmlinux) bytes" \
    || fail btf "/sys/kernel/btf/vmlinux missing (kernel without CONFIG_DEBUG_INFO_BTF?)"

# tracefs comes from systemd's own sys-kernel-tracing.mount (the Yocto target depends on it).
unit_state="$(systemctl is-active sys-kernel-tracing.mount 2>/dev/null)"
fstype="$(findmnt -n -o FSTYPE /sys/kernel/tracing 2>/dev/null)"
if [[ "$unit_state" == active && "$fstype" == tracefs ]]; then
    ok tracefs "sys-kernel-tracing.mount active, /sys/kernel/tracing is tracefs"
else
    fail tracefs "sys-kernel-tracing.mount is '$unit_state', /sys/kernel/tracing is '${fstype:-not mounted}'"
fi
[[ "$(systemctl is-active sys-kernel-debug.mount 2>/dev/null)" == active ]] \
    && ok debugfs "sys-kernel-debug.mount active" || fail debugfs "sys-kernel-debug.mount not active"

# bpftrace: a BEGIN probe (BPF load + run), then a uprobe on libc in a child it starts.
if ! command -v bpftrace >/dev/null; then
    fail bpftrace "bpftrace not installed"
else
    out="$(timeout 120 bpftrace -e 'BEGIN { printf("bpftrace-begin-ok\n"); exit(); }' 2>&1)"
    grep -q bpftrace-begin-ok <<<"$out" && ok bpftrace "$(bpftrace --version 2>/dev/null) BEGIN probe ran" \
        || fail bpftrace "BEGIN probe did not run: $(tail -n 3 <<<"$out" | xargs)"

    libc="$(ldconfig -p | awk '$1 == "libc.so.6" {print $NF; exit}')"
    out="$(timeout 120 bpftrace -c '/bin/ls /' \
        -e "uprobe:$libc:opendir /pid == cpid/ { printf(\"uprobe-ok\n\"); exit(); }" 2>&1)"
    grep -q uprobe-ok <<<"$out" && ok uprobe "uprobe:$libc:opendir fired in a child" \
        || fail uprobe "uprobe:$libc:opendir did not fire: $(tail -n 3 <<<"$out" | xargs)"

    # USDT: Debian's glibc carries stapsdt notes (libc:setjmp fires at bash start-up).
    if timeout 60 bpftrace -l "usdt:$libc:*" 2>/dev/null | grep -q ':setjmp$'; then
        out="$(timeout 120 bpftrace -c '/bin/bash -c true' \
            -e "usdt:$libc:libc:setjmp /pid == cpid/ { printf(\"usdt-ok\n\"); exit(); }" 2>&1)"
        grep -q usdt-ok <<<"$out" && ok usdt "usdt:$libc:libc:setjmp fired in a child" \
            || fail usdt "usdt:$libc:libc:setjmp did not fire: $(tail -n 3 <<<"$out" | xargs)"
    else
        skip usdt "no libc:setjmp USDT note in $libc"
    fi
fi

exit $failed
