//! Flamegraph from folded stacks (`frame;frame;frame COUNT`), drawn by inferno (CDDL-1.0) as
//! its usual interactive SVG (click to zoom, search, tooltips). The report embeds it as a
//! `data:` URI in an `<object>`, so its script and styles stay inside their own document.

/// Render `folded` as a standalone SVG document (prolog, DOCTYPE and comments removed, so it
/// names no URL other than XML namespaces).
pub fn flamegraph_svg(folded: &str, title: &str) -> Result<String, String> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".into();
    opts.deterministic = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut out)
        .map_err(|e| format!("inferno: {e}"))?;
    let text = String::from_utf8(out).map_err(|_| "inferno wrote non-UTF-8".to_string())?;
    let start = text
        .find("<svg")
        .ok_or_else(|| "inferno output has no <svg>".to_string())?;
    Ok(drop_url_schemes(&strip_comments(&text[start..])))
}

/// inferno's script mentions two web pages in a comment and an assertion message; drop their
/// `http(s)://` so the report holds no URL other than XML namespace names.
fn drop_url_schemes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let next = ["https://", "http://"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
            .min();
        let Some((i, n)) = next else { break };
        out.push_str(&rest[..i]);
        if super::NAMESPACE_URIS
            .iter()
            .any(|ns| rest[i..].starts_with(ns))
        {
            out.push_str(&rest[i..i + n]);
        }
        rest = &rest[i + n..];
    }
    out.push_str(rest);
    out
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i..].find("-->") {
            Some(j) => rest = &rest[i + j + 3..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Standard base64 (RFC 4648, with padding) for the `data:` URI.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        s.push(A[(n >> 18) as usize & 63] as char);
        s.push(A[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_svg_without_urls() {
        let s = flamegraph_svg("main;a;b 3\nmain;c 1\n", "t").unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("b (3 samples"), "frame drawn");
        assert_eq!(super::super::external_references(&s), Vec::<String>::new());
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
