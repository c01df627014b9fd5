#!/usr/bin/env bash
# e2e.sh — the emulated device end to end: boots a Debian VM standing in for flashslim-image,
# installs what the Yocto recipe installs (same installer), runs a profiling session over ssh,
# pulls the run with slim-pull-logs and renders it with slim report. Issue #7; docs/emulated-device.md.
#
# Usage: image/vm/e2e.sh [--out DIR] [--arch x86_64|aarch64] [--accel auto|kvm|tcg] [--boot-only]
#                        [--keep] [--rebuild] [--timeout SECS] [--boot-timeout SECS]
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
#   --boot-timeout SECS boot to ssh (default: 300 for x86_64, 1200 for aarch64)
#
# Steps: base-image, boot, guest-check, install, session, pull, report, assert. Every failure
# exits non-zero with one `error:` line saying what failed and where to look. A trap stops qemu
# and removes the overlay on any exit, Ctrl-C included, and then checks no qemu of ours is left.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../../scripts/lib.sh"

usage() { sed -n '6,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
arch="x86_64"; out=""; accel="auto"; boot_only=""; keep=""; rebuild=""
session_timeout=900; boot_timeout=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --arch) arch="${2:?--arch needs x86_64 or aarch64}"; shift 2 ;;
        --accel) accel="${2:?--accel needs auto, kvm or tcg}"; shift 2 ;;
        --boot-only) boot_only=1; shift ;;
        --keep) keep=1; shift ;;
        --rebuild) rebuild=1; shift ;;
        --timeout) session_timeout="${2:?}"; shift 2 ;;
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
# phase2 WHAT — a step whose pieces are not on this branch yet: fail, never pretend.
phase2() { die "phase 2: $*"; }

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

# --- 4. install: the same installer as the Yocto recipe ------------------------------------------
# guest_binary — the flashslim binary for the guest's arch.
guest_binary() {
    local bin machine want
    case "$arch" in
        x86_64) bin="$(flashslim_bin)"; want=62 ;;
        aarch64)
            [[ -x "$FLASHSLIM_ROOT/scripts/cross-aarch64.sh" ]] \
                || phase2 "scripts/cross-aarch64.sh is not on this branch; the aarch64 guest needs its cross-built flashslim"
            "$FLASHSLIM_ROOT/scripts/cross-aarch64.sh" >&2 || die "scripts/cross-aarch64.sh failed"
            bin="$FLASHSLIM_ROOT/target/aarch64-unknown-linux-gnu/release/flashslim"; want=183 ;;
    esac
    [[ -x "$bin" ]] || die "no flashslim binary at $bin"
    machine="$(od -An -j18 -N2 -tu2 "$bin" | xargs)"     # ELF e_machine: 62 x86_64, 183 aarch64
    [[ "$machine" == "$want" ]] || die "$bin is ELF machine $machine, not $arch ($want)"
    echo "$bin"
}

step_install() {
    local installer="$FLASHSLIM_ROOT/engine/dist/install.sh"
    [[ -f "$installer" ]] || phase2 "engine/dist/install.sh is not on this branch. This step runs it (the script the Yocto recipe's do_install calls) as 'install.sh STAGE --bindir /usr/bin --binary <flashslim for $arch>', adds the default model to STAGE/usr/share/flashslim/models/, copies STAGE into the guest's / and reloads systemd"
    local stage="$VM_DIR/stage" bin
    bin="$(guest_binary)"
    need_model
    rm -rf "$stage"; mkdir -p "$stage"
    bash "$installer" "$stage" --bindir /usr/bin --binary "$bin" >&2 || die "engine/dist/install.sh failed"
    install -D -m 0644 "$DEFAULT_MODEL" "$stage/usr/share/flashslim/models/$(basename "$DEFAULT_MODEL")"
    # One tree, root-owned; --keep-directory-symlink keeps the guest's merged-/usr symlinks (/lib).
    tar -C "$stage" --owner=0 --group=0 -cf - . \
        | vm_ssh 'tar -C / --no-overwrite-dir --keep-directory-symlink -xf -' \
        || die "copying the installed tree into the guest failed"
    vm_ssh 'systemctl daemon-reload && systemctl restart systemd-journald' || die "systemctl daemon-reload in the guest failed"
    vm_ssh 'flashslim --version && systemctl cat flashslim-profile.target >/dev/null && test -r /etc/flashslim/profile.conf && ls /usr/share/flashslim/tracing/*.bt >/dev/null' >&2 \
        || die "the guest lacks part of the install (flashslim, flashslim-profile.target, profile.conf or tracing/*.bt)"
}

# --- 5. session --------------------------------------------------------------------------------
step_session() {
    # TODO(phase 2): needs `flashslim profile` and the units. Then this step:
    #   vm_ssh 'systemctl start --no-block flashslim-profile.target'
    #   polls every 2 s, up to --timeout, `systemctl show -p ActiveState,Result flashslim-profile.service`
    #   until the oneshot is inactive (Result=success) or failed; on failure or timeout prints
    #   `journalctl -u flashslim-profile.service -n 50` from the guest and dies naming the unit;
    #   records the newest run dir under /var/log/flashslim/runs/ for the assert step.
    phase2 "the session step needs flashslim profile and flashslim-profile.target (systemctl start flashslim-profile.target, then wait up to ${session_timeout}s for the oneshot)"
}

# --- 6. pull -----------------------------------------------------------------------------------
step_pull() {
    # TODO(phase 2): needs tools' slim-pull-logs. Then this step:
    #   slim-pull-logs --target root@127.0.0.1:$PORT --all --dest "$PULLED" \
    #       --ssh-opt <each of SSH_OPTS: key, known_hosts with HostKeyAlias, BatchMode>
    #   and checks that DIR/pulled/ holds the run dir recorded by the session step.
    phase2 "the pull step needs slim-pull-logs (slim-pull-logs --target root@127.0.0.1:$PORT --all --dest $PULLED --ssh-opt ...)"
}

# --- 7. report ---------------------------------------------------------------------------------
step_report() {
    # TODO(phase 2): needs tools' slim report. Then: slim report PULLED/<run> -o "$REPORT", and
    #   checks the file is non-empty HTML (ends with </html>).
    phase2 "the report step needs slim report (slim report RUN_DIR -o $REPORT)"
}

# --- 8. assert ---------------------------------------------------------------------------------
step_assert() {
    # TODO(phase 2): with the run-dir format of the profile runner, assert:
    #   - the run's manifest says `complete`;
    #   - every file verifies against the manifest's checksums;
    #   - each bpftrace output named by the profile config is present and non-empty, and its
    #     timestamps fall inside the engine's own start/end (same CLOCK_MONOTONIC);
    #   - the report rendered (step 7);
    #   - a second slim-pull-logs into the same --dest copies nothing (tree listing with sizes
    #     and mtimes identical before and after, and the tool reports 0 files copied).
    phase2 "the assertions need the run-dir format of flashslim profile (complete, checksums, bpftrace clock alignment, idempotent second pull)"
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
rm -rf "$VM_DIR" "$PULLED" "$REPORT" "$out/timings.txt"
mkdir -p "$VM_DIR"

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
