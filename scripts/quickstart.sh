#!/usr/bin/env bash
# quickstart.sh — fresh machine to generated text: installs a Rust toolchain if missing, fetches the
# default model (SmolLM2-135M-Instruct Q4_1), builds flashslim (release) and runs a chat prompt.
# Usage: scripts/quickstart.sh ["your prompt"] [extra flashslim run flags...]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_apt python3 python3-pip ca-certificates curl build-essential
need_rust
need_model
bin="$(flashslim_bin)"
prompt="${1:-Explain in two sentences why streaming weights from flash helps small boards.}"
shift || true
log "running: flashslim run --chat -p \"$prompt\" -n 96 $*"
exec "$bin" run -m "$DEFAULT_MODEL" --chat -p "$prompt" -n 96 "$@"
