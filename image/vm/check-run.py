#!/usr/bin/env python3
# check-run.py — the emulated device's assertions on one pulled run directory (e2e.sh, step
# assert): the run is complete, every file verifies against manifest.json, each bpftrace output
# is present, non-empty and on the engine's clock, and the HTML report has its timeline section.
#
# Usage: image/vm/check-run.py RUN_DIR [--report REPORT.html [--dom DOM.html --console LOG]]
# Prints one line per check (`ok NAME detail` / `FAIL NAME detail`) and a summary of the bpftrace
# rows; exits 1 if any check failed. Layouts: docs/formats.md (run directory, flashslim.bpf v1).
import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

# Row kinds of flashslim.bpf v1 and which of their columns (after the kind) are bpftrace nsecs:
# (column, None) is an absolute time, (start column, duration column) an interval.
TIMED_ROWS = {
    "rq": [(0, None), (1, None)],       # issue_ns, complete_ns
    "uring": [(0, None), (1, None)],    # submit_ns, complete_ns
    "major": [(0, 1)],                  # start_ns, dur_ns
    "offcpu": [(0, 1)],
    "rd": [(0, 1)],
}
# |(boot_ns - monotonic_ns) of a clock_sync row - manifest's boottime_minus_monotonic_ns|: both
# are CLOCK_BOOTTIME - CLOCK_MONOTONIC, read apart by the uprobe's latency (ms under TCG, with six
# scripts on one probe). A mix-up with another clock (REALTIME) is far off; BOOTTIME and MONOTONIC
# differ only by suspended time, which a fresh VM has none of.
OFFSET_TOLERANCE_NS = 500_000_000
# bpftrace rows converted with the first clock_sync may be off by the same small amount.
WINDOW_SLACK_NS = 500_000_000

failed = 0


def ok(name, detail=""):
    print(f"ok   {name:<22} {detail}")


def fail(name, detail):
    global failed
    failed += 1
    print(f"FAIL {name:<22} {detail}")


def sha256(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_files(run, man):
    files = man.get("files") or []
    if not files:
        fail("files", "manifest.json lists no files")
        return
    bad = []
    for e in files:
        p = run / e["path"]
        if not p.is_file():
            bad.append(f"{e['path']}: missing")
        elif p.stat().st_size != e["bytes"]:
            bad.append(f"{e['path']}: {p.stat().st_size} bytes, manifest says {e['bytes']}")
        elif sha256(p) != e["sha256"]:
            bad.append(f"{e['path']}: sha256 differs from the manifest")
    listed = {e["path"] for e in files} | {"manifest.json"}
    extra = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and str(p.relative_to(run)) not in listed)
    if extra:
        bad.append(f"not in the manifest: {', '.join(extra)}")
    if bad:
        fail("files-verify", "; ".join(bad))
    else:
        total = sum(e["bytes"] for e in files)
        ok("files-verify", f"{len(files)} files, {total} bytes: sizes and sha256 match manifest.json")


