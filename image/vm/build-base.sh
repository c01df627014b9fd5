#!/usr/bin/env bash
# build-base.sh — the emulated device's base image: Debian 12 (debootstrap) with systemd, sshd,
# rsync, bpftrace and a Debian kernel, cached in .cache/vm/<arch>/<key>/ where <key> hashes this
# script and packages.txt (an edit rebuilds). Prints the cache directory on stdout.
#
# Usage: image/vm/build-base.sh [--arch x86_64|aarch64] [--rebuild]
#
# The cache directory holds: base.qcow2 (ext4 root filesystem, no partition table), vmlinuz and
# initrd.img (for qemu -kernel/-initrd), id_ed25519 (throwaway root ssh key of this cache),
# known_hosts (the guest's host key under the alias `flashslim-vm`) and manifest.txt (versions).
# No loop device or mount is used: the root filesystem is written with `mkfs.ext4 -d`. A foreign
# arch (aarch64 on x86_64) runs debootstrap's second stage through qemu-user-static + binfmt_misc.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../../scripts/lib.sh"

SUITE=bookworm
DISK_SIZE=4G

usage() { sed -n '6p' "$0" | sed 's/^# //' >&2; exit 2; }
arch="x86_64"; rebuild=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) arch="${2:-}"; shift 2 ;;
        --rebuild) rebuild=1; shift ;;
        -h|--help) usage ;;
        *) log "unknown argument: $1"; usage ;;
    esac
done
case "$arch" in
    x86_64) debarch=amd64 ;;
    aarch64) debarch=arm64 ;;
    *) die "--arch must be x86_64 or aarch64, not '$arch'" ;;
esac

cache_root="${FLASHSLIM_VM_CACHE:-$FLASHSLIM_ROOT/.cache/vm}/$arch"
key="$(cat "$HERE/build-base.sh" "$HERE/packages.txt" <(echo "$arch $SUITE $DISK_SIZE") | sha256sum | cut -c1-16)"
dir="$cache_root/$key"
[[ -f "$dir/ok" && -z "$rebuild" ]] && { echo "$dir"; exit 0; }

