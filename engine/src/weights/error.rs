// Errors from weight sources. One line each, naming the tensor or file offset involved.

use std::fmt;

#[derive(Debug)]
#[non_exhaustive]
pub enum WeightError {
    /// Opening, reading or mapping the model file failed.
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A tensor id outside the directory.
    UnknownTensor(usize),
    /// The file does not hold what the header promised.
    Corrupt(String),
    /// The forward pass asked for weights in an order the source did not plan for.
    OrderMismatch(String),
    /// The budget cannot hold the minimum working set.
    Budget(String),
    /// Storage failed after the retry (EIO, short read), or a wait timed out.
    Storage(String),
    /// The model file changed since it was planned or opened.
    FileChanged(String),
    /// A streaming plan is malformed or belongs to another model or budget.
    Plan(crate::plan::PlanError),
}

impl fmt::Display for WeightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightError::Io { what, source } => write!(f, "{what}: {source}"),
            WeightError::UnknownTensor(id) => write!(f, "no tensor with id {id}"),
            WeightError::Corrupt(m)
            | WeightError::OrderMismatch(m)
            | WeightError::Budget(m)
            | WeightError::Storage(m)
            | WeightError::FileChanged(m) => f.write_str(m),
            WeightError::Plan(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WeightError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeightError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<crate::plan::PlanError> for WeightError {
    fn from(e: crate::plan::PlanError) -> Self {
        match e {
            crate::plan::PlanError::Budget(m) => WeightError::Budget(m),
            other => WeightError::Plan(other),
        }
    }
}
