// Tensor-trace reader: validates the header (magic, version, sizes, tensor table) and yields
// records up to the last complete one, so a trace cut short by a kill reads as "truncated", not
// as an error. Never panics on any input (fuzzed: engine/fuzz/fuzz_targets/trace.rs).

use super::{
    TraceError, TraceHeader, TraceRecord, TraceTensor, FIXED_HEADER, MAGIC, MAX_HEADER, MAX_NAME,
    MAX_TENSORS, RECORD_SIZE, VERSION_MAJOR,
};
use crate::gguf::ModelIdentity;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// How the record stream ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceEnd {
    /// The writer finished; every record it counted is here.
    Complete,
    /// The run stopped before the writer finished (killed, crashed): records up to the last
    /// complete one are here. `reason` says where reading stopped.
    Truncated { reason: String },
}

/// A whole trace in memory.
#[derive(Clone, Debug)]
pub struct TraceFile {
    pub header: TraceHeader,
    pub records: Vec<TraceRecord>,
    pub end: TraceEnd,
}

/// Streams records from a trace.
pub struct TraceReader<R: Read> {
    header: TraceHeader,
    input: R,
    read: u64,
    end: Option<TraceEnd>,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, std::io::Error> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn parse_header<R: Read>(r: &mut R) -> Result<TraceHeader, TraceError> {
    let mut fixed = [0u8; FIXED_HEADER];
    let n = read_full(r, &mut fixed)?;
    if n < 8 || fixed[..8] != MAGIC {
        return Err(TraceError::Format(
            "not a flashslim tensor trace (bad magic)".into(),
        ));
    }
    if n < FIXED_HEADER {
        return Err(TraceError::Corrupt(format!(
            "header cut short ({n} of {FIXED_HEADER} bytes)"
        )));
    }
    let u16_at = |o: usize| u16::from_le_bytes(fixed[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(fixed[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(fixed[o..o + 8].try_into().unwrap());
    let (major, minor) = (u16_at(8), u16_at(10));
    if major != VERSION_MAJOR {
        return Err(TraceError::Format(format!(
            "format version {major}.{minor} is not supported (this reader reads {VERSION_MAJOR}.x)"
        )));
    }
    let record_size = u32_at(12);
    if record_size as usize != RECORD_SIZE {
        return Err(TraceError::Corrupt(format!(
            "record size {record_size} (version {major} uses {RECORD_SIZE})"
        )));
    }
    let header_size = u32_at(16);
    if (header_size as usize) < FIXED_HEADER
        || header_size as u64 > MAX_HEADER
        || header_size as usize % RECORD_SIZE != 0
    {
        return Err(TraceError::Corrupt(format!(
            "header size {header_size} is not a multiple of {RECORD_SIZE} in {FIXED_HEADER}..={MAX_HEADER}"
        )));
    }
    let n_tensors = u32_at(88);
    if n_tensors > MAX_TENSORS {
        return Err(TraceError::Corrupt(format!(
            "{n_tensors} tensors in the name table (at most {MAX_TENSORS})"
        )));
    }
    let mut rest = vec![0u8; header_size as usize - FIXED_HEADER];
    let got = read_full(r, &mut rest)?;
    if got < rest.len() {
        return Err(TraceError::Corrupt(format!(
            "header cut short ({} of {header_size} bytes)",
            FIXED_HEADER + got
        )));
    }
    let mut at = 0usize;
    let mut tensors = Vec::with_capacity(n_tensors.min(4096) as usize);
    for i in 0..n_tensors {
        let Some(fixed) = rest.get(at..at + 22) else {
            return Err(TraceError::Corrupt(format!(
                "tensor table entry {i} runs past the header"
            )));
        };
        let offset = u64::from_le_bytes(fixed[0..8].try_into().unwrap());
        let size = u64::from_le_bytes(fixed[8..16].try_into().unwrap());
        let ty = u32::from_le_bytes(fixed[16..20].try_into().unwrap());
        let len = u16::from_le_bytes(fixed[20..22].try_into().unwrap()) as usize;
        at += 22;
        if len > MAX_NAME {
            return Err(TraceError::Corrupt(format!(
                "tensor {i} name is {len} bytes (at most {MAX_NAME})"
            )));
        }
        let Some(name) = rest.get(at..at + len) else {
            return Err(TraceError::Corrupt(format!(
                "tensor {i} name runs past the header"
            )));
        };
        let name = std::str::from_utf8(name)
            .map_err(|_| TraceError::Corrupt(format!("tensor {i} name is not UTF-8")))?
            .to_string();
        at += len;
        tensors.push(TraceTensor {
            name,
            offset,
            size,
            ty,
        });
    }
    if rest[at..].iter().any(|&b| b != 0) {
        return Err(TraceError::Corrupt(
            "non-zero bytes in the header padding".into(),
        ));
    }
    let sha: String = fixed[56..88].iter().map(|b| format!("{b:02x}")).collect();
    let run_id: String = fixed[96..112]
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    Ok(TraceHeader {
        version_major: major,
        version_minor: minor,
        record_size,
        header_size,
        flags: u32_at(20),
        record_count: u64_at(24),
        dropped: u64_at(32),
        start_ns: u64_at(40),
        model: ModelIdentity {
            file_size: u64_at(48),
            header_sha256: sha,
        },
        run_id,
        tensors,
    })
}

impl TraceReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let f = File::open(path)
            .map_err(|e| TraceError::Format(format!("cannot open {}: {e}", path.display())))?;
        TraceReader::new(BufReader::with_capacity(1 << 20, f))
    }
}

impl<R: Read> TraceReader<R> {
    /// Parse the header; records follow with [`TraceReader::next_record`].
    pub fn new(mut input: R) -> Result<Self, TraceError> {
        let header = parse_header(&mut input)?;
        Ok(TraceReader {
            header,
            input,
            read: 0,
            end: None,
        })
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// How reading ended (None until [`TraceReader::next_record`] returned `Ok(None)`).
    pub fn end(&self) -> Option<&TraceEnd> {
        self.end.as_ref()
    }

    /// The next record; `Ok(None)` at the end of the valid records. An `Err` means the file is
    /// inconsistent (for example a complete trace whose record count does not match).
    pub fn next_record(&mut self) -> Result<Option<TraceRecord>, TraceError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let complete = self.header.is_complete();
        if complete && self.read == self.header.record_count {
            let mut probe = [0u8; 1];
            if read_full(&mut self.input, &mut probe)? != 0 {
                return Err(TraceError::Corrupt(format!(
                    "bytes after the {} records the header counts",
                    self.header.record_count
                )));
            }
            self.end = Some(TraceEnd::Complete);
            return Ok(None);
        }
        let mut b = [0u8; RECORD_SIZE];
        let n = read_full(&mut self.input, &mut b)?;
        let reason = if n == 0 {
            "end of file".to_string()
        } else if n < RECORD_SIZE {
            format!("record {} is cut short ({n} bytes)", self.read)
        } else {
            match TraceRecord::decode(&b) {
                Ok(Some(r)) => {
                    self.read += 1;
                    return Ok(Some(r));
                }
                Ok(None) => format!("record {} was never written", self.read),
                Err(m) => format!("record {}: {m}", self.read),
            }
        };
        if complete {
            return Err(TraceError::Corrupt(format!(
                "the header counts {} records but reading stopped at {}: {reason}",
                self.header.record_count, self.read
            )));
        }
        self.end = Some(TraceEnd::Truncated { reason });
        Ok(None)
    }

    /// Every remaining record.
    pub fn read_all(mut self) -> Result<TraceFile, TraceError> {
        let mut records = Vec::new();
        while let Some(r) = self.next_record()? {
            records.push(r);
        }
        Ok(TraceFile {
            header: self.header,
            records,
            end: self.end.unwrap_or(TraceEnd::Complete),
        })
    }
}

impl TraceFile {
    /// Parse a whole trace held in memory (the fuzz entry point).
    pub fn from_bytes(bytes: &[u8]) -> Result<TraceFile, TraceError> {
        TraceReader::new(bytes)?.read_all()
    }

    /// The name of tensor `id`, if the table has it.
    pub fn tensor_name(&self, id: u32) -> Option<&str> {
        self.header
            .tensors
            .get(id as usize)
            .map(|t| t.name.as_str())
    }
}
