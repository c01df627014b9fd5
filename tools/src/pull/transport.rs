// How bytes and commands reach the device: the `Transport` trait and its implementations over
// the system `ssh` (copying with `scp -O` or rsync), `adb`, and a local directory (tests).
// Transports only build commands; `pull::run_*` executes them, so argv is unit-testable.

use super::PullError;
use crate::util::sh_quote;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

/// A way to run a POSIX `sh` script on the device and copy one device file to the host.
pub trait Transport {
    /// One line for logs, e.g. `ssh root@board (rsync)`.
    fn describe(&self) -> String;
    /// A command that runs `script` with POSIX `sh` on the device, with `LC_ALL=C`, printing its
    /// stdout on ours.
    fn script_command(&self, script: &str) -> Command;
    /// A command that copies the device file `remote` (absolute path) to the local `partial`
    /// path. When [`Transport::resumes`] is true an existing `partial` is extended, not replaced.
    fn fetch_command(&self, remote: &str, partial: &Path) -> Command;
    /// Whether `fetch_command` keeps the bytes already in `partial`.
    fn resumes(&self) -> bool;
}

/// `user@host[:port]`, with `[v6addr]` brackets for IPv6 literals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// Login user; `None` lets `ssh` decide (`~/.ssh/config`, local user).
    pub user: Option<String>,
    /// Host name, alias from `~/.ssh/config`, or address (IPv6 without brackets).
    pub host: String,
    /// Port; `None` lets `ssh` decide.
    pub port: Option<u16>,
}

impl FromStr for SshTarget {
    type Err = PullError;

    fn from_str(s: &str) -> Result<SshTarget, PullError> {
        let bad = |why: &str| PullError::BadTarget(format!("{s:?}: {why}"));
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(bad("empty user before `@`")),
            None => (None, s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, tail) = r.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            match tail {
                "" => (h, None),
                t => (
                    h,
                    Some(t.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
                ),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                Some(_) => return Err(bad("IPv6 addresses need brackets: user@[addr]:port")),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
            return Err(bad("host and user must not start with `-`"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad("host contains a space or `/`"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("port is not a number in 1..=65535"))?,
            ),
        };
        Ok(SshTarget {
            user,
            host: host.to_string(),
            port,
        })
    }
}

impl SshTarget {
    /// `user@host` as `ssh` takes it.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// `user@host:` prefix for scp/rsync remote paths (IPv6 in brackets).
    fn copy_prefix(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.user {
            Some(u) => format!("{u}@{host}:"),
            None => format!("{host}:"),
        }
    }
}

/// Turn `--ssh-opt` values into ssh arguments: a value starting with `-` is split on whitespace
/// and passed as is (`"-F ./ssh_config"`, `"-i key"`); any other value is one `-o` option
/// (`"ConnectTimeout=5"`).
pub fn ssh_args_from_opts(opts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for o in opts {
        let o = o.trim();
        if o.is_empty() {
            continue;
        }
        if o.starts_with('-') {
            out.extend(o.split_whitespace().map(str::to_string));
        } else {
            out.push("-o".into());
            out.push(o.to_string());
        }
    }
    out
}

/// How the ssh transport copies files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshCopy {
    /// `scp -O` (the legacy SCP protocol, so the device needs no sftp-server). Whole files.
    Scp,
    /// `rsync --partial --append-verify` over ssh (needs rsync on both ends). Resumes.
    Rsync,
}

/// The system `ssh`, so `~/.ssh/config`, keys, agents and ProxyJump apply.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// Where to connect.
    pub target: SshTarget,
    /// Extra ssh arguments (see [`ssh_args_from_opts`]); passed to ssh, scp and rsync's `-e`.
    pub ssh_args: Vec<String>,
    /// How files are copied.
    pub copy: SshCopy,
}

impl Ssh {
    fn common_args(&self) -> Vec<String> {
        let mut a = self.ssh_args.clone();
        if let Some(p) = self.target.port {
            // `-o Port=` works for ssh, scp and rsync -e alike (scp's `-p` means something else).
            a.push("-o".into());
            a.push(format!("Port={p}"));
        }
        a
    }
}

impl Transport for Ssh {
    fn describe(&self) -> String {
        let how = match self.copy {
            SshCopy::Scp => "scp -O",
            SshCopy::Rsync => "rsync",
        };
        let port = self
            .target
            .port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("ssh {}{port} ({how})", self.target.destination())
    }

    fn script_command(&self, script: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.common_args())
            .arg(self.target.destination())
            .arg(format!("LC_ALL=C sh -c {}", sh_quote(script)));
        c
    }

    fn fetch_command(&self, remote: &str, partial: &Path) -> Command {
        match self.copy {
            SshCopy::Scp => {
                let mut c = Command::new("scp");
                // -O: the remote path goes through the remote shell, and the client checks the
                // returned name against it as a glob, so special characters are escaped with
                // backslashes (single quotes would fail that check).
                c.arg("-O")
                    .arg("-q")
                    .args(self.common_args())
                    .arg(format!(
                        "{}{}",
                        self.target.copy_prefix(),
                        backslash_escape(remote)
                    ))
                    .arg(local_arg(partial));
                c
            }
            SshCopy::Rsync => {
                let mut e = String::from("ssh");
                for a in self.common_args() {
                    e.push(' ');
                    e.push_str(&rsync_quote(&a));
                }
                let mut c = Command::new("rsync");
                // -s (protect args): the remote path is passed without shell interpretation.
                // --append-verify implies --inplace, so the bytes land in `partial` as they
                // arrive and an interrupted copy resumes from its length; rsync checks the
                // whole-file checksum and re-sends the file when the kept prefix was wrong.
                c.args(["-s", "-q", "--partial", "--append-verify", "-e"])
                    .arg(e)
                    .arg(format!("{}{}", self.target.copy_prefix(), remote))
                    .arg(local_arg(partial));
                c
            }
        }
    }

    fn resumes(&self) -> bool {
        self.copy == SshCopy::Rsync
    }
}

