//! GPT-2-style byte-level BPE: words from the pre-tokenizer are spelled in GPT-2's byte
//! alphabet, then adjacent pieces merge, lowest merge rank first (ties: leftmost first).

use super::hash::FastMap;
use super::pretok::{self, Splitter};
use super::unicode::ByteAlphabet;
use super::vocab::Vocab;
use super::TokenizerError;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// No piece: a string that appears in neither the vocabulary nor the merges.
const NONE: u32 = u32::MAX;

pub(crate) struct Bpe {
    pub(crate) splitter: Splitter,
    /// Llama 3 and friends: a word that is a token as a whole skips merging.
    ignore_merges: bool,
    alphabet: ByteAlphabet,
    /// Piece of each byte's alphabet character.
    byte_piece: [u32; 256],
    /// (left piece, right piece) -> (rank, merged piece). Pieces are token ids for vocabulary
    /// strings and ids from `n_vocab` up for strings that only the merges mention.
    merges: FastMap<(u32, u32), (u32, u32)>,
}

impl Bpe {
    pub(crate) fn new(
        vocab: &Vocab,
        merges: &[&str],
        splitter: Splitter,
        ignore_merges: bool,
    ) -> Result<Bpe, TokenizerError> {
        let mut extra: FastMap<String, u32> = FastMap::default();
        let n_vocab = vocab.len() as u32;
        let mut intern = |s: &str| -> u32 {
            if let Some(&id) = vocab.index.get(s) {
                return id;
            }
            let next = n_vocab + extra.len() as u32;
            *extra.entry(s.to_string()).or_insert(next)
        };
        let mut table = FastMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            // The separator is the first space after the first byte.
            let sep = m.as_bytes().iter().skip(1).position(|&b| b == b' ');
            let Some(sep) = sep.map(|p| p + 1) else {
                return Err(TokenizerError(format!(
                    "merge #{rank} {m:?} has no space between its two pieces"
                )));
            };
            let (left, right) = (&m[..sep], &m[sep + 1..]);
            let key = (intern(left), intern(right));
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let merged = intern(&joined);
            // A repeated merge keeps its first (best) rank.
            table.entry(key).or_insert((rank as u32, merged));
        }
        let alphabet = ByteAlphabet::new();
        let mut byte_piece = [NONE; 256];
        for (b, piece) in byte_piece.iter_mut().enumerate() {
            let c = alphabet.char_of(b as u8);
            *piece = vocab
                .index
                .get(c.encode_utf8(&mut [0; 4]) as &str)
                .copied()
                .or_else(|| extra.get(&c.to_string()).copied())
                .unwrap_or(NONE);
        }
        Ok(Bpe {
            splitter,
            ignore_merges,
            alphabet,
            byte_piece,
            merges: table,
        })
    }

    /// Tokenize one fragment of raw text (no special tokens in it).
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut words = Vec::new();
        pretok::split(self.splitter, text, &mut words);
        let mut scratch = Scratch::default();
        for w in words {
            self.encode_word(vocab, text[w].as_bytes(), &mut scratch, out);
        }
    }

    fn encode_word(&self, vocab: &Vocab, word: &[u8], s: &mut Scratch, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            s.spelled.clear();
            s.spelled
                .extend(word.iter().map(|&b| self.alphabet.char_of(b)));
            if let Some(&id) = vocab.index.get(&s.spelled) {
                out.push(id);
                return;
            }
        }
        // One symbol per byte, linked in a list; merged-away symbols get `len == 0`.
        let syms = &mut s.syms;
        syms.clear();
        let n = word.len();
        for (i, &b) in word.iter().enumerate() {
            syms.push(Sym {
                piece: self.byte_piece[b as usize],
                start: i as u32,
                len: 1,
                prev: i as u32 as i64 - 1,
                next: if i + 1 < n { i as i64 + 1 } else { -1 },
            });
        }
        let heap = &mut s.heap;
        heap.clear();
        for i in 1..n {
            self.push_pair(syms, heap, i - 1, i);
        }
        while let Some(Reverse((_, left, right, lp, rp))) = heap.pop() {
            let (l, r) = (&syms[left as usize], &syms[right as usize]);
            if l.len == 0 || r.len == 0 || l.piece != lp || r.piece != rp {
                continue; // stale: one side has merged since
            }
            let merged = self.merges[&(lp, rp)].1;
            let (r_len, r_next) = (r.len, r.next);
            let l = &mut syms[left as usize];
            l.piece = merged;
            l.len += r_len;
            l.next = r_next;
            let l_prev = l.prev;
            syms[right as usize].len = 0;
            if r_next >= 0 {
                syms[r_next as usize].prev = left as i64;
            }
            if l_prev >= 0 {
                self.push_pair(syms, heap, l_prev as usize, left as usize);
            }
            if r_next >= 0 {
                self.push_pair(syms, heap, left as usize, r_next as usize);
            }
        }
        let mut i = 0i64;
        while i >= 0 {
            let sym = &syms[i as usize];
            if (sym.piece as usize) < vocab.len() {
                out.push(sym.piece);
            } else {
                // Not a token: fall back to single-character tokens, which only exist for the
                // bytes whose alphabet character is one byte long (ASCII).
                let bytes = &word[sym.start as usize..(sym.start + sym.len) as usize];
                for &b in bytes {
                    let c = self.alphabet.char_of(b);
                    if c.is_ascii() {
                        if let Some(&id) = vocab.index.get(c.encode_utf8(&mut [0; 4]) as &str) {
                            out.push(id);
                        }
                    }
                }
            }
            i = sym.next;
        }
    }

    fn push_pair(&self, syms: &[Sym], heap: &mut Heap, left: usize, right: usize) {
        let (lp, rp) = (syms[left].piece, syms[right].piece);
        if let Some(&(rank, _)) = self.merges.get(&(lp, rp)) {
            heap.push(Reverse((rank, left as u32, right as u32, lp, rp)));
        }
    }
}

/// A min-heap of candidate merges: (rank, left, right, left piece, right piece).
type Heap = BinaryHeap<Reverse<(u32, u32, u32, u32, u32)>>;

#[derive(Clone, Copy)]
struct Sym {
    piece: u32,
    /// Byte range in the word.
    start: u32,
    len: u32,
    prev: i64,
    next: i64,
}

/// Buffers reused across the words of one call.
#[derive(Default)]
struct Scratch {
    syms: Vec<Sym>,
    heap: Heap,
    spelled: String,
}
