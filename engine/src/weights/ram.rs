// `--weights ram`: the whole model file read into one page-aligned allocation at load.

use super::{
    read_from_image, slice_of, MemOrigin, SharedGguf, SourceKind, SourceStats, TensorId, Weight,
    WeightError, WeightSource,
};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Page alignment for the image, so every tensor keeps its GGUF alignment in memory.
const IMAGE_ALIGN: usize = 4096;

/// An owned, page-aligned byte buffer.
struct AlignedImage {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is uniquely owned and only read after construction.
unsafe impl Send for AlignedImage {}
// SAFETY: shared access is read-only.
unsafe impl Sync for AlignedImage {}

impl AlignedImage {
    fn new(len: usize) -> Result<Self, WeightError> {
        let layout = Layout::from_size_align(len.max(1), IMAGE_ALIGN)
            .map_err(|e| WeightError::Corrupt(format!("cannot allocate {len} bytes: {e}")))?;
        // SAFETY: the layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(WeightError::Budget(format!(
                "out of memory allocating {len} bytes for the model"
            )));
        }
        Ok(AlignedImage { ptr, len })
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of len bytes, initialised (zeroed, then read into).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedImage {
    fn drop(&mut self) {
        let layout =
            Layout::from_size_align(self.len.max(1), IMAGE_ALIGN).expect("same layout as in new");
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, layout) }
    }
}

/// Every tensor in RAM.
pub struct RamSource {
    gguf: SharedGguf,
    image: AlignedImage,
}

impl RamSource {
    pub fn open(path: &Path, gguf: SharedGguf) -> Result<Self, WeightError> {
        let io = |e| WeightError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        };
        let mut f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len != gguf.file_size {
            return Err(WeightError::FileChanged(format!(
                "{} is {len} bytes now but {} bytes when its header was read",
                path.display(),
                gguf.file_size
            )));
        }
        let mut image = AlignedImage::new(len as usize)?;
        f.read_exact(image.as_mut_slice()).map_err(io)?;
        Ok(RamSource { gguf, image })
    }
}

impl WeightSource for RamSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Ram
    }
    fn get(&self, id: TensorId) -> Result<Weight<'_>, WeightError> {
        Ok(Weight::borrowed(
            slice_of(self.image.as_slice(), &self.gguf, id)?,
            MemOrigin::Resident,
        ))
    }
    fn read_at(&self, id: TensorId, offset: u64, out: &mut [u8]) -> Result<(), WeightError> {
        read_from_image(self.image.as_slice(), &self.gguf, id, offset, out)
    }
    fn stats(&self) -> SourceStats {
        SourceStats {
            resident_bytes: self.image.len as u64,
            ..Default::default()
        }
    }
}
