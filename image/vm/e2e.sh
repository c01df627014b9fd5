#!/usr/bin/env bash
# e2e.sh — the emulated device end to end: boots a Debian VM standing in for flashslim-image,
# installs what the Yocto recipe installs (same installer), runs a profiling session over ssh,
# pulls the run with slim-pull-logs and renders it with slim report. Issue #7; docs/emulated-device.md.
#
# Usage: image/vm/e2e.sh [--out DIR] [--arch x86_64|aarch64] [--accel auto|kvm|tcg] [--boot-only]
#                        [--keep] [--rebuild] [--timeout SECS] [--tokens N] [--scripts LIST]
#                        [--boot-timeout SECS]
#   --out DIR           results: DIR/vm/ (serial.log, ssh_config, guest-check.txt), DIR/pulled/,
#                       DIR/report.html, DIR/timings.txt   (default: runs/vm-e2e/<arch>-<time>)
#   --arch ARCH         guest architecture (default: x86_64)
#   --accel A           x86_64 only: kvm, tcg, or auto = kvm on kvm_intel/kvm_amd, tcg on kvm_pvm,
#                       else kvm with a fall-back to tcg if the guest kernel prints nothing in 30 s
#                       (default: auto; aarch64 is always tcg)
#   --boot-only         stop after the guest checks (base image, boot, ssh, BTF/tracefs/bpftrace)
#   --keep              leave the VM running at the end (or on failure) until Ctrl-C, for ssh
#   --rebuild           rebuild the cached base image
#   --timeout SECS      how long the profiling session may take (default: 900)
#   --tokens N          TOKENS= for the session's profile.conf (default: 4; TCG is slow)
#   --scripts LIST      SCRIPTS= for the session's profile.conf (default: all, as shipped)
#   --boot-timeout SECS boot to ssh (default: 300 for x86_64, 1200 for aarch64)
#
# Steps: build (not with --boot-only), base-image, boot, guest-check, install, session, pull,
# report, assert. Every failure
# exits non-zero with one `error:` line saying what failed and where to look. A trap stops qemu
# and removes the overlay on any exit, Ctrl-C included, and then checks no qemu of ours is left.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../../scripts/lib.sh"

usage() { sed -n '6,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
arch="x86_64"; out=""; accel="auto"; boot_only=""; keep=""; rebuild=""
session_timeout=900; boot_timeout=""; tokens=4; scripts=all
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --arch) arch="${2:?--arch needs x86_64 or aarch64}"; shift 2 ;;
        --accel) accel="${2:?--accel needs auto, kvm or tcg}"; shift 2 ;;
        --boot-only) boot_only=1; shift ;;
        --keep) keep=1; shift ;;
        --rebuild) rebuild=1; shift ;;
        --timeout) session_timeout="${2:?}"; shift 2 ;;
        --tokens) tokens="${2:?}"; shift 2 ;;
        --scripts) scripts="${2:?--scripts needs a comma list of script names or all}"; shift 2 ;;
        --boot-timeout) boot_timeout="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) log "unknown argument: $1"; usage ;;
    esac
done
case "$arch" in
    x86_64) boot_timeout="${boot_timeout:-300}" ;;
    aarch64) boot_timeout="${boot_timeout:-1200}"; [[ "$accel" == kvm ]] && die "--accel kvm: an aarch64 guest on this host is TCG only"; accel=tcg ;;
    *) die "--arch must be x86_64 or aarch64, not '$arch'" ;;
esac
[[ "$accel" =~ ^(auto|kvm|tcg)$ ]] || die "--accel must be auto, kvm or tcg, not '$accel'"
[[ "$session_timeout" =~ ^[0-9]+$ && "$boot_timeout" =~ ^[0-9]+$ ]] || die "--timeout/--boot-timeout take seconds"
[[ "$tokens" =~ ^[1-9][0-9]*$ ]] || die "--tokens takes a positive number"
[[ "$scripts" =~ ^[a-z0-9,_-]+$ ]] || die "--scripts takes 'all' or a comma list of script names"

