#!/usr/bin/env bash
# make-tokenizer-fixtures.sh — regenerate engine/tests/fixtures/tokenizer/<vocab>.json from the
# reference llama.cpp, for every string of engine/tests/fixtures/tokenizer/corpus.json.
#
# Per vocabulary and corpus string it records:
#   special  llama-tokenize -f TEXT --ids --no-escape            (BOS if the model adds one,
#                                                                  special tokens parsed)
#   plain    llama-tokenize -f TEXT --ids --no-escape --no-bos --no-parse-special
#   detok        llama_detokenize(special, remove_special=false, unparse_special=true)
#   detok_rm     llama_detokenize(special, remove_special=true,  unparse_special=false)
#   detok_plain  llama_detokenize(plain,   remove_special=false, unparse_special=false)
# and per vocabulary: BOS/EOS/EOT ids, add_bos/add_eos, every end-of-generation id, every
# control/unknown id, and sha256 digests of all token pieces (4096 tokens per digest).
# The detokenizer and vocabulary facts come from a small C program (below) linked against the
# built llama.cpp; llama-tokenize has no way to print them.
#
# Chat templates go to chat.json: each case (template, vocabulary for BOS/EOS, messages) as
# rendered by llama.cpp's own Jinja engine (common_chat_templates_apply).
#
# Needs scripts/build-llama-ref.sh (the reference build), the default model, and the vocab
# GGUFs (scripts/fetch-vocabs.sh). Takes a few minutes (one llama-tokenize run per case).
# Usage: scripts/make-tokenizer-fixtures.sh [VOCAB_NAME...|chat]   (default: all, and chat)
#        scripts/make-tokenizer-fixtures.sh --fuzz N [VOCAB_NAME...]
#   --fuzz: no fixtures; N random strings per vocabulary (seeded by N), tokenized by llama.cpp
#   into .cache/tokfuzz/, then compared with flashslim by the ignored test
#   differential_fuzz_against_llama_cpp.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROOT="$FLASHSLIM_ROOT"
REF="$ROOT/.cache/llama.cpp"
BIN="$REF/build/bin"
FIX="$ROOT/engine/tests/fixtures/tokenizer"
[[ -x "$BIN/llama-tokenize" ]] || die "no reference build in $BIN: run scripts/build-llama-ref.sh"
need_model
"$ROOT/scripts/fetch-vocabs.sh" >/dev/null

# name -> GGUF. Keep in sync with VOCABS in engine/tests/tokenizer.rs.
declare -A VOCAB=(
    [smollm2]="$DEFAULT_MODEL"
    [gpt-2]="$ROOT/.cache/vocab/ggml-vocab-gpt-2.gguf"
    [llama-bpe]="$ROOT/.cache/vocab/ggml-vocab-llama-bpe.gguf"
    [qwen2]="$ROOT/.cache/vocab/ggml-vocab-qwen2.gguf"
    [llama-spm]="$ROOT/.cache/vocab/ggml-vocab-llama-spm.gguf"
    [phi-3]="$ROOT/.cache/vocab/ggml-vocab-phi-3.gguf"
    [qwen35]="$ROOT/.cache/vocab/ggml-vocab-qwen35.gguf"
    [starcoder]="$ROOT/.cache/vocab/ggml-vocab-starcoder.gguf"
    [mpt]="$ROOT/.cache/vocab/ggml-vocab-mpt.gguf"
)
FUZZ=0
if [[ "${1:-}" == --fuzz ]]; then
    FUZZ="${2:?--fuzz needs a count}"
    shift 2
fi
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(smollm2 gpt-2 llama-bpe qwen2 llama-spm phi-3 qwen35 starcoder mpt chat)

