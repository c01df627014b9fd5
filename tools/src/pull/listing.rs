// The device-side listing: one POSIX sh script that prints every `REMOTE_DIR/*/manifest.json`
// length-framed (so run names with spaces or newlines survive), which tools the device has, and
// the newest run; plus the parser of that output and the scripts that probe or delete a file.

use super::PullError;
use crate::manifest_compat::{self, Manifest, ManifestError, MANIFEST_FILE};
use crate::util::sh_quote;

/// One run directory found on the device.
#[derive(Debug)]
pub struct RemoteRun {
    /// The directory name under the remote dir (the local directory gets the same name).
    pub dir: String,
    /// The manifest's bytes exactly as on the device (written locally once the run verifies).
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest, or why it was refused.
    pub manifest: Result<Manifest, ManifestError>,
}

/// What the listing found.
#[derive(Debug)]
pub struct Listing {
    /// Runs in the order the device's shell globbed them (sorted by name).
    pub runs: Vec<RemoteRun>,
    /// Directory name of the run with the newest manifest (mtime), if any.
    pub newest: Option<String>,
    /// The device has `rsync` on its PATH.
    pub has_rsync: bool,
    /// The device has `sha256sum` on its PATH.
    pub has_sha256sum: bool,
}

/// The listing script for `remote_dir`. Needs only POSIX sh, `cat` and `[`; `-nt` (newer than)
/// is not POSIX but dash, bash, busybox ash and mksh all have it.
pub fn listing_script(remote_dir: &str) -> String {
    format!(
        r#"echo SLIM-LIST 1
cd -- {dir} 2>/dev/null || {{ echo SLIM-NODIR; exit 0; }}
command -v rsync >/dev/null 2>&1 && echo SLIM-HAS rsync
command -v sha256sum >/dev/null 2>&1 && echo SLIM-HAS sha256sum
newest=
for m in */{manifest}; do
  [ -f "$m" ] || continue
  d=${{m%/{manifest}}}
  c=$(cat -- "$m" && echo x) || continue
  c=${{c%x}}
  printf 'SLIM-RUN %s %s\n%s%s\n' "${{#d}}" "${{#c}}" "$d" "$c"
  if [ -z "$newest" ] || [ "$m" -nt "$newest" ]; then newest=$m; fi
done
if [ -n "$newest" ]; then d=${{newest%/{manifest}}}; printf 'SLIM-NEWEST %s\n%s\n' "${{#d}}" "$d"; fi
echo SLIM-END
"#,
        dir = sh_quote(remote_dir),
        manifest = MANIFEST_FILE,
    )
}

