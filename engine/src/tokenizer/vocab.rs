//! The vocabulary from GGUF metadata: token texts, scores, attributes, special ids, and the
//! end-of-generation set, decided the way llama.cpp decides them.

use super::hash::FastMap;
use super::TokenizerError;
use crate::gguf::{Gguf, Value};
use std::collections::BTreeSet;

/// Token attributes (llama.cpp's `llama_token_attr` bits).
pub mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    /// Swallow whitespace to the left of the token when it is parsed in text.
    pub const LSTRIP: u16 = 1 << 7;
    /// Swallow whitespace to the right of the token when it is parsed in text.
    pub const RSTRIP: u16 = 1 << 8;
}

/// `tokenizer.ggml.token_type` values and the attribute each one gives.
fn attr_of_type(t: i64) -> u16 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0, // undefined
    }
}

/// Token texts that end a turn when no `eot_token_id` says otherwise (llama.cpp's list).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Token texts that end generation (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle tokens found by text; pad, repo and file-separator also end generation.
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];

/// The kind of tokenizer model (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// SentencePiece-style (`llama`).
    Spm,
    /// GPT-2-style byte-level BPE (`gpt2`).
    Bpe,
}

pub(crate) struct Vocab {
    pub(crate) texts: Vec<String>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<u16>,
    /// Token text -> id.
    pub(crate) index: FastMap<String, u32>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) eot: Option<u32>,
    pub(crate) eog: BTreeSet<u32>,
    /// Ids that text parsing looks for (control, user-defined, unknown), longest text first.
    pub(crate) special_by_len: Vec<u32>,
}

/// Read a metadata key as the given kind, with a typed error when it has another type.
pub(crate) struct Meta<'a>(pub(crate) &'a Gguf);

impl<'a> Meta<'a> {
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, TokenizerError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a string", v)),
        }
    }
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, TokenizerError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a bool", v)),
        }
    }
    pub(crate) fn u64(&self, key: &str) -> Result<Option<u64>, TokenizerError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a non-negative integer", v)),
        }
    }
    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a [Value]>, TokenizerError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(|(_, items)| Some(items))
                .ok_or_else(|| wrong_type(key, "an array", v)),
        }
    }
}

fn wrong_type(key: &str, want: &str, v: &Value) -> TokenizerError {
    TokenizerError(format!(
        "metadata `{key}` should be {want}, found {}",
        v.value_type().name()
    ))
}

/// Settings that depend on the model kind and pre-tokenizer, before metadata overrides.
pub(crate) struct Defaults {
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
}

