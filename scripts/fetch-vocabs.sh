#!/usr/bin/env bash
# fetch-vocabs.sh — put llama.cpp's vocab-only test GGUFs (models/ggml-vocab-*.gguf) in the
# gitignored .cache/vocab/, without building llama.cpp. They come from the pinned llama-cpp-python
# sdist that scripts/build-llama-ref.sh builds (lib.sh: llama_sdist). Idempotent. Prints the
# directory.
# Usage: scripts/fetch-vocabs.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROOT="$FLASHSLIM_ROOT"
OUT="$ROOT/.cache/vocab"
# The vocabularies the tokenizer tests read (engine/tests/tokenizer.rs).
NEEDED=(gpt-2 llama-bpe qwen2 llama-spm phi-3 qwen35 starcoder mpt)

have_all() { for v in "${NEEDED[@]}"; do [[ -s "$OUT/ggml-vocab-$v.gguf" ]] || return 1; done; }

if ! have_all; then
    mkdir -p "$OUT"
    sdist="$(llama_sdist)"
    tmp="$(mktemp -d)"
    tar xzf "$sdist" -C "$tmp" --strip-components=4 --wildcards \
        "llama_cpp_python-$LLAMA_SDIST_VERSION/vendor/llama.cpp/models/ggml-vocab-*.gguf"
    mv "$tmp"/ggml-vocab-*.gguf "$OUT/"
    rm -rf "$tmp"
    have_all || die "the sdist lacks some of: ${NEEDED[*]}"
    log "fetch-vocabs: $(ls "$OUT" | wc -l) vocabularies in $OUT"
fi
echo "$OUT"
