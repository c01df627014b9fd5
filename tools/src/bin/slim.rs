// `slim`: host-side views of flashslim runs — `merge` (one Perfetto/Chrome JSON trace),
// `report` (one self-contained HTML file), `trace` (tensor-trace stats/CSV/per-token JSON) and
// `gguf` (a model's memory map). Errors print as one line and exit 1; usage errors exit 2.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use flashslim_tools::{gguf_map, merge, report, run, tensor_trace, timeline};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "slim",
    version,
    about = "Views of flashslim runs: merged trace, HTML report, tensor trace, GGUF memory map"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Merge a run's logs into one Chrome/Perfetto JSON trace (open it in ui.perfetto.dev).
    Merge {
        /// Run directory (as pulled by slim-pull-logs).
        run_dir: PathBuf,
        /// Output file.
        #[arg(short = 'o', long = "output", default_value = "trace.json")]
        output: PathBuf,
    },
    /// Write one self-contained HTML report of a run, or of two runs side by side.
    Report {
        /// Run directory.
        run_dir: PathBuf,
        /// Second run directory, compared side by side with the first (e.g. mmap vs stream).
        run_dir2: Option<PathBuf>,
        /// Output file.
        #[arg(short = 'o', long = "output", default_value = "report.html")]
        output: PathBuf,
    },
    /// Read a tensor-access trace: statistics, CSV, per-token JSON.
    Trace {
        /// The trace (tensor-trace.bin).
        file: PathBuf,
        /// Print counts and times per token, layer, op and memory source (the default).
        #[arg(long)]
        stats: bool,
        /// Print one CSV row per record (one per tensor or buffer an op touched).
        #[arg(long)]
        csv: bool,
        /// Write DIR/token-NNNNN.json per token (the upstream tracer's per-token shape).
        #[arg(long, value_name = "DIR")]
        json_per_token: Option<PathBuf>,
    },
    /// Print a model's memory map: tensor offsets, sizes, types, layer and component.
    Gguf {
        /// Model file (GGUF v2/v3).
        model: PathBuf,
        /// CSV instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(c: Command) -> Result<()> {
    match c {
        Command::Merge { run_dir, output } => cmd_merge(&run_dir, &output),
        Command::Report {
            run_dir,
            run_dir2,
            output,
        } => {
            let mut dirs = vec![run_dir];
            dirs.extend(run_dir2);
            cmd_report(&dirs, &output)
        }
        Command::Trace {
            file,
            stats,
            csv,
            json_per_token,
        } => cmd_trace(&file, stats, csv, json_per_token.as_deref()),
        Command::Gguf { model, csv, json } => cmd_gguf(&model, csv, json),
    }
}

fn cmd_merge(dir: &Path, output: &Path) -> Result<()> {
    let data = run::load(dir)?;
    let (tl, rep) = merge::merge(&data).with_context(|| dir.display().to_string())?;
    let json = timeline::chrome::to_string(&tl);
    // The writer's own contract, checked before anything is written.
    if let Err(errs) = timeline::validate::validate(&json) {
        bail!(
            "internal error: the merged trace is invalid ({}); not written",
            errs.join("; ")
        );
    }
    write_file(output, json.as_bytes())?;
    for n in &rep.notes {
        eprintln!("note: {n}");
    }
    let per: Vec<String> = rep
        .sources
        .iter()
        .filter(|s| s.1 > 0)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    eprintln!(
        "wrote {} ({} events: {}; {} slice(s) moved to overlap threads)",
        output.display(),
        tl.event_count(),
        per.join(", "),
        rep.moved_overlaps
    );
    Ok(())
}

fn cmd_report(dirs: &[PathBuf], output: &Path) -> Result<()> {
    let runs = dirs
        .iter()
        .map(|d| run::load(d).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let html = report::render(&runs);
    write_file(output, html.as_bytes())?;
    eprintln!("wrote {} ({} bytes)", output.display(), html.len());
    for r in &runs {
        for i in &r.inputs {
            match &i.state {
                run::InputState::Partial(s) => {
                    eprintln!("note: {}/{}: partial: {s}", r.label, i.file)
                }
                run::InputState::Unreadable(s) => {
                    eprintln!("note: {}/{}: unreadable: {s}", r.label, i.file)
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn cmd_trace(file: &Path, stats: bool, csv: bool, per_token: Option<&Path>) -> Result<()> {
    let data = tensor_trace::open(file)?;
    if !data.is_complete() {
        eprintln!("warning: {}: {}", file.display(), data.end_text());
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    if csv {
        tensor_trace::write_csv(&data, &mut out)?;
    }
    if let Some(dir) = per_token {
        let files = tensor_trace::write_json_per_token(&data, dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        eprintln!("wrote {} file(s) to {}", files.len(), dir.display());
    }
    if stats || (!csv && per_token.is_none()) {
        tensor_trace::TraceStats::of(&data).write_text(&data, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

fn cmd_gguf(model: &Path, csv: bool, json: bool) -> Result<()> {
    let map = gguf_map::MemoryMap::open(model).with_context(|| model.display().to_string())?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if csv {
        map.write_csv(&mut out)?;
    } else if json {
        map.write_json(&mut out)?;
    } else {
        map.write_table(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Write through a temporary file and a rename, so a failed run never leaves half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
