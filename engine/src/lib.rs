//! flashslim: LLM inference for small Linux boards with weights streamed from flash under a
//! memory budget, plus the probes and logs that explain where the time goes.
//!
//! The decode loop lives in [`model::forward`]; weights reach it through the
//! [`weights::WeightSource`] seam (`ram`, `mmap`, `stream`).

pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod plan;
pub mod probes;
pub mod procstat;
pub mod profile;
pub mod runlog;
pub mod sampler;
pub mod session;
pub mod summary;
pub mod tokenizer;
pub mod trace;
pub mod weights;
