#!/usr/bin/env bash
# cross-aarch64.sh — build and run flashslim for aarch64 on an x86-64 Debian host, no container:
# Debian's rustc-web/cargo-web with the arm64 standard library, the aarch64 GNU linker, and
# qemu-user to run the results. Idempotent: installs what is missing, then does what it is told.
# The target dir is target/aarch64-cross, so it never fights the host build; the linker and the
# runner are set through the environment (no committed .cargo/config).
#
# Usage: scripts/cross-aarch64.sh install
#        scripts/cross-aarch64.sh build [--release] [cargo build args]
#        scripts/cross-aarch64.sh test [cargo test args]      (runs under qemu-aarch64)
#        scripts/cross-aarch64.sh run BIN [ARGS...]            (BIN: path of a built aarch64 binary)
#        scripts/cross-aarch64.sh env                          (print the variables it sets)
# QEMU_CPU picks the emulated CPU for test/run (e.g. max, cortex-a76 with dotprod; cortex-a57
# without); default max. Binaries are linked statically (+crt-static): Debian bookworm's
# qemu-user 7.2 hangs in pthread_create of dynamically linked aarch64 programs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/lib.sh"

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

install_cross() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
        log "cross-aarch64: adding the arm64 architecture to dpkg"
        $sudo dpkg --add-architecture arm64
        _apt_updated=""
    fi
    need_apt rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] || die "rustc-web/cargo-web did not install /usr/bin/rustc and /usr/bin/cargo"
    [[ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$TARGET" ]] || die "no $TARGET standard library for /usr/bin/rustc"
}

setup_env() {
    export RUSTC=/usr/bin/rustc
    export CARGO_TARGET_DIR="$ROOT/target/aarch64-cross"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
    export QEMU_CPU="${QEMU_CPU:-max}"
    # The host's rustup cargo must not shadow Debian's; run /usr/bin/cargo explicitly.
    CARGO=/usr/bin/cargo
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    install)
        install_cross
        log "cross-aarch64: $(/usr/bin/rustc --version), $(aarch64-linux-gnu-gcc --version | head -1), $(qemu-aarch64 --version | head -1)"
        ;;
    build)
        install_cross; setup_env
        cd "$ROOT" && "$CARGO" build --target "$TARGET" -p flashslim-engine "$@"
        ;;
    test)
        install_cross; setup_env
        cd "$ROOT" && "$CARGO" test --target "$TARGET" -p flashslim-engine "$@"
        ;;
    run)
        [[ $# -ge 1 ]] || die "usage: cross-aarch64.sh run BIN [ARGS...]"
        install_cross; setup_env
        exec qemu-aarch64 -L "$SYSROOT" "$@"
        ;;
    env)
        setup_env
        for v in RUSTC CARGO_TARGET_DIR CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS \
            QEMU_CPU; do
            printf '%s=%q\n' "$v" "${!v}"
        done
        echo "CARGO=$CARGO"
        ;;
    *)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
