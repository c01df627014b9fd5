# lib.sh — shared helpers for flashslim scripts: idempotent installers and logging.
# Source it: `. "$(dirname "$0")/lib.sh"` (or ../lib.sh from test.d/). Every installer checks
# first, so scripts can call them unconditionally on a fresh machine or a warm one.

FLASHSLIM_ROOT="${FLASHSLIM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export FLASHSLIM_ROOT

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

_apt_updated=""
# need_apt PKG... — install Debian packages that are missing.
need_apt() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    if [[ -z "$_apt_updated" ]]; then
        $sudo apt-get update -qq >/dev/null || die "apt-get update failed"
        _apt_updated=1
    fi
    log "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# need_pip PKG[==VER]... — install Python packages that are missing (import name = dist name).
need_pip() {
    local missing=()
    for p in "$@"; do
        python3 -m pip show -q "${p%%[=<>]*}" >/dev/null 2>&1 || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "pip installing: ${missing[*]}"
    python3 -m pip install -q "${missing[@]}" 2>&1 | grep -v -i 'warning' >&2 || true
    for p in "$@"; do python3 -m pip show -q "${p%%[=<>]*}" >/dev/null 2>&1 || die "pip install $p failed"; done
}

# need_rust — a cargo/rustc from rustup (installs rustup's stable when no cargo is on PATH).
need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [[ -x "$HOME/.cargo/bin/cargo" ]] || {
            need_apt curl ca-certificates build-essential
            log "installing the Rust toolchain with rustup"
            # rustup-init straight from static.rust-lang.org (sh.rustup.rs may not resolve
            # where only package registries are reachable).
            local arch; arch="$(uname -m)"
            curl -sSfL -o /tmp/rustup-init "https://static.rust-lang.org/rustup/dist/${arch}-unknown-linux-gnu/rustup-init" \
                || die "cannot download rustup-init"
            chmod +x /tmp/rustup-init && /tmp/rustup-init -y --profile minimal --default-toolchain stable >/dev/null \
                || die "rustup-init failed"
        }
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cc >/dev/null || need_apt build-essential
}

# The reference llama.cpp: the tree vendored in this pinned llama-cpp-python sdist from PyPI.
LLAMA_SDIST_VERSION="0.3.36"
LLAMA_SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

# llama_sdist — download (once, verified) the pinned sdist into .cache/llama.cpp/ and print its
# path. pip reads an sdist's metadata even for a download, and this one's build backend
# (scikit-build-core) needs cmake >= 3.21 for that, so both are installed first.
llama_sdist() {
    local sdist="$FLASHSLIM_ROOT/.cache/llama.cpp/llama_cpp_python-$LLAMA_SDIST_VERSION.tar.gz" dl
    mkdir -p "${sdist%/*}"
    if [[ ! -s "$sdist" ]] || ! echo "$LLAMA_SDIST_SHA256  $sdist" | sha256sum -c --quiet - 2>/dev/null; then
        need_apt python3 python3-pip cmake
        need_pip scikit-build-core
        dl="$(mktemp -d)"
        python3 -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: \
            "llama-cpp-python==$LLAMA_SDIST_VERSION" -d "$dl" >&2 \
            || { rm -rf "$dl"; die "pip download llama-cpp-python==$LLAMA_SDIST_VERSION failed"; }
        mv "$dl/llama_cpp_python-$LLAMA_SDIST_VERSION.tar.gz" "$sdist.partial" && rm -rf "$dl"
        echo "$LLAMA_SDIST_SHA256  $sdist.partial" | sha256sum -c --quiet - \
            || die "sha256 mismatch for $sdist (llama-cpp-python $LLAMA_SDIST_VERSION)"
        mv "$sdist.partial" "$sdist"
    fi
    echo "$sdist"
}

# need_model — the default model in models/.
need_model() { "$FLASHSLIM_ROOT/scripts/fetch-model.sh" >/dev/null; }

# flashslim_bin — build (release) and print the path of the flashslim binary.
flashslim_bin() {
    need_rust
    (cd "$FLASHSLIM_ROOT" && cargo build -q --release -p flashslim-engine --bin flashslim) >&2 || die "cargo build failed"
    echo "$FLASHSLIM_ROOT/target/release/flashslim"
}

DEFAULT_MODEL="$FLASHSLIM_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
