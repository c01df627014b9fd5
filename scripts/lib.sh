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

# need_model — the default model in models/.
need_model() { "$FLASHSLIM_ROOT/scripts/fetch-model.sh" >/dev/null; }

# flashslim_bin — build (release) and print the path of the flashslim binary.
flashslim_bin() {
    need_rust
    (cd "$FLASHSLIM_ROOT" && cargo build -q --release -p flashslim-engine --bin flashslim) >&2 || die "cargo build failed"
    echo "$FLASHSLIM_ROOT/target/release/flashslim"
}

DEFAULT_MODEL="$FLASHSLIM_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
