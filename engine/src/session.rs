//! A loaded model ready to run: the GGUF header, the weight source chosen by `--weights`, the
//! bound model and the kernel thread pool. Every subcommand opens one of these.

use crate::gguf::{Gguf, GgufError};
use crate::kernels::Kernels;
use crate::model::{Model, ModelError};
use crate::probes::{monotonic_ns, Stage};
use crate::weights::{
    MmapSource, RamSource, SourceKind, StreamOptions, StreamSource, WeightError, WeightSource,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to open a model.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub weights: SourceKind,
    /// Kernel threads; 0 = every available core.
    pub threads: usize,
    /// Memory budget for `stream` (resident weights + streaming buffers), bytes.
    pub budget: Option<u64>,
    /// A plan file for `stream` (from `flashslim plan`).
    pub plan: Option<PathBuf>,
    /// Keep per-chunk I/O events from the very first read (prefetch starts while the source
    /// attaches), for `io.jsonl`.
    pub record_io: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            weights: SourceKind::Mmap,
            threads: 0,
            budget: None,
            plan: None,
            record_io: false,
        }
    }
}

#[derive(Debug)]
pub enum SessionError {
    /// The model file does not exist.
    NotFound(PathBuf),
    Gguf(GgufError),
    Model(ModelError),
    Weights(WeightError),
    Options(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NotFound(p) => write!(f, "model file {} not found", p.display()),
            SessionError::Gguf(e) => write!(f, "{e}"),
            SessionError::Model(e) => write!(f, "{e}"),
            SessionError::Weights(e) => write!(f, "{e}"),
            SessionError::Options(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for SessionError {}
impl From<GgufError> for SessionError {
    fn from(e: GgufError) -> Self {
        SessionError::Gguf(e)
    }
}
impl From<ModelError> for SessionError {
    fn from(e: ModelError) -> Self {
        SessionError::Model(e)
    }
}
impl From<WeightError> for SessionError {
    fn from(e: WeightError) -> Self {
        SessionError::Weights(e)
    }
}

pub struct Session {
    pub path: PathBuf,
    pub gguf: Arc<Gguf>,
    pub model: Model,
    pub source: Box<dyn WeightSource>,
    pub kernels: Kernels,
    pub options: SessionOptions,
    /// Wall time spent opening (header, source, small tensors), ns.
    pub load_ns: u64,
}

/// Every core this process may run on.
pub fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Session {
    pub fn open(path: &Path, options: SessionOptions) -> Result<Session, SessionError> {
        Self::open_staged(path, options, &mut |_, _| {})
    }

    /// [`Session::open`], calling `stage(Stage::Plan, true/false)` around the weight source's
    /// planning (a streaming source plans and starts prefetching in `attach_model`), so a
    /// profiler can record it as its own stage.
    pub fn open_staged(
        path: &Path,
        options: SessionOptions,
        stage: &mut dyn FnMut(Stage, bool),
    ) -> Result<Session, SessionError> {
        let t0 = monotonic_ns();
        if !path.exists() {
            return Err(SessionError::NotFound(path.to_path_buf()));
        }
        let gguf = Arc::new(Gguf::open(path)?);
        let mut source: Box<dyn WeightSource> = match options.weights {
            SourceKind::Ram => Box::new(RamSource::open(path, gguf.clone())?),
            SourceKind::Mmap => Box::new(MmapSource::open(path, gguf.clone())?),
            SourceKind::Stream => {
                if options.budget.is_none() && options.plan.is_none() {
                    return Err(SessionError::Options(
                        "--weights stream needs --budget SIZE (or --plan FILE)".into(),
                    ));
                }
                let opts = StreamOptions::from_env(options.budget, options.plan.as_deref())?;
                Box::new(StreamSource::open(path, gguf.clone(), opts)?)
            }
        };
        if options.weights != SourceKind::Stream
            && (options.budget.is_some() || options.plan.is_some())
        {
            return Err(SessionError::Options(
                "--budget and --plan apply to --weights stream only".into(),
            ));
        }
        let model = Model::load(gguf.clone(), source.as_ref())?;
        if options.record_io {
            source.record_io(true);
        }
        let plans = source.kind() == SourceKind::Stream;
        if plans {
            stage(Stage::Plan, true);
        }
        let attached = source.attach_model(&model);
        if plans {
            stage(Stage::Plan, false);
        }
        attached?;
        if let Some(s) = source.describe() {
            // What the streaming source chose (and whether it planned on the fly), on stderr.
            eprintln!("stream: {s}");
        }
        let threads = if options.threads == 0 {
            available_threads()
        } else {
            options.threads
        };
        let kernels = Kernels::new(threads);
        Ok(Session {
            path: path.to_path_buf(),
            gguf,
            model,
            source,
            kernels,
            options,
            load_ns: monotonic_ns() - t0,
        })
    }

    /// `<arch> <size label> <type>` like llama-bench's model column.
    pub fn describe(&self) -> String {
        let label = self
            .gguf
            .get("general.size_label")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        format!(
            "{} {} {}",
            self.model.config.arch,
            label,
            self.file_type_name()
        )
    }

    /// The dominant matrix type (what llama.cpp prints as the file type, roughly).
    pub fn file_type_name(&self) -> String {
        let mut by_type: std::collections::BTreeMap<&str, u64> = Default::default();
        for t in &self.gguf.tensors {
            if t.dims.len() >= 2 {
                *by_type.entry(t.ty.name()).or_default() += t.size;
            }
        }
        by_type
            .into_iter()
            .max_by_key(|(_, b)| *b)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default()
    }

    pub fn n_params(&self) -> u64 {
        self.gguf.tensors.iter().map(|t| t.n_elements()).sum()
    }
}
