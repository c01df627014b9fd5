//! Static inline SVG charts of the report: horizontal bars, stacked columns with an optional
//! reference line, a heatmap and a histogram. Every function returns one `<svg>` string with
//! a viewBox (so it scales) and `<title>` tooltips; no script, no external resources.

use super::html::esc;
use std::fmt::Write;

/// Horizontal bars: one row per `(label, value)`, value text via `fmt`.
pub fn hbars(items: &[(String, f64)], fmt: &dyn Fn(f64) -> String, class: &str) -> String {
    let w = 640.0;
    let label_w = 150.0;
    let val_w = 90.0;
    let row = 16.0;
    let h = row * items.len() as f64 + 4.0;
    let max = items
        .iter()
        .map(|i| i.1)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s =
        format!(r#"<svg class="hbars" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">"#);
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        let bw = (w - label_w - val_w) * v / max;
        let _ = write!(
            s,
            r#"<text x="{tx}" y="{ty}" text-anchor="end">{l}</text><rect class="{class}" x="{label_w}" y="{y}" width="{bw:.2}" height="{bh}"><title>{l}: {vt}</title></rect><text x="{vx:.2}" y="{ty}">{vt}</text>"#,
            tx = label_w - 6.0,
            ty = y + row - 5.0,
            l = esc(label),
            bh = row - 3.0,
            vx = label_w + bw + 4.0,
            vt = esc(&fmt(*v)),
        );
    }
    s.push_str("</svg>");
    s
}

/// One stacked column: `(label, segments)`, each segment `(value, css class, name)`.
pub type Column = (String, Vec<(f64, &'static str, &'static str)>);

/// Stacked columns (one per token), y axis via `fmt`, optional dashed reference line.
pub fn columns(
    cols: &[Column],
    fmt: &dyn Fn(f64) -> String,
    reference: Option<(f64, String)>,
) -> String {
    let w = 760.0;
    let h = 200.0;
    let left = 84.0;
    let bottom = 22.0;
    let top = 8.0;
    let plot_h = h - bottom - top;
    let n = cols.len().max(1) as f64;
    let slot = (w - left - 4.0) / n;
    let max = cols
        .iter()
        .map(|c| c.1.iter().map(|s| s.0).sum::<f64>())
        .chain(reference.as_ref().map(|r| r.0))
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let mut s = format!(
        r#"<svg class="columns" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><g class="grid axis">"#
    );
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<line x1="{left}" x2="{w}" y1="{yy:.2}" y2="{yy:.2}"/><text x="{tx}" y="{ty:.2}" text-anchor="end">{t}</text>"#,
            yy = y(v),
            tx = left - 4.0,
            ty = y(v) + 4.0,
            t = esc(&fmt(v))
        );
    }
    s.push_str("</g>");
    let label_every = (cols.len() / 16).max(1);
    for (i, (label, segs)) in cols.iter().enumerate() {
        let x = left + i as f64 * slot;
        let mut acc = 0.0;
        for (v, class, name) in segs {
            let y1 = y(acc + v);
            let y0 = y(acc);
            let _ = write!(
                s,
                r#"<rect class="{class}" x="{x:.2}" y="{y1:.2}" width="{bw:.2}" height="{bh:.2}"><title>{l} {name}: {t}</title></rect>"#,
                bw = (slot * 0.8).max(0.5),
                bh = (y0 - y1).max(0.0),
                l = esc(label),
                t = esc(&fmt(*v))
            );
            acc += v;
        }
        if i % label_every == 0 {
            let _ = write!(
                s,
                r#"<text x="{tx:.2}" y="{ty}" text-anchor="middle">{l}</text>"#,
                tx = x + slot * 0.4,
                ty = h - 6.0,
                l = esc(label)
            );
        }
    }
    if let Some((v, label)) = reference {
        let _ = write!(
            s,
            r#"<line class="c-bound" x1="{left}" x2="{w}" y1="{yy:.2}" y2="{yy:.2}"><title>{l}</title></line><text x="{tx}" y="{ty:.2}" text-anchor="end">{l}</text>"#,
            yy = y(v),
            tx = w - 4.0,
            ty = y(v) - 3.0,
            l = esc(&label)
        );
    }
    s.push_str("</svg>");
    s
}

