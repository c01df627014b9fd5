#!/usr/bin/env bash
# bench-vs-llama.sh — flashslim vs llama.cpp on the same model and threads, alternating the two in
# every round (this machine is shared and noisy: only same-run comparisons mean anything), then a
# markdown table of tokens/s (mean ± sd over rounds) and the per-round ratio flashslim/llama.cpp,
# plus each side's peak RSS. Builds what it needs (release flashslim, the reference llama-bench).
#
# Usage: scripts/bench-vs-llama.sh [-m MODEL]... [-t 1,2] [-p 128] [-n 64] [-r 3] [--rounds 3]
#   -m MODEL     GGUF file (repeatable; default: the Q4_1 and Q4_K_M SmolLM2-135M files)
#   -t LIST      thread counts (default 1,2)
#   -p N / -n N  prompt tokens (pp) / generated tokens (tg) per test (default 128 / 64)
#   -r N         repetitions inside each tool run (default 3)
#   --rounds N   alternating rounds (default 3)
# Example: scripts/bench-vs-llama.sh --rounds 5 -t 1
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/lib.sh"

models=()
threads="1,2"
n_prompt=128
n_gen=64
reps=3
rounds=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        -m) models+=("$2"); shift 2 ;;
        -t) threads="$2"; shift 2 ;;
        -p) n_prompt="$2"; shift 2 ;;
        -n) n_gen="$2"; shift 2 ;;
        -r) reps="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

need_apt python3
need_model
llama_bin="$("$ROOT/scripts/build-llama-ref.sh" --variants | tail -n 1)"
fs_bin="$(flashslim_bin)"
if [[ ${#models[@]} -eq 0 ]]; then
    models=("$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$ROOT/models/SmolLM2-135M-Instruct.Q4_K_M.gguf")
fi
for m in "${models[@]}"; do [[ -s "$m" ]] || die "model $m not found"; done

commit="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
log "bench-vs-llama: flashslim $commit, llama.cpp $llama_bin, $rounds rounds × $reps reps, threads $threads"

FS_BIN="$fs_bin" LLAMA_BENCH="$llama_bin/llama-bench" THREADS="$threads" NP="$n_prompt" NG="$n_gen" \
REPS="$reps" ROUNDS="$rounds" COMMIT="$commit" python3 - "${models[@]}" <<'PY'
import json, os, statistics as st, subprocess, sys

fs, lb = os.environ["FS_BIN"], os.environ["LLAMA_BENCH"]
threads = os.environ["THREADS"]
np_, ng, reps, rounds = os.environ["NP"], os.environ["NG"], os.environ["REPS"], int(os.environ["ROUNDS"])
models = sys.argv[1:]

def run(cmd):
    """Run one tool, return (parsed JSON, peak RSS in bytes of that process)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"bench-vs-llama: {cmd[0]} failed (status {status})")
    return json.loads(out), ru.ru_maxrss * 1024

def key(n_prompt, n_gen):
    return f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"

# results[(model, threads, test)] = {"fs": [t/s per round], "ll": [...]}
results, rss = {}, {}
for rnd in range(rounds):
    for m in models:
        for side in ("fs", "ll"):
            if side == "fs":
                cmd = [fs, "bench", "-m", m, "-p", np_, "-n", ng, "-t", threads, "-r", reps, "-o", "json"]
            else:
                cmd = [lb, "-m", m, "-p", np_, "-n", ng, "-t", threads, "-r", reps, "-o", "json"]
            rows, peak = run(cmd)
            rss[(m, side)] = max(rss.get((m, side), 0), peak)
            for r in rows:
                k = (m, int(r["n_threads"]), key(r["n_prompt"], r["n_gen"]))
                results.setdefault(k, {"fs": [], "ll": []})[side].append(r["avg_ts"])
        print(f"round {rnd + 1}/{rounds}: {os.path.basename(m)} done", file=sys.stderr)

def ms(xs):
    return (st.mean(xs), st.stdev(xs) if len(xs) > 1 else 0.0)

print(f"flashslim `{os.environ['COMMIT']}` vs llama.cpp, {rounds} alternating rounds × {reps} repetitions; "
      "tokens/s mean ± sd over rounds; ratio = flashslim / llama.cpp per round (mean ± sd, min–max)\n")
print("| model | threads | test | flashslim t/s | llama.cpp t/s | ratio | ratio min–max |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
for (m, t, test), v in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2][0] != "p")):
    ratios = [a / b for a, b in zip(v["fs"], v["ll"])]
    (fm, fsd), (lm, lsd), (rm, rsd) = ms(v["fs"]), ms(v["ll"]), ms(ratios)
    print(f"| {os.path.basename(m)} | {t} | {test} | {fm:.1f} ± {fsd:.1f} | {lm:.1f} ± {lsd:.1f} | "
          f"{rm:.2f} ± {rsd:.2f} | {min(ratios):.2f}–{max(ratios):.2f} |")
print("\n| model | flashslim peak RSS | llama-bench peak RSS |")
print("| --- | ---: | ---: |")
for m in models:
    print(f"| {os.path.basename(m)} | {rss[(m, 'fs')] / 2**20:.1f} MiB | {rss[(m, 'll')] / 2**20:.1f} MiB |")
PY