out="${out:-$FLASHSLIM_ROOT/runs/vm-e2e/$arch-$(date +%Y%m%dT%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
VM_DIR="$out/vm"
SERIAL="$VM_DIR/serial.log"
PIDFILE="$VM_DIR/qemu.pid"
OVERLAY="$VM_DIR/overlay.qcow2"
PULLED="$out/pulled"
REPORT="$out/report.html"
# A tag unique to this run, on qemu's command line: the trap and the test find our qemu by it.
TAG="flashslim-vm-$arch-$$-$(date +%s)"
GUEST_MEM=2048
GUEST_CPUS=2
KVM_PROBE_SECS=30

BASE=""          # cache dir of the base image (build-base.sh)
PORT=""          # host port forwarded to the guest's sshd
ACCEL_USED=""    # kvm | tcg
SSH_OPTS=()      # options for ssh/rsync/slim-pull-logs (no -p: the port is in the target)
TIMINGS=()

# The trap may fire inside a command whose stderr is redirected (`vm_ssh ... 2>/dev/null`):
# keep the real stdout/stderr to restore there.
exec {OUT_FD}>&1 {ERR_FD}>&2

# --- cleanup: runs on every exit ----------------------------------------------------------------
qemu_pid() { [[ -s "$PIDFILE" ]] && cat "$PIDFILE"; }
qemu_alive() {
    local pid; pid="$(qemu_pid)" || return 1
    kill -0 "$pid" 2>/dev/null && grep -qa -- "$TAG" "/proc/$pid/cmdline" 2>/dev/null
}
# Our qemu processes, found by the run's tag (also covers one that died before writing its pidfile).
tagged_pids() { pgrep -f -- "-name $TAG" || true; }
stop_vm() {
    local pid pids i
    pids="$( { qemu_pid || true; tagged_pids; } | sort -u)"
    for pid in $pids; do
        grep -qa -- "$TAG" "/proc/$pid/cmdline" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
    done
    for i in $(seq 50); do [[ -z "$(tagged_pids)" ]] && break; sleep 0.2; done
    for pid in $(tagged_pids); do kill -KILL "$pid" 2>/dev/null || true; done
    for i in $(seq 25); do [[ -z "$(tagged_pids)" ]] && break; sleep 0.2; done
    rm -f "$PIDFILE"
}
keep_wait() {
    local stop=""
    trap 'stop=1' INT TERM HUP
    log ""
    log "vm: kept running (--keep). In another shell:"
    log "      ssh -F $VM_DIR/ssh_config flashslim-vm"
    log "    serial log: $SERIAL. Ctrl-C here stops the VM and cleans up."
    while [[ -z "$stop" ]] && qemu_alive; do sleep 1; done
    trap '' INT TERM HUP
}
on_exit() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM HUP    # a second Ctrl-C must not cut the cleanup short
    exec 1>&"$OUT_FD" 2>&"$ERR_FD"
    set +e
    [[ -n "$keep" ]] && qemu_alive && keep_wait
    stop_vm
    rm -f "$OVERLAY"
    rm -rf "$VM_DIR/stage"
    if [[ -n "$(tagged_pids)" ]]; then
        log "error: qemu still running after cleanup: pids $(tagged_pids | xargs) (tag $TAG)"
        rc=1
    fi
    print_timings
    exit "$rc"
}
trap on_exit EXIT
trap 'exec 2>&"$ERR_FD"; log "e2e: interrupted"; exit 130' INT TERM HUP

