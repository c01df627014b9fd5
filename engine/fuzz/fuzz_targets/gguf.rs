// Fuzz the GGUF reader: any bytes must parse or give a one-line error, never a panic, a huge
// allocation or a hang. Same entry point as the corruption tests in engine/src/gguf/tests.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = flashslim::gguf::Gguf::parse_bytes(data) {
        // A file that parses must be self-consistent.
        for t in &g.tensors {
            assert!(t.offset + t.size <= g.file_size);
        }
    }
});
