//! Pre-tokenizers: split text into the words that BPE merges within.
//!
//! Each `tokenizer.ggml.pre` names a regex from the model's `tokenizer.json`. llama.cpp does not
//! run those regexes literally: for the common ones it has hand-written scanners, and those
//! scanners are the behaviour we must reproduce (they differ from a regex engine in corners, for
//! example a lone trailing space). The scanners here follow that behaviour, rule by rule:
//!
//! * GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! * Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//!   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! * Qwen2: Llama 3 with `\p{N}` (one digit per word) instead of `\p{N}{1,3}`.
//! * Qwen3.5: Qwen2 where letter runs also take marks (`[\p{L}\p{M}]+`).
//! * Digits then GPT-2 (smollm, starcoder, ...): every `\p{N}` codepoint is cut out on its own
//!   first, then GPT-2 runs on each piece separately (so `(?!\S)` never looks past a digit).
//!
//! llama.cpp's Llama 3 pre-tokenizer lists a second regex (`\p{N}+` variant) after the first;
//! applied to the first one's words it matches each word whole, so it is not run here (the
//! fixtures, which include long digit runs, would show otherwise).

use super::unicode::{class, Class};
use std::ops::Range;

/// Which scanner a vocabulary's `tokenizer.ggml.pre` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Splitter {
    Gpt2,
    Llama3,
    Qwen2,
    Qwen35,
    DigitsThenGpt2,
}

/// The codepoints of one fragment with their classes and byte offsets.
struct Text {
    chars: Vec<char>,
    classes: Vec<Class>,
    /// Byte offset of each char, plus the total length at the end.
    offsets: Vec<usize>,
}

impl Text {
    fn new(text: &str) -> Text {
        let n = text.len();
        let mut chars = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n + 1);
        for (i, c) in text.char_indices() {
            chars.push(c);
            offsets.push(i);
        }
        offsets.push(n);
        let classes = chars.iter().map(|&c| class(c)).collect();
        Text {
            chars,
            classes,
            offsets,
        }
    }
}

/// A window `[lo, hi)` of a `Text`: positions outside it read as "nothing" (no class matches).
struct Window<'t> {
    t: &'t Text,
    hi: usize,
}

impl Window<'_> {
    fn char_at(&self, i: usize) -> Option<char> {
        (i < self.hi).then(|| self.t.chars[i])
    }
    fn class_at(&self, i: usize) -> Option<Class> {
        (i < self.hi).then(|| self.t.classes[i])
    }
    fn letter(&self, i: usize) -> bool {
        self.class_at(i).is_some_and(Class::is_letter)
    }
    fn letter_or_mark(&self, i: usize) -> bool {
        self.class_at(i)
            .is_some_and(|c| c.is_letter() || c.is_mark())
    }
    fn number(&self, i: usize) -> bool {
        self.class_at(i).is_some_and(Class::is_number)
    }
    fn space(&self, i: usize) -> bool {
        self.class_at(i).is_some_and(Class::is_whitespace)
    }
    /// In the window and not whitespace, letter or number (`[^\s\p{L}\p{N}]`); with `marks`,
    /// not a mark either.
    fn other(&self, i: usize, marks: bool) -> bool {
        self.class_at(i).is_some_and(|c| {
            !(c.is_whitespace() || c.is_letter() || c.is_number() || (marks && c.is_mark()))
        })
    }
    fn newline(&self, i: usize) -> bool {
        matches!(self.char_at(i), Some('\r' | '\n'))
    }
    /// Length of `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (0 if none).
    fn contraction(&self, pos: usize, any_case: bool) -> usize {
        if self.char_at(pos) != Some('\'') || pos + 1 >= self.hi {
            return 0;
        }
        let low = |c: Option<char>| match c {
            Some(c) if any_case => c.to_ascii_lowercase(),
            Some(c) => c,
            None => '\0',
        };
        let a = low(self.char_at(pos + 1));
        if matches!(a, 's' | 't' | 'm' | 'd') {
            return 2;
        }
        if pos + 2 < self.hi {
            let b = low(self.char_at(pos + 2));
            if matches!((a, b), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return 3;
            }
        }
        0
    }
    /// Length of the whitespace run at `pos`, and the end of its last `\r`/`\n` if any.
    fn space_run(&self, pos: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut last_newline = None;
        while self.space(pos + n) {
            if self.newline(pos + n) {
                last_newline = Some(pos + n + 1);
            }
            n += 1;
        }
        (n, last_newline)
    }
    /// `\s+(?!\S)|\s+` for a run of `n` spaces at `pos`: all but the last space when more than
    /// one precede a non-space, else the whole run.
    fn space_word_end(&self, pos: usize, n: usize) -> usize {
        if n > 1 && pos + n < self.hi {
            pos + n - 1
        } else {
            pos + n
        }
    }
}

