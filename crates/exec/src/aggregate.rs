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

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, IxDyn};
use outcore_chunker::DType;
use outcore_kernels::{DynElement, DynKernel, Kernel};

use crate::error::{Error, Result};
use crate::kernel::KernelSpec;
use crate::stream::catch_user;
use outcore_kernels::ReducerSet;
use outcore_kernels::{AnyArray, AnyView};

pub use outcore_kernels::{ReduceAxis, ReduceOp};

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
///
/// An aggregate is a reduction kernel like the built-ins
/// ([`Expr::aggregate`](crate::Expr::aggregate) puts it in their pass), so
/// `update` sees a block a tile at a time — whole rows of a few thousand
/// values, while they are in cache — rather than the whole block at once;
/// keep per-call work (allocations) out of it.
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

    /// The shape of `finish`'s result as an array, for an aggregate used
    /// as an expression ([`Expr::aggregate`](crate::Expr::aggregate)) over
    /// `rows` rows of `row_len` values. By default `[]`: one value.
    /// Overriding it is what lets a result of one per column (the input's
    /// trailing shape), a vector of bin counts or a matrix feed later
    /// expressions; a result of another shape is an
    /// [`Error::Shape`].
    fn output_shape(&self, rows: u64, row_len: usize) -> Vec<u64> {
        let _ = (rows, row_len);
        Vec::new()
    }
}

/// An aggregate's result that is an array: what
/// [`Expr::aggregate`](crate::Expr::aggregate) needs of `Aggregate::Output`
/// (a number of any dtype, a `Vec`, or an `ndarray` array).
pub trait ArrayOutput {
    /// The result's dtype.
    const DTYPE: DType;
    /// The result as an array.
    fn into_array(self) -> AnyArray;
}

macro_rules! scalar_output {
    ($($t:ty),*) => {$(
        impl ArrayOutput for $t {
            const DTYPE: DType = <$t as Element>::DATA_TYPE;
            fn into_array(self) -> AnyArray {
                AnyArray::scalar(self)
            }
        }
    )*};
}

scalar_output!(
    bool,
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
    half::f16,
    f32,
    f64
);

impl<T: DynElement> ArrayOutput for Vec<T> {
    const DTYPE: DType = T::DATA_TYPE;
    fn into_array(self) -> AnyArray {
        let n = self.len();
        T::into_any(ArrayD::from_shape_vec(IxDyn(&[n]), self).expect("a vector is 1-d"))
    }
}

impl<T: DynElement, D: ndarray::Dimension> ArrayOutput for ndarray::Array<T, D> {
    const DTYPE: DType = T::DATA_TYPE;
    fn into_array(self) -> AnyArray {
        T::into_any(self.into_dyn())
    }
}

/// What becomes of an aggregate's output when its kernel finishes.
type Output<O> = Arc<dyn Fn(O) -> Result<AnyArray> + Send + Sync>;

/// A user aggregate in an expression graph: builds its kernel.
pub(crate) struct AggregateSpec<T: Element, A: Aggregate<T>> {
    agg: Arc<A>,
    output: Output<A::Output>,
    _t: PhantomData<fn(T)>,
}

impl<T: DynElement, A: Aggregate<T> + 'static> AggregateSpec<T, A> {
    /// The aggregate whose result is an array (checked against its
    /// `output_shape` and `ArrayOutput::DTYPE`).
    pub(crate) fn array(agg: A, rows: u64, row_len: usize) -> AggregateSpec<T, A>
    where
        A::Output: ArrayOutput,
    {
        let shape: Vec<usize> = agg
            .output_shape(rows, row_len)
            .iter()
            .map(|&d| d as usize)
            .collect();
        AggregateSpec {
            agg: Arc::new(agg),
            output: Arc::new(move |o: A::Output| {
                let a = o.into_array();
                if a.shape() != shape.as_slice() {
                    return Err(Error::Shape(format!(
                        "the aggregate returned an array of shape {:?}, but its output_shape \
                         is {shape:?}",
                        a.shape()
                    )));
                }
                Ok(a)
            }),
            _t: PhantomData,
        }
    }

    /// The aggregate whose typed result is left in `stash` (for
    /// [`Engine::aggregate`](crate::Engine::aggregate)); the node's own
    /// value is a placeholder.
    pub(crate) fn stash(agg: A, stash: Arc<Mutex<Option<A::Output>>>) -> AggregateSpec<T, A>
    where
        A::Output: Send + 'static,
    {
        AggregateSpec {
            agg: Arc::new(agg),
            output: Arc::new(move |o: A::Output| {
                if let Ok(mut s) = stash.lock() {
                    *s = Some(o);
                }
                Ok(AnyArray::scalar(0u8))
            }),
            _t: PhantomData,
        }
    }
}