print_timings() {
    [[ ${#TIMINGS[@]} -gt 0 ]] || return 0
    { printf '%-12s %-6s %6s\n' step result time; printf '%s\n' "${TIMINGS[@]}"; } >"$out/timings.txt"
    log ""; cat "$out/timings.txt" >&2
}

# step NAME FUNCTION — run one step, time it, and record its result.
STEP_NO=0
step() {
    local name="$1" fn="$2" t0
    STEP_NO=$((STEP_NO + 1))
    log "==> [$STEP_NO] $name"
    t0=$(date +%s)
    # A failing step exits through die; record it as failed on the way out.
    TIMINGS+=("$(printf '%-12s %-6s %5ss' "$name" FAILED '?')")
    "$fn"
    TIMINGS[-1]="$(printf '%-12s %-6s %5ss' "$name" ok "$(( $(date +%s) - t0 ))")"
    log "<== $name ok ($(( $(date +%s) - t0 ))s)"
}

vm_ssh() { ssh "${SSH_OPTS[@]}" -p "$PORT" root@127.0.0.1 "$@"; }

# --- 1. base image ----------------------------------------------------------------------------
step_base_image() {
    BASE="$("$HERE/build-base.sh" --arch "$arch" ${rebuild:+--rebuild})" || die "base image build failed (see above)"
    for f in base.qcow2 vmlinuz initrd.img id_ed25519 known_hosts; do
        [[ -s "$BASE/$f" ]] || die "base image cache $BASE lacks $f (rerun with --rebuild)"
    done
    SSH_OPTS=(-o BatchMode=yes -o IdentitiesOnly=yes -o "IdentityFile=$BASE/id_ed25519"
              -o "UserKnownHostsFile=$BASE/known_hosts" -o HostKeyAlias=flashslim-vm
              -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o ServerAliveInterval=10
              -o LogLevel=ERROR)
}

# --- 2. boot ----------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $(( 20000 + RANDOM % 30000 ))
}

# start_qemu ACCEL — start qemu daemonized with a fresh overlay; sets PORT.
start_qemu() {
    local a="$1" qemu console cpu machine try
    local append="root=/dev/vda rw panic=-1 systemd.show_status=1"
    case "$arch/$a" in
        x86_64/kvm) qemu=qemu-system-x86_64; machine=(-machine q35 -accel kvm)
                    # arch-capabilities: nested KVM here rejects its MSR (qemu asserts at start).
                    cpu=(-cpu host,-arch-capabilities); console=ttyS0 ;;
        x86_64/tcg) qemu=qemu-system-x86_64; machine=(-machine q35 -accel tcg,thread=multi)
                    cpu=(-cpu max); console=ttyS0
                    # Under TCG the speculation mitigations (PTI flushes on every syscall) cost
                    # more than the whole rest of the boot; they do not matter to tracing.
                    append+=" mitigations=off" ;;
        aarch64/tcg) qemu=qemu-system-aarch64; machine=(-machine virt -accel tcg,thread=multi)
                    cpu=(-cpu max,pauth-impdef=on); console=ttyAMA0
                    append+=" mitigations=off" ;;
        *) die "no qemu configuration for $arch with $a" ;;
    esac
    append+=" console=$console"

    rm -f "$OVERLAY" "$PIDFILE"
    qemu-img create -q -f qcow2 -F qcow2 -b "$BASE/base.qcow2" "$OVERLAY" || die "qemu-img create (overlay) failed"
    : >"$SERIAL"
    for try in 1 2 3; do
        PORT="$(free_port)"
        if "$qemu" -name "$TAG" "${machine[@]}" "${cpu[@]}" -smp "$GUEST_CPUS" -m "$GUEST_MEM" \
            -kernel "$BASE/vmlinuz" -initrd "$BASE/initrd.img" -append "$append" \
            -drive "file=$OVERLAY,if=none,id=root,format=qcow2,cache=unsafe" \
            -device virtio-blk-pci,drive=root \
            -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$PORT-:22" -device virtio-net-pci,netdev=net0,romfile= \
            -display none -vga none -monitor none -serial "file:$SERIAL" -no-reboot \
            -daemonize -pidfile "$PIDFILE" 2>>"$VM_DIR/qemu.log"; then
            ACCEL_USED="$a"
            log "vm: qemu ($a) pid $(qemu_pid), ssh on 127.0.0.1:$PORT, serial log $SERIAL"
            return 0
        fi
        grep -q 'host forwarding' "$VM_DIR/qemu.log" || break   # retry only a port clash
    done
    die "qemu ($a) did not start: $(tail -n 2 "$VM_DIR/qemu.log" | xargs) (full: $VM_DIR/qemu.log)"
}

