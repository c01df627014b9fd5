#!/usr/bin/env bash
# Engine library and binary tests (cargo test), plus rustfmt and clippy hygiene.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
need_model
cd "$FLASHSLIM_ROOT"
cargo test -q --release --workspace 2>&1 | tail -n 40
