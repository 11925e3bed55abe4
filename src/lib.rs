//! outcore: compute over arrays larger than memory, under a memory budget
//! you set.
//!
//! outcore opens numeric arrays that live on disk (NumPy `.npy`, raw
//! binary), splits them into blocks of rows, streams the blocks through
//! parallel workers and keeps the process's memory under a budget. This
//! crate is the face users depend on: it re-exports the workspace's crates
//! and their principal types.
//!
//! # Brief overview
//!
//! * [`chunker`] — on-disk arrays: [`ArrayFile`], [`BlockPlan`], [`Block`],
//!   atomic outputs with [`ArrayWriter`], dtypes ([`DType`]) and
//!   synthetic data ([`chunker::synth`]).
//! * [`spill`] — the memory budget: [`MemoryBudget`], [`Reservation`],
//!   size parsing/formatting ([`parse_size`], [`format_bytes`]), and
//!   unnamed spill files ([`SpillSpace`]).
//! * [`kernels`] — pure compute over block views: the reduction kernels
//!   and their mergeable states ([`kernels::Kernel`]), the registered
//!   reductions of their own ([`ReduceKind`]: `any`, `all`,
//!   `count_nonzero`, `ptp`), the elementwise evaluator, casts, sort keys.
//! * [`exec`] — the engine: [`Engine`], lazy [`Expr`]essions, reductions
//!   ([`ReduceOp`]), user [`aggregate::Aggregate`]s as expressions, exact
//!   quantiles ([`Quantile`]), external sort and cumsum ([`Expr::sort`],
//!   [`Expr::cumsum`]), results ([`AnyArray`]) and [`RunReport`]s;
//!   [`CancelToken`] stops a run between blocks; [`Error`] covers every
//!   crate's errors.
//! * [`prelude`] — what a pipeline needs, in one `use`.
//!
//! # Example
//!
//! ```
//! use outcore::{ArrayFile, ArrayWriter, DType, OutputSpec};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("x.npy");
//! let writer = ArrayWriter::create(&path, OutputSpec::npy(DType::F32, vec![2, 3]))?;
//! writer.write_block(0, ndarray::array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].view())?;
//! writer.finish()?;
//!
//! let x = ArrayFile::open(&path)?;
//! let block = x.read_rows(0..2)?;
//! assert_eq!(block.view::<f32>()?.column(2).to_vec(), vec![3.0, 6.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

/// The `ndarray` this crate's views and results are made of (what an
/// [`aggregate::Aggregate`] receives), so an implementation needs no
/// matching version of its own.
pub use ndarray;
pub use outcore_chunker as chunker;
pub use outcore_exec as exec;
pub use outcore_kernels as kernels;
pub use outcore_spill as spill;

pub use outcore_chunker::{
    ArrayFile, ArrayMeta, ArrayWriter, Block, BlockPlan, ByteOrder, DType, Element, Format, Layout,
    OutputFormat, OutputSpec, RawSpec, ReadMode, f16, parse_descr, with_dtype,
};
pub use outcore_exec::{
    AnyArray, CancelToken, Engine, EngineBuilder, Error, Explain, Expr, Matrix, PanelPlan, Pca,
    Quantile, QuantileMethod, ReduceAxis, ReduceKind, ReduceOp, Result, RunReport, Scalar,
    aggregate,
};
/// What a pipeline needs, in one `use outcore::prelude::*;`.
///
/// ```
/// use outcore::prelude::*;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("x.npy");
/// let w = ArrayWriter::create(&path, OutputSpec::npy(DType::F64, vec![3, 2]))?;
/// w.write_block(0, ndarray::array![[1.0, 0.0], [2.0, 0.0], [3.0, 5.0]].view())?;
/// w.finish()?;
///
/// let engine = Engine::builder().memory_limit(16 << 20).build()?;
/// let x = engine.open(&path)?;
/// let (mean, nonzero) = engine.compute((x.mean(0), x.count_nonzero(0)))?;
/// assert_eq!(mean.to_scalars(), vec![Scalar::Float(2.0), Scalar::Float(5.0 / 3.0)]);
/// assert_eq!(nonzero.to_scalars(), vec![Scalar::Int(3), Scalar::Int(1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod prelude {
    pub use outcore_chunker::{ArrayWriter, DType, OutputSpec, RawSpec, ReadMode};
    pub use outcore_exec::aggregate::{Aggregate, ArrayOutput};
    pub use outcore_exec::{
        AnyArray, CancelToken, Engine, EngineBuilder, Error, Expr, IntoAxis, IntoExpr, Pca,
        QuantileMethod, ReduceAxis, ReduceOp, Result, Scalar,
    };
}

pub use outcore_spill::{
    Consumer, MemoryBudget, Reservation, SpillSpace, available_memory, default_limit, format_bytes,
    parse_size, process_memory,
};