# kernel_speaks SECS — true once the guest kernel's banner is in the serial log.
kernel_speaks() {
    local deadline=$(( $(date +%s) + $1 ))
    while (( $(date +%s) < deadline )); do
        grep -q 'Linux version' "$SERIAL" 2>/dev/null && return 0
        qemu_alive || return 1
        sleep 1
    done
    return 1
}

wait_for_ssh() {
    local t0 deadline
    t0=$(date +%s); deadline=$(( t0 + boot_timeout ))
    while (( $(date +%s) < deadline )); do
        qemu_alive || { tail -n 15 "$SERIAL" >&2; die "qemu exited during boot; serial log: $SERIAL, qemu log: $VM_DIR/qemu.log"; }
        if vm_ssh -o ConnectTimeout=5 true 2>/dev/null; then
            log "vm: ssh up $(( $(date +%s) - t0 ))s after qemu started ($ACCEL_USED)"
            return 0
        fi
        sleep 2
    done
    tail -n 15 "$SERIAL" >&2
    die "no ssh on 127.0.0.1:$PORT after ${boot_timeout}s ($ACCEL_USED); serial log: $SERIAL"
}

step_boot() {
    mkdir -p "$VM_DIR"
    : >"$VM_DIR/qemu.log"
    local a="$accel"
    if [[ "$arch" == x86_64 && "$a" == auto ]]; then
        a=tcg
        if [[ -r /dev/kvm && -w /dev/kvm ]]; then
            # kvm_intel/kvm_amd run a stock kernel; anything else (kvm_pvm here) gets the probe.
            if [[ " $(kvm_flavour) " =~ \ kvm_(intel|amd)\  ]]; then a=kvm
            elif [[ " $(kvm_flavour) " =~ \ kvm_pvm\  ]]; then
                log "vm: /dev/kvm is kvm_pvm (paravirtual, needs a PVM guest kernel): using TCG"
            else a=kvm; fi
        fi
    fi
    start_qemu "$a"
    if [[ "$arch" == x86_64 && "$a" == kvm ]] && ! kernel_speaks "$KVM_PROBE_SECS"; then
        [[ "$accel" == kvm ]] && die "KVM: the guest kernel printed nothing in ${KVM_PROBE_SECS}s (serial log: $SERIAL); try --accel tcg"
        log "vm: WARNING: under KVM the guest kernel printed nothing in ${KVM_PROBE_SECS}s;"
        log "vm:          this host's /dev/kvm ($(kvm_flavour)) does not run a stock kernel. Falling back to TCG."
        stop_vm
        mv "$SERIAL" "$VM_DIR/serial-kvm.log"
        start_qemu tcg
    fi
    cat >"$VM_DIR/ssh_config" <<EOF
# ssh -F $VM_DIR/ssh_config flashslim-vm   (valid while the VM of this run is up)
Host flashslim-vm
    HostName 127.0.0.1
    Port $PORT
    User root
$(printf '    %s\n' "${SSH_OPTS[@]}" | grep -v '^    -o$' | sed 's/=/ /')
EOF
    wait_for_ssh
    echo "$ACCEL_USED" >"$VM_DIR/accel"
}
# What /dev/kvm is backed by: kvm_intel, kvm_amd, or something else (kvm_pvm on these machines).
kvm_flavour() { ls /sys/module 2>/dev/null | grep -E '^kvm_' | xargs || echo unknown; }

