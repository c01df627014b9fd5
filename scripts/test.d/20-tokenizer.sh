#!/usr/bin/env bash
# Tokenizer and chat templates against llama.cpp's fixtures, on the default model and the
# vocab-only GGUFs (engine/tests/tokenizer.rs). Fetches what it reads; the test fails, never
# skips, if a vocabulary is missing.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
"$FLASHSLIM_ROOT/scripts/fetch-vocabs.sh" >/dev/null
need_model
cd "$FLASHSLIM_ROOT"
cargo test -q --release -p flashslim-engine --test tokenizer 2>&1 | tail -n 40
exit "${PIPESTATUS[0]}"
