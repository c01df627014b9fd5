#!/usr/bin/env bash
# The declared rust-version (1.94, Yocto wrynose's rustc) really builds the workspace.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
msrv="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$FLASHSLIM_ROOT/Cargo.toml")"
[[ -n "$msrv" ]] || die "no rust-version in Cargo.toml"
rustup toolchain list | grep -q "^$msrv" || rustup toolchain install "$msrv" --profile minimal >/dev/null 2>&1 \
    || die "cannot install Rust $msrv"
cd "$FLASHSLIM_ROOT"
CARGO_TARGET_DIR="$FLASHSLIM_ROOT/target/msrv" cargo "+$msrv" check -q --workspace --all-targets --locked
log "workspace builds with Rust $msrv"