# --- 3. guest checks ----------------------------------------------------------------------------
step_guest_check() {
    vm_ssh "BOOT_WAIT=$boot_timeout bash -s" <"$HERE/guest-check.sh" | tee "$VM_DIR/guest-check.txt" >&2 \
        || die "guest checks failed (listed above; $VM_DIR/guest-check.txt, serial log: $SERIAL)"
}

# --- 0. build: the guest's flashslim and the host tools (before the VM, so steps time the VM) ---
GUEST_BIN=""; PULL_LOGS=""; SLIM=""
step_build() {
    GUEST_BIN="$(guest_binary)"
    need_rust
    (cd "$FLASHSLIM_ROOT" && cargo build -q --release -p flashslim-tools) >&2 || die "cargo build -p flashslim-tools failed"
    PULL_LOGS="$FLASHSLIM_ROOT/target/release/slim-pull-logs"
    SLIM="$FLASHSLIM_ROOT/target/release/slim"
    [[ -x "$PULL_LOGS" && -x "$SLIM" ]] || die "no $PULL_LOGS or $SLIM after building flashslim-tools"
    need_model
}

# --- 4. install: the same installer as the Yocto recipe ------------------------------------------
# guest_binary — the flashslim binary for the guest's arch.
guest_binary() {
    local bin machine want
    case "$arch" in
        x86_64) bin="$(flashslim_bin)"; want=62 ;;
        aarch64)
            # Static (+crt-static) build; its target dir is target/aarch64-cross.
            "$FLASHSLIM_ROOT/scripts/cross-aarch64.sh" build --release --bin flashslim >&2 \
                || die "scripts/cross-aarch64.sh build --release failed"
            bin="$FLASHSLIM_ROOT/target/aarch64-cross/aarch64-unknown-linux-gnu/release/flashslim"; want=183 ;;
    esac
    [[ -x "$bin" ]] || die "no flashslim binary at $bin"
    machine="$(od -An -j18 -N2 -tu2 "$bin" | xargs)"     # ELF e_machine: 62 x86_64, 183 aarch64
    [[ "$machine" == "$want" ]] || die "$bin is ELF machine $machine, not $arch ($want)"
    echo "$bin"
}

step_install() {
    local installer="$FLASHSLIM_ROOT/engine/dist/install.sh" stage="$VM_DIR/stage" bin="$GUEST_BIN"
    rm -rf "$stage"; mkdir -p "$stage"
    # The recipe's do_install runs the same script with its own directories (and no model).
    sh "$installer" "$stage" --bindir /usr/bin --binary "$bin" --model "$DEFAULT_MODEL" >&2 \
        || die "engine/dist/install.sh failed"
    (cd "$stage" && find . -type f | sort) >"$VM_DIR/installed.txt"
    local t0; t0=$(date +%s)
    # One tree, root-owned; --keep-directory-symlink keeps the guest's merged-/usr symlinks (/lib).
    tar -C "$stage" --owner=0 --group=0 -cf - . \
        | vm_ssh 'tar -C / --no-overwrite-dir --keep-directory-symlink -xf -' \
        || die "copying the installed tree into the guest failed"
    log "install: $(wc -l <"$VM_DIR/installed.txt") files, $(du -sm "$stage" | cut -f1) MiB copied into the guest in $(( $(date +%s) - t0 ))s"
    vm_ssh 'systemctl daemon-reload && systemctl restart systemd-journald' || die "systemctl daemon-reload in the guest failed"
    vm_ssh 'flashslim --version && systemctl cat flashslim-profile.target >/dev/null && test -r /etc/flashslim/profile.conf \
            && ls /usr/share/flashslim/tracing/*.bt >/dev/null && test -s /usr/share/flashslim/models/'"$(basename "$DEFAULT_MODEL")" >&2 \
        || die "the guest lacks part of the install (flashslim, flashslim-profile.target, profile.conf, tracing/*.bt or the model)"
    # A short session: under TCG every token costs seconds. Only keys of the installed
    # profile.conf change (as a user would edit it); the copy used is kept in vm/profile.conf.
    vm_ssh "sed -i -e 's/^TOKENS=.*/TOKENS=$tokens/' -e 's/^PROMPT=.*/PROMPT=\"The sky is\"/' \
            -e 's/^EXTRA_ARGS=.*/EXTRA_ARGS=\"--temp 0 --seed 1\"/' -e 's/^SCRIPTS=.*/SCRIPTS=$scripts/' /etc/flashslim/profile.conf \
            && cat /etc/flashslim/profile.conf" >"$VM_DIR/profile.conf" || die "editing the guest's profile.conf failed"
    grep -qx "TOKENS=$tokens" "$VM_DIR/profile.conf" || die "the guest's profile.conf has no TOKENS=$tokens after editing"
}