# link_ref OUT SRC.cpp — build a helper against the reference build's static libraries.
link_ref() {
    log "building $1"
    g++ -O1 -std=c++17 "$2" -I"$REF/src/include" -I"$REF/src/ggml/include" -I"$REF/src/common" \
        -I"$REF/src/vendor" "$REF/build/common/libllama-common.a" "$REF/build/common/libllama-common-base.a" \
        "$REF/build/src/libllama.a" "$REF/build/ggml/src/libggml.a" "$REF/build/ggml/src/libggml-cpu.a" \
        "$REF/build/ggml/src/libggml-base.a" -lpthread -fopenmp -ldl -o "$1"
    rm -f "$2"
}

# The vocabulary-facts helper, built once against the reference's static libraries.
FACTS="$REF/build/flashslim-vocab-facts"
if [[ ! -x "$FACTS" || "$0" -nt "$FACTS" ]]; then
    src="$(mktemp --suffix=.cpp)"
    cat >"$src" <<'CPP'
// flashslim-vocab-facts VOCAB.gguf < lines of "REMOVE_SPECIAL UNPARSE_SPECIAL ID..."
// Prints vocabulary facts, every token's piece, then the detokenization of each input line.
// flashslim-vocab-facts VOCAB.gguf tokenize < lines of "ADD_SPECIAL PARSE_SPECIAL HEX_TEXT"
// Prints the token ids of each input line.
#include "llama.h"
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

static void hex(const std::string & s) {
    for (unsigned char c : s) printf("%02x", c);
    printf("\n");
}

static std::string unhex(const std::string & h) {
    std::string s;
    for (size_t i = 0; i + 1 < h.size(); i += 2) s.push_back((char) std::stoi(h.substr(i, 2), nullptr, 16));
    return s;
}

static std::string detok(const llama_vocab * v, const std::vector<llama_token> & ids, bool rm, bool unparse) {
    std::string out(ids.size() * 64 + 64, '\0');
    int n = llama_detokenize(v, ids.data(), (int) ids.size(), &out[0], (int) out.size(), rm, unparse);
    if (n < 0) {
        out.resize(-n);
        n = llama_detokenize(v, ids.data(), (int) ids.size(), &out[0], (int) out.size(), rm, unparse);
    }
    out.resize(n);
    return out;
}

int main(int argc, char ** argv) {
    if (argc != 2 && argc != 3) return 2;
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    const llama_vocab * v = llama_model_get_vocab(model);
    if (argc == 3) {
        std::string line;
        while (std::getline(std::cin, line)) {
            std::istringstream ss(line);
            int add = 0, parse = 0;
            std::string hex_text;
            ss >> add >> parse >> hex_text;
            const std::string text = unhex(hex_text);
            std::vector<llama_token> ids(text.size() * 2 + 8);
            int k = llama_tokenize(v, text.data(), (int) text.size(), ids.data(), (int) ids.size(), add != 0, parse != 0);
            for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        }
        return 0;
    }
    const int n = llama_vocab_n_tokens(v);
    printf("n_vocab %d\nbos %d\neos %d\neot %d\nadd_bos %d\nadd_eos %d\n", n, llama_vocab_bos(v),
           llama_vocab_eos(v), llama_vocab_eot(v), (int) llama_vocab_get_add_bos(v), (int) llama_vocab_get_add_eos(v));
    printf("eog");
    for (int i = 0; i < n; i++) if (llama_vocab_is_eog(v, i)) printf(" %d", i);
    printf("\nspecial");
    for (int i = 0; i < n; i++) if (llama_vocab_get_attr(v, i) & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_UNKNOWN)) printf(" %d", i);
    printf("\n");
    for (int i = 0; i < n; i++) {
        char buf[1024];
        int k = llama_token_to_piece(v, i, buf, sizeof(buf), 0, true);
        if (k < 0) return 3;
        printf("piece ");
        hex(std::string(buf, k));
    }
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream ss(line);
        int rm = 0, unparse = 0;
        ss >> rm >> unparse;
        std::vector<llama_token> ids;
        llama_token t;
        while (ss >> t) ids.push_back(t);
        printf("detok ");
        hex(detok(v, ids, rm != 0, unparse != 0));
    }
    return 0;
}
CPP
    link_ref "$FACTS" "$src"
