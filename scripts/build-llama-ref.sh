#!/usr/bin/env bash
# build-llama-ref.sh — build the reference llama.cpp into the gitignored .cache/llama.cpp/.
# Source: the llama.cpp tree vendored in the pinned llama-cpp-python sdist on PyPI (lib.sh:
# llama_sdist). Nothing from it is committed. Prints the bin directory on the last line.
#
# The instruction sets are chosen explicitly (GGML_NATIVE=OFF) from what this CPU reports, and
# AMX is left out: VMs that list amx_* in /proc/cpuinfo without giving the guest AMX state crash
# in llama.cpp's AMX matmul (SIGSEGV in ggml::cpu::amx). The chosen set is printed, kept in
# BUILD/flashslim-features, and is the cache key: a checkout moved to another CPU rebuilds.
# After a build, a one-token llama-bench run on the default model proves the binaries run here.
#
# Usage: scripts/build-llama-ref.sh [--variants]   (--variants also writes quantized test models)
#        LLAMA_TARGETS="llama-quantize" scripts/build-llama-ref.sh   (build less)
#        LLAMA_REF_ISA=avx2 scripts/build-llama-ref.sh   (AVX2/FMA/F16C only, into build-avx2/)
#        LLAMA_REF_AMX=1 ...   (also AMX, when the host really has it)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROOT="$FLASHSLIM_ROOT"
CACHE="$ROOT/.cache/llama.cpp"
ISA="${LLAMA_REF_ISA:-native}"
read -r -a TARGETS <<< "${LLAMA_TARGETS:-llama-completion llama-tokenize llama-perplexity llama-bench llama-quantize}"
case "$ISA" in
    native) BUILD="$CACHE/build" ;;
    avx2) BUILD="$CACHE/build-avx2" ;;
    *) die "LLAMA_REF_ISA must be native or avx2, not '$ISA'" ;;
esac
BIN="$BUILD/bin"

# ggml's CMake options for this CPU (x86-64), one per line; empty elsewhere (aarch64 builds
# natively with GGML_NATIVE=ON, which has no such trap).
isa_options() {
    [[ "$(uname -m)" == x86_64 ]] || return 0
    local flags; flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    has() { [[ "$flags" == *" $1 "* ]]; }
    local opt
    if [[ "$ISA" == avx2 ]]; then
        for opt in SSE42:sse4_2 AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2; do
            has "${opt#*:}" || die "LLAMA_REF_ISA=avx2 needs ${opt#*:}, which this CPU lacks"
            echo "${opt%%:*}"
        done
        return 0
    fi
    for opt in SSE42:sse4_2 AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2 AVX_VNNI:avx_vnni \
               AVX512_VBMI:avx512vbmi AVX512_VNNI:avx512_vnni AVX512_BF16:avx512_bf16; do
        has "${opt#*:}" && echo "${opt%%:*}"
    done
    has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw && echo AVX512
    if [[ "${LLAMA_REF_AMX:-0}" == 1 ]]; then
        for opt in AMX_TILE:amx_tile AMX_INT8:amx_int8 AMX_BF16:amx_bf16; do
            has "${opt#*:}" && echo "${opt%%:*}"
        done
    fi
    return 0
}
mapfile -t OPTS < <(isa_options)
if [[ "$(uname -m)" == x86_64 ]]; then
    FEATURES="x86_64 ${OPTS[*]}"
    [[ " ${OPTS[*]} " == *" AMX_"* ]] || FEATURES+=" (AMX off)"
else
    FEATURES="$(uname -m) native"
fi

have_all() {
    [[ "$(cat "$BUILD/flashslim-features" 2>/dev/null)" == "$FEATURES" ]] || return 1
    for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
}

if ! have_all; then
    need_apt cmake g++
    sdist="$(llama_sdist)"
    if [[ "$(cat "$CACHE/src/.flashslim-sdist" 2>/dev/null)" != "$LLAMA_SDIST_VERSION" ]]; then
        rm -rf "$CACHE/src" "$CACHE"/build* && mkdir -p "$CACHE/src"
        tar xzf "$sdist" -C "$CACHE/src" --strip-components=3 \
            "llama_cpp_python-$LLAMA_SDIST_VERSION/vendor/llama.cpp"
        rm -f "$CACHE/src/.git"  # a dangling submodule pointer; cmake would warn about it
        echo "$LLAMA_SDIST_VERSION" > "$CACHE/src/.flashslim-sdist"
    fi
    if [[ "$(cat "$BUILD/flashslim-features" 2>/dev/null)" != "$FEATURES" ]]; then
        rm -rf "$BUILD"   # built for another CPU (or never): configure from scratch
    fi
    cmake_isa=(-DGGML_NATIVE=ON)
    if [[ "$(uname -m)" == x86_64 ]]; then
        cmake_isa=(-DGGML_NATIVE=OFF)
        for o in SSE42 AVX AVX2 FMA F16C BMI2 AVX_VNNI AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16 \
                 AMX_TILE AMX_INT8 AMX_BF16; do
            if [[ " ${OPTS[*]} " == *" $o "* ]]; then cmake_isa+=("-DGGML_$o=ON"); else cmake_isa+=("-DGGML_$o=OFF"); fi
        done
    fi
    log "build-llama-ref: building llama.cpp ($LLAMA_SDIST_VERSION) for $FEATURES: ${TARGETS[*]}"
    cmake -S "$CACHE/src" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${cmake_isa[@]}" \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DBUILD_SHARED_LIBS=OFF >"$CACHE/cmake-configure.log" 2>&1 \
        || { tail -n 20 "$CACHE/cmake-configure.log" >&2; die "cmake configure failed (log: $CACHE/cmake-configure.log)"; }
    cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]}" >"$CACHE/cmake-build.log" 2>&1 \
        || { tail -n 20 "$CACHE/cmake-build.log" >&2; die "llama.cpp build failed (log: $CACHE/cmake-build.log)"; }
    for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || die "build finished but $BIN/$t is missing"; done
    # The smoke test: one prompt token and one generated token must compute on this host.
    if [[ -x "$BIN/llama-bench" ]]; then
        need_model
        if ! out="$("$BIN/llama-bench" -m "$DEFAULT_MODEL" -p 1 -n 1 -r 1 -t 1 -o csv 2>&1)"; then
            printf '%s\n' "$out" | tail -n 5 >&2
            die "the reference llama-bench built for $FEATURES does not run on this host"
        fi
    fi
    echo "$FEATURES" > "$BUILD/flashslim-features"
fi
log "build-llama-ref: llama.cpp $LLAMA_SDIST_VERSION in $BIN, built for: $FEATURES"

if [[ "${1:-}" == "--variants" ]]; then
    need_model
    for t in Q4_0 Q8_0 Q4_K_M Q5_K_M F16; do
        out="$ROOT/models/SmolLM2-135M-Instruct.$t.gguf"
        [[ -s "$out" ]] && continue
        "$BIN/llama-quantize" --allow-requantize "$DEFAULT_MODEL" "$out.partial" "$t" >/dev/null 2>&1 \
            || die "llama-quantize to $t failed"
        mv "$out.partial" "$out"
    done
fi
echo "$BIN"