# --- 5. session --------------------------------------------------------------------------------
RUNS_DIR=/var/log/flashslim/runs
RUN_ID=""
# Seconds a guest soft lockup may last before the session is given up (the kernel reports one
# every ~26 s while it lasts).
LOCKUP_S=100
session_journal() {
    vm_ssh 'journalctl -b --no-pager -o short-monotonic -u flashslim-profile.service -u flashslim-profile.target' \
        >"$VM_DIR/session-journal.txt" 2>&1 || true
}
step_session() {
    local before after rc="" t0 now last_note=0 lockup
    before="$(vm_ssh "ls -1 $RUNS_DIR 2>/dev/null" || true)"
    # The blocking `systemctl start flashslim-profile.target` returns when the session ended,
    # non-zero if it failed. It runs in the guest as a transient unit, so a dropped ssh
    # connection cannot cut it short; its exit status lands in /run/flashslim-e2e/rc. (Polling
    # the oneshot's own state does not work: once inactive, systemd unloads it and `systemctl
    # show` reports defaults.)
    vm_ssh 'rm -rf /run/flashslim-e2e && mkdir -p /run/flashslim-e2e &&
            systemd-run --quiet --collect --unit=flashslim-e2e-session \
                sh -c "systemctl start flashslim-profile.target; echo \$? >/run/flashslim-e2e/rc.tmp; mv /run/flashslim-e2e/rc.tmp /run/flashslim-e2e/rc"' \
        || die "could not start 'systemctl start flashslim-profile.target' in the guest (systemd-run)"
    t0=$(date +%s)
    while :; do
        now=$(date +%s)
        if (( now - t0 > session_timeout )); then
            session_journal; tail -n 30 "$VM_DIR/session-journal.txt" >&2
            die "the session did not finish within ${session_timeout}s (--timeout); guest journal: $VM_DIR/session-journal.txt"
        fi
        qemu_alive || die "qemu exited during the session; serial log: $SERIAL"
        # A guest kernel stuck for minutes does not come back. Seen under TCG (once in ~10
        # runs): soft lockups in syscall_trace_enter on both vCPUs while bpftrace attaches its
        # tracepoints; the session then sits until --timeout. Fail now, with the reason.
        lockup="$(grep -aoE 'soft lockup - CPU#[0-9]+ stuck for [0-9]+s' "$SERIAL" 2>/dev/null \
            | awk '{ s = $NF; sub(/s$/, "", s); if (s + 0 >= LOCKUP_S) line = $0 } END { print line }' \
                LOCKUP_S="$LOCKUP_S" || true)"
        [[ -z "$lockup" ]] \
            || die "guest kernel lockup during the session ($lockup); serial log: $SERIAL"
        rc="$(vm_ssh 'cat /run/flashslim-e2e/rc 2>/dev/null' 2>/dev/null || true)"
        [[ -n "$rc" ]] && break
        if (( now - last_note >= 60 )); then
            log "session: running ($(( now - t0 ))s): $(vm_ssh 'systemctl is-active flashslim-profile.service; journalctl -q -n 1 -o cat -u flashslim-profile.service' 2>/dev/null | xargs | cut -c1-150)"
            last_note=$now
        fi
        sleep 5
    done
    session_journal
    log "session: systemctl start flashslim-profile.target exited $rc after $(( $(date +%s) - t0 ))s"
    [[ "$rc" == 0 ]] || {
        tail -n 40 "$VM_DIR/session-journal.txt" >&2
        # Keep the guest's newest run directory (manifest, bpf-*.log) for the post-mortem.
        mkdir -p "$VM_DIR/failed-run"
        vm_ssh "d=\$(ls -1td $RUNS_DIR/*/ 2>/dev/null | head -n 1); [ -n \"\$d\" ] && tar -C \"\$d\" -cf - ." \
            | tar -C "$VM_DIR/failed-run" -xf - 2>/dev/null || true
        die "systemctl start flashslim-profile.target failed (exit $rc) in the guest; guest journal: $VM_DIR/session-journal.txt, its run directory: $VM_DIR/failed-run/"
    }
    # The target is ordered after the service: it is reached only once the session succeeded.
    grep -q 'Reached target.*flashslim' "$VM_DIR/session-journal.txt" \
        || die "flashslim-profile.target was never reached (no 'Reached target' in $VM_DIR/session-journal.txt)"
    after="$(vm_ssh "ls -1 $RUNS_DIR" 2>/dev/null || true)"
    RUN_ID="$(comm -13 <(sort <<<"$before") <(sort <<<"$after") | grep -v '^$' || true)"
    [[ -n "$RUN_ID" && "$(wc -l <<<"$RUN_ID")" -eq 1 ]] \
        || die "expected one new run directory in the guest's $RUNS_DIR, found: '${RUN_ID//$'\n'/ }'"
    log "session: run $RUN_ID"
}

