// Fuzz the streaming-plan reader: any bytes must give a plan or an error naming what is wrong,
// never a panic. Same entry point as engine/tests/stream_plan_corpus.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flashslim::plan::fuzz::check(data);
});
