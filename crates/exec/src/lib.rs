//! The outcore execution engine (in progress): lazy expressions, fused
//! kernels and reductions streamed through rayon.
#![deny(missing_docs)]

pub use crate::error::{Error, Result};
pub use crate::value::{AnyArray, AnyView, Scalar};

mod error;
mod value;
