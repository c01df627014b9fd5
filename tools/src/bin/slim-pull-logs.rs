// `slim-pull-logs`: copy flashslim run directories from a board (system ssh: scp -O or rsync;
// or adb) into DEST/<run id>/, verifying every file against the run's manifest. Errors print
// one line each; the exit status is 1 when any run failed, 2 for usage errors.

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Parser, ValueEnum};
use flashslim_tools::manifest_compat::MANIFEST_FILE;
use flashslim_tools::pull::{self, Adb, BarUi, Selection, Ssh, SshCopy, SshTarget, Transport, Ui};
use flashslim_tools::{report, run};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// rsync when the device has it (and this host does), else scp -O.
    Auto,
    /// scp -O (legacy protocol: no sftp-server needed on the device). Whole files.
    Scp,
    /// rsync over ssh; resumes interrupted files.
    Rsync,
}

#[derive(Parser)]
#[command(
    name = "slim-pull-logs",
    version,
    about = "Pull flashslim run directories from a device, verified against each run's manifest",
    group(ArgGroup::new("device").required(true).args(["target", "adb"])),
    group(ArgGroup::new("which").args(["run", "latest", "all"]))
)]
struct Cli {
    /// ssh destination: user@host[:port] (a ~/.ssh/config alias works; IPv6 as user@[addr]:port)
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    target: Option<String>,
    /// Use adb instead of ssh, optionally with a device serial
    #[arg(long, value_name = "SERIAL", num_args = 0..=1, default_missing_value = "")]
    adb: Option<String>,
    /// Directory holding the runs on the device
    #[arg(long, default_value = "/var/log/flashslim/runs")]
    remote_dir: String,
    /// Local directory the runs land in (DEST/<run id>/)
    #[arg(long, default_value = "./runs")]
    dest: PathBuf,
    /// Pull this run (repeatable)
    #[arg(long, value_name = "ID")]
    run: Vec<String>,
    /// Pull the run with the newest manifest
    #[arg(long)]
    latest: bool,
    /// Pull every run (the default)
    #[arg(long)]
    all: bool,
    /// Extra ssh option, repeatable: "-F FILE" / "-i KEY" (starts with `-`: passed as is) or
    /// "Key=Value" (passed as -o Key=Value)
    #[arg(long, value_name = "OPT", allow_hyphen_values = true)]
    ssh_opt: Vec<String>,
    /// How files are copied over ssh
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    transport: TransportArg,
    /// After a run verified completely, delete it on the device (never a running run)
    #[arg(long)]
    delete_after_verify: bool,
    /// Write DEST/<run>/report.html for each run that became complete
    #[arg(long)]
    report: bool,
    /// List the runs on the device and their state on the host; copy nothing
    #[arg(long)]
    list: bool,
    /// No progress bar
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn local_has_rsync() -> bool {
    std::process::Command::new("rsync")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    let selection = if cli.latest {
        Selection::Latest
    } else if !cli.run.is_empty() {
        Selection::Runs(cli.run.clone())
    } else {
        Selection::All
    };
    if !cli.remote_dir.starts_with('/') {
        bail!(
            "--remote-dir must be an absolute path on the device (got {:?})",
            cli.remote_dir
        );
    }
    let remote_dir = cli.remote_dir.trim_end_matches('/').to_string();
    let remote_dir = if remote_dir.is_empty() {
        "/".to_string()
    } else {
        remote_dir
    };

    // Listing first (any copy mode lists the same way), then the copy mode.
    let (transport, listing): (Box<dyn Transport>, pull::Listing) = match (&cli.target, &cli.adb) {
        (Some(t), _) => {
            let target: SshTarget = t.parse()?;
            let mut ssh = Ssh {
                target,
                ssh_args: pull::ssh_args_from_opts(&cli.ssh_opt),
                copy: SshCopy::Scp,
            };
            let listing = pull::list(&ssh, &remote_dir)?;
            ssh.copy = match cli.transport {
                TransportArg::Scp => SshCopy::Scp,
                TransportArg::Rsync => {
                    if !listing.has_rsync {
                        bail!("--transport rsync: the device has no rsync on its PATH (use scp)");
                    }
                    if !local_has_rsync() {
                        bail!("--transport rsync: no rsync on this host");
                    }
                    SshCopy::Rsync
                }
                TransportArg::Auto if listing.has_rsync && local_has_rsync() => SshCopy::Rsync,
                TransportArg::Auto => SshCopy::Scp,
            };
            (Box::new(ssh), listing)
        }
        (None, Some(serial)) => {
            let adb = Adb {
                serial: Some(serial.clone()).filter(|s| !s.is_empty()),
            };
            let listing = pull::list(&adb, &remote_dir)?;
            (Box::new(adb), listing)
        }
        (None, None) => unreachable!("clap requires --target or --adb"),
    };

    if cli.list {
        print_list(&listing, &cli.dest);
        return Ok(ExitCode::SUCCESS);
    }
    let ui = BarUi::new(cli.quiet);
    ui.note(&format!(
        "{}: {} run(s) in {remote_dir}",
        transport.describe(),
        listing.runs.len()
    ));
    let opts = pull::PullOptions {
        remote_dir,
        dest: cli.dest.clone(),
        selection,
        delete_after_verify: cli.delete_after_verify,
    };
    let rep = pull::pull(transport.as_ref(), &listing, &opts, &ui)?;
    let mut failed = !rep.errors.is_empty();
    for e in &rep.errors {
        // Transfer errors were already shown as they happened; the rest are printed here.
        if !matches!(
            e,
            pull::PullError::Refused { .. } | pull::PullError::Transfer { .. }
        ) {
            eprintln!("error: {e}");
        }
    }
    if cli.report {
        for r in rep.newly_complete() {
            match write_report(&r.local) {
                Ok(p) => eprintln!("{}: report {}", r.dir, p.display()),
                Err(e) => {
                    eprintln!("error: {}: report: {e:#}", r.dir);
                    failed = true;
                }
            }
        }
    }
    if failed {
        let n = rep
            .runs
            .iter()
            .filter(|r| r.state == pull::RunState::Failed)
            .count();
        eprintln!("{n} run(s) failed; nothing unverified was kept");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn write_report(dir: &Path) -> Result<PathBuf> {
    let data = run::load(dir)?;
    let html = report::render(std::slice::from_ref(&data));
    let out = dir.join("report.html");
    std::fs::write(&out, html).with_context(|| out.display().to_string())?;
    Ok(out)
}

fn print_list(l: &pull::Listing, dest: &Path) {
    println!(
        "{:<32} {:<11} {:>5} {:>12}  host",
        "run", "status", "files", "bytes"
    );
    for r in &l.runs {
        let host = if dest.join(&r.dir).join(MANIFEST_FILE).is_file() {
            let same = std::fs::read(dest.join(&r.dir).join(MANIFEST_FILE))
                .is_ok_and(|b| b == r.manifest_bytes);
            if same {
                "complete"
            } else {
                "outdated"
            }
        } else if dest.join(&r.dir).is_dir() {
            "partial"
        } else {
            "-"
        };
        match &r.manifest {
            Ok(m) => println!(
                "{:<32} {:<11} {:>5} {:>12}  {host}",
                r.dir,
                flashslim_tools::manifest_compat::status_name(m.status),
                m.files.len(),
                flashslim_tools::manifest_compat::total_bytes(m)
            ),
            Err(e) => println!(
                "{:<32} {:<11} {:>5} {:>12}  {host}  ({e})",
                r.dir, "?", "-", "-"
            ),
        }
    }
}