def bpf_rows(path):
    """The printf rows of a bpftrace -f json output, split on tabs, and the other object types."""
    rows, types = [], {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                o = json.loads(line)
            except ValueError as e:
                raise ValueError(f"line {n}: not JSON ({e})")
            types[o.get("type")] = types.get(o.get("type"), 0) + 1
            if o.get("type") == "printf":
                for r in str(o.get("data", "")).splitlines():
                    if r:
                        rows.append(r.split("\t"))
    return rows, types


def check_bpf(run, man):
    scripts = man.get("scripts") or {}
    clock = man.get("clock") or {}
    t0, t1 = clock.get("start_monotonic_ns"), clock.get("end_monotonic_ns")
    off_man = clock.get("boottime_minus_monotonic_ns")
    if not scripts:
        fail("bpf-scripts", "the manifest names no bpftrace script (SCRIPTS in profile.conf)")
        return
    if not (isinstance(t0, int) and isinstance(t1, int) and t0 < t1):
        fail("engine-clock", f"manifest clock has no start/end window: {clock}")
        return
    ok("bpf-scripts", f"{len(scripts)}: {', '.join(sorted(scripts))}")
    ok("engine-clock", f"run window {t0}..{t1} ns CLOCK_MONOTONIC ({(t1 - t0) / 1e9:.1f} s)")
    events_total = 0
    for name, fname in sorted(scripts.items()):
        p = run / fname
        what = f"bpf-{name}"
        if not p.is_file():
            fail(what, f"{fname} is missing")
            continue
        if p.stat().st_size == 0:
            fail(what, f"{fname} is empty")
            continue
        try:
            rows, types = bpf_rows(p)
        except (OSError, ValueError) as e:
            fail(what, f"{fname}: {e}")
            continue
        fmt = [r for r in rows if r[0] == "format"]
        if not fmt or fmt[0][1:3] != ["flashslim.bpf", "1"]:
            fail(what, f"{fname}: no `format flashslim.bpf 1` row (BEGIN never ran?)")
            continue
        syncs = [r for r in rows if r[0] == "clock_sync"]
        if len(syncs) < 2:
            fail(what, f"{fname}: {len(syncs)} clock_sync row(s); the engine fires one at the start and one at the end of generation")
            continue
        try:
            pairs = [(int(r[1]), int(r[2])) for r in syncs]
        except (IndexError, ValueError):
            fail(what, f"{fname}: malformed clock_sync row {syncs}")
            continue
        problems = []
        for boot, mono in pairs:
            if not t0 <= mono <= t1:
                problems.append(f"clock_sync monotonic {mono} outside the run window")
            if isinstance(off_man, int) and abs((boot - mono) - off_man) > OFFSET_TOLERANCE_NS:
                problems.append(f"clock_sync offset {boot - mono} vs manifest boottime-monotonic {off_man} "
                                f"(differ by {abs(boot - mono - off_man) / 1e6:.1f} ms)")
        offset = pairs[0][0] - pairs[0][1]
        n_events, first, last, worst = 0, None, None, 0
        for r in rows:
            cols = TIMED_ROWS.get(r[0])
            if not cols:
                continue
            n_events += 1
            try:
                times = []
                for c, d in cols:
                    s = int(r[1 + c])
                    times.append(s)
                    if d is not None:
                        times.append(s + int(r[1 + d]))
            except (IndexError, ValueError):
                problems.append(f"malformed {r[0]} row {r!r}")
                continue
            for b in times:
                m = b - offset
                first = m if first is None else min(first, m)
                last = m if last is None else max(last, m)
                out = max(t0 - m, m - t1, 0)
                worst = max(worst, out)
        if worst > WINDOW_SLACK_NS:
            problems.append(f"event rows reach {worst / 1e6:.1f} ms outside the engine's run window")
        if problems:
            fail(what, f"{fname}: " + "; ".join(problems[:4]))
            continue
        events_total += n_events
        span = f", events {(first - t0) / 1e9:+.3f}..{(last - t0) / 1e9:+.3f} s from run start" if n_events else ""
        maps = sum(v for k, v in types.items() if k in ("map", "hist", "stats"))
        ok(what, f"{p.stat().st_size} bytes, {len(pairs)} clock_sync (offset {offset - off_man if isinstance(off_man, int) else '?'} ns "
                 f"from manifest), {n_events} event rows{span}, {maps} END maps")
    if events_total == 0:
        fail("bpf-events", "no script recorded a single event row inside the run (rq/uring/major/offcpu/rd)")
    else:
        ok("bpf-events", f"{events_total} event rows, all inside the engine's run window")


def check_engine_logs(run, man):
    t0 = man["clock"]["start_monotonic_ns"]
    t1 = man["clock"]["end_monotonic_ns"]
    p = run / "tokens.jsonl"
    if not p.is_file():
        fail("tokens", "tokens.jsonl is missing")
        return
    toks = [json.loads(line) for line in p.read_text().splitlines()[1:] if line.strip()]
    gen = (man.get("metrics") or {}).get("generated_tokens")
    if not toks:
        fail("tokens", "tokens.jsonl has no token")
    elif gen is not None and len(toks) != gen:
        fail("tokens", f"tokens.jsonl has {len(toks)} tokens, the manifest says {gen} generated")
    elif not all(t0 <= t["t_ns"] <= t1 for t in toks):
        fail("tokens", "a token's t_ns lies outside the run window")
    else:
        ok("tokens", f"{len(toks)} tokens inside the run window")


def check_report(report, dom, console):
    if not report.is_file() or report.stat().st_size == 0:
        fail("report", f"{report} missing or empty")
        return
    html = report.read_text(errors="replace")
    if not html.rstrip().endswith("</html>"):
        fail("report", f"{report} does not end with </html>")
    elif '<section id="timeline">' not in html:
        fail("report", f"{report} has no timeline section")
    else:
        m = re.search(r'id="timeline-\d+"[^>]*data-items="(\d+)"', html)
        if not m or int(m.group(1)) == 0:
            fail("report", f"{report} draws no timeline items (the run's stages/tokens were not read)")
        else:
            ok("report", f"{report.stat().st_size} bytes, timeline with {m.group(1)} items")
    if dom is None:
        return
    d = dom.read_text(errors="replace") if dom.is_file() else ""
    tag = d[d.find("<html"):d.find(">", d.find("<html"))] if "<html" in d else ""
    errs = re.search(r'data-js-errors="([^"]*)"', tag)
    rendered = re.search(r'data-timeline-rendered="(\d+)"', tag)
    lines = [l for l in console.read_text(errors="replace").splitlines() if ":CONSOLE" in l] if console and console.is_file() else []
    if lines:
        fail("report-chromium", f"the page wrote to the console: {lines[:3]}")
    elif errs:
        fail("report-chromium", f"the page recorded {errs.group(1)} script error(s)")
    elif not rendered:
        fail("report-chromium", "the page script never finished (no data-timeline-rendered)")
    else:
        ok("report-chromium", f"headless chromium ran the page: data-timeline-rendered={rendered.group(1)}, no script error")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--report", type=Path)
    ap.add_argument("--dom", type=Path, help="headless chromium's --dump-dom of the report")
    ap.add_argument("--console", type=Path, help="chromium's stderr (--enable-logging=stderr)")
    a = ap.parse_args()
    mp = a.run / "manifest.json"
    try:
        man = json.loads(mp.read_text())
    except (OSError, ValueError) as e:
        fail("manifest", f"{mp}: {e}")
        return 1
    if man.get("status") == "complete" and man.get("error") is None:
        ok("complete", f"run {man.get('run_id')}: status complete")
    else:
        fail("complete", f"run {man.get('run_id')}: status {man.get('status')!r}, error {man.get('error')!r}")
    check_files(a.run, man)
    check_bpf(a.run, man)
    check_engine_logs(a.run, man)
    if a.report:
        check_report(a.report, a.dom, a.console)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
