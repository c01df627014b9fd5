// Fuzz target: the run-manifest reader (and the bpf output reader it sits beside) must return Ok
// or a one-line error on any text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = flashslim::runlog::Manifest::from_json(&text) {
        assert!(!e.to_string().contains('\n'));
    }
    let _ = flashslim::runlog::bpf::BpfOutput::parse_ndjson(&text, "fuzz");
});
