#!/usr/bin/env bash
# The engine against llama.cpp on real models: greedy text (first 16 tokens) and perplexity
# (within 1%) for Q4_1 and the Q4_0, Q8_0, Q4_K_M, Q5_K_M and F16 variants. The expected values
# are committed fixtures; only llama-quantize is built here, to make the variants.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
need_model
LLAMA_TARGETS="llama-quantize" "$FLASHSLIM_ROOT/scripts/build-llama-ref.sh" --variants >/dev/null
cd "$FLASHSLIM_ROOT"
cargo test -q --release -p flashslim-engine --test reference -- --include-ignored --test-threads 1 2>&1 | tail -n 30
