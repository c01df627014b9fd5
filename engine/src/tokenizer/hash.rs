//! A fast non-cryptographic hasher for the vocabulary and merge tables. Their keys come from
//! the model file and lookups from short substrings of the text, so SipHash's protection
//! against chosen keys buys nothing here and costs most of the encoding time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash's multiply-rotate mixing, one 64-bit word at a time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // Multiplication leaves the low bits weak; hashbrown indexes with them.
        self.0.rotate_left(26)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_work_with_string_keys() {
        let mut m: FastMap<String, u32> = FastMap::default();
        for i in 0..10_000u32 {
            m.insert(format!("tok{i}"), i);
        }
        assert_eq!(m.get("tok1234"), Some(&1234));
        assert_eq!(m.get("tok10000"), None);
        assert_eq!(m.len(), 10_000);
    }
}
