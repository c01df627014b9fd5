/*!
Host tools for flashslim runs: pull run directories from a board, turn them into one
Perfetto/Chrome trace, and write one self-contained HTML report.

# Brief overview

- [`pull`]: list the runs on a device and copy them with verification (sha256 + size from the
  run's `manifest.json`), over the system `ssh` (scp or rsync) or `adb`.
- [`manifest_compat`]: `manifest.json` through the engine's reader
  (`flashslim::runlog::Manifest`), plus the checks a host needs before writing what it names.
- [`run`]: the format-independent records of one run (stages, tokens, ops, I/O requests,
  counters, tensor accesses, bpftrace summaries) and the per-input status the report shows.
  [`run::load`] fills it from a run directory through the engine's readers (`runlog::records`,
  `runlog::bpf`, `trace::TraceReader`).
- [`timeline`]: the internal event model (processes, threads, slices, async spans, counters,
  instants on one nanosecond time base), its Chrome JSON writer and a validator.
- [`merge`]: sources that turn run records into timeline events.
- [`report`]: the HTML report (inline CSS/JS/SVG, flamegraph via inferno).
- [`tensor_trace`]: statistics, CSV and per-token JSON over tensor-access records.
- [`gguf_map`]: a model's memory map (tensor offsets, sizes, layer, component).

The engine crate owns every on-device format; this crate never parses one of them twice.
*/
#![deny(missing_docs)]

pub mod gguf_map;
pub mod manifest_compat;
pub mod merge;
pub mod pull;
pub mod report;
pub mod run;
pub mod tensor_trace;
pub mod testkit;
pub mod timeline;

mod util;
