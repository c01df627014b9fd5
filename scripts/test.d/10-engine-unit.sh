#!/usr/bin/env bash
# Engine library and binary tests (cargo test --workspace, release), on the default model.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
need_model
"$FLASHSLIM_ROOT/scripts/fetch-vocabs.sh" >/dev/null   # tests/tokenizer.rs needs the vocab GGUFs
cd "$FLASHSLIM_ROOT"
cargo test -q --release --workspace 2>&1 | tail -n 40
