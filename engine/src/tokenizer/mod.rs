//! Tokenizers built from GGUF metadata, token for token identical to llama.cpp's:
//!
//! * GPT-2-style byte-level BPE (`tokenizer.ggml.model = gpt2`), its pre-tokenizer chosen by
//!   `tokenizer.ggml.pre` (see [`supported_pre`]; any other value is an error, not a guess);
//! * SentencePiece-style (`tokenizer.ggml.model = llama`): score-ordered merges, `▁` for spaces,
//!   `<0xNN>` byte fallback, `tokenizer.ggml.add_space_prefix`.
//!
//! Special tokens (control, user-defined, unknown) are found in text before anything else; with
//! `parse_special == false` only user-defined ones are (llama.cpp's rule). Detokenization works
//! per token ([`Tokenizer::piece`]) or per sequence ([`Tokenizer::detokenize`], with llama.cpp's
//! space clean-up), and [`StreamDecoder`] never splits a UTF-8 character across outputs.
//! [`Tokenizer::render_chat`] renders the model's own chat template with minijinja.

mod bpe;
mod chat;
mod hash;
mod pretok;
mod spm;
mod unicode;
mod vocab;

use crate::gguf::Gguf;
use bpe::Bpe;
use pretok::Splitter;
use std::fmt;
use vocab::{attr, Defaults, Kind, Meta, Vocab};

/// A tokenizer error: a malformed or unsupported vocabulary, a token a vocabulary lacks, or a
/// chat template that fails. The message is one line and names the problem.
#[derive(Debug)]
pub struct TokenizerError(pub String);
impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TokenizerError {}

/// One chat message for [`Tokenizer::render_chat`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A `tokenizer.ggml.pre` family: its names, scanner and the flags llama.cpp sets with it.
struct PreSpec {
    names: &'static [&'static str],
    splitter: Splitter,
    /// A word that is a token as a whole is emitted without merging.
    ignore_merges: bool,
    /// BOS is added unless `tokenizer.ggml.add_bos_token` says otherwise.
    add_bos: bool,
    /// Sequence detokenization removes spaces before `?!.,` and some apostrophes.
    clean_spaces: bool,
}

const fn pre(
    names: &'static [&'static str],
    splitter: Splitter,
    ignore_merges: bool,
    add_bos: bool,
    clean_spaces: bool,
) -> PreSpec {
    PreSpec {
        names,
        splitter,
        ignore_merges,
        add_bos,
        clean_spaces,
    }
}

/// Every `tokenizer.ggml.pre` value we tokenize exactly like llama.cpp.
const PRE_SPECS: &[PreSpec] = &[
    pre(
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        Splitter::Llama3,
        true,
        true,
        true,
    ),
    pre(&["dbrx", "smaug-bpe"], Splitter::Llama3, false, false, true),
    pre(
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "exaone4",
            "mpt",
            "olmo",
            "jais",
        ],
        Splitter::Gpt2,
        false,
        false,
        true,
    ),
    pre(
        &["trillion", "granite-docling"],
        Splitter::Gpt2,
        false,
        false,
        false,
    ),
    pre(
        &[
            "starcoder",
            "refact",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        Splitter::DigitsThenGpt2,
        false,
        false,
        true,
    ),
    pre(
        &["smollm", "command-r"],
        Splitter::DigitsThenGpt2,
        false,
        false,
        false,
    ),
    pre(
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "hunyuan",
            "solar-open",
        ],
        Splitter::Qwen2,
        false,
        false,
        false,
    ),
    pre(
        &["megrez", "stablelm2"],
        Splitter::Qwen2,
        false,
        false,
        true,
    ),
    pre(&["qwen35"], Splitter::Qwen35, false, false, false),
];

/// The `tokenizer.ggml.pre` values accepted for `gpt2` vocabularies, in table order.
pub fn supported_pre() -> impl Iterator<Item = &'static str> {
    PRE_SPECS.iter().flat_map(|s| s.names.iter().copied())
}