# --- 6. pull -----------------------------------------------------------------------------------
# pull LOG — slim-pull-logs into PULLED with this run's ssh options; the output goes to LOG too.
pull() {
    local opts=() o
    for o in "${SSH_OPTS[@]}"; do [[ "$o" == -o ]] || opts+=(--ssh-opt "$o"); done
    "$PULL_LOGS" --target "root@127.0.0.1:$PORT" --all --dest "$PULLED" -q "${opts[@]}" 2>&1 | tee "$1" >&2
    return "${PIPESTATUS[0]}"
}
step_pull() {
    pull "$out/pull-1.log" || die "slim-pull-logs failed (exit $?); its output: $out/pull-1.log"
    [[ -f "$PULLED/$RUN_ID/manifest.json" ]] \
        || die "slim-pull-logs exited 0 but $PULLED/$RUN_ID/manifest.json is missing (output: $out/pull-1.log)"
}

# --- 7. report ---------------------------------------------------------------------------------
DOM=""
step_report() {
    "$SLIM" report "$PULLED/$RUN_ID" -o "$REPORT" 2>&1 | tee "$out/report.log" >&2
    [[ "${PIPESTATUS[0]}" == 0 ]] || die "slim report failed; its output: $out/report.log"
    [[ -s "$REPORT" ]] || die "slim report exited 0 but wrote no $REPORT"
    # The page's own script marks <html> with data-timeline-rendered / data-js-errors.
    if command -v chromium >/dev/null; then
        timeout 180 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
            --enable-logging=stderr --v=0 --virtual-time-budget=5000 --dump-dom "file://$REPORT" >"$out/report.dom.html" 2>"$out/report.chromium.log" \
            || die "headless chromium failed on $REPORT (log: $out/report.chromium.log)"
        DOM="$out/report.dom.html"
    else
        log "report: no chromium on this host: the page's script is not run (apt-get install chromium)"
    fi
}

