//! The engine's error type.

use std::path::PathBuf;

/// A `Result` whose error defaults to the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong building or running a computation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening, reading or writing an array failed.
    #[error(transparent)]
    Array(#[from] outcore_chunker::Error),
    /// A spill file could not be created or written (quota, full disk), or
    /// the memory budget refused a reservation.
    #[error(transparent)]
    Spill(#[from] outcore_spill::Error),
    /// The memory limit cannot hold even one row of the computation.
    #[error(
        "memory limit {} is too small: one row of this computation needs {} \
         ({detail}); the smallest limit that works is {} ({minimum} bytes)",
        outcore_spill::format_bytes(*.limit),
        outcore_spill::format_bytes(*.row_bytes),
        outcore_spill::format_bytes(*.minimum)
    )]
    LimitTooSmall {
        /// The memory limit in bytes.
        limit: u64,
        /// Bytes one row needs (inputs, outputs, scratch).
        row_bytes: u64,
        /// The smallest limit with which the computation can run.
        minimum: u64,
        /// What the bytes are made of.
        detail: String,
    },
    /// Operands whose shapes cannot be combined.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An operation not defined for the operands' dtype or arguments.
    #[error("invalid operation: {0}")]
    Invalid(String),
    /// A reduction with no elements to reduce where NumPy raises too
    /// (min, max, argmin, argmax of an empty array or axis).
    #[error(
        "{op} of an empty {what} is undefined (zero-size array to reduction operation {op} which has no identity)"
    )]
    Empty {
        /// The operation.
        op: String,
        /// `"array"` or `"axis"`.
        what: &'static str,
    },
    /// An exact integer sum does not fit the result dtype.
    #[error(
        "{op} overflows {dtype}: the exact result {value} does not fit (NumPy would wrap silently); cast to float64 first"
    )]
    IntegerOverflow {
        /// The operation.
        op: String,
        /// The result dtype.
        dtype: &'static str,
        /// The exact result, as text.
        value: String,
    },
    /// A user closure or aggregate panicked; the run was stopped and any
    /// output discarded.
    #[error("a user function panicked: {0}")]
    Panic(String),
    /// An I/O error outside the array files (e.g. a thread pool or a
    /// progress sink).
    #[error("{path}: {error}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error (its message is part of this one's).
        error: std::io::Error,
    },
    /// The run was stopped through its [`CancelToken`](crate::CancelToken)
    /// (see [`EngineBuilder::cancel`](crate::EngineBuilder::cancel)). Any
    /// output being written was abandoned (nothing appears under its
    /// name), spill files were released and the memory returned.
    #[error("cancelled after {done} of {total} {stage}; no output was written")]
    Cancelled {
        /// What was running, with its unit (`"blocks of a pass"`,
        /// `"column merges of a sort merge level"`, ...).
        stage: &'static str,
        /// Units complete when the run stopped.
        done: u64,
        /// Units in that stage.
        total: u64,
    },
    /// An error of another type returned by user code (an aggregate's
    /// `finish` run as a kernel), passed through unchanged.
    #[error(transparent)]
    User(Box<dyn std::error::Error + Send + Sync>),
    /// Building the thread pool failed.
    #[error("could not start the thread pool: {0}")]
    ThreadPool(String),
}

impl From<outcore_kernels::Error> for Error {
    fn from(e: outcore_kernels::Error) -> Error {
        use outcore_kernels::Error as K;
        match e {
            K::Invalid(msg) => Error::Invalid(msg),
            K::Shape(msg) => Error::Shape(msg),
            K::Empty { op, what } => Error::Empty { op, what },
            K::IntegerOverflow { op, dtype, value } => Error::IntegerOverflow { op, dtype, value },
            // An engine error returned by user code comes back as it was.
            K::User(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::User(e),
            },
            // `outcore_kernels::Error` is non-exhaustive.
            e => Error::Invalid(e.to_string()),
        }
    }
}