enum Model {
    Spm,
    Bpe(Box<Bpe>),
}

/// A vocabulary with its tokenization rules, ready to encode and decode.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    add_bos: bool,
    add_eos: bool,
    /// SPM: a space goes before the text (and detokenization takes one off). BPE vocabularies
    /// only use it for the latter.
    add_space_prefix: bool,
    clean_spaces: bool,
    /// Each token's bytes with special tokens as their text (llama.cpp's piece cache).
    pieces: Vec<Box<[u8]>>,
    template: Option<String>,
}

impl Tokenizer {
    /// Build the tokenizer described by a model's `tokenizer.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let m = Meta(g);
        let model_name = m
            .str("tokenizer.ggml.model")?
            .ok_or_else(|| TokenizerError("missing metadata `tokenizer.ggml.model`".into()))?;
        let (kind, defaults) = match model_name {
            "llama" => (
                Kind::Spm,
                Defaults {
                    bos: Some(1),
                    eos: Some(2),
                },
            ),
            "gpt2" => (
                Kind::Bpe,
                Defaults {
                    bos: Some(11),
                    eos: Some(11),
                },
            ),
            other => {
                return Err(TokenizerError(format!(
                    "unsupported tokenizer model `{other}` (supported: llama, gpt2)"
                )))
            }
        };
        let vocab = Vocab::load(g, defaults)?;
        let (model, mut add_bos, clean_spaces) = match kind {
            Kind::Spm => (Model::Spm, true, false),
            Kind::Bpe => {
                let pre = m.str("tokenizer.ggml.pre")?.unwrap_or("");
                let spec = PRE_SPECS
                    .iter()
                    .find(|s| s.names.contains(&pre))
                    .ok_or_else(|| {
                        TokenizerError(format!(
                            "unsupported pre-tokenizer `tokenizer.ggml.pre = {pre:?}` \
                             (supported: {})",
                            supported_pre().collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                let merges = m.array("tokenizer.ggml.merges")?.ok_or_else(|| {
                    TokenizerError("missing metadata `tokenizer.ggml.merges`".into())
                })?;
                let merges = merges
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str().ok_or_else(|| {
                            TokenizerError(format!(
                                "`tokenizer.ggml.merges` entry {i} is not a string"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let bpe = Bpe::new(&vocab, &merges, spec.splitter, spec.ignore_merges)?;
                (Model::Bpe(Box::new(bpe)), spec.add_bos, spec.clean_spaces)
            }
        };
        if let Some(b) = m.bool("tokenizer.ggml.add_bos_token")? {
            add_bos = b;
        }
        let add_eos = m.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let add_space_prefix = m
            .bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(kind == Kind::Spm);
        let template = m.str("tokenizer.chat_template")?.map(str::to_string);
        let pieces = (0..vocab.len() as u32)
            .map(|id| piece_of(&vocab, &model, id).into_boxed_slice())
            .collect();
        Ok(Tokenizer {
            vocab,
            model,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            pieces,
            template,
        })
    }

    /// Tokenize `text`. `add_special`: add BOS/EOS as the model's metadata asks;
    /// `parse_special`: recognise control-token text such as `<|im_start|>` (user-defined
    /// tokens are recognised either way).
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.push(self.vocab.bos.ok_or_else(|| no_token("BOS"))?);
        }
        let frags = self.partition(text, parse_special);
        match &self.model {
            Model::Spm => {
                // A space goes before the first text and before text that follows a special
                // token (the BOS included).
                let mut after_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                        Frag::Text(lo, hi) => {
                            buf.clear();
                            if self.add_space_prefix && after_special {
                                buf.push('▁');
                            }
                            for c in text[lo..hi].chars() {
                                buf.push(if c == ' ' { '▁' } else { c });
                            }
                            spm::encode(&self.vocab, &buf, &mut out)?;
                            after_special = false;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for f in frags {
                    match f {
                        Frag::Token(id) => out.push(id),
                        Frag::Text(lo, hi) => bpe.encode(&self.vocab, &text[lo..hi], &mut out),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.push(self.eos().ok_or_else(|| no_token("EOS"))?);
        }
        Ok(out)
    }

    /// Cut `text` at the special tokens it contains, longest token texts first.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let mut frags = Vec::new();
        if !text.is_empty() {
            frags.push(Frag::Text(0, text.len()));
        }
        let bytes = text.as_bytes();
        let mut next = Vec::new();
        for &id in &self.vocab.special_by_len {
            let a = self.vocab.attr(id);
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let pat = self.vocab.texts[id as usize].as_str();
            if !text.contains(pat) {
                continue;
            }
            next.clear();
            for f in frags.drain(..) {
                let Frag::Text(mut lo, hi) = f else {
                    next.push(f);
                    continue;
                };
                while lo < hi {
                    let Some(at) = text[lo..hi].find(pat).map(|p| lo + p) else {
                        next.push(Frag::Text(lo, hi));
                        break;
                    };
                    let mut left_end = at;
                    if a & attr::LSTRIP != 0 {
                        while left_end > lo && c_isspace(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > lo {
                        next.push(Frag::Text(lo, left_end));
                    }
                    next.push(Frag::Token(id));
                    lo = at + pat.len();
                    if a & attr::RSTRIP != 0 {
                        while lo < hi && c_isspace(bytes[lo]) {
                            lo += 1;
                        }
                    }
                }
            }
            std::mem::swap(&mut frags, &mut next);
        }
        frags
    }

    /// The raw bytes a token stands for (special tokens: their text). Empty for an unknown id.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.piece(id, true).to_vec()
    }

    /// The bytes token `id` prints as; with `special == false`, control and unknown tokens
    /// print nothing (llama.cpp's `token_to_piece`). Empty for an unknown id.
    pub fn piece(&self, id: u32, special: bool) -> &[u8] {
        if !special && self.is_special(id) {
            return &[];
        }
        self.pieces.get(id as usize).map_or(&[], |p| p)
    }

    /// Text of a token sequence, special tokens included as their text (see
    /// [`Tokenizer::detokenize`]).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.detokenize(ids, false, true)
    }

    /// llama.cpp's `llama_detokenize`: `remove_special` drops a leading BOS and trailing EOS
    /// that the model adds itself; `unparse_special` prints control tokens as their text. The
    /// first token loses one leading space when the vocabulary adds a space prefix, and
    /// vocabularies that ask for it get their spaces cleaned up (` ,` -> `,`, ...). Invalid
    /// UTF-8 becomes U+FFFD.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        String::from_utf8_lossy(&self.detokenize_bytes(ids, remove_special, unparse_special))
            .into_owned()
    }

    /// [`Tokenizer::detokenize`] without the UTF-8 conversion.
    pub fn detokenize_bytes(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Vec<u8> {
        let mut ids = ids;
        let mut strip_space = self.add_space_prefix;
        if remove_special
            && self.add_bos
            && self.bos().is_some()
            && ids.first() == self.bos().as_ref()
        {
            ids = &ids[1..];
            strip_space = false;
        }
        if remove_special
            && self.add_eos
            && self.eos().is_some()
            && ids.last() == self.eos().as_ref()
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::new();
        for &id in ids {
            let mut p = self.piece(id, unparse_special);
            if strip_space {
                p = p.strip_prefix(b" ").unwrap_or(p);
                strip_space = false;
            }
            out.extend_from_slice(p);
        }
        if self.clean_spaces {
            out = clean_up_spaces(out);
        }
        out
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }
    /// End of turn (`tokenizer.ggml.eot_token_id`, else found by text: `<|eot_id|>`,
    /// `<|im_end|>`, ...).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.eot
    }
    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// End of generation: EOS, EOT, EOM, the FIM pad/repo/separator tokens, and every token
    /// whose text llama.cpp treats as ending generation (`<|im_end|>`, `<|eot_id|>`,
    /// `<|endoftext|>`, `<end_of_turn>`, `</s>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }
    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.vocab.eog.iter().copied()
    }
    /// Whether `id` is a control or unknown token (prints nothing in generated text).
    pub fn is_special(&self, id: u32) -> bool {
        self.vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0
    }
    /// The token's text as stored in the vocabulary (`Ġ`/`▁` spellings, `<0x0A>`...).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }
    /// The id of the token whose vocabulary text is `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.index.get(text).copied()
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.template.as_deref()
    }
    /// Render the model's chat template (minijinja) for `messages`, ready for
    /// `encode(prompt, true, true)`: like llama.cpp, a BOS (EOS) that the template writes is
    /// removed from the start (end) when `encode` adds it anyway.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        self.render_chat_at(messages, add_generation_prompt, None)
    }

    /// [`Tokenizer::render_chat`] with `strftime_now` reading a fixed clock (seconds since the
    /// epoch) instead of the current time.
    pub fn render_chat_at(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        unix_time: Option<i64>,
    ) -> Result<String, TokenizerError> {
        let template = self
            .template
            .as_deref()
            .ok_or_else(|| TokenizerError("model has no `tokenizer.chat_template`".into()))?;
        self.render_template(template, messages, add_generation_prompt, unix_time)
    }

    /// Render any chat template against this vocabulary's BOS/EOS (see [`Tokenizer::render_chat`]).
    pub fn render_template(
        &self,
        template: &str,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        unix_time: Option<i64>,
    ) -> Result<String, TokenizerError> {
        let text = |id: Option<u32>| {
            id.map(|i| String::from_utf8_lossy(self.piece(i, true)).into_owned())
                .unwrap_or_default()
        };
        let (bos, eos) = (text(self.bos()), text(self.eos()));
        let inputs = chat::Inputs {
            add_generation_prompt,
            bos_token: &bos,
            eos_token: &eos,
            now: unix_time,
        };
        let mut out = chat::render(template, messages, &inputs)?;
        if self.add_bos && !bos.is_empty() && out.starts_with(&bos) {
            out.drain(..bos.len());
        }
        if self.add_eos && !eos.is_empty() && out.ends_with(&eos) {
            out.truncate(out.len() - eos.len());
        }
        Ok(out)
    }
}

/// A piece of text between special tokens, or a special token.
enum Frag {
    Text(usize, usize),
    Token(u32),
}

fn no_token(what: &str) -> TokenizerError {
    TokenizerError(format!("vocabulary has no {what} token but asks for one"))
}

/// C's `isspace` in the "C" locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// The bytes a token prints as, special tokens as their text.
fn piece_of(v: &Vocab, model: &Model, id: u32) -> Vec<u8> {
    let text = &v.texts[id as usize];
    let a = v.attr(id);
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if a & attr::NORMAL != 0 {
        return match model {
            Model::Spm => text.replace('▁', " ").into_bytes(),
            Model::Bpe(_) => {
                let alphabet = unicode::ByteAlphabet::new();
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match alphabet.byte_of(c) {
                        Some(b) => out.push(b),
                        None => {
                            // llama.cpp's marker for a character outside the byte alphabet.
                            out.extend_from_slice(b"[UNK_BYTE_0x");
                            for b in c.encode_utf8(&mut [0; 4]).bytes() {
                                out.extend_from_slice(format!("{b:02x}").as_bytes());
                            }
                            out.extend_from_slice(text.as_bytes());
                            out.push(b']');
                        }
                    }
                }
                out
            }
        };
    }
    if a & attr::BYTE != 0 {
        return vec![byte_of_token(text)];
    }
    Vec::new()
}

/// The byte of a `<0xNN>` token: the hex digits at offsets 3..5, as `strtol` reads them.
fn byte_of_token(text: &str) -> u8 {
    let digits = text.get(3..).unwrap_or("");
    let mut v = 0u32;
    for c in digits.chars().take(2) {
        match c.to_digit(16) {
            Some(d) => v = v * 16 + d,
            None => break,
        }
    }
    v as u8
}

/// llama.cpp's clean-up for sequence detokenization: drop the space before `?!.,`, before a
/// lone `'` between spaces (and the one after it), and before `'s`, `'m`, `'re`, `'ve`.
fn clean_up_spaces(text: Vec<u8>) -> Vec<u8> {
    let t = text;
    if t.is_empty() {
        return t;
    }
    // Space before punctuation.
    let mut a = vec![t[0]];
    for i in 1..t.len() {
        if t[i - 1] == b' ' && matches!(t[i], b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(t[i]);
    }
    // A lone apostrophe between spaces loses both. The skipped space no longer counts as a
    // space for the apostrophe after it.
    let mut b = vec![a[0]];
    let mut i = 1;
    let mut skipped = usize::MAX;
    while i < a.len() {
        let prev_space = a[i - 1] == b' ' && i - 1 != skipped;
        if a[i] == b'\'' && i + 1 < a.len() && prev_space && a[i + 1] == b' ' {
            b.pop();
            b.push(a[i]);
            skipped = i + 1;
            i += 2;
            continue;
        }
        b.push(a[i]);
        i += 1;
    }
    // Contractions: ` 's`, ` 'm`, ` 're`, ` 've` lose the space.
    let mut c = vec![b[0]];
    for i in 1..b.len() {
        if b[i - 1] == b' ' && b[i] == b'\'' && i + 1 < b.len() {
            let x1 = b[i + 1];
            let x2 = b.get(i + 2).copied().filter(|_| i + 2 < b.len());
            if matches!(x1, b's' | b'm')
                || matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e')))
            {
                c.pop();
            }
        }
        c.push(b[i]);
    }
    c
}

/// Turns a stream of token ids into text without splitting UTF-8 sequences across outputs:
/// an incomplete sequence waits for the next token; bytes that can never form a character
/// become U+FFFD.
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    special: bool,
}

impl StreamDecoder {
    /// A decoder that prints control tokens as nothing, like generated text in llama.cpp.
    pub fn new() -> Self {
        Self::default()
    }
    /// Print control tokens as their text (`<|im_end|>`...) instead of nothing.
    pub fn with_special(mut self, special: bool) -> Self {
        self.special = special;
        self
    }
    /// Text completed by token `id` (possibly empty while a multi-byte char is incomplete).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tok.piece(id, self.special));
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, tail) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("valid prefix"));
                    match e.error_len() {
                        // A sequence that no later byte can complete.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &tail[n..];
                        }
                        // Incomplete at the end: wait for more.
                        None => {
                            rest = tail;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        out
    }
    /// Whatever is left (an incomplete sequence becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_matches_llama_cpp_rules() {
        let c = |s: &str| String::from_utf8(clean_up_spaces(s.as_bytes().to_vec())).unwrap();
        assert_eq!(c("Hello , world !"), "Hello, world!");
        assert_eq!(c("it 's we 're I 'm they 've"), "it's we're I'm they've");
        // ` 't`, ` 'd` and ` 'll` keep their space.
        assert_eq!(c("don 't I 'd we 'll"), "don 't I 'd we 'll");
        assert_eq!(c("a ' b"), "a'b");
        assert_eq!(c("a ' ' b"), "a'' b");
        assert_eq!(c(" ,"), ",");
        assert_eq!(c(""), "");
    }

    #[test]
    fn byte_tokens_parse_like_strtol() {
        assert_eq!(byte_of_token("<0x0A>"), 10);
        assert_eq!(byte_of_token("<0xFF>"), 255);
        assert_eq!(byte_of_token("<0xG1>"), 0);
    }
}
