// Build script: embed the git commit (FLASHSLIM_GIT_COMMIT overrides, for builds outside a
// checkout such as Yocto's) so runs and benchmarks can say exactly what produced them.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=FLASHSLIM_GIT_COMMIT");
    let commit = match std::env::var("FLASHSLIM_GIT_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => {
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                println!("cargo:rerun-if-changed={dir}/HEAD");
                println!("cargo:rerun-if-changed={dir}/index");
                if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    println!("cargo:rerun-if-changed={dir}/{r}");
                }
            }
            match git(&["rev-parse", "--short=12", "HEAD"]) {
                Some(c) => {
                    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                        .is_some_and(|s| !s.is_empty());
                    if dirty {
                        format!("{c}-dirty")
                    } else {
                        c
                    }
                }
                None => "unknown".to_string(),
            }
        }
    };
    println!("cargo:rustc-env=FLASHSLIM_GIT_COMMIT={commit}");
    println!(
        "cargo:rustc-env=FLASHSLIM_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