# --- 8. assert ---------------------------------------------------------------------------------
# tree_state DIR — every file below DIR but the runs' manifest.json, with size, mtime and inode:
# a copy (or a rename over it) changes its line.
tree_state() { (cd "$1" && find . -type f ! -name manifest.json -printf '%p %s %T@ %i\n' | sort); }
# manifest_state DIR — each run's manifest.json, by content and by inode.
manifest_state() { (cd "$1" && find . -name manifest.json -printf '%p %i ' -exec sha256sum {} \; | sort); }
step_assert() {
    python3 "$HERE/check-run.py" "$PULLED/$RUN_ID" --report "$REPORT" ${DOM:+--dom "$DOM" --console "$out/report.chromium.log"} | tee "$out/assert.txt" >&2
    local rc="${PIPESTATUS[0]}" s1 s2 m1 m2 fail=""
    # A second pull of the same runs must copy nothing.
    s1="$(tree_state "$PULLED")"; m1="$(manifest_state "$PULLED")"
    pull "$out/pull-2.log" || fail="slim-pull-logs failed (exit $?): $out/pull-2.log"
    s2="$(tree_state "$PULLED")"; m2="$(manifest_state "$PULLED")"
    if [[ -z "$fail" && "$s1" != "$s2" ]]; then
        fail="the second pull changed files in $PULLED: $(diff <(echo "$s1") <(echo "$s2") | grep '^[<>]' | head -n 4 | xargs)"
    elif [[ -z "$fail" ]] && grep -q 'pulled [1-9]' "$out/pull-2.log"; then
        fail="slim-pull-logs reports copying files on the second pull ($out/pull-2.log)"
    elif [[ -z "$fail" ]] && ! grep -q "$RUN_ID: already complete on the host" "$out/pull-2.log"; then
        fail="slim-pull-logs did not report '$RUN_ID: already complete on the host' ($out/pull-2.log)"
    elif [[ -z "$fail" && "$(awk '{print $1, $3}' <<<"$m1")" != "$(awk '{print $1, $3}' <<<"$m2")" ]]; then
        fail="the second pull changed the content of a local manifest.json"
    fi
    if [[ -n "$fail" ]]; then
        echo "FAIL second-pull             $fail" | tee -a "$out/assert.txt" >&2; rc=1
    else
        local note=""
        # slim-pull-logs rewrites a complete run's manifest.json (same bytes) on every pull.
        [[ "$m1" != "$m2" ]] && note=" (manifest.json rewritten with identical bytes)"
        echo "ok   second-pull            copied nothing: '$RUN_ID: already complete on the host', every file untouched$note" | tee -a "$out/assert.txt" >&2
    fi
    [[ "$rc" == 0 ]] || die "assertions failed (the FAIL lines above; $out/assert.txt)"
}

# --- main ---------------------------------------------------------------------------------------
case "$arch" in
    x86_64) need_apt qemu-system-x86 ;;
    aarch64) need_apt qemu-system-arm ;;
esac
# After qemu-system: Debian's qemu-system-common conflicts with a backported qemu-utils, which
# apt then removes; this puts the matching qemu-img back.
need_apt qemu-utils openssh-client python3
log "e2e: arch $arch, out $out, tag $TAG"
rm -rf "$VM_DIR" "$PULLED" "$REPORT" "$out"/{timings.txt,assert.txt,pull-1.log,pull-2.log,report.log,report.dom.html,report.chromium.log}
mkdir -p "$VM_DIR"

if [[ -z "$boot_only" ]]; then step build step_build; fi
step base-image step_base_image
step boot step_boot
step guest-check step_guest_check
if [[ -n "$boot_only" ]]; then
    log "e2e: --boot-only: the base image boots ($ACCEL_USED) and passes the guest checks; install, session, pull, report and assert were not run"
    exit 0
fi
step install step_install
step session step_session
step pull step_pull
step report step_report
step assert step_assert
log "e2e: passed ($arch, $ACCEL_USED); report: $REPORT"