impl<T: DynElement, A: Aggregate<T> + 'static> KernelSpec for AggregateSpec<T, A> {
    fn describe(&self, arg: &str) -> String {
        format!("aggregate({arg})")
    }

    fn build(&self, input: DType, rows: u64, row_len: usize) -> Result<Arc<dyn DynKernel>> {
        if input != T::DATA_TYPE {
            return Err(Error::Invalid(format!(
                "internal: an aggregate over {} was given {input} rows",
                T::DATA_TYPE
            )));
        }
        Ok(Arc::new(AggregateKernel::<T, A> {
            agg: self.agg.clone(),
            output: self.output.clone(),
            rows,
            row_len,
            _t: PhantomData,
        }))
    }

    fn view_dtype(&self) -> Option<DType> {
        Some(T::DATA_TYPE)
    }
}

/// A user aggregate run as a kernel.
struct AggregateKernel<T: Element, A: Aggregate<T>> {
    agg: Arc<A>,
    output: Output<A::Output>,
    rows: u64,
    row_len: usize,
    _t: PhantomData<fn(T)>,
}

/// An aggregate's state, and the first misuse seen.
pub(crate) struct AggState<S> {
    inner: S,
    error: Option<String>,
}

impl<T: DynElement, A: Aggregate<T> + 'static> Kernel for AggregateKernel<T, A> {
    type State = AggState<A::State>;

    fn init(&self) -> AggState<A::State> {
        AggState {
            inner: self.agg.init(self.row_len),
            error: None,
        }
    }

    fn update(&self, state: &mut AggState<A::State>, block: AnyView<'_>, first_row: u64) {
        match T::from_view(block) {
            Some(view) => self.agg.update(&mut state.inner, view, first_row),
            None => {
                state.error.get_or_insert_with(|| {
                    format!(
                        "internal: an aggregate over {} was given a {} block",
                        T::DATA_TYPE,
                        block.dtype()
                    )
                });
            }
        }
    }

    fn merge(&self, into: &mut AggState<A::State>, next: AggState<A::State>) {
        if into.error.is_none() {
            into.error = next.error;
        }
        self.agg.merge(&mut into.inner, next.inner);
    }

    fn finish(&self, state: AggState<A::State>) -> outcore_kernels::Result<Vec<AnyArray>> {
        let user = |e: Error| outcore_kernels::Error::User(Box::new(e));
        if let Some(e) = state.error {
            return Err(user(Error::Invalid(e)));
        }
        let out = catch_user(|| self.agg.finish(state.inner, self.rows, self.row_len))
            .and_then(|r| r)
            .and_then(|o| (self.output)(o))
            .map_err(user)?;
        Ok(vec![out])
    }

    fn state_bytes(&self, rows: u64) -> u64 {
        self.agg.state_bytes(self.row_len) as u64
            + rows * self.agg.state_bytes_per_row(self.row_len) as u64
    }
}

/// The partial state of the built-in reductions: opaque, serialisable.
///
/// Floats are stored as bit patterns, so a state holding NaN or infinity
/// round-trips through any serde format (JSON included). A state that was
/// misused (a block of the wrong width, rows out of order, states of two
/// different reductions merged) makes `finish` fail with [`Error::Invalid`].
pub use outcore_kernels::ReduceState;

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

/// The built-in reductions `ops` along `axis` of `rows × row_len` values of `T`.
/// (For states and their sizes; `finish_ops` is given the rows.)
fn set<T: Element>(ops: &[ReduceOp], axis: ReduceAxis, row_len: usize) -> ReducerSet {
    // Only an element count that overflows is refused; no rows cannot.
    ReducerSet::new(ops, axis, T::DATA_TYPE, 0, row_len).expect("zero rows never overflow")
}

fn finish_ops<T: Element>(
    ops: &[ReduceOp],
    axis: ReduceAxis,
    state: ReduceState,
    rows: u64,
    row_len: usize,
) -> Result<Vec<AnyArray>> {
    Ok(ReducerSet::new(ops, axis, T::DATA_TYPE, rows, row_len)?.finish(state)?)
}

impl<T: Element> Aggregate<T> for Reductions
where
    for<'a> AnyView<'a>: From<ArrayView2<'a, T>>,
{
    type State = ReduceState;
    type Output = Vec<AnyArray>;

    fn init(&self, row_len: usize) -> ReduceState {
        set::<T>(&self.ops, self.axis, row_len).init()
    }

    fn update(&self, state: &mut ReduceState, block: ArrayView2<'_, T>, first_row: u64) {
        state.update(AnyView::from(block), first_row);
    }

    fn merge(&self, into: &mut ReduceState, next: ReduceState) {
        into.merge(next);
    }

    fn finish(&self, state: ReduceState, rows: u64, row_len: usize) -> Result<Vec<AnyArray>> {
        finish_ops::<T>(&self.ops, self.axis, state, rows, row_len)
    }

    fn state_bytes(&self, row_len: usize) -> usize {
        set::<T>(&self.ops, self.axis, row_len).state_bytes(0)
    }

    fn state_bytes_per_row(&self, row_len: usize) -> usize {
        set::<T>(&self.ops, self.axis, row_len).state_bytes_per_row()
    }
}