fi

# The chat helper: renders JSON requests with llama.cpp's chat-template code.
CHAT="$REF/build/flashslim-chat-render"
if [[ " ${names[*]} " == *" chat "* ]] && [[ ! -x "$CHAT" || "$0" -nt "$CHAT" ]]; then
    src="$(mktemp --suffix=.cpp)"
    cat >"$src" <<'CPP'
// flashslim-chat-render VOCAB.gguf < JSON lines {template, messages, add_generation_prompt, unix_time}
// Prints one JSON line per request: {"prompt": ...} or {"error": ...}. An empty template means
// the vocabulary's own.
#include "chat.h"
#include "llama.h"
#include <nlohmann/json.hpp>
#include <chrono>
#include <iostream>
#include <string>

int main(int argc, char ** argv) {
    if (argc != 2) return 2;
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    std::string line;
    while (std::getline(std::cin, line)) {
        nlohmann::ordered_json req = nlohmann::ordered_json::parse(line), res;
        try {
            auto tmpls = common_chat_templates_init(model, req["template"].get<std::string>());
            common_chat_templates_inputs in;
            for (auto & m : req["messages"]) {
                common_chat_msg msg;
                msg.role = m["role"];
                msg.content = m["content"];
                in.messages.push_back(msg);
            }
            in.add_generation_prompt = req["add_generation_prompt"];
            in.use_jinja = true;
            in.now = std::chrono::system_clock::from_time_t((time_t) req["unix_time"].get<long long>());
            res["prompt"] = common_chat_templates_apply(tmpls.get(), in).prompt;
        } catch (const std::exception & e) {
            res["error"] = e.what();
        }
        std::cout << res.dump() << std::endl;
    }
    return 0;
}
CPP
    link_ref "$CHAT" "$src"
fi

if [[ "$FUZZ" -gt 0 ]]; then
    mkdir -p "$ROOT/.cache/tokfuzz"
    for name in "${names[@]}"; do
        [[ "$name" == chat ]] && continue
        log "fuzz inputs for $name"
        python3 - "$FUZZ" "${VOCAB[$name]}" "$FACTS" "$ROOT/.cache/tokfuzz/$name.txt" <<'PY'
import random, subprocess, sys

n, gguf, facts, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rng = random.Random(n)
# Every character class the pre-tokenizers tell apart, contractions, runs, special tokens.
pieces = (list("aZq x\t\n\r'sStTdDmMlLrReEvV0123456789.,!?-_()[]{}<>|/\\\"#@$%^&*=+~`:;")
          + list("éÜß中文日本한글Жαβ¾²٣٠😀🦀👍🏽\u200d\ufe0f\u0301\u0300\u00a0\u3000\u2003\u2028\u0085\u0378\ue000\U000f0000\u200b\u1680\ufeff")
          + ["'re", "'LL", " 's", "'ve", "<|im_end|>", "<|im_start|>", "<s>", "</s>", "<|endoftext|>", "  ", "   ",
             "\n\n", " \n", "\t ", "\r\n", "1234567", "  \t\n ", "<unk>", "[PAD151650]", "<|eot_id|>", "▁", "Ġ"])
lines = []
for _ in range(n):
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
    lines.append(f"{rng.randint(0, 1)} {rng.randint(0, 1)} {text.encode().hex()}")
res = subprocess.run([facts, gguf, "tokenize"], input="\n".join(lines) + "\n", check=True,
                     capture_output=True, text=True).stdout.splitlines()
assert len(res) == len(lines)
with open(out, "w") as f:
    for line, ids in zip(lines, res):
        f.write(f"{line}\t{ids}\n")
PY
    done
    cd "$ROOT"
    exec cargo test --release -p flashslim-engine --test tokenizer -- --ignored differential_fuzz_against_llama_cpp
fi

