// The HTML report in headless Chromium: the page must render its timeline (its own script sets
// data-timeline-rendered after drawing), log nothing to the console, record no script error,
// and make a screenshot. A harness test breaks the page on purpose to prove the check fails.
// Needs Debian's `chromium`; run by scripts/test.d/80-tools.sh (`--include-ignored`).

mod common;

use flashslim_tools::report;
use flashslim_tools::testkit::{synthetic_run, write_device_run, Mode};
use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--enable-logging=stderr",
    "--v=0",
];

struct Page {
    dom: String,
    console: Vec<String>,
}

fn artifacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-chromium");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// Load `html` in headless Chromium: the DOM after scripts ran, and every console line.
fn load(html: &Path) -> Page {
    let out = Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .arg("--virtual-time-budget=5000")
        .arg("--dump-dom")
        .arg(url(html))
        .output()
        .expect("chromium (apt package `chromium`) must be installed");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    Page {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console: err
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}

fn screenshot(html: &Path, png: &Path) {
    let out = Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1400,2400")
        .arg("--hide-scrollbars")
        .arg(url(html))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = std::fs::read(png).expect("screenshot written");
    assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        b.len() > 20_000,
        "suspiciously small screenshot ({} bytes)",
        b.len()
    );
}

/// The attribute `name="value"` on the `<html>` element, if present.
fn html_attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let start = dom.find("<html")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let i = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[i..i + tag[i..].find('"')?])
}

/// The check: no console output (the report logs nothing), no recorded script error, and the
/// timeline drawn (`Some(items)` when a timeline is expected) or explicitly empty.
fn check(p: &Page, expect_timeline: bool) -> Result<usize, String> {
    if !p.console.is_empty() {
        return Err(format!("console output: {:?}", p.console));
    }
    if let Some(n) = html_attr(&p.dom, "data-js-errors") {
        return Err(format!("{n} script error(s) recorded by the page"));
    }
    let drawn: usize = html_attr(&p.dom, "data-timeline-rendered")
        .ok_or("the page script never finished (no data-timeline-rendered)")?
        .parse()
        .map_err(|_| "bad data-timeline-rendered")?;
    if expect_timeline && drawn == 0 {
        return Err("the timeline drew nothing".into());
    }
    if !expect_timeline && drawn != 0 {
        return Err(format!("expected no timeline, {drawn} items drawn"));
    }
    if !p.dom.contains("<svg") {
        return Err("no SVG in the page".into());
    }
    Ok(drawn)
}

fn write(name: &str, html: &str) -> PathBuf {
    let p = artifacts().join(name);
    std::fs::write(&p, html).unwrap();
    assert_eq!(report::external_references(html), Vec::<String>::new());
    p
}

