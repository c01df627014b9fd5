// Fuzz target: the tensor-trace reader must return Ok or a one-line error on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flashslim::trace::TraceFile::from_bytes(data) {
        assert!(!e.to_string().contains('\n'));
    }
});
