//! The outcore execution engine: lazy expressions, a planner that fuses
//! elementwise chains and shares passes, NumPy-exact reductions, and a
//! streaming pipeline (reader → bounded channel → rayon workers → in-order
//! merge) that keeps every byte it holds inside a memory budget.
//!
//! # Brief overview
//!
//! * [`Engine`] / [`EngineBuilder`] — memory limit, threads, and the entry
//!   points: [`Engine::open`], [`Engine::compute`], [`Engine::write_npy`],
//!   [`Engine::explain`].
//! * [`Expr`] — a lazy expression: arithmetic with scalars, other arrays
//!   and broadcast reduction results; elementwise functions; casts;
//!   reductions ([`ReduceOp`] along a [`ReduceAxis`]); `map_blocks`.
//! * [`AnyArray`] — a computed result of any dtype.
//! * [`RunReport`] — what a run read, wrote and held in memory.
//! * [`CancelToken`] — stops a running computation between blocks
//!   ([`EngineBuilder::cancel`]; the run returns [`Error::Cancelled`]).
//! * [`aggregate::Aggregate`] — the open trait for user reductions.
//! * Linear algebra: [`Expr::gram`], [`Expr::t_dot`], [`Expr::cov`],
//!   [`Expr::corrcoef`], [`Expr::dot`], [`Engine::pca`] ([`Pca`]) and
//!   [`Engine::write_matrix_npy`] (column panels, [`PanelPlan`]).
//!
//! # Example
//!
//! ```
//! use outcore_exec::Engine;
//! use outcore_chunker::{ArrayWriter, DType, OutputSpec};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("x.npy");
//! let w = ArrayWriter::create(&path, OutputSpec::npy(DType::F32, vec![3, 2]))?;
//! w.write_block(0, ndarray::array![[1.0f32, 4.0], [2.0, 5.0], [3.0, 9.0]].view())?;
//! w.finish()?;
//!
//! let engine = Engine::builder().memory_limit(16 << 20).build()?;
//! let x = engine.open(&path)?;
//! // Three reductions, one pass: float32 input accumulates in float64.
//! let (sum, max, argmax) = engine.compute((x.sum(0), x.max(1), x.argmax(None)))?;
//! assert_eq!(sum.to_f64().into_raw_vec_and_offset().0, vec![6.0, 18.0]);
//! assert_eq!(max.dtype(), DType::F32);
//! assert_eq!(argmax.to_f64().into_raw_vec_and_offset().0, vec![5.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub use crate::engine::{Engine, EngineBuilder};
pub use crate::error::{Error, Result};
pub use crate::explain::{Explain, PassInfo};
pub use crate::expr::{Expr, IntoAxis, IntoExpr};
pub use crate::linalg::{Matrix, PanelPlan, Pca};
pub use crate::ops::kind::{Quantile, QuantileMethod};
pub use crate::outputs::Outputs;
pub use crate::progress::{Progress, ProgressSnapshot};
pub use crate::report::RunReport;
pub use outcore_chunker::CancelToken;
pub use outcore_kernels::{
    AnyArray, AnyView, BinaryOp, DynElement, ReduceAxis, ReduceKind, ReduceOp, Scalar, UnaryOp,
};

pub mod aggregate;
mod compile;
mod engine;
mod error;
mod execute;
mod explain;
mod expr;
mod kernel;
mod linalg;
mod lower;
mod ops;
mod outputs;
mod pass;
mod progress;
mod report;
mod runtime;
mod sizing;
mod stream;