for name in "${names[@]}"; do
    [[ "$name" == chat ]] && continue
    gguf="${VOCAB[$name]:-}"
    [[ -n "$gguf" && -s "$gguf" ]] || die "unknown or missing vocabulary '$name' ($gguf)"
    log "fixtures for $name ($(basename "$gguf"))"
    python3 - "$name" "$gguf" "$BIN/llama-tokenize" "$FACTS" "$FIX" <<'PY'
import hashlib, json, os, struct, subprocess, sys, tempfile

name, gguf, tokenize, facts, fix = sys.argv[1:]
corpus = json.load(open(os.path.join(fix, "corpus.json"), encoding="utf-8"))["cases"]

def ids(text, *flags):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
    try:
        out = subprocess.run([tokenize, "-m", gguf, "-f", f.name, "--ids", "--log-disable", "--no-escape", *flags],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    return json.loads(out.strip().splitlines()[-1])

cases = []
for c in corpus:
    cases.append({"name": c["name"], "special": ids(c["text"]), "plain": ids(c["text"], "--no-bos", "--no-parse-special")})

# (key, ids, remove_special, unparse_special) for each case, in this order.
DETOKS = [("detok", "special", 0, 1), ("detok_rm", "special", 1, 0), ("detok_plain", "plain", 0, 0)]
stdin = "".join(f"{rm} {un} " + " ".join(map(str, c[ids])) + "\n" for c in cases for _, ids, rm, un in DETOKS)
out = subprocess.run([facts, gguf], input=stdin, check=True, capture_output=True, text=True).stdout.splitlines()
f = {}
pieces, detoks = [], []
for line in out:
    key, _, val = line.partition(" ")
    if key == "piece":
        pieces.append(bytes.fromhex(val))
    elif key == "detok":
        detoks.append(bytes.fromhex(val))
    else:
        f[key] = val
n = int(f["n_vocab"])
assert len(pieces) == n and len(detoks) == len(DETOKS) * len(cases)

def text_or_hex(key, b, into):
    try:
        into[key] = b.decode("utf-8")
    except UnicodeDecodeError:
        into[key + "_hex"] = b.hex()

for i, c in enumerate(cases):
    for (key, _, _, _), b in zip(DETOKS, detoks[len(DETOKS) * i:]):
        text_or_hex(key, b, c)

CHUNK = 4096
digests = []
for lo in range(0, n, CHUNK):
    h = hashlib.sha256()
    for p in pieces[lo:lo + CHUNK]:
        h.update(struct.pack("<I", len(p)) + p)
    digests.append(h.hexdigest())

tok = lambda s: None if int(s) < 0 else int(s)
doc = {
    "generated_by": "scripts/make-tokenizer-fixtures.sh",
    "vocab": os.path.basename(gguf),
    "n_vocab": n,
    "bos": tok(f["bos"]), "eos": tok(f["eos"]), "eot": tok(f["eot"]),
    "add_bos": f["add_bos"] == "1", "add_eos": f["add_eos"] == "1",
    "eog": [int(x) for x in f["eog"].split()],
    "special": [int(x) for x in f["special"].split()],
    "piece_chunk": CHUNK,
    "piece_sha256": digests,
    "cases": cases,
}
path = os.path.join(fix, name + ".json")
with open(path, "w", encoding="utf-8") as fh:
    fh.write("{\n")
    items = list(doc.items())
    for k, (key, val) in enumerate(items):
        sep = "," if k + 1 < len(items) else ""
        if key == "cases":
            fh.write(' "cases": [\n')
            fh.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in val))
            fh.write("\n ]" + sep + "\n")
        else:
            fh.write(f" {json.dumps(key)}: {json.dumps(val, ensure_ascii=False)}{sep}\n")
    fh.write("}\n")
print(f"{path}: {len(cases)} cases", file=sys.stderr)
PY
done

[[ " ${names[*]} " == *" chat "* ]] || exit 0
log "fixtures for chat templates"
vocabs=()
for v in "${!VOCAB[@]}"; do vocabs+=("$v=${VOCAB[$v]}"); done
python3 - "$CHAT" "$FIX" "$REF/src/models/templates" "${vocabs[@]}" <<'PY'
import json, os, subprocess, sys, time

