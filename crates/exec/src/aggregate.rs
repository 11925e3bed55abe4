//! User-defined reductions: the [`Aggregate`] trait, and the built-in
//! reductions ([`Sum`], [`Mean`], [`Var`], ..., or any [`ReduceOp`] through
//! [`Reduction`]) as implementations of it.
//!
//! An aggregate is `init` / `update(block)` / `merge` / `finish` over row
//! blocks of a `rows × row_len` array. The engine gives each block its own
//! state, updates it with the block's rows (in increasing, contiguous row
//! order, possibly in several calls), then merges the states **in block
//! order** (`next` always covers the rows right after those of `into`), so
//! results do not depend on the number of threads. States are serialisable,
//! so partial results can travel between processes or machines.
//!
//! # Example: a histogram
//!
//! ```
//! use ndarray::{ArrayView2, array};
//! use outcore_exec::aggregate::Aggregate;
//!
//! /// Counts of values in `bins` equal-width bins over `[lo, hi)`.
//! struct Histogram {
//!     lo: f64,
//!     hi: f64,
//!     bins: usize,
//! }
//!
//! impl Aggregate<f64> for Histogram {
//!     type State = Vec<u64>;
//!     type Output = Vec<u64>;
//!
//!     fn init(&self, _row_len: usize) -> Vec<u64> {
//!         vec![0; self.bins]
//!     }
//!
//!     fn update(&self, state: &mut Vec<u64>, block: ArrayView2<'_, f64>, _first_row: u64) {
//!         let width = (self.hi - self.lo) / self.bins as f64;
//!         for &x in block.iter() {
//!             if x >= self.lo && x < self.hi {
//!                 let bin = (((x - self.lo) / width) as usize).min(self.bins - 1);
//!                 state[bin] += 1;
//!             }
//!         }
//!     }
//!
//!     fn merge(&self, into: &mut Vec<u64>, next: Vec<u64>) {
//!         into.iter_mut().zip(next).for_each(|(a, b)| *a += b);
//!     }
//!
//!     fn finish(&self, state: Vec<u64>, _rows: u64, _row_len: usize) -> outcore_exec::Result<Vec<u64>> {
//!         Ok(state)
//!     }
//!
//!     fn state_bytes(&self, _row_len: usize) -> usize {
//!         std::mem::size_of::<Vec<u64>>() + 8 * self.bins
//!     }
//! }
//!
//! let hist = Histogram { lo: 0.0, hi: 4.0, bins: 4 };
//! let data = array![[0.5, 1.5], [1.7, 3.9], [9.0, 2.0]];
//! // Two blocks, merged in order (what the engine does in parallel).
//! let mut a = hist.init(2);
//! hist.update(&mut a, data.slice(ndarray::s![..2, ..]), 0);
//! let mut b = hist.init(2);
//! hist.update(&mut b, data.slice(ndarray::s![2.., ..]), 2);
//! hist.merge(&mut a, b);
//! assert_eq!(hist.finish(a, 3, 2)?, vec![1, 2, 1, 1]);
//!
//! // The built-in reductions are aggregates too.
//! use outcore_exec::aggregate::{ReduceAxis, Std};
//! let std = Std { axis: ReduceAxis::Axis0, ddof: 0 };
//! let mut s = Aggregate::<f64>::init(&std, 2);
//! std.update(&mut s, data.view(), 0);
//! let out = Aggregate::<f64>::finish(&std, s, 3, 2)?;
//! assert_eq!(out.shape(), &[2]);
//! # Ok::<(), outcore_exec::Error>(())
//! ```

use ndarray::ArrayView2;
use outcore_chunker::Element;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::reduce::{Partial, Plan};
use crate::value::{AnyArray, AnyView};

pub use crate::reduce::{ReduceAxis, ReduceOp};

/// A reduction over the row blocks of a `rows × row_len` array of `T`, with
/// mergeable, serialisable partial states.
///
/// The engine calls `init` once per block, `update` with the block's rows
/// (one or more calls, in increasing contiguous row order; `first_row` is
/// the global index of the view's first row), `merge` to combine the states
/// of consecutive blocks **in block order**, and `finish` once on the
/// merged state. `update` and `merge` cannot fail: record a problem in the
/// state and report it from `finish`. A panic in user code stops the run
/// with [`Error::Panic`].
pub trait Aggregate<T: Element>: Send + Sync {
    /// The partial state of a run of rows; serialisable so partial results
    /// can travel across processes or machines.
    type State: Send + Serialize + DeserializeOwned;
    /// The final result.
    type Output;

    /// The state of no rows, for rows of `row_len` elements.
    fn init(&self, row_len: usize) -> Self::State;

