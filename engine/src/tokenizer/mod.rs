//! Tokenizers built from GGUF metadata: GPT-2-style byte-level BPE (pre-tokenizer chosen by
//! `tokenizer.ggml.pre`) and SentencePiece-style (`tokenizer.ggml.model = llama`) with byte
//! fallback; special tokens parsed in text; streaming-safe detokenization; chat templates.
//!
//! API CONTRACT (the CLI depends on exactly this). PLACEHOLDER: `encode` is not implemented yet.

use crate::gguf::{Gguf, Value};
use std::fmt;

#[derive(Debug)]
pub struct TokenizerError(pub String);
impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TokenizerError {}

pub struct Tokenizer {
    tokens: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    template: Option<String>,
}

/// One chat message for [`Tokenizer::render_chat`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let tokens = match g.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
            Some((_, items)) => items
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect(),
            None => {
                return Err(TokenizerError(
                    "missing metadata `tokenizer.ggml.tokens`".into(),
                ))
            }
        };
        let id = |k: &str| g.get(k).and_then(Value::as_u64).map(|v| v as u32);
        Ok(Tokenizer {
            tokens,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
            add_bos: g
                .get("tokenizer.ggml.add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            template: g
                .get("tokenizer.chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
    /// `add_special`: add BOS/EOS as the model's metadata asks; `parse_special`: recognise
    /// special-token text such as `<|im_start|>`.
    pub fn encode(
        &self,
        _text: &str,
        _add_special: bool,
        _parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        Err(TokenizerError("tokenizer not implemented yet".into()))
    }
    /// The raw bytes a token stands for (special tokens: their text).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.tokens
            .get(id as usize)
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default()
    }
    pub fn decode(&self, ids: &[u32]) -> String {
        let b: Vec<u8> = ids.iter().flat_map(|&i| self.token_bytes(i)).collect();
        String::from_utf8_lossy(&b).into_owned()
    }
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// End of generation: EOS, EOT, `<|im_end|>`, `<|eot_id|>`... as the vocabulary marks them.
    pub fn is_eog(&self, id: u32) -> bool {
        Some(id) == self.eos
    }
    /// Whether `id` is a control/special token (not printed in generated text).
    pub fn is_special(&self, _id: u32) -> bool {
        false
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.template.as_deref()
    }
    /// Render the model's chat template (minijinja) for `messages`.
    pub fn render_chat(
        &self,
        _messages: &[ChatMessage],
        _add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        Err(TokenizerError("chat templates not implemented yet".into()))
    }
}

/// Turns a stream of token ids into text without splitting UTF-8 sequences across tokens.
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Text completed by token `id` (possibly empty while a multi-byte char is incomplete).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend(tok.token_bytes(id));
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
    /// Whatever is left (invalid sequences become U+FFFD).
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