/// Parse the listing script's output.
pub fn parse_listing(out: &[u8], remote_dir: &str) -> Result<Listing, PullError> {
    let garbled = |why: String| PullError::Listing(why);
    let mut p = Parser { b: out, pos: 0 };
    if p.line()? != b"SLIM-LIST 1" {
        return Err(garbled(
            "the device did not answer the listing script (is `sh` the remote shell?)".into(),
        ));
    }
    let mut l = Listing {
        runs: Vec::new(),
        newest: None,
        has_rsync: false,
        has_sha256sum: false,
    };
    loop {
        let line = p.line()?;
        let line = std::str::from_utf8(line)
            .map_err(|_| garbled("non-UTF-8 control line".into()))?
            .to_string();
        let mut words = line.split(' ');
        match words.next().unwrap_or("") {
            "SLIM-NODIR" => return Err(PullError::NoRemoteDir(remote_dir.to_string())),
            "SLIM-HAS" => match words.next() {
                Some("rsync") => l.has_rsync = true,
                Some("sha256sum") => l.has_sha256sum = true,
                _ => {}
            },
            "SLIM-RUN" => {
                let nd = p.num(words.next())?;
                let nc = p.num(words.next())?;
                let dir = p.take(nd)?;
                let bytes = p.take(nc)?.to_vec();
                p.expect_newline()?;
                let dir = String::from_utf8(dir.to_vec())
                    .map_err(|_| garbled("a run directory name is not UTF-8".into()))?;
                let manifest = manifest_compat::parse(&bytes);
                l.runs.push(RemoteRun {
                    dir,
                    manifest_bytes: bytes,
                    manifest,
                });
            }
            "SLIM-NEWEST" => {
                let nd = p.num(words.next())?;
                let d = p.take(nd)?;
                p.expect_newline()?;
                l.newest = Some(String::from_utf8_lossy(d).into_owned());
            }
            "SLIM-END" => return Ok(l),
            other => return Err(garbled(format!("unexpected line {other:?}"))),
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn line(&mut self) -> Result<&'a [u8], PullError> {
        let rest = &self.b[self.pos..];
        match rest.iter().position(|&c| c == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(PullError::Listing(
                "the listing ended early (connection dropped?)".into(),
            )),
        }
    }
    fn num(&self, w: Option<&str>) -> Result<usize, PullError> {
        w.and_then(|w| w.parse().ok())
            .ok_or_else(|| PullError::Listing("bad length in a SLIM-RUN line".into()))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], PullError> {
        if self.b.len() - self.pos < n {
            return Err(PullError::Listing(
                "the listing ended inside a manifest".into(),
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn expect_newline(&mut self) -> Result<(), PullError> {
        if self.take(1)? != b"\n" {
            return Err(PullError::Listing(
                "framing mismatch after a manifest (the device shell counts characters, \
                 not bytes?)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A script printing `SIZE SHA256` of one device file (sha256 empty when the device has no
/// `sha256sum`), or `SLIM-GONE` when it does not exist.
pub fn probe_script(remote_path: &str, has_sha256sum: bool) -> String {
    let f = sh_quote(remote_path);
    let sha = if has_sha256sum {
        format!("sha256sum < {f} | cut -d' ' -f1")
    } else {
        "echo".to_string()
    };
    format!(
        "[ -f {f} ] || {{ echo SLIM-GONE; exit 0; }}\nprintf '%s ' \"$(wc -c < {f} | tr -d ' ')\"\n{sha}\n"
    )
}

/// Parse [`probe_script`] output: `Some((size, sha256 or ""))`, `None` if the file is gone.
pub fn parse_probe(out: &[u8]) -> Option<(u64, String)> {
    let s = String::from_utf8_lossy(out);
    let s = s.trim();
    if s == "SLIM-GONE" {
        return None;
    }
    let mut w = s.split_whitespace();
    let size = w.next()?.parse().ok()?;
    Some((size, w.next().unwrap_or("").to_string()))
}

/// A script deleting a verified run on the device: the manifest first (so a half-deleted run
/// is never listed as a run), then the listed files, then the directories left empty. Prints
/// `SLIM-LEFT` when the run directory still holds files the manifest did not list.
pub fn delete_script(remote_dir: &str, run_dir: &str, m: &Manifest) -> String {
    let mut s = format!(
        "cd -- {} || exit 1\nrm -f -- {} || exit 1\n",
        sh_quote(&format!("{remote_dir}/{run_dir}")),
        MANIFEST_FILE
    );
    for f in &m.files {
        s.push_str(&format!("rm -f -- {}\n", sh_quote(&f.path)));
    }
    let mut dirs: Vec<&str> = m
        .files
        .iter()
        .flat_map(|f| f.path.match_indices('/').map(move |(i, _)| &f.path[..i]))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    dirs.dedup();
    for d in dirs {
        s.push_str(&format!("rmdir -- {} 2>/dev/null\n", sh_quote(d)));
    }
    s.push_str(&format!(
        "cd .. && rmdir -- {} 2>/dev/null || echo SLIM-LEFT\n",
        sh_quote(run_dir)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const H: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn run_sh(script: &str) -> Vec<u8> {
        let o = Command::new("sh")
            .env("LC_ALL", "C")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    }

    #[test]
    fn listing_roundtrip_with_awkward_names() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("runs dir");
        let one = serde_json::to_string(&crate::testkit::engine_manifest(
            "run one",
            manifest_compat::RunStatus::Complete,
            vec![],
        ))
        .unwrap()
            + "\n\n";
        for (name, body) in [
            ("run one", one.as_str()),
            (
                "r2\nnewline",
                "{\"schema\":\"flashslim.run\",\"schema_version\":9}",
            ),
            ("r3 ünï", "not json"),
        ] {
            std::fs::create_dir_all(root.join(name)).unwrap();
            std::fs::write(root.join(name).join(MANIFEST_FILE), body).unwrap();
        }
        std::fs::create_dir_all(root.join("no-manifest")).unwrap();
        let dir = root.to_str().unwrap();
        let l = parse_listing(&run_sh(&listing_script(dir)), dir).unwrap();
        let names: Vec<&str> = l.runs.iter().map(|r| r.dir.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"run one") && names.contains(&"r2\nnewline"));
        let one = l.runs.iter().find(|r| r.dir == "run one").unwrap();
        assert!(
            one.manifest_bytes.ends_with(b"}\n\n"),
            "trailing newlines kept"
        );
        assert!(one.manifest.is_ok());
        let two = l.runs.iter().find(|r| r.dir.starts_with("r2")).unwrap();
        assert!(matches!(two.manifest, Err(ManifestError::NewerSchema(_))));
        assert!(l.newest.is_some());
    }

    #[test]
    fn missing_dir_and_truncated_output() {
        let out = run_sh(&listing_script("/nonexistent/x y"));
        assert!(matches!(
            parse_listing(&out, "/nonexistent/x y"),
            Err(PullError::NoRemoteDir(_))
        ));
        let full = b"SLIM-LIST 1\nSLIM-RUN 1 5\nab";
        assert!(matches!(
            parse_listing(full, "/r"),
            Err(PullError::Listing(_))
        ));
        assert!(parse_listing(b"", "/r").is_err());
    }

    #[test]
    fn probe_and_delete_scripts_run() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("a run");
        std::fs::create_dir_all(run.join("sub dir")).unwrap();
        std::fs::write(run.join("sub dir/f 1"), b"abc").unwrap();
        std::fs::write(run.join(MANIFEST_FILE), b"{}").unwrap();
        let f = run.join("sub dir/f 1");
        let p = parse_probe(&run_sh(&probe_script(f.to_str().unwrap(), true))).unwrap();
        assert_eq!(p, (3, H.to_string()));
        assert_eq!(parse_probe(&run_sh(&probe_script("/nope", true))), None);
        let m = crate::testkit::engine_manifest(
            "a run",
            manifest_compat::RunStatus::Complete,
            vec![manifest_compat::FileEntry {
                path: "sub dir/f 1".into(),
                bytes: 3,
                sha256: H.into(),
            }],
        );
        let out = run_sh(&delete_script(t.path().to_str().unwrap(), "a run", &m));
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        assert!(!run.exists());
        // A file the manifest does not list keeps the directory and is reported.
        std::fs::create_dir_all(run.join("sub dir")).unwrap();
        std::fs::write(run.join("sub dir/f 1"), b"abc").unwrap();
        std::fs::write(run.join("extra"), b"x").unwrap();
        let out = run_sh(&delete_script(t.path().to_str().unwrap(), "a run", &m));
        assert_eq!(String::from_utf8_lossy(&out).trim(), "SLIM-LEFT");
        assert!(run.join("extra").exists() && !run.join("sub dir").exists());
    }
}