impl Vocab {
    pub(crate) fn load(g: &Gguf, d: Defaults) -> Result<Vocab, TokenizerError> {
        let m = Meta(g);
        let items = m
            .array("tokenizer.ggml.tokens")?
            .ok_or_else(|| TokenizerError("missing metadata `tokenizer.ggml.tokens`".into()))?;
        let n = items.len();
        if n == 0 || n > u32::MAX as usize / 2 {
            return Err(TokenizerError(format!(
                "`tokenizer.ggml.tokens` has {n} entries"
            )));
        }
        let mut texts = Vec::with_capacity(n);
        let mut index = FastMap::with_capacity_and_hasher(n, Default::default());
        for (i, v) in items.iter().enumerate() {
            let s = v.as_str().ok_or_else(|| {
                TokenizerError(format!("`tokenizer.ggml.tokens` entry {i} is not a string"))
            })?;
            // llama.cpp renames empty tokens so that every text is distinct and non-empty.
            let s = if s.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                s.to_string()
            };
            if let Some(first) = index.insert(s.clone(), i as u32) {
                return Err(TokenizerError(format!(
                    "token {i} {s:?} repeats token {first}"
                )));
            }
            texts.push(s);
        }
        let scores = match m.array("tokenizer.ggml.scores")? {
            None => vec![0.0; n],
            Some(a) if a.len() < n => {
                return Err(TokenizerError(format!(
                    "`tokenizer.ggml.scores` has {} entries for {n} tokens",
                    a.len()
                )))
            }
            Some(a) => a[..n]
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_f64().map(|f| f as f32).ok_or_else(|| {
                        TokenizerError(format!("`tokenizer.ggml.scores` entry {i} is not a number"))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let attrs = match m.array("tokenizer.ggml.token_type")? {
            None => vec![attr::NORMAL; n],
            Some(a) if a.len() < n => {
                return Err(TokenizerError(format!(
                    "`tokenizer.ggml.token_type` has {} entries for {n} tokens",
                    a.len()
                )))
            }
            Some(a) => a[..n]
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64().map(attr_of_type).ok_or_else(|| {
                        TokenizerError(format!(
                            "`tokenizer.ggml.token_type` entry {i} is not an integer"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let mut v = Vocab {
            texts,
            scores,
            attrs,
            index,
            bos: None,
            eos: None,
            eot: None,
            eog: BTreeSet::new(),
            special_by_len: Vec::new(),
        };
        v.special_ids(&m, d)?;
        v.special_attrs(&m)?;
        Ok(v)
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    fn id_of(&self, text: &str) -> Option<u32> {
        self.index.get(text).copied()
    }

    /// The lowest id among tokens with one of `texts` (llama.cpp takes whichever its hash map
    /// yields first; real vocabularies have at most one).
    fn find_first(&self, texts: &[&str]) -> Option<u32> {
        texts.iter().filter_map(|t| self.id_of(t)).min()
    }

    fn force_control(&mut self, id: u32) {
        self.attrs[id as usize] |= attr::CONTROL;
    }

    /// BOS/EOS/EOT/... ids: defaults, then metadata, then detection by text; and the EOG set.
    fn special_ids(&mut self, m: &Meta, d: Defaults) -> Result<(), TokenizerError> {
        let n = self.len() as u64;
        let in_range = |id: Option<u32>| id.filter(|&i| (i as u64) < n);
        let key_id = |key: &str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            let default = in_range(default);
            Ok(match m.u64(key)? {
                // An out-of-range id in the metadata keeps the default, as llama.cpp does.
                Some(id) if id < n => Some(id as u32),
                _ => default,
            })
        };
        let k = |name: &str| format!("tokenizer.ggml.{name}_token_id");
        self.bos = key_id(&k("bos"), d.bos)?;
        self.eos = key_id(&k("eos"), d.eos)?;
        let mut eot = key_id(&k("eot"), None)?;
        let mut eom = key_id(&k("eom"), None)?;
        let mut fim_pre = key_id(&k("fim_pre"), None)?;
        fim_pre = key_id(&k("prefix"), fim_pre)?;
        let mut fim_suf = key_id(&k("fim_suf"), None)?;
        fim_suf = key_id(&k("suffix"), fim_suf)?;
        let mut fim_mid = key_id(&k("fim_mid"), None)?;
        fim_mid = key_id(&k("middle"), fim_mid)?;
        let mut fim_pad = key_id(&k("fim_pad"), None)?;
        let mut fim_rep = key_id(&k("fim_rep"), None)?;
        let mut fim_sep = key_id(&k("fim_sep"), None)?;

        // Detection by text, for ids the metadata did not give. A detected token is control.
        for (slot, texts) in [
            (&mut eot, EOT_TEXTS),
            (&mut eom, &["<|eom_id|>"][..]),
            (&mut fim_pre, FIM_PRE_TEXTS),
            (&mut fim_suf, FIM_SUF_TEXTS),
            (&mut fim_mid, FIM_MID_TEXTS),
            (&mut fim_pad, FIM_PAD_TEXTS),
            (&mut fim_rep, FIM_REP_TEXTS),
            (&mut fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none() {
                *slot = self.find_first(texts);
                if let Some(id) = *slot {
                    self.force_control(id);
                }
            }
        }

        let mut eog: BTreeSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for t in EOG_TEXTS {
            if let Some(id) = self.id_of(t) {
                eog.insert(id);
                self.force_control(id);
            }
        }
        // gpt-oss: these markers are printed text, not control.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = self.id_of(t) {
                self.attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([self.eos, eot, eom].into_iter().flatten());
        // gpt-oss / solar-open: `<|end|>` ends a message, not generation, when the vocabulary
        // also has the return/call markers.
        let has = |v: &Vocab, eog: &BTreeSet<u32>, t: &str| {
            v.id_of(t).is_some_and(|id| eog.contains(&id))
        };
        let calls = has(self, &eog, "<|call|>") || has(self, &eog, "<|calls|>");
        let end = self.id_of("<|end|>").filter(|id| eog.contains(id));
        if let Some(end) =
            end.filter(|_| calls && (has(self, &eog, "<|return|>") || has(self, &eog, "<|flush|>")))
        {
            eog.remove(&end);
            self.attrs[end as usize] = attr::USER_DEFINED;
        }
        // gemma4 and plamo2: `</s>` is an ordinary token there.
        let normal_s = has(self, &eog, "<|tool_response>") || has(self, &eog, "<|plamo:eos|>");
        if let Some(s) = self.id_of("</s>").filter(|id| normal_s && eog.contains(id)) {
            eog.remove(&s);
            self.attrs[s as usize] = attr::NORMAL;
        }
        self.eot = eot;
        self.eog = eog;
        Ok(())
    }

    /// Per-model strip attributes, and the list of tokens that text parsing looks for.
    fn special_attrs(&mut self, m: &Meta) -> Result<(), TokenizerError> {
        let special = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut by_len: Vec<u32> = (0..self.len() as u32)
            .filter(|&id| self.attrs[id as usize] & special != 0)
            .collect();
        // Longest first; equal lengths by id (llama.cpp's order among those is unspecified).
        by_len.sort_by_key(|&id| std::cmp::Reverse(self.texts[id as usize].len()));
        let name = m.str("general.name")?.unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            // Phi-3 eats the whitespace after its special tokens, except after these three.
            for &id in &by_len {
                self.attrs[id as usize] |= attr::RSTRIP;
            }
            for (t, on) in [
                ("</s>", true),
                ("<unk>", false),
                ("<s>", false),
                ("<|endoftext|>", false),
            ] {
                let id = self
                    .id_of(t)
                    .ok_or_else(|| TokenizerError(format!("Phi-3 vocabulary has no {t} token")))?;
                if on {
                    self.attrs[id as usize] |= attr::RSTRIP;
                } else {
                    self.attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }
        self.special_by_len = by_len;
        Ok(())
    }
}
