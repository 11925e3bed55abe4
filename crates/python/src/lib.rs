//! Python bindings of outcore: the extension module `outcore._outcore`.
//!
//! The Python package `outcore` (in `python/`, built by maturin) imports
//! this module and adds what only Python needs: the settings stack of
//! `oc.config`, the exception classes and the type stubs. The classes
//! here are thin wrappers over the engine's own types:
//!
//! - [`PyEngine`] (`_outcore.Engine`) — an [`outcore::Engine`] with its
//!   settings: opens files and runs computations with the GIL released;
//! - [`PyArray`] (`outcore.Array`) — a lazy [`outcore::Expr`] with NumPy's
//!   operators and method names.
//!
//! Results are handed to NumPy without a copy, with the dtype NumPy's own
//! function returns for the same call; engine errors become the
//! exceptions of `outcore._errors` (see [`errors`]).

#![deny(missing_docs)]

mod array;
mod convert;
mod engine;
pub mod errors;
mod linalg;
mod memory;

pub use array::PyArray;
pub use engine::PyEngine;

use pyo3::prelude::*;

/// The module `outcore._outcore`.
#[pymodule]
fn _outcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyArray>()?;
    m.add_class::<PyEngine>()?;
    m.add_function(wrap_pyfunction!(array::_memory_array, m)?)?;
    linalg::register(m)?;
    Ok(())
}
