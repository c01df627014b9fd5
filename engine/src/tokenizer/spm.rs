//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): spaces are spelled `▁`, adjacent
//! pieces merge when their concatenation is a token, highest token score first (ties: leftmost
//! first), and characters that end up in no token fall back to `<0xNN>` byte tokens.

use super::vocab::Vocab;
use super::TokenizerError;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Tokenize `text`, whose spaces are already `▁`.
pub(crate) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
    // One symbol per character, linked in a list; merged-away symbols get `len == 0`.
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    let n = text.chars().count();
    for (i, (start, c)) in text.char_indices().enumerate() {
        syms.push(Sym {
            start,
            len: c.len_utf8(),
            prev: i as i64 - 1,
            next: if i + 1 < n { i as i64 + 1 } else { -1 },
        });
    }
    let mut heap = BinaryHeap::new();
    for i in 1..syms.len() {
        push_pair(vocab, text, &syms, &mut heap, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (syms[b.left], syms[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
            continue; // stale: one side has merged since
        }
        syms[b.left].len += r.len;
        syms[b.left].next = r.next;
        syms[b.right].len = 0;
        if r.next >= 0 {
            syms[r.next as usize].prev = b.left as i64;
            push_pair(vocab, text, &syms, &mut heap, b.left, r.next as usize);
        }
        if l.prev >= 0 {
            push_pair(vocab, text, &syms, &mut heap, l.prev as usize, b.left);
        }
    }
    let mut i = if syms.is_empty() { -1 } else { 0 };
    while i >= 0 {
        let s = syms[i as usize];
        let piece = &text[s.start..s.start + s.len];
        match vocab.index.get(piece) {
            Some(&id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    out.push(byte_token(vocab, b)?);
                }
            }
        }
        i = s.next;
    }
    Ok(())
}

/// The token for a raw byte: `<0xNN>`, else the byte itself as a one-byte token.
pub(crate) fn byte_token(vocab: &Vocab, b: u8) -> Result<u32, TokenizerError> {
    if let Some(&id) = vocab.index.get(&format!("<0x{b:02X}>")) {
        return Ok(id);
    }
    if b.is_ascii() {
        if let Some(&id) = vocab
            .index
            .get((b as char).encode_utf8(&mut [0; 4]) as &str)
        {
            return Ok(id);
        }
    }
    Err(TokenizerError(format!(
        "vocabulary has no byte-fallback token <0x{b:02X}>"
    )))
}

fn push_pair(
    vocab: &Vocab,
    text: &str,
    syms: &[Sym],
    heap: &mut BinaryHeap<Bigram>,
    left: usize,
    right: usize,
) {
    let (l, r) = (syms[left], syms[right]);
    let piece = &text[l.start..r.start + r.len];
    if let Some(&id) = vocab.index.get(piece) {
        heap.push(Bigram {
            score: vocab.scores[id as usize],
            left,
            right,
            len: piece.len(),
        });
    }
}

#[derive(Clone, Copy)]
struct Sym {
    /// Byte range in the text.
    start: usize,
    len: usize,
    prev: i64,
    next: i64,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Bytes of the merged piece (a later merge of either side changes the sum).
    len: usize,
}

impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        let by_score = if self.score < other.score {
            Ordering::Less
        } else if self.score > other.score {
            Ordering::Greater
        } else {
            Ordering::Equal
        };
        by_score.then(other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
