//! Pure compute for outcore: the reduction kernels and their mergeable
//! states, the fused elementwise program evaluator, casts between dtypes,
//! and the order-preserving sort keys. Everything here works on block views
//! and states in memory: no I/O, no threads, no memory budget. The engine
//! (`outcore-exec`) reads the blocks, runs these functions on its workers
//! and merges the states in block order.
//!
//! # Brief overview
//!
//! * [`Kernel`] / [`DynKernel`] — the contract of every reduction: init,
//!   update from a block view, merge in block order, finish to results of
//!   any shape, and the bytes a state occupies.
//! * [`ReducerSet`] — NumPy's core reductions ([`ReduceOp`] along a
//!   [`ReduceAxis`]) sharing their states (mean and std in one sweep).
//! * [`ReduceKind`] — a reduction that is a kernel of its own, one file
//!   each ([`reduce::kinds`]: `any`, `all`, `count_nonzero`, `ptp`).
//! * [`AnyArray`] / [`AnyView`] — results and block views of any dtype.
//! * [`eval`] — elementwise programs ([`UnaryOp`], [`BinaryOp`], casts)
//!   compiled to registers and run tile by tile.
//! * [`linalg`] — Gram matrices, covariance and correlation by centred
//!   co-moments, row-block products and PCA, on faer.
//! * [`cast`] — NumPy's `astype` between dtypes; [`key::SortKey`] — the
//!   sort order of NumPy (NaN last) as integer keys.
//!
//! # Example
//!
//! ```
//! use ndarray::array;
//! use outcore_chunker::DType;
//! use outcore_kernels::{AnyArray, AnyView, ReduceAxis, ReduceOp, ReducerSet};
//!
//! let x = array![[1.0, 4.0], [2.0, 5.0], [3.0, 9.0]];
//! let ops = [ReduceOp::Mean, ReduceOp::Max];
//! let set = ReducerSet::new(&ops, ReduceAxis::Axis0, DType::F64, 3, 2)?;
//! // Two blocks, merged in block order (what the engine does on its workers).
//! let mut a = set.init();
//! set.update(&mut a, AnyView::from(x.slice(ndarray::s![..2, ..])), 0);
//! let mut b = set.init();
//! set.update(&mut b, AnyView::from(x.slice(ndarray::s![2.., ..])), 2);
//! set.merge(&mut a, b);
//! let out = set.finish(a)?;
//! assert_eq!(out[0], AnyArray::from(array![2.0, 6.0].into_dyn()));
//! assert_eq!(out[1], AnyArray::from(array![3.0, 9.0].into_dyn()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub use crate::error::{Error, Result};
pub use crate::kernel::{DynKernel, Kernel, State};
pub use crate::op::{BinaryOp, UnaryOp};
pub use crate::reduce::{ReduceAxis, ReduceKind, ReduceOp, ReduceState, ReducerSet};
pub use crate::value::{AnyArray, AnyView, Collector, DynElement, Scalar};

pub mod cast;
pub mod eval;
pub mod key;
pub mod linalg;
pub mod reduce;

mod error;
mod kernel;
mod op;
mod value;