    /// Adds the rows of `block` (`block.nrows() × row_len`), which are rows
    /// `first_row .. first_row + block.nrows()` of the array.
    fn update(&self, state: &mut Self::State, block: ArrayView2<'_, T>, first_row: u64);

    /// Adds `next`, the state of the rows right after those of `into`.
    fn merge(&self, into: &mut Self::State, next: Self::State);

    /// The result, from the state of all `rows` rows.
    ///
    /// # Errors
    ///
    /// Whatever the aggregate defines (e.g. [`Error::Empty`]).
    fn finish(&self, state: Self::State, rows: u64, row_len: usize) -> Result<Self::Output>;

    /// Bytes one state occupies, for the memory budget: the fixed part
    /// (default: `size_of::<State>()`; override when the state owns heap
    /// memory, such as a `row_len`-sized vector).
    fn state_bytes(&self, row_len: usize) -> usize {
        let _ = row_len;
        std::mem::size_of::<Self::State>()
    }

    /// Bytes a state grows by per row it covers (default 0), for states
    /// that keep one entry per row, such as reductions along
    /// [`ReduceAxis::Axis1`]. A state covering `n` rows is budgeted as
    /// `state_bytes(row_len) + n · state_bytes_per_row(row_len)`.
    fn state_bytes_per_row(&self, row_len: usize) -> usize {
        let _ = row_len;
        0
    }
}

/// The partial state of the built-in reductions: opaque, serialisable.
///
/// Floats are stored as bit patterns, so a state holding NaN or infinity
/// round-trips through any serde format (JSON included). A state that was
/// misused (a block of the wrong width, rows out of order, states of two
/// different reductions merged) makes `finish` fail with [`Error::Invalid`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReduceState(Partial);

/// Any built-in reduction: `op` along `axis`. Output: an [`AnyArray`] of
/// dtype [`ReduceOp::result_dtype`] and shape `[]` ([`ReduceAxis::All`]),
/// `[row_len]` ([`ReduceAxis::Axis0`]) or `[rows]` ([`ReduceAxis::Axis1`]).
/// See [`ReduceOp`] for the semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reduction {
    /// The reduction.
    pub op: ReduceOp,
    /// Which elements reduce together.
    pub axis: ReduceAxis,
}

/// Several built-in reductions of one input along one axis, computed in one
/// pass with shared states (e.g. `mean` and `std`). Output: one array per
/// op, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reductions {
    /// The reductions.
    pub ops: Vec<ReduceOp>,
    /// Which elements reduce together.
    pub axis: ReduceAxis,
}

fn plan<T: Element>(ops: &[ReduceOp], axis: ReduceAxis, row_len: usize) -> Plan {
    Plan::new(ops, axis, T::DATA_TYPE, row_len)
}

fn finish_ops<T: Element>(
    ops: &[ReduceOp],
    axis: ReduceAxis,
    state: ReduceState,
    rows: u64,
    row_len: usize,
) -> Result<Vec<AnyArray>> {
    if usize::try_from(rows).is_err() || rows.checked_mul(row_len as u64).is_none() {
        return Err(Error::Invalid(format!(
            "array of {rows} × {row_len} elements is too large"
        )));
    }
    state.0.finish(&plan::<T>(ops, axis, row_len), ops, rows)
}

impl<T: Element> Aggregate<T> for Reductions
where
    for<'a> AnyView<'a>: From<ArrayView2<'a, T>>,
{
    type State = ReduceState;
    type Output = Vec<AnyArray>;

    fn init(&self, row_len: usize) -> ReduceState {
        ReduceState(Partial::new(plan::<T>(&self.ops, self.axis, row_len)))
    }

    fn update(&self, state: &mut ReduceState, block: ArrayView2<'_, T>, first_row: u64) {
        state.0.update(AnyView::from(block), first_row);
    }

    fn merge(&self, into: &mut ReduceState, next: ReduceState) {
        into.0.merge(next.0);
    }

    fn finish(&self, state: ReduceState, rows: u64, row_len: usize) -> Result<Vec<AnyArray>> {
        finish_ops::<T>(&self.ops, self.axis, state, rows, row_len)
    }

    fn state_bytes(&self, row_len: usize) -> usize {
        plan::<T>(&self.ops, self.axis, row_len).state_bytes(0)
    }

    fn state_bytes_per_row(&self, row_len: usize) -> usize {
        plan::<T>(&self.ops, self.axis, row_len).state_bytes_per_row()
    }
}

impl<T: Element> Aggregate<T> for Reduction
where
    for<'a> AnyView<'a>: From<ArrayView2<'a, T>>,
{
    type State = ReduceState;
    type Output = AnyArray;

    fn init(&self, row_len: usize) -> ReduceState {
        ReduceState(Partial::new(plan::<T>(&[self.op], self.axis, row_len)))
    }

    fn update(&self, state: &mut ReduceState, block: ArrayView2<'_, T>, first_row: u64) {
        state.0.update(AnyView::from(block), first_row);
    }

    fn merge(&self, into: &mut ReduceState, next: ReduceState) {
        into.0.merge(next.0);
    }

    fn finish(&self, state: ReduceState, rows: u64, row_len: usize) -> Result<AnyArray> {
        let mut out = finish_ops::<T>(&[self.op], self.axis, state, rows, row_len)?;
        out.pop()
            .ok_or_else(|| Error::Invalid("reduction produced no result".into()))
    }

    fn state_bytes(&self, row_len: usize) -> usize {
        plan::<T>(&[self.op], self.axis, row_len).state_bytes(0)
    }

    fn state_bytes_per_row(&self, row_len: usize) -> usize {
        plan::<T>(&[self.op], self.axis, row_len).state_bytes_per_row()
    }
}