/// Split `text` into words, as byte ranges, appending to `out`.
pub(crate) fn split(splitter: Splitter, text: &str, out: &mut Vec<Range<usize>>) {
    let t = Text::new(text);
    let n = t.chars.len();
    let mut ends = Vec::with_capacity(n / 3 + 1);
    match splitter {
        Splitter::Gpt2 => gpt2(&t, 0, n, &mut ends),
        Splitter::Llama3 => llama3(&t, 0, n, Digits::UpTo3, false, &mut ends),
        Splitter::Qwen2 => llama3(&t, 0, n, Digits::One, false, &mut ends),
        Splitter::Qwen35 => llama3(&t, 0, n, Digits::One, true, &mut ends),
        Splitter::DigitsThenGpt2 => {
            let mut lo = 0;
            for i in 0..n {
                if t.classes[i].is_number() {
                    gpt2(&t, lo, i, &mut ends);
                    ends.push(i + 1);
                    lo = i + 1;
                }
            }
            gpt2(&t, lo, n, &mut ends);
        }
    }
    let mut start = 0;
    for end in ends {
        out.push(t.offsets[start]..t.offsets[end]);
        start = end;
    }
}

/// GPT-2's scanner over chars `[lo, hi)`; pushes the end of each word.
fn gpt2(t: &Text, lo: usize, hi: usize, ends: &mut Vec<usize>) {
    let w = Window { t, hi };
    let mut pos = lo;
    while pos < hi {
        let end = gpt2_word(&w, pos);
        ends.push(end);
        pos = end;
    }
}

fn gpt2_word(w: &Window, pos: usize) -> usize {
    let c = w.t.chars[pos];
    let k = w.contraction(pos, false);
    if k > 0 {
        return pos + k;
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: one optional leading space.
    let j = pos + (c == ' ') as usize;
    if w.letter(j) {
        return run(j, |i| w.letter(i));
    }
    if w.number(j) {
        return run(j, |i| w.number(i));
    }
    if w.other(j, false) {
        return run(j, |i| w.other(i, false));
    }
    let (n, _) = w.space_run(pos);
    if n > 0 {
        return w.space_word_end(pos, n);
    }
    pos + 1
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Digits {
    One,
    UpTo3,
}

/// The Llama 3 family's scanner (Llama 3, Qwen2, Qwen3.5) over chars `[lo, hi)`.
fn llama3(t: &Text, lo: usize, hi: usize, digits: Digits, marks: bool, ends: &mut Vec<usize>) {
    let w = Window { t, hi };
    let mut pos = lo;
    while pos < hi {
        let c = t.chars[pos];
        let k = w.contraction(pos, true);
        if k > 0 {
            pos += k;
            ends.push(pos);
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+` (letters and marks for Qwen3.5).
        let word = |i: usize| {
            if marks {
                w.letter_or_mark(i)
            } else {
                w.letter(i)
            }
        };
        if !(c == '\r' || c == '\n' || w.number(pos)) && (word(pos) || word(pos + 1)) {
            pos = run(pos + 1, word);
            ends.push(pos);
            continue;
        }
        if w.number(pos) {
            match digits {
                Digits::One => pos += 1,
                Digits::UpTo3 => {
                    let end = run(pos, |i| w.number(i));
                    while end - pos > 3 {
                        pos += 3;
                        ends.push(pos);
                    }
                    pos = end;
                }
            }
            ends.push(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`. A space that ends the window counts as a word here.
        let j = pos + (c == ' ') as usize;
        if j >= hi || w.other(j, marks) {
            pos = run(j, |i| w.other(i, marks));
            pos = run(pos, |i| w.newline(i));
            ends.push(pos);
            continue;
        }
        // `\s*[\r\n]+`, then `\s+(?!\S)|\s+`.
        let (n, last_newline) = w.space_run(pos);
        pos = match last_newline {
            Some(end) => end,
            None if n > 0 => w.space_word_end(pos, n),
            None => pos + 1,
        };
        ends.push(pos);
    }
}

/// The end of the run starting at `i` of positions satisfying `f`.
fn run(mut i: usize, f: impl Fn(usize) -> bool) -> usize {
    while f(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: Splitter, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split(s, text, &mut out);
        out.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            words(Splitter::Gpt2, "Hello world's  end 123!!\n"),
            ["Hello", " world", "'s", " ", " end", " 123", "!!", "\n"]
        );
        // Upper-case contractions are not contractions for GPT-2.
        assert_eq!(words(Splitter::Gpt2, "I'M"), ["I", "'", "M"]);
    }

    #[test]
    fn llama3_words() {
        assert_eq!(
            words(Splitter::Llama3, "I'M 1234567 go!\n\n  x"),
            ["I", "'M", " ", "123", "456", "7", " go", "!\n\n", " ", " x"]
        );
    }

    #[test]
    fn qwen2_digits_one_by_one() {
        assert_eq!(words(Splitter::Qwen2, "a 123"), ["a", " ", "1", "2", "3"]);
    }

    #[test]
    fn digits_split_before_gpt2() {
        // The space run before a digit is not shortened: `(?!\S)` cannot see the digit.
        assert_eq!(
            words(Splitter::DigitsThenGpt2, "a  12b"),
            ["a", "  ", "1", "2", "b"]
        );
        assert_eq!(words(Splitter::Gpt2, "a  12b"), ["a", " ", " 12", "b"]);
    }

    #[test]
    fn words_cover_the_text() {
        let text = "  Ünïcödé 中文 😀😀 \t\r\n x'll 3.14 ";
        for s in [
            Splitter::Gpt2,
            Splitter::Llama3,
            Splitter::Qwen2,
            Splitter::Qwen35,
            Splitter::DigitsThenGpt2,
        ] {
            assert_eq!(words(s, text).concat(), text, "{s:?}");
            assert!(words(s, text).iter().all(|w| !w.is_empty()), "{s:?}");
        }
    }
}
