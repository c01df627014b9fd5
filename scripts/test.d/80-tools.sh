#!/usr/bin/env bash
# Host tools (flashslim-tools) on runs made by the real engine (mmap, and stream with a measured
# plan, tensor trace and bpftrace scripts): slim-pull-logs against a real sshd on 127.0.0.1 with
# throwaway keys (scp -O and rsync: full pull, resume, corrupted local file, device file changed
# after its manifest entry, a pull killed mid-copy, delete-after-verify); the HTML report in
# headless Chromium (timeline rendered, no console errors, screenshot; broken pages must fail the
# check); merge-output checks; report figures against the run's files; `slim gguf` cross-checked
# against `flashslim inspect`. Screenshots land in target/tmp/report-chromium/.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_rust
need_model
need_apt openssh-server openssh-client rsync chromium bpftrace
[[ $(id -u) -eq 0 ]] || die "80-tools starts sshd on 127.0.0.1 and needs root"
cd "$FLASHSLIM_ROOT"
# The engine binary: the tests make their runs with it (and cross-check `slim gguf`).
cargo build -q --release -p flashslim-engine --bin flashslim
cargo test -q --release -p flashslim-tools -- --include-ignored 2>&1 | tail -n 40