chat, fix, tdir = sys.argv[1:4]
vocab = dict(a.split("=", 1) for a in sys.argv[4:])

# Templates written here are the models' own (Hugging Face tokenizer_config.json).
TINYLLAMA = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
             "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
             "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
             "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
MISTRAL_V01 = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
               "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
               "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
               "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")

def from_file(name):
    return open(os.path.join(tdir, name), encoding="utf-8").read()

# name -> (vocabulary for BOS/EOS, template source; None = the vocabulary's own). The
# vocabulary names are those of VOCAB above.
TEMPLATES = {
    "smollm2": ("smollm2", None),
    "qwen2": ("qwen2", None),
    "llama-3.1": ("llama-bpe", from_file("meta-llama-Llama-3.1-8B-Instruct.jinja")),
    "llama-3.2": ("llama-bpe", from_file("meta-llama-Llama-3.2-3B-Instruct.jinja")),
    "qwen2.5": ("qwen2", from_file("Qwen-Qwen2.5-7B-Instruct.jinja")),
    "mistral-nemo": ("llama-spm", from_file("mistralai-Mistral-Nemo-Instruct-2407.jinja")),
    "phi-3.5": ("phi-3", from_file("microsoft-Phi-3.5-mini-instruct.jinja")),
    "gemma-2": ("llama-spm", from_file("google-gemma-2-2b-it.jinja")),
    "smollm3": ("smollm2", from_file("HuggingFaceTB-SmolLM3-3B.jinja")),
    "tinyllama": ("llama-spm", TINYLLAMA),
    "mistral-v0.1": ("llama-spm", MISTRAL_V01),
}
M = lambda role, content: {"role": role, "content": content}
CONVERSATIONS = {
    "user": [M("user", "Hi!")],
    "system-multi-turn": [M("system", "Be brief."), M("user", "2+2?"), M("assistant", "4"), M("user", "And 3+3?")],
    "user-assistant": [M("user", "  spaced  \n text "), M("assistant", "Ünïcødé 中文 😀"), M("user", "<b>tags</b> & {{ braces }}")],
    "two-users": [M("user", "one"), M("user", "two")],
}
# llama.cpp's strftime_now reads this clock but its `date_string` reads the real one, so the
# clock is the time of generation (the test renders with it; both give today's date).
NOW = int(time.time())

cases = []
for tname, (vname, src) in TEMPLATES.items():
    for cname, msgs in CONVERSATIONS.items():
        for add in (True, False):
            if not add and cname != "user":
                continue
            cases.append({"name": f"{tname}/{cname}/{'gen' if add else 'nogen'}", "template": tname,
                          "messages": msgs, "add_generation_prompt": add, "unix_time": NOW})
for vname in sorted({v for v, _ in TEMPLATES.values()}):
    mine = [c for c in cases if TEMPLATES[c["template"]][0] == vname]
    stdin = "".join(json.dumps({**c, "template": TEMPLATES[c["template"]][1] or ""}) + "\n" for c in mine)
    out = subprocess.run([chat, vocab[vname]], input=stdin, check=True, capture_output=True, text=True).stdout
    for c, line in zip(mine, out.splitlines(), strict=True):
        res = json.loads(line)
        if "prompt" in res:
            c["expected"] = res["prompt"]
        else:
            c["error"] = res["error"].splitlines()[0] if res["error"] else "error"
templates = {t: {"vocab": v, "source": src} for t, (v, src) in TEMPLATES.items()}
path = os.path.join(fix, "chat.json")
with open(path, "w", encoding="utf-8") as fh:
    fh.write('{\n "generated_by": "scripts/make-tokenizer-fixtures.sh",\n "templates": {\n')
    fh.write(",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in templates.items()))
    fh.write('\n },\n "cases": [\n')
    fh.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
    fh.write("\n ]\n}\n")
print(f"{path}: {len(cases)} cases, {sum('error' in c for c in cases)} errors", file=sys.stderr)
PY
