//! HTML building blocks of the report: escaping, badges for input states, the "missing"
//! marker, and the side-by-side layout for two runs.

use crate::run::{Family, InputState, RunData};

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Make JSON safe inside `<script type="application/json">` (no `</script>`, no `<!--`).
pub fn json_in_script(json: &str) -> String {
    json.replace('<', "\\u003c").replace('>', "\\u003e")
}

/// A badge for an input state.
pub fn badge(state: &InputState) -> String {
    let (cls, text) = match state {
        InputState::Loaded(_) => ("b-loaded", "loaded"),
        InputState::Missing => ("b-missing", "missing"),
        InputState::Unreadable(_) => ("b-unreadable", "unreadable"),
        InputState::Partial(_) => ("b-partial", "partial"),
    };
    format!(r#"<span class="badge {cls}">{text}</span>"#)
}

/// One-phrase description of an input state.
pub fn state_text(state: &InputState) -> String {
    match state {
        InputState::Loaded(s) => s.clone(),
        InputState::Missing => "not in the run directory".into(),
        InputState::Partial(s) => format!("partial: {s}"),
        InputState::Unreadable(e) => format!("unreadable: {e}"),
    }
}

/// A neutral remark in place of a section part that does not apply to this run (e.g. no
/// streaming I/O in an mmap run): not a missing input.
pub fn note(what: &str, text: &str) -> String {
    format!(
        r#"<div class="note" data-note="{}">{}</div>"#,
        esc(what),
        esc(text)
    )
}

/// The marker shown in place of a section whose inputs are absent: names each needed input
/// and its state.
pub fn missing(run: &RunData, what: &str, needs: &[Family]) -> String {
    let mut parts = Vec::new();
    for f in needs {
        let inputs: Vec<_> = run.inputs.iter().filter(|i| i.family == *f).collect();
        if inputs.is_empty() {
            parts.push(format!("<code>{}</code> — no data", esc(family_file(*f))));
        }
        for i in inputs {
            parts.push(format!(
                "<code>{}</code> — {}",
                esc(&i.file),
                esc(&state_text(&i.state))
            ));
        }
    }
    format!(
        r#"<div class="missing" data-missing="{}"><b>Missing:</b> {} needs {}</div>"#,
        esc(what),
        esc(what),
        if parts.is_empty() {
            "data this run does not have".to_string()
        } else {
            parts.join("; ")
        }
    )
}

/// The file a family normally lives in.
pub fn family_file(f: Family) -> &'static str {
    match f {
        Family::Manifest => "manifest.json",
        Family::Stages => "stages.jsonl",
        Family::Tokens => "tokens.jsonl",
        Family::Io => "io.jsonl",
        Family::TensorTrace => "tensor-trace.bin",
        Family::Bpf => "bpf-*.ndjson",
        Family::Stacks => "stacks.folded",
    }
}

/// Lay out one block per run: as is for one run, side by side for two.
pub fn per_run(runs: &[RunData], block: &dyn Fn(&RunData) -> String) -> String {
    if runs.len() == 1 {
        return block(&runs[0]);
    }
    let mut s = String::from(r#"<div class="cmp">"#);
    for r in runs {
        s.push_str(&format!(
            r#"<div><div class="runlabel">{}</div>{}</div>"#,
            esc(&r.label),
            block(r)
        ));
    }
    s.push_str("</div>");
    s
}