/// A local path as a command argument that cannot be mistaken for an option or a remote
/// `host:path` (relative paths get `./`).
fn local_arg(p: &Path) -> OsString {
    if p.is_absolute() {
        p.as_os_str().to_owned()
    } else {
        Path::new(".").join(p).into_os_string()
    }
}

/// Escape every character but `[A-Za-z0-9/._-]` with a backslash: one word for the remote shell
/// that is also a literal glob pattern. (Control characters cannot be escaped this way; run and
/// file names containing them are refused before any copy.)
fn backslash_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric() || "/._-".contains(c)) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Quote one word for rsync's `-e` splitter (which honours single and double quotes).
fn rsync_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:@,+%".contains(c))
    {
        a.to_string()
    } else {
        sh_quote(a)
    }
}

/// `adb` (the device needs `adbd`; the device serial is optional with one device attached).
#[derive(Clone, Debug)]
pub struct Adb {
    /// `adb -s SERIAL`.
    pub serial: Option<String>,
}

impl Adb {
    fn base(&self) -> Command {
        let mut c = Command::new("adb");
        if let Some(s) = &self.serial {
            c.arg("-s").arg(s);
        }
        c
    }
}

impl Transport for Adb {
    fn describe(&self) -> String {
        match &self.serial {
            Some(s) => format!("adb -s {s}"),
            None => "adb".into(),
        }
    }

    fn script_command(&self, script: &str) -> Command {
        // exec-out: raw stdout (no pty, no \r\n translation), unlike `adb shell`.
        let mut c = self.base();
        c.arg("exec-out")
            .arg(format!("LC_ALL=C sh -c {}", sh_quote(script)));
        c
    }

    fn fetch_command(&self, remote: &str, partial: &Path) -> Command {
        // adb's sync protocol takes the path as is (no shell).
        let mut c = self.base();
        c.arg("pull").arg("-q").arg(remote).arg(partial);
        c
    }

    fn resumes(&self) -> bool {
        false
    }
}

/// A "device" that is a local directory tree (an SD card mounted on the host; unit tests).
/// Runs the same scripts with the local `sh`.
#[derive(Clone, Debug)]
pub struct LocalDir {
    /// Prepended to nothing: remote paths are already absolute local paths.
    pub label: PathBuf,
}

impl Transport for LocalDir {
    fn describe(&self) -> String {
        format!("local {}", self.label.display())
    }

    fn script_command(&self, script: &str) -> Command {
        let mut c = Command::new("sh");
        c.env("LC_ALL", "C").arg("-c").arg(script);
        c
    }

    fn fetch_command(&self, remote: &str, partial: &Path) -> Command {
        let mut c = Command::new("cp");
        c.arg("--").arg(remote).arg(partial);
        c
    }

    fn resumes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(c: &Command) -> Vec<String> {
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn targets_parse() {
        let t: SshTarget = "root@board:2222".parse().unwrap();
        assert_eq!(
            t,
            SshTarget {
                user: Some("root".into()),
                host: "board".into(),
                port: Some(2222)
            }
        );
        let t: SshTarget = "board".parse().unwrap();
        assert_eq!((t.user, t.port), (None, None));
        let t: SshTarget = "me@[::1]:22".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(22)));
        assert_eq!(t.copy_prefix(), "me@[::1]:");
        for bad in [
            "",
            "@h",
            "u@",
            "h:0",
            "h:x",
            "-oProxyCommand=x",
            "h:1:2",
            "[::1",
            "a b",
        ] {
            assert!(bad.parse::<SshTarget>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn ssh_opts_split() {
        let a = ssh_args_from_opts(&["-F /tmp/cfg".into(), "ConnectTimeout=5".into()]);
        assert_eq!(a, ["-F", "/tmp/cfg", "-o", "ConnectTimeout=5"]);
    }

    #[test]
    fn scp_and_rsync_argv() {
        let ssh = Ssh {
            target: "u@h:2200".parse().unwrap(),
            ssh_args: vec!["-F".into(), "/c f".into()],
            copy: SshCopy::Scp,
        };
        let c = ssh.fetch_command("/runs/a b/x.bin", Path::new("d/x.bin.partial"));
        assert_eq!(
            argv(&c),
            [
                "scp",
                "-O",
                "-q",
                "-F",
                "/c f",
                "-o",
                "Port=2200",
                "u@h:/runs/a\\ b/x.bin",
                "./d/x.bin.partial"
            ]
        );
        let r = Ssh {
            copy: SshCopy::Rsync,
            ..ssh
        };
        let c = r.fetch_command("/runs/a b/x.bin", Path::new("/abs/x.partial"));
        let v = argv(&c);
        assert_eq!(v[v.len() - 3], "ssh -F '/c f' -o Port=2200");
        assert_eq!(v[v.len() - 2], "u@h:/runs/a b/x.bin");
        assert!(r.resumes());
        let s = argv(&r.script_command("echo 'hi'"));
        assert_eq!(s.last().unwrap(), "LC_ALL=C sh -c 'echo '\\''hi'\\'''");
    }
}
