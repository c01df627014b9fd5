#!/usr/bin/env bash
# test.sh — the whole flashslim test suite (this is what .ci/run calls).
# Runs every scripts/test.d/*.sh in name order, each in its own process, and reports a table.
# A suite prints its own diagnostics; a non-zero exit marks it failed. Installs what it needs.
# Usage: scripts/test.sh [PATTERN]     (PATTERN selects suites by substring, e.g. `kernels`)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/lib.sh"
need_rust
need_apt python3 python3-pip git pkg-config
pattern="${1:-}"
results=()
failed=0
start_all=$(date +%s)
for suite in "$ROOT"/scripts/test.d/*.sh; do
    name="$(basename "$suite" .sh)"
    [[ -n "$pattern" && "$name" != *"$pattern"* ]] && continue
    log "=== $name"
    t0=$(date +%s)
    if bash "$suite"; then status=ok; else status=FAILED; failed=1; fi
    dt=$(( $(date +%s) - t0 ))
    results+=("$(printf '%-28s %-7s %5ss' "$name" "$status" "$dt")")
    log "=== $name: $status (${dt}s)"
done
log ""
log "suite                        result   time"
for r in "${results[@]}"; do log "$r"; done
log "total $(( $(date +%s) - start_all ))s"
exit $failed
