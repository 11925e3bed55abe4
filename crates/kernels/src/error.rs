//! The kernels' error type: what pure compute can report.

/// A `Result` whose error defaults to the kernels' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a kernel can report: bad arguments, empty reductions, overflowing
/// exact sums, and errors of user code run as a kernel. The engine's error
/// (`outcore_exec::Error`) has a variant of the same name and message for
/// each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operation not defined for the operands' dtype or arguments, or a
    /// kernel state that was misused.
    #[error("invalid operation: {0}")]
    Invalid(String),
    /// Values whose shapes do not fit the operation.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A reduction with no elements to reduce where NumPy raises too
    /// (min, max, argmin, argmax, ptp of an empty array or axis).
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
    /// An error returned by user code run as a kernel (an aggregate's
    /// `finish`), passed through unchanged.
    #[error(transparent)]
    User(Box<dyn std::error::Error + Send + Sync>),
}
