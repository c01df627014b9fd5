// `--weights mmap`: the model file mapped read-only; the page cache decides what stays in memory
// (llama.cpp's default behaviour, the baseline streaming is measured against).

use super::{
    read_from_image, slice_of, MemOrigin, SharedGguf, SourceKind, SourceStats, TensorId, Weight,
    WeightError, WeightSource,
};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

pub struct MmapSource {
    gguf: SharedGguf,
    map: Mmap,
}

impl MmapSource {
    /// Map `path` read-only.
    ///
    /// Contract we cannot check: the file must not be truncated or rewritten while mapped; if it
    /// is, reads may see new bytes or the process may get SIGBUS (as with llama.cpp's mmap).
    pub fn open(path: &Path, gguf: SharedGguf) -> Result<Self, WeightError> {
        let io = |e| WeightError::Io {
            what: format!("mapping {}", path.display()),
            source: e,
        };
        let f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len != gguf.file_size {
            return Err(WeightError::FileChanged(format!(
                "{} is {len} bytes now but {} bytes when its header was read",
                path.display(),
                gguf.file_size
            )));
        }
        // SAFETY: read-only private mapping; the caller-facing contract above carries the
        // "file is not modified while mapped" assumption, exactly as `open` documents.
        let map = unsafe { Mmap::map(&f) }.map_err(io)?;
        Ok(MmapSource { gguf, map })
    }
}

impl WeightSource for MmapSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Mmap
    }
    fn get(&self, id: TensorId) -> Result<Weight<'_>, WeightError> {
        Ok(Weight::borrowed(
            slice_of(&self.map, &self.gguf, id)?,
            MemOrigin::Mmap,
        ))
    }
    fn read_at(&self, id: TensorId, offset: u64, out: &mut [u8]) -> Result<(), WeightError> {
        read_from_image(&self.map, &self.gguf, id, offset, out)
    }
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}
