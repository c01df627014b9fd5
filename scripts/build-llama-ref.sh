#!/usr/bin/env bash
# build-llama-ref.sh — build the reference llama.cpp into the gitignored .cache/llama.cpp/.
# Source: the llama.cpp tree vendored in the llama-cpp-python sdist on PyPI (pinned version and
# sha256 below). Nothing from it is committed. Prints the bin directory on the last line.
# Usage: scripts/build-llama-ref.sh [--variants]   (--variants also writes quantized test models)
#        LLAMA_TARGETS="llama-quantize" scripts/build-llama-ref.sh --variants   (build less)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache/llama.cpp"
VERSION="0.3.36"
SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# LLAMA_TARGETS narrows the build (CI needs only llama-quantize for the quantized variants).
read -r -a TARGETS <<< "${LLAMA_TARGETS:-llama-completion llama-tokenize llama-perplexity llama-bench llama-quantize}"
BIN="$CACHE/build/bin"
mkdir -p "$CACHE"

have_all() { for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done; }

if ! have_all; then
    command -v cmake >/dev/null && command -v g++ >/dev/null || {
        echo "build-llama-ref: installing cmake and g++" >&2
        apt-get install -y -q cmake g++ >/dev/null
    }
    sdist="$CACHE/llama_cpp_python-$VERSION.tar.gz"
    if [[ ! -s "$sdist" ]] || ! echo "$SHA256  $sdist" | sha256sum -c --quiet - 2>/dev/null; then
        # pip needs cmake + scikit-build-core to read the sdist's metadata, even for a download.
        python3 -m pip install --quiet scikit-build-core
        dl="$(mktemp -d)"
        python3 -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: \
            "llama-cpp-python==$VERSION" -d "$dl"
        mv "$dl/llama_cpp_python-$VERSION.tar.gz" "$sdist.partial" && rm -rf "$dl"
        echo "$SHA256  $sdist.partial" | sha256sum -c --quiet -
        mv "$sdist.partial" "$sdist"
    fi
    if [[ "$(cat "$CACHE/src/.flashslim-sdist" 2>/dev/null)" != "$VERSION" ]]; then
        rm -rf "$CACHE/src" "$CACHE/build" && mkdir -p "$CACHE/src"
        tar xzf "$sdist" -C "$CACHE/src" --strip-components=3 "llama_cpp_python-$VERSION/vendor/llama.cpp"
        rm -f "$CACHE/src/.git"  # a dangling submodule pointer; cmake would warn about it
        echo "$VERSION" > "$CACHE/src/.flashslim-sdist"
    fi
    cmake -S "$CACHE/src" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DBUILD_SHARED_LIBS=OFF >/dev/null
    cmake --build "$CACHE/build" -j"$(nproc)" --target "${TARGETS[@]}" >/dev/null
fi
have_all || { echo "build-llama-ref: build finished but binaries are missing in $BIN" >&2; exit 1; }

if [[ "${1:-}" == "--variants" ]]; then
    "$ROOT/scripts/fetch-model.sh" >/dev/null
    base="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    for t in Q4_0 Q8_0 Q4_K_M Q5_K_M F16; do
        out="$ROOT/models/SmolLM2-135M-Instruct.$t.gguf"
        [[ -s "$out" ]] && continue
        "$BIN/llama-quantize" --allow-requantize "$base" "$out.partial" "$t" >/dev/null 2>&1
        mv "$out.partial" "$out"
    done
fi
echo "$BIN"