#[test]
#[ignore = "needs chromium; run by scripts/test.d/80-tools.sh"]
fn single_run_report_renders_its_timeline() {
    let run = synthetic_run(Mode::Stream, 6, 16, 11);
    let p = write("single.html", &report::render(std::slice::from_ref(&run)));
    let page = load(&p);
    let drawn = check(&page, true).unwrap();
    // Every lane item of the initial (unzoomed) view is drawn.
    let expected: usize = page
        .dom
        .match_indices("data-items=\"")
        .map(|(i, _)| {
            let v = &page.dom[i + 12..];
            v[..v.find('"').unwrap()].parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(drawn, expected);
    assert!(
        drawn > run.ops.len(),
        "ops, layers, stages, reads all drawn"
    );
    screenshot(&p, &artifacts().join("single.png"));
}

#[test]
#[ignore = "needs chromium; run by scripts/test.d/80-tools.sh"]
fn comparison_report_renders_both_timelines() {
    let runs = [
        synthetic_run(Mode::Mmap, 4, 10, 1),
        synthetic_run(Mode::Stream, 4, 10, 2),
    ];
    let p = write("compare.html", &report::render(&runs));
    let page = load(&p);
    check(&page, true).unwrap();
    for id in ["timeline-1", "timeline-2"] {
        let i = page.dom.find(&format!("id=\"{id}\"")).unwrap();
        let tag = &page.dom[i..i + page.dom[i..].find('>').unwrap()];
        assert!(
            tag.contains("data-rendered=\"") && !tag.contains("data-rendered=\"0\""),
            "{tag}"
        );
    }
    screenshot(&p, &artifacts().join("compare.png"));
}

#[test]
#[ignore = "needs chromium; run by scripts/test.d/80-tools.sh"]
fn partial_run_dir_from_the_cli_renders_with_missing_markers() {
    // A run directory holding only some inputs (no timed records), one of them unreadable.
    let t = tempfile::tempdir().unwrap();
    write_device_run(
        t.path(),
        "r-partial",
        flashslim_tools::manifest_compat::RunStatus::Interrupted,
        &[
            (
                "bpf-blockio.ndjson",
                b"{\"type\": \"printf\", \"data\": \"format\\tflashslim.bpf\\t1\\tblockio\\n\"}\n\
                  {\"type\": \"hist\", \"data\": {\"@usecs\": [{\"min\": 0, \"max\": 1, \"count\": 4}, {\"min\": 2, \"max\": 3, \"count\": 9}]}}\n".to_vec(),
            ),
            ("stacks.folded", b"flashslim;forward;matmul 90\nflashslim;sample 10\n".to_vec()),
            ("tokens.jsonl", b"{}\n".to_vec()),
        ],
    )
    .unwrap();
    let out = artifacts().join("partial.html");
    let st = Command::new(env!("CARGO_BIN_EXE_slim"))
        .arg("report")
        .arg(t.path().join("r-partial"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(report::external_references(&html), Vec::<String>::new());
    assert!(html.contains("data-missing=\"the timeline\""));
    assert!(html.contains("<code>tokens.jsonl</code></td><td><span class=\"badge b-unreadable\""));
    assert!(html.contains("<code>bpf-blockio.ndjson</code></td><td><span class=\"badge b-loaded\""));
    let page = load(&out);
    assert_eq!(check(&page, false), Ok(0));
    assert!(page.dom.contains("id=\"flamegraph-1\""));
    screenshot(&out, &artifacts().join("partial.png"));
}

#[test]
#[ignore = "needs chromium; run by scripts/test.d/80-tools.sh"]
fn the_check_fails_on_a_broken_page() {
    let good = report::render(&[synthetic_run(Mode::Stream, 2, 4, 3)]);
    // 1. A syntax error in the report script: nothing is drawn, the error is recorded.
    let syntax = good.replacen("\"use strict\";", "\"use strict\"; function (", 1);
    assert_ne!(syntax, good);
    let e = check(&load(&write("broken-syntax.html", &syntax)), true).unwrap_err();
    assert!(e.contains("console") || e.contains("error"), "{e}");
    // 2. The timeline's data removed: the script throws while rendering.
    let nodata = good.replacen("id=\"timeline-data-1\"", "id=\"gone\"", 1);
    assert_ne!(nodata, good);
    assert!(check(&load(&write("broken-data.html", &nodata)), true).is_err());
    // 3. A page that runs fine but draws no timeline.
    let empty = good.replacen("\"lanes\":[", "\"lanes\":[],\"x\":[", 1);
    assert_ne!(empty, good);
    let e = check(&load(&write("broken-empty.html", &empty)), true).unwrap_err();
    assert!(e.contains("drew nothing"), "{e}");
    // The unbroken page passes the same check.
    check(&load(&write("good.html", &good)), true).unwrap();
}

/// `slim report` (the binary) on run directories made by the real engine.
fn report_cli(runs: &[&Path], out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_slim"))
        .arg("report")
        .args(runs)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out).unwrap();
    assert_eq!(report::external_references(&html), Vec::<String>::new());
    html
}

#[test]
#[ignore = "needs chromium, the default model and target/release/flashslim; run by scripts/test.d/80-tools.sh"]
fn report_of_a_real_stream_run_renders_its_timeline() {
    let real = common::real_runs();
    let out = artifacts().join("real-stream.html");
    let html = report_cli(&[&real.stream], &out);
    assert!(!html.contains("data-missing=\"the timeline\""));
    let page = load(&out);
    let drawn = check(&page, true).unwrap();
    assert!(drawn > 1000, "stages, tokens, ops and reads drawn: {drawn}");
    screenshot(&out, &artifacts().join("real-stream.png"));
}

#[test]
#[ignore = "needs chromium, the default model and target/release/flashslim; run by scripts/test.d/80-tools.sh"]
fn real_mmap_against_stream_renders_both_timelines() {
    let real = common::real_runs();
    let out = artifacts().join("real-compare.html");
    report_cli(&[&real.mmap, &real.stream], &out);
    let page = load(&out);
    check(&page, true).unwrap();
    for id in ["timeline-1", "timeline-2"] {
        let i = page.dom.find(&format!("id=\"{id}\"")).unwrap();
        let tag = &page.dom[i..i + page.dom[i..].find('>').unwrap()];
        assert!(
            tag.contains("data-rendered=\"") && !tag.contains("data-rendered=\"0\""),
            "{tag}"
        );
    }
    screenshot(&out, &artifacts().join("real-compare.png"));
}