macro_rules! builtin {
    ($($(#[$doc:meta])* $name:ident => $op:expr;)*) => {$(
        $(#[$doc])*
        ///
        /// Output: an [`AnyArray`] of shape `[]` ([`ReduceAxis::All`]),
        /// `[row_len]` ([`ReduceAxis::Axis0`]) or `[rows]`
        /// ([`ReduceAxis::Axis1`]); see [`ReduceOp`] for dtypes and NaN
        /// handling.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name {
            /// Which elements reduce together.
            pub axis: ReduceAxis,
        }

        impl $name {
            /// The equivalent [`Reduction`].
            pub fn reduction(&self) -> Reduction {
                Reduction { op: $op, axis: self.axis }
            }
        }

        builtin_impl!($name);
    )*};
}

macro_rules! builtin_ddof {
    ($($(#[$doc:meta])* $name:ident => $variant:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// Output: an [`AnyArray`] of `float64` and shape `[]`
        /// ([`ReduceAxis::All`]), `[row_len]` ([`ReduceAxis::Axis0`]) or
        /// `[rows]` ([`ReduceAxis::Axis1`]); NaN where `n − ddof ≤ 0`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name {
            /// Which elements reduce together.
            pub axis: ReduceAxis,
            /// Delta degrees of freedom: the divisor is `n − ddof`.
            pub ddof: u32,
        }

        impl $name {
            /// The equivalent [`Reduction`].
            pub fn reduction(&self) -> Reduction {
                Reduction { op: ReduceOp::$variant { ddof: self.ddof }, axis: self.axis }
            }
        }

        builtin_impl!($name);
    )*};
}

macro_rules! builtin_impl {
    ($name:ident) => {
        impl<T: Element> Aggregate<T> for $name
        where
            for<'a> AnyView<'a>: From<ArrayView2<'a, T>>,
        {
            type State = ReduceState;
            type Output = AnyArray;

            fn init(&self, row_len: usize) -> ReduceState {
                Aggregate::<T>::init(&self.reduction(), row_len)
            }

            fn update(&self, state: &mut ReduceState, block: ArrayView2<'_, T>, first_row: u64) {
                Aggregate::<T>::update(&self.reduction(), state, block, first_row)
            }

            fn merge(&self, into: &mut ReduceState, next: ReduceState) {
                Aggregate::<T>::merge(&self.reduction(), into, next)
            }

            fn finish(&self, state: ReduceState, rows: u64, row_len: usize) -> Result<AnyArray> {
                Aggregate::<T>::finish(&self.reduction(), state, rows, row_len)
            }

            fn state_bytes(&self, row_len: usize) -> usize {
                Aggregate::<T>::state_bytes(&self.reduction(), row_len)
            }

            fn state_bytes_per_row(&self, row_len: usize) -> usize {
                Aggregate::<T>::state_bytes_per_row(&self.reduction(), row_len)
            }
        }
    };
}

builtin! {
    /// `np.sum`: exact for integers (`int64`/`uint64`, overflow is an
    /// error), compensated `float64` for floats.
    Sum => ReduceOp::Sum;
    /// `np.nansum`: the sum with NaN counted as zero.
    NanSum => ReduceOp::NanSum;
    /// `np.mean`, in `float64`.
    Mean => ReduceOp::Mean;
    /// `np.nanmean`: the mean of the non-NaN elements.
    NanMean => ReduceOp::NanMean;
    /// `np.min`, in the input dtype; NaN if any element is NaN.
    Min => ReduceOp::Min;
    /// `np.max`, in the input dtype; NaN if any element is NaN.
    Max => ReduceOp::Max;
    /// `np.nanmin`: the minimum of the non-NaN elements.
    NanMin => ReduceOp::NanMin;
    /// `np.nanmax`: the maximum of the non-NaN elements.
    NanMax => ReduceOp::NanMax;
    /// `np.argmin`: `int64` index of the first minimum (or first NaN).
    ArgMin => ReduceOp::ArgMin;
    /// `np.argmax`: `int64` index of the first maximum (or first NaN).
    ArgMax => ReduceOp::ArgMax;
}

builtin_ddof! {
    /// `np.var(ddof=..)`: Σ(x − mean)² / (n − ddof), by a stable merge.
    Var => Var;
    /// `np.std(ddof=..)`: the square root of [`Var`].
    Std => Std;
    /// `np.nanvar(ddof=..)`: the variance of the non-NaN elements.
    NanVar => NanVar;
    /// `np.nanstd(ddof=..)`: the standard deviation of the non-NaN elements.
    NanStd => NanStd;
}