/// A heatmap: `rows` × `cols`, `cell(r, c)` = value (0 = none). Darker is more. `col_kind`
/// names the columns in tooltips (`token`, `op`); long column labels are drawn slanted.
pub fn heatmap(rows: &[String], cols: &[String], values: &[Vec<f64>], col_kind: &str) -> String {
    let label_w = 190.0;
    let cw = (560.0 / cols.len().max(1) as f64).clamp(2.0, 28.0);
    let rh = 11.0;
    let every = (cols.len() / 12).max(1);
    let longest = cols.iter().map(|c| c.chars().count()).max().unwrap_or(0) as f64;
    let slanted = longest * 6.0 > cw * every as f64;
    let head = if slanted { 8.0 + longest * 5.2 } else { 14.0 };
    let w = label_w + cw * cols.len() as f64 + 8.0 + if slanted { longest * 3.0 } else { 0.0 };
    let h = rh * rows.len() as f64 + head + 4.0;
    let max = values
        .iter()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = format!(
        r#"<svg class="heatmap" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.2} {h:.2}" role="img">"#
    );
    for (c, label) in cols.iter().enumerate() {
        if c % every == 0 {
            let x = label_w + c as f64 * cw;
            if slanted {
                let (tx, ty) = (x + cw * 0.5, head - 3.0);
                let _ = write!(
                    s,
                    r#"<text x="{tx:.2}" y="{ty:.2}" transform="rotate(-60 {tx:.2} {ty:.2})">{l}</text>"#,
                    l = esc(label)
                );
            } else {
                let _ = write!(s, r#"<text x="{x:.2}" y="10">{l}</text>"#, l = esc(label));
            }
        }
    }
    for (r, label) in rows.iter().enumerate() {
        let y = head + r as f64 * rh;
        let _ = write!(
            s,
            r#"<text x="{tx}" y="{ty:.2}" text-anchor="end" style="font-size:9px">{l}</text>"#,
            tx = label_w - 4.0,
            ty = y + rh - 2.0,
            l = esc(label)
        );
        for (c, v) in values[r].iter().enumerate() {
            if *v <= 0.0 {
                continue;
            }
            // Light to dark orange by sqrt intensity.
            let k = (v / max).sqrt();
            let light = 92.0 - 55.0 * k;
            let _ = write!(
                s,
                r#"<rect x="{x:.2}" y="{y:.2}" width="{cw:.2}" height="{rh2}" style="fill:hsl(28,90%,{light:.0}%)"><title>{l} @ {col_kind} {t}: {v}</title></rect>"#,
                x = label_w + c as f64 * cw,
                rh2 = rh - 1.0,
                l = esc(label),
                t = esc(&cols[c]),
                col_kind = esc(col_kind),
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A bpftrace histogram as vertical bars with `[lo, hi]` bucket labels.
pub fn histogram(buckets: &[crate::run::Bucket]) -> String {
    let items: Vec<(String, f64)> = buckets
        .iter()
        .map(|b| {
            let label = match (b.lo, b.hi) {
                (None, Some(h)) => format!("< {}", h + 1),
                (Some(l), None) => format!("≥ {l}"),
                (Some(l), Some(h)) if l == h => format!("{l}"),
                (Some(l), Some(h)) => format!("{l}–{h}"),
                (None, None) => "?".into(),
            };
            (label, b.count as f64)
        })
        .collect();
    hbars(&items, &|v| format!("{v:.0}"), "c-bar2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_single_svgs_with_escaped_labels() {
        let h = hbars(
            &[("<a&b>".into(), 3.0), ("c".into(), 0.0)],
            &|v| v.to_string(),
            "x",
        );
        assert!(h.starts_with("<svg") && h.ends_with("</svg>"));
        assert!(h.contains("&lt;a&amp;b&gt;") && !h.contains("<a&b>"));
        let c = columns(
            &[(
                "0".into(),
                vec![(1.0, "c-compute", "compute"), (2.0, "c-stall", "stall")],
            )],
            &|v| format!("{v}"),
            Some((5.0, "bound".into())),
        );
        assert_eq!(c.matches("<rect").count(), 2);
        assert!(c.contains("c-bound"));
        let m = heatmap(
            &["t".into()],
            &["0".into(), "1".into()],
            &[vec![1.0, 0.0]],
            "token",
        );
        assert_eq!(m.matches("<rect").count(), 1);
        // Empty inputs still give valid SVG.
        assert!(hbars(&[], &|v| v.to_string(), "x").ends_with("</svg>"));
        assert!(columns(&[], &|v| v.to_string(), None).ends_with("</svg>"));
    }
}
