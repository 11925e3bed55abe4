//! Engine errors as Python exceptions.
//!
//! The exception classes are defined once, in Python
//! (`python/outcore/_errors.py`), because several of them derive from two
//! built-in exceptions (`MemoryLimitError(OutcoreError, MemoryError)`);
//! [`to_py`] picks the class for an engine error and keeps its message.

use outcore::{Error, chunker, spill};
use pyo3::prelude::*;
use pyo3::types::PyType;

/// The name in `outcore._errors` of the class raised for `e`.
fn class_name(e: &Error) -> &'static str {
    match e {
        Error::LimitTooSmall { .. } => "MemoryLimitError",
        Error::Shape(_) => "ShapeError",
        Error::Invalid(_) => "InvalidOperationError",
        Error::Empty { .. } => "EmptyReductionError",
        Error::IntegerOverflow { .. } => "IntegerOverflowError",
        Error::Cancelled { .. } => "CancelledError",
        Error::Io { .. } => "OutcoreOSError",
        Error::Array(a) => array_class(a),
        Error::Spill(s) => spill_class(s),
        _ => "OutcoreError",
    }
}

fn array_class(e: &chunker::Error) -> &'static str {
    use chunker::Error as C;
    match e {
        C::BadMagic { .. }
        | C::UnsupportedVersion { .. }
        | C::BadHeader { .. }
        | C::UnsupportedDType { .. }
        | C::Overflow { .. }
        | C::SizeMismatch { .. }
        | C::OffsetPastEnd { .. }
        | C::InvalidBool { .. }
        | C::BadRawSpec { .. } => "FormatError",
        C::Truncated { .. } => "TruncatedError",
        C::OutputExists { .. } => "OutputExistsError",
        C::Io { .. } | C::NoSpace { .. } => "OutcoreOSError",
        C::TypeMismatch { .. } | C::WriteMismatch { .. } => "ShapeError",
        C::OutputIsInput { .. } => "InvalidOperationError",
        C::Cancelled { .. } => "CancelledError",
        _ => "OutcoreError",
    }
}

fn spill_class(e: &spill::Error) -> &'static str {
    use spill::Error as S;
    match e {
        S::Exhausted { .. } | S::TooLarge { .. } => "MemoryLimitError",
        S::Quota { .. } | S::NoSpace { .. } | S::Io { .. } => "OutcoreOSError",
        S::InvalidSize { .. }
        | S::UnknownUnit { .. }
        | S::NegativeSize { .. }
        | S::SizeOverflow { .. } => "ConfigError",
        _ => "OutcoreError",
    }
}

/// The OS error number of `e`, when the operating system gave one
/// (`ENOSPC` for a spill quota, as for a full disk).
fn errno(e: &Error) -> Option<i32> {
    use chunker::Error as C;
    use spill::Error as S;
    let io = match e {
        Error::Array(C::Io { error, .. } | C::NoSpace { error, .. })
        | Error::Spill(S::NoSpace { error, .. } | S::Io { source: error, .. })
        | Error::Io { error, .. } => error,
        Error::Spill(S::Quota { .. }) => return Some(ENOSPC),
        _ => return None,
    };
    io.raw_os_error()
}

/// `ENOSPC` on Linux and the BSDs.
const ENOSPC: i32 = 28;

/// The class `name` of `outcore._errors`.
pub(crate) fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    Ok(py
        .import("outcore._errors")?
        .getattr(name)?
        .cast_into::<PyType>()?)
}

/// An engine error as the Python exception of its class, with the same
/// message (and, for OS errors, the errno as `OSError` spells it).
pub fn to_py(e: Error) -> PyErr {
    Python::attach(|py| {
        let name = class_name(&e);
        let msg = e.to_string();
        let cls = match class(py, name) {
            Ok(cls) => cls,
            Err(err) => return err,
        };
        let os = matches!(
            name,
            "OutcoreOSError" | "TruncatedError" | "OutputExistsError"
        );
        match (os, errno(&e)) {
            (true, Some(n)) => PyErr::from_type(cls, (n, msg)),
            _ => PyErr::from_type(cls, msg),
        }
    })
}

/// An exception of class `name` (of `outcore._errors`) with `msg`.
pub(crate) fn raise(name: &str, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::attach(|py| match class(py, name) {
        Ok(cls) => PyErr::from_type(cls, msg),
        Err(err) => err,
    })
}