# --- tools ------------------------------------------------------------------------------------
need_apt debootstrap debian-archive-keyring e2fsprogs qemu-utils openssh-client
if [[ "$(uname -m)" != "$arch" ]]; then
    need_apt qemu-user-static binfmt-support
    # A fresh machine without systemd as PID 1 may not have binfmt_misc mounted.
    [[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
        || die "cannot mount binfmt_misc (needed to run $arch binaries during debootstrap)"
    update-binfmts --enable "qemu-$arch" >/dev/null 2>&1 || true
    grep -q '^enabled' "/proc/sys/fs/binfmt_misc/qemu-$arch" 2>/dev/null \
        || die "binfmt_misc has no enabled qemu-$arch entry (update-binfmts --display qemu-$arch)"
fi

# The mirror this machine's apt uses (deb822 .sources or one-line sources.list), unless overridden.
mirror_of_host() {
    local m
    m="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
    [[ -n "$m" ]] || m="$(grep -hsE '^deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | sed -E 's/^deb\s+(\[[^]]*\]\s+)?//' | awk '$2 ~ /^bookworm$/ {print $1}' | head -n1 || true)"
    echo "${m:-http://deb.debian.org/debian}"
}
mirror="${FLASHSLIM_VM_MIRROR:-$(mirror_of_host)}"

# --- one builder at a time per arch; the loser of the race reuses the winner's image -----------
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock -w 1800 9 || die "timed out waiting for another base-image build ($cache_root/.lock)"
[[ -f "$dir/ok" && -z "$rebuild" ]] && { echo "$dir"; exit 0; }

tmp="$dir.tmp"
rootfs="$tmp/rootfs"
# Unmount whatever debootstrap left mounted under the tree (reverse order), then delete it;
# --one-file-system never descends into a mount that survived.
unmount_under() {
    local m
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r \
        | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
cleanup() {
    unmount_under "$rootfs"
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$tmp"

t0=$(date +%s)
pkgs="$(sed 's/#.*//' "$HERE/packages.txt" | xargs | tr ' ' ','),linux-image-$debarch"
log "vm: building the $arch base image ($SUITE from $mirror) in $dir"
log "vm: debootstrap (log: $tmp/debootstrap.log)"
debootstrap_failed() {
    unmount_under "$rootfs"
    tail -n 20 "$tmp/debootstrap.log" >&2
    cp "$tmp/debootstrap.log" "$cache_root/debootstrap-failed.log" 2>/dev/null || true
    die "debootstrap $1 failed (full log: $cache_root/debootstrap-failed.log)"
}
# Two stages, so the initramfs configuration is in place before the kernel's postinst builds the
# initramfs: with Debian's MODULES=most it runs modinfo on every module, which takes tens of
# minutes under qemu-user, and the boot then coldplugs hundreds of modules under TCG.
debootstrap --foreign --variant=minbase --arch="$debarch" --include="$pkgs" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || debootstrap_failed "(first stage)"
install -d "$rootfs/etc/initramfs-tools/conf.d" "$rootfs/etc/initramfs-tools/hooks"
echo MODULES=list >"$rootfs/etc/initramfs-tools/conf.d/flashslim-vm.conf"
cat >"$rootfs/etc/initramfs-tools/hooks/flashslim-vm" <<'EOF'
#!/bin/sh
# flashslim-vm: the modules that mount the root disk (MODULES=list leaves out all others).
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_mmio virtio_blk ext4 crc32c_generic
EOF
chmod 755 "$rootfs/etc/initramfs-tools/hooks/flashslim-vm"
chroot "$rootfs" /debootstrap/debootstrap --second-stage >>"$tmp/debootstrap.log" 2>&1 \
    || debootstrap_failed "(second stage)"
unmount_under "$rootfs"
t_debootstrap=$(( $(date +%s) - t0 ))

# --- guest configuration -----------------------------------------------------------------------
log "vm: configuring the guest"
echo flashslim-vm >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tflashslim-vm\n' >"$rootfs/etc/hosts"
echo 'LABEL=flashslim-root / ext4 rw,errors=remount-ro 0 1' >"$rootfs/etc/fstab"
# machine-id is made at boot; every run's overlay gets its own.
: >"$rootfs/etc/machine-id"

# Network: qemu's user-mode NIC answers DHCP; systemd-networkd takes it.
cat >"$rootfs/etc/systemd/network/20-qemu.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
systemctl --root="$rootfs" enable systemd-networkd.service >/dev/null 2>&1 \
    || die "systemctl --root enable systemd-networkd failed"

# No periodic maintenance jobs on a throwaway disk (they also slow the boot under TCG).
for unit in e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer fstrim.timer; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done

# ssh: root by key only. The key pair is this cache's own and is thrown away with it.
cat >"$rootfs/etc/ssh/sshd_config.d/10-flashslim-vm.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
# The guest has no locales: do not take the client's LANG/LC_* (setlocale warnings on every command).
sed -i 's/^AcceptEnv/#AcceptEnv/' "$rootfs/etc/ssh/sshd_config"
ssh-keygen -q -t ed25519 -N '' -C "flashslim-vm-$arch-$key" -f "$tmp/id_ed25519"
install -d -m 700 "$rootfs/root/.ssh"
install -m 600 "$tmp/id_ed25519.pub" "$rootfs/root/.ssh/authorized_keys"
hostkey="$rootfs/etc/ssh/ssh_host_ed25519_key.pub"
[[ -f "$hostkey" ]] || die "openssh-server made no ed25519 host key in the image"
echo "flashslim-vm $(cut -d' ' -f1,2 "$hostkey")" >"$tmp/known_hosts"

# Kernel and initramfs for direct boot (-kernel/-initrd).
shopt -s nullglob
kernels=("$rootfs"/boot/vmlinuz-*); initrds=("$rootfs"/boot/initrd.img-*)
shopt -u nullglob
[[ ${#kernels[@]} -eq 1 ]] || die "expected one kernel in the image's /boot, found ${#kernels[@]}"
[[ ${#initrds[@]} -eq 1 ]] || die "expected one initramfs in the image's /boot, found ${#initrds[@]} (initramfs-tools failed?)"
cp "${kernels[0]}" "$tmp/vmlinuz"
cp "${initrds[0]}" "$tmp/initrd.img"
kver="${kernels[0]##*/vmlinuz-}"

# Versions, read from dpkg's status file (no need to execute anything of the guest's).
{
    echo "suite: $SUITE"
    echo "mirror: $mirror"
    echo "arch: $arch ($debarch)"
    echo "kernel: $kver"
    echo "built: $(date -u +%FT%TZ)"
    echo "packages:"
    awk '/^Package:/ {p=$2} /^Version:/ {print "  " p " " $2}' "$rootfs/var/lib/dpkg/status" | sort
} >"$tmp/manifest.txt"

# Shrink: downloaded .debs and apt lists are not needed on the device.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

# --- disk ------------------------------------------------------------------------------------
log "vm: writing the root filesystem (mkfs.ext4 -d, $DISK_SIZE sparse)"
t1=$(date +%s)
truncate -s "$DISK_SIZE" "$tmp/disk.raw"
mkfs.ext4 -q -F -L flashslim-root -d "$rootfs" "$tmp/disk.raw" \
    || die "mkfs.ext4 -d failed"
qemu-img convert -O qcow2 "$tmp/disk.raw" "$tmp/base.qcow2" || die "qemu-img convert failed"
rm -f "$tmp/disk.raw"
rm -rf --one-file-system "$rootfs"
t_disk=$(( $(date +%s) - t1 ))

echo "build: debootstrap ${t_debootstrap}s, disk ${t_disk}s, total $(( $(date +%s) - t0 ))s" >>"$tmp/manifest.txt"
touch "$tmp/ok"
rm -rf --one-file-system "$dir"
mv "$tmp" "$dir"
# Older keys of this arch are stale (the builder or package list changed since).
for old in "$cache_root"/*/; do
    old="${old%/}"
    [[ "$old" != "$dir" && -f "$old/ok" ]] && rm -rf --one-file-system "$old"
done
log "vm: base image ready in $(( $(date +%s) - t0 ))s (debootstrap ${t_debootstrap}s, disk ${t_disk}s)"
echo "$dir"
