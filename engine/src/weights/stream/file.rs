// The model file as the streaming source reads it: opened with O_DIRECT when the filesystem
// allows it (probed with a real read, not just the open), else buffered with POSIX_FADV_DONTNEED
// after each read so the page cache does not grow; synchronous aligned reads with one retry.

use super::pool::{ceil_align, floor_align, AlignedBuf, ALIGN};
use crate::weights::WeightError;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// What identifies the file's current content cheaply (checked once per pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub mtime_ns: i128,
    pub ino: u64,
}

pub struct ModelFile {
    pub file: File,
    pub path: PathBuf,
    pub len: u64,
    /// Opened with O_DIRECT.
    pub direct: bool,
    /// Why O_DIRECT is not used (None when it is).
    pub buffered_reason: Option<String>,
    pub stamp: Stamp,
}

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    Stamp {
        len: m.len(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        ino: m.ino(),
    }
}

impl ModelFile {
    /// Open `path`; O_DIRECT unless `force_buffered` or the filesystem refuses it.
    pub fn open(path: &Path, force_buffered: bool) -> Result<ModelFile, WeightError> {
        let io = |what: &str, e| WeightError::Io {
            what: format!("{what} {}", path.display()),
            source: e,
        };
        let buffered = || File::open(path).map_err(|e| io("opening", e));
        let (file, direct, reason) = if force_buffered {
            (
                buffered()?,
                false,
                Some("buffered reads requested".to_string()),
            )
        } else {
            match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(f) => match probe_direct(&f) {
                    Ok(()) => (f, true, None),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
                        buffered()?,
                        false,
                        Some(format!("O_DIRECT reads refused ({e})")),
                    ),
                    Err(e) => return Err(io("reading", e)),
                },
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
                    buffered()?,
                    false,
                    Some(format!("O_DIRECT open refused ({e})")),
                ),
                Err(e) => return Err(io("opening", e)),
            }
        };
        let meta = file.metadata().map_err(|e| io("reading metadata of", e))?;
        Ok(ModelFile {
            len: meta.len(),
            stamp: stamp_of(&meta),
            file,
            path: path.to_path_buf(),
            direct,
            buffered_reason: reason,
        })
    }

    /// The file's stamp now (fstat on the open descriptor).
    pub fn current_stamp(&self) -> Result<Stamp, WeightError> {
        let m = self.file.metadata().map_err(|e| WeightError::Io {
            what: format!("reading metadata of {}", self.path.display()),
            source: e,
        })?;
        Ok(stamp_of(&m))
    }

    /// Error if the file changed since it was opened.
    pub fn check_unchanged(&self) -> Result<(), WeightError> {
        let now = self.current_stamp()?;
        if now != self.stamp {
            return Err(WeightError::FileChanged(format!(
                "{} changed while it was being streamed (size {} -> {} bytes, mtime or inode changed)",
                self.path.display(),
                self.stamp.len,
                now.len
            )));
        }
        Ok(())
    }

    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// After a buffered read: drop those pages from the page cache (no-op with O_DIRECT).
    pub fn drop_cache(&self, offset: u64, len: u64) {
        if !self.direct {
            // SAFETY: plain syscall on an fd we own; the advice only affects caching.
            unsafe {
                libc::posix_fadvise(
                    self.raw_fd(),
                    offset as libc::off_t,
                    len as libc::off_t,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
    }

    /// Read `dst.len()` bytes (a multiple of ALIGN, `dst` ALIGN-aligned) at aligned `offset`,
    /// retrying an error or a short read once. Bytes past the end of the file read as zeros.
    /// Returns the bytes actually read from the file.
    pub fn read_aligned(&self, offset: u64, dst: &mut [u8]) -> Result<u64, WeightError> {
        debug_assert!(offset % ALIGN == 0 && dst.len() as u64 % ALIGN == 0);
        let want = (dst.len() as u64).min(self.len.saturating_sub(offset)) as usize;
        let mut done = 0usize;
        let mut failures = 0;
        let mut last_err: Option<io::Error>;
        while done < want {
            last_err = None;
            match self.file.read_at(&mut dst[done..], offset + done as u64) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) => {
                    done += n;
                    if done >= want {
                        break;
                    }
                    // A short read (or none): resume from an aligned position, once.
                    if self.direct {
                        done = floor_align(done as u64) as usize;
                    }
                }
                Err(e) => last_err = Some(e),
            }
            failures += 1;
            if failures > 1 {
                return Err(WeightError::Storage(match last_err {
                    Some(e) => format!(
                        "read of {} bytes at offset {} of {} failed after one retry: {e}",
                        want - done,
                        offset + done as u64,
                        self.path.display()
                    ),
                    None => format!(
                        "short read at offset {} of {}: got {done} of {want} bytes after one retry",
                        offset + done as u64,
                        self.path.display()
                    ),
                }));
            }
        }
        self.drop_cache(offset, want as u64);
        Ok(want as u64)
    }

    /// Copy `out.len()` bytes at any `offset` through an aligned bounce buffer.
    pub fn read_unaligned(
        &self,
        offset: u64,
        out: &mut [u8],
        bounce: &mut Option<AlignedBuf>,
    ) -> Result<u64, WeightError> {
        let start = floor_align(offset);
        let end = ceil_align(offset + out.len() as u64);
        let need = (end - start) as usize;
        if bounce.as_ref().is_none_or(|b| b.len() < need) {
            *bounce = Some(AlignedBuf::new(need)?);
        }
        let b = bounce.as_mut().expect("just allocated");
        let got = self.read_aligned(start, &mut b.as_mut_slice()[..need])?;
        let at = (offset - start) as usize;
        out.copy_from_slice(&b.as_slice()[at..at + out.len()]);
        Ok(got)
    }
}

/// One aligned read at offset 0: some filesystems accept O_DIRECT at open and refuse the read.
fn probe_direct(f: &File) -> io::Result<()> {
    let mut b = AlignedBuf::new(ALIGN as usize).map_err(|e| io::Error::other(e.to_string()))?;
    f.read_at(b.as_mut_slice(), 0).map(|_| ())
}
