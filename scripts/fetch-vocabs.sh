#!/usr/bin/env bash
# fetch-vocabs.sh — put llama.cpp's vocab-only test GGUFs (models/ggml-vocab-*.gguf) in the
# gitignored .cache/vocab/, without building llama.cpp. They come from the same pinned
# llama-cpp-python sdist as scripts/build-llama-ref.sh (same version and sha256; its cached
# tarball in .cache/llama.cpp/ is reused when present). Idempotent. Prints the directory.
# Usage: scripts/fetch-vocabs.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROOT="$FLASHSLIM_ROOT"
# Pinned exactly as in scripts/build-llama-ref.sh.
VERSION="0.3.36"
SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
OUT="$ROOT/.cache/vocab"
# The vocabularies the tokenizer tests read (engine/tests/tokenizer.rs).
NEEDED=(gpt-2 llama-bpe qwen2 llama-spm phi-3 qwen35 starcoder mpt)

have_all() { for v in "${NEEDED[@]}"; do [[ -s "$OUT/ggml-vocab-$v.gguf" ]] || return 1; done; }

if ! have_all; then
    mkdir -p "$OUT" "$ROOT/.cache/llama.cpp"
    sdist="$ROOT/.cache/llama.cpp/llama_cpp_python-$VERSION.tar.gz"
    if [[ ! -s "$sdist" ]] || ! echo "$SHA256  $sdist" | sha256sum -c --quiet - 2>/dev/null; then
        need_apt python3 python3-pip
        # pip needs scikit-build-core to read the sdist's metadata, even for a download.
        need_pip scikit-build-core
        dl="$(mktemp -d)"
        python3 -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: \
            "llama-cpp-python==$VERSION" -d "$dl" || die "pip download llama-cpp-python==$VERSION failed"
        mv "$dl/llama_cpp_python-$VERSION.tar.gz" "$sdist.partial" && rm -rf "$dl"
        echo "$SHA256  $sdist.partial" | sha256sum -c --quiet - || die "sha256 mismatch for $sdist"
        mv "$sdist.partial" "$sdist"
    fi
    tmp="$(mktemp -d)"
    tar xzf "$sdist" -C "$tmp" --strip-components=4 --wildcards \
        "llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-*.gguf"
    mv "$tmp"/ggml-vocab-*.gguf "$OUT/"
    rm -rf "$tmp"
    have_all || die "the sdist lacks some of: ${NEEDED[*]}"
    log "fetch-vocabs: $(ls "$OUT" | wc -l) vocabularies in $OUT"
fi
echo "$OUT"