impl<T: Element> Aggregate<T> for Reduction
where
    for<'a> AnyView<'a>: From<ArrayView2<'a, T>>,
{
    type State = ReduceState;
    type Output = AnyArray;

    fn init(&self, row_len: usize) -> ReduceState {
        set::<T>(&[self.op], self.axis, row_len).init()
    }

    fn update(&self, state: &mut ReduceState, block: ArrayView2<'_, T>, first_row: u64) {
        state.update(AnyView::from(block), first_row);
    }

    fn merge(&self, into: &mut ReduceState, next: ReduceState) {
        into.merge(next);
    }

    fn finish(&self, state: ReduceState, rows: u64, row_len: usize) -> Result<AnyArray> {
        let mut out = finish_ops::<T>(&[self.op], self.axis, state, rows, row_len)?;
        out.pop()
            .ok_or_else(|| Error::Invalid("reduction produced no result".into()))
    }

    fn state_bytes(&self, row_len: usize) -> usize {
        set::<T>(&[self.op], self.axis, row_len).state_bytes(0)
    }

    fn state_bytes_per_row(&self, row_len: usize) -> usize {
        set::<T>(&[self.op], self.axis, row_len).state_bytes_per_row()
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

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};
    use outcore_kernels::{AnyView, Scalar};

    use super::*;

    /// `op` along `axis` of the whole array in one update.
    fn run1(op: ReduceOp, axis: ReduceAxis, arr: &AnyArray) -> Result<AnyArray> {
        let x = arr.to_f64();
        let x = x.view().into_dimensionality::<ndarray::Ix2>().expect("2-d");
        let set = ReducerSet::new(
            &[op],
            axis,
            outcore_chunker::DType::F64,
            x.nrows() as u64,
            x.ncols(),
        )?;
        let mut p = set.init();
        set.update(&mut p, AnyView::F64(x), 0);
        Ok(set.finish(p)?.remove(0))
    }

    fn f64s(a: &AnyArray) -> Vec<f64> {
        a.to_f64().iter().copied().collect()
    }

    #[test]
    fn aggregate_trait_matches_reducer_set() {
        let arr = Array2::from_shape_fn((50, 3), |(r, c)| (r * 7 + c * 13) as f64 % 11.0 - 5.0);
        let anyarr = AnyArray::from(arr.clone().into_dyn());
        let std = Std {
            axis: ReduceAxis::Axis0,
            ddof: 1,
        };
        let mut a = Aggregate::<f64>::init(&std, 3);
        std.update(&mut a, arr.slice(s![..20, ..]), 0);
        let mut b = Aggregate::<f64>::init(&std, 3);
        std.update(&mut b, arr.slice(s![20.., ..]), 20);
        let text = serde_json::to_string(&b).expect("serialise");
        Aggregate::<f64>::merge(
            &std,
            &mut a,
            serde_json::from_str(&text).expect("deserialise"),
        );
        let got = Aggregate::<f64>::finish(&std, a, 50, 3).expect("finish");
        // Another split than the unsplit run: equal to rounding.
        let want = run1(ReduceOp::Std { ddof: 1 }, ReduceAxis::Axis0, &anyarr).expect("run");
        for (g, w) in f64s(&got).iter().zip(f64s(&want)) {
            assert!((g - w).abs() <= 1e-14 * w, "{g} vs {w}");
        }

        let ints = Array2::from_shape_fn((4, 2), |(r, c)| (r * 2 + c) as i16);
        let sum = Sum {
            axis: ReduceAxis::All,
        };
        let mut s = Aggregate::<i16>::init(&sum, 2);
        sum.update(&mut s, ints.view(), 0);
        assert_eq!(
            Aggregate::<i16>::finish(&sum, s, 4, 2)
                .expect("sum")
                .to_scalars(),
            vec![Scalar::Int(28)]
        );
        let am = ArgMax {
            axis: ReduceAxis::Axis1,
        };
        let mut s = Aggregate::<i16>::init(&sum, 2);
        sum.update(&mut s, ints.view(), 0);
        // A state of another reduction is refused, not misread.
        assert!(Aggregate::<i16>::finish(&am, s, 4, 2).is_err());

        let multi = Reductions {
            ops: vec![ReduceOp::Mean, ReduceOp::Std { ddof: 0 }],
            axis: ReduceAxis::All,
        };
        let mut s = Aggregate::<f64>::init(&multi, 3);
        multi.update(&mut s, arr.view(), 0);
        let out = Aggregate::<f64>::finish(&multi, s, 50, 3).expect("finish");
        let mean = Mean {
            axis: ReduceAxis::All,
        };
        let mut m = Aggregate::<f64>::init(&mean, 3);
        mean.update(&mut m, arr.view(), 0);
        assert_eq!(
            out[0],
            Aggregate::<f64>::finish(&mean, m, 50, 3).expect("mean")
        );
        assert!(
            Aggregate::<f64>::state_bytes(
                &Reduction {
                    op: ReduceOp::Sum,
                    axis: ReduceAxis::Axis1
                },
                3
            ) > 0
        );
        assert!(
            Aggregate::<f64>::state_bytes_per_row(
                &Reduction {
                    op: ReduceOp::Sum,
                    axis: ReduceAxis::Axis1
                },
                3
            ) >= 8
        );
        assert_eq!(Aggregate::<f64>::state_bytes_per_row(&mean, 3), 0);
    }
}
