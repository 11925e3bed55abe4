//! NumPy's reductions as mergeable partial states: `init` / `update(tile)` /
//! `merge` / `finish`.
//!
//! [`ReducerSet`] evaluates several [`ReduceOp`]s over one input (one dtype,
//! one [`ReduceAxis`]) with shared states: `mean` and `std` share one pass,
//! `min`, `max`, `nanmin` and `nanmax` share one state, and so on. The
//! engine calls [`ReducerSet::update`] with tiles of whole rows, merges the
//! per-block [`ReduceState`]s in block order and calls [`ReducerSet::finish`].
//!
//! Inside, each tile is matched on its dtype once and handed to generic,
//! monomorphised kernels over contiguous slices (`bool` reduced as `u8`,
//! `float16` converted to `f32` in a scratch buffer owned by the partial).
//! Semantics and numerics are documented on [`ReduceOp`] and in `sum.rs`.

pub mod all;
pub mod any;
pub mod count_nonzero;
pub mod ptp;

mod extreme;
mod kind;
mod num;
mod sum;
mod wire;

pub use self::kind::{ReduceKind, kind_named, kinds};

#[cfg(test)]
mod tests;

use std::fmt;

use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::{ArrayD, ArrayView2, IxDyn};
use outcore_chunker::DType;
use serde::{Deserialize, Serialize};

use self::extreme::{Arg, MinMax};
use self::num::Num;
use self::sum::{FSum, ISum, Mom};
use crate::error::{Error, Result};
use crate::value::{AnyArray, AnyView};

/// Calls `$body` with `$c` bound to the compute type of `$dtype`.
macro_rules! dispatch_dtype {
    ($dtype:expr, $c:ident => $body:expr) => {
        match $dtype {
            DType::Bool | DType::U8 => {
                type $c = u8;
                $body
            }
            DType::I8 => {
                type $c = i8;
                $body
            }
            DType::I16 => {
                type $c = i16;
                $body
            }
            DType::I32 => {
                type $c = i32;
                $body
            }
            DType::I64 => {
                type $c = i64;
                $body
            }
            DType::U16 => {
                type $c = u16;
                $body
            }
            DType::U32 => {
                type $c = u32;
                $body
            }
            DType::U64 => {
                type $c = u64;
                $body
            }
            DType::F16 | DType::F32 => {
                type $c = f32;
                $body
            }
            DType::F64 => {
                type $c = f64;
                $body
            }
        }
    };
}

/// Elements per tile the kernels work on at once (a block handed to
/// `update` is cut into tiles of whole rows of about this size, so the
/// passes of every state run on cache-resident data).
pub(crate) const TILE: usize = 4096;

/// One of NumPy's reductions.
///
/// Results follow NumPy (`np.sum`, `np.nanstd`, ...) with better numerics:
///
/// * **dtypes.** `sum`/`nansum` of bool and signed integers give `int64`, of
///   unsigned integers `uint64`, of floats `float64`. `mean`, `var`, `std`
///   and their nan-variants give `float64`. `min`, `max`, `nanmin`,
///   `nanmax` keep the input dtype. `argmin`/`argmax` give `int64` indices:
///   the flat C-order index over [`ReduceAxis::All`], the row per column for
///   [`ReduceAxis::Axis0`], the column per row for [`ReduceAxis::Axis1`].
/// * **Integer sums are exact** (accumulated in 128 bits). A sum that does
///   not fit the result dtype is an [`Error::IntegerOverflow`], where NumPy
///   would wrap silently.
/// * **Float sums** accumulate in `float64` (also for `float16` and
///   `float32` input), pairwise within a run and compensated across runs;
///   float16 does not overflow at 65504 as in NumPy. **Variances** use a
///   stable two-pass/Chan merge, never `E[x²] − E[x]²`. A variance past
///   float64's range (finite values near `1e308`) is `inf`, as NumPy's;
///   with a `±inf` among the values it is NaN, as NumPy's.
/// * **NaN** propagates through `sum`, `mean`, `min`, `max`, `var`, `std`;
///   `argmin`/`argmax` return the index of the first NaN. The nan-variants
///   skip NaN: `nansum` of nothing is 0, `nanmean`, `nanvar`, `nanstd`,
///   `nanmin`, `nanmax` of an all-NaN reduction are NaN. For integer and
///   bool input the nan-variants equal the plain ones.
/// * **Ties** in `argmin`/`argmax` go to the first occurrence.
/// * **Empty reductions**: `sum`, `nansum` give 0; `mean`, `var`, `std` (and
///   nan-variants) give NaN, as does `var`/`std` when `n − ddof ≤ 0`;
///   `min`, `max`, `nanmin`, `nanmax`, `argmin`, `argmax` fail with
///   [`Error::Empty`] when the reduced axis has length 0 (NumPy's
///   "zero-size array to reduction operation").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    /// `np.sum`.
    Sum,
    /// `np.mean`.
    Mean,
    /// `np.min`.
    Min,
    /// `np.max`.
    Max,
    /// `np.var(ddof=..)`: Σ(x − mean)² / (n − ddof).
    Var {
        /// Delta degrees of freedom (0: population variance, 1: sample).
        ddof: u32,
    },
    /// `np.std(ddof=..)`: the square root of [`ReduceOp::Var`].
    Std {
        /// Delta degrees of freedom.
        ddof: u32,
    },
    /// `np.argmin`.
    ArgMin,
    /// `np.argmax`.
    ArgMax,
    /// `np.nansum`: NaN counts as zero.
    NanSum,
    /// `np.nanmean`: the mean of the non-NaN elements.
    NanMean,
    /// `np.nanmin`: the minimum of the non-NaN elements.
    NanMin,
    /// `np.nanmax`: the maximum of the non-NaN elements.
    NanMax,
    /// `np.nanvar(ddof=..)`: the variance of the non-NaN elements.
    NanVar {
        /// Delta degrees of freedom.
        ddof: u32,
    },
    /// `np.nanstd(ddof=..)`: the standard deviation of the non-NaN elements.
    NanStd {
        /// Delta degrees of freedom.
        ddof: u32,
    },
}

impl ReduceOp {
    /// Every reduction, with `ddof` 0 where it applies.
    pub const ALL: [ReduceOp; 14] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Min,
        ReduceOp::Max,
        ReduceOp::Var { ddof: 0 },
        ReduceOp::Std { ddof: 0 },
        ReduceOp::ArgMin,
        ReduceOp::ArgMax,
        ReduceOp::NanSum,
        ReduceOp::NanMean,
        ReduceOp::NanMin,
        ReduceOp::NanMax,
        ReduceOp::NanVar { ddof: 0 },
        ReduceOp::NanStd { ddof: 0 },
    ];

    /// NumPy's name: `"sum"`, `"mean"`, `"min"`, `"max"`, `"var"`, `"std"`,
    /// `"argmin"`, `"argmax"`, `"nansum"`, `"nanmean"`, `"nanmin"`,
    /// `"nanmax"`, `"nanvar"`, `"nanstd"`.
    pub const fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
            ReduceOp::Var { .. } => "var",
            ReduceOp::Std { .. } => "std",
            ReduceOp::ArgMin => "argmin",
            ReduceOp::ArgMax => "argmax",
            ReduceOp::NanSum => "nansum",
            ReduceOp::NanMean => "nanmean",
            ReduceOp::NanMin => "nanmin",
            ReduceOp::NanMax => "nanmax",
            ReduceOp::NanVar { .. } => "nanvar",
            ReduceOp::NanStd { .. } => "nanstd",
        }
    }

    /// The reduction called `name` (see [`ReduceOp::name`]; ASCII case is
    /// ignored). `ddof` is used by the var/std variants and ignored by the
    /// others.
    pub fn parse(name: &str, ddof: u32) -> Option<ReduceOp> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "sum" => ReduceOp::Sum,
            "mean" => ReduceOp::Mean,
            "min" => ReduceOp::Min,
            "max" => ReduceOp::Max,
            "var" => ReduceOp::Var { ddof },
            "std" => ReduceOp::Std { ddof },
            "argmin" => ReduceOp::ArgMin,
            "argmax" => ReduceOp::ArgMax,
            "nansum" => ReduceOp::NanSum,
            "nanmean" => ReduceOp::NanMean,
            "nanmin" => ReduceOp::NanMin,
            "nanmax" => ReduceOp::NanMax,
            "nanvar" => ReduceOp::NanVar { ddof },
            "nanstd" => ReduceOp::NanStd { ddof },
            _ => return None,
        })
    }

    /// The `ddof` of the var/std variants.
    pub const fn ddof(self) -> Option<u32> {
        match self {
            ReduceOp::Var { ddof }
            | ReduceOp::Std { ddof }
            | ReduceOp::NanVar { ddof }
            | ReduceOp::NanStd { ddof } => Some(ddof),
            _ => None,
        }
    }

    /// True for the NaN-skipping variants (`nansum`, ..., `nanstd`).
    pub const fn skips_nan(self) -> bool {
        matches!(
            self,
            ReduceOp::NanSum
                | ReduceOp::NanMean
                | ReduceOp::NanMin
                | ReduceOp::NanMax
                | ReduceOp::NanVar { .. }
                | ReduceOp::NanStd { .. }
        )
    }

    /// The dtype of the result for an input of dtype `input`.
    pub const fn result_dtype(self, input: DType) -> DType {
        match self {
            ReduceOp::Sum | ReduceOp::NanSum => {
                if input.is_float() {
                    DType::F64
                } else if input.is_unsigned_int() {
                    DType::U64
                } else {
                    DType::I64
                }
            }
            ReduceOp::Min | ReduceOp::Max | ReduceOp::NanMin | ReduceOp::NanMax => input,
            ReduceOp::ArgMin | ReduceOp::ArgMax => DType::I64,
            ReduceOp::Mean
            | ReduceOp::NanMean
            | ReduceOp::Var { .. }
            | ReduceOp::Std { .. }
            | ReduceOp::NanVar { .. }
            | ReduceOp::NanStd { .. } => DType::F64,
        }
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which elements reduce together, for a `rows × row_len` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceAxis {
    /// Over every element: a 0-d result.
    All,
    /// Down the rows, one result per column (`axis=0`): length `row_len`.
    Axis0,
    /// Along each row, one result per row (`axis=1`): length `rows`.
    Axis1,
}

/// Which states a set of reductions needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Needs {
    /// Float sum with NaN (sum, mean).
    fsum: bool,
    /// Float sum skipping NaN, with counts (nansum, nanmean).
    nsum: bool,
    /// Exact integer sum (sum, mean, nansum, nanmean of integers and bool).
    isum: bool,
    /// Moments with NaN (var, std; nanvar, nanstd of integers and bool).
    mom: bool,
    /// Moments skipping NaN (nanvar, nanstd of floats).
    nmom: bool,
    /// min/nanmin.
    min: bool,
    /// max/nanmax.
    max: bool,
    amin: bool,
    amax: bool,
}

/// What a partial state computes: axis, input dtype, row length, states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Plan {
    axis: ReduceAxis,
    #[serde(with = "wire::dtype")]
    input: DType,
    row_len: usize,
    need: Needs,
}

impl Plan {
    pub(crate) fn new(ops: &[ReduceOp], axis: ReduceAxis, input: DType, row_len: usize) -> Plan {
        let float = input.is_float();
        let mut need = Needs::default();
        for &op in ops {
            match op {
                ReduceOp::Sum | ReduceOp::Mean if float => need.fsum = true,
                ReduceOp::NanSum | ReduceOp::NanMean if float => need.nsum = true,
                ReduceOp::Sum | ReduceOp::Mean | ReduceOp::NanSum | ReduceOp::NanMean => {
                    need.isum = true;
                }
                ReduceOp::NanVar { .. } | ReduceOp::NanStd { .. } if float => need.nmom = true,
                ReduceOp::Var { .. }
                | ReduceOp::Std { .. }
                | ReduceOp::NanVar { .. }
                | ReduceOp::NanStd { .. } => need.mom = true,
                ReduceOp::Min | ReduceOp::NanMin => need.min = true,
                ReduceOp::Max | ReduceOp::NanMax => need.max = true,
                ReduceOp::ArgMin => need.amin = true,
                ReduceOp::ArgMax => need.amax = true,
            }
        }
        // A float variance over all elements that overflows is NaN where
        // NumPy's mean is NaN, which the sum tells (computed anyway by the
        // moments' first pass over each run; see `sum`).
        if axis == ReduceAxis::All && float {
            need.fsum |= need.mom;
            need.nsum |= need.nmom;
        }
        Plan {
            axis,
            input,
            row_len,
            need,
        }
    }

    /// Outputs held by a state covering `rows` rows.
    fn outputs(&self, rows: usize) -> usize {
        match self.axis {
            ReduceAxis::All => 1,
            ReduceAxis::Axis0 => self.row_len,
            ReduceAxis::Axis1 => rows,
        }
    }

    /// Bytes of state per output.
    fn bytes_per_output(&self) -> usize {
        fn typed<C: Num>(p: &Plan) -> usize {
            let (ax, nd) = (p.axis, p.need);
            let mut b = 0;
            if nd.fsum {
                b += FSum::bytes_per_output(ax, false);
            }
            if nd.nsum {
                b += FSum::bytes_per_output(ax, true);
            }
            if nd.isum {
                b += ISum::bytes_per_output(ax);
            }
            if nd.mom {
                b += Mom::bytes_per_output(ax, false);
            }
            if nd.nmom {
                b += Mom::bytes_per_output(ax, true);
            }
            if nd.min || nd.max {
                b += MinMax::<C>::bytes_per_output(nd.min, nd.max);
            }
            b += Arg::<C>::bytes_per_output(ax) * (usize::from(nd.amin) + usize::from(nd.amax));
            b
        }
        dispatch_dtype!(self.input, C => typed::<C>(self))
    }

    /// Bytes one partial occupies when it covers `block_rows` rows.
    pub(crate) fn state_bytes(&self, block_rows: usize) -> usize {
        let scratch = if self.input == DType::F16 {
            4 * TILE.max(self.row_len)
        } else {
            0
        };
        let per_output = self.bytes_per_output();
        let fixed = std::mem::size_of::<ReduceState>() + scratch;
        match self.axis {
            // Per-row results grow by doubling: count the slack.
            ReduceAxis::Axis1 => fixed + 2 * block_rows * per_output,
            _ => fixed + self.outputs(0) * per_output,
        }
    }

    /// Bytes an Axis1 state adds per row covered (0 for the other axes).
    pub(crate) fn state_bytes_per_row(&self) -> usize {
        if self.axis == ReduceAxis::Axis1 {
            2 * self.bytes_per_output()
        } else {
            0
        }
    }
}

/// A run of whole rows, contiguous in C order.
pub(crate) struct Tile<'a, C> {
    /// `nrows × row_len` elements.
    pub(crate) xs: &'a [C],
    pub(crate) nrows: usize,
    pub(crate) row_len: usize,
    /// Global index of the first row.
    pub(crate) first_row: u64,
}

impl<'a, C> Tile<'a, C> {
    /// Rows the Axis0 kernels sweep at once: [`sum::ROWS`] (the per-column
    /// state is loaded and stored once per sweep) when rows are tiny (the
    /// rows of a sweep share a few cache lines) or span whole pages; one
    /// otherwise. Rows of 256 B to 4 KiB swept together make several
    /// ascending streams inside each 4 KiB page, which the hardware
    /// prefetcher (one stream per page) does not follow: measured 25–40 %
    /// slower from memory, though faster in cache.
    #[inline]
    pub(crate) fn sweep(&self) -> usize {
        let bytes = self.row_len * std::mem::size_of::<C>();
        if bytes <= 256 || bytes >= 4096 {
            sum::ROWS
        } else {
            1
        }
    }

    /// Row `i` of the tile.
    #[inline(always)]
    pub(crate) fn row(&self, i: usize) -> &'a [C] {
        &self.xs[i * self.row_len..(i + 1) * self.row_len]
    }

    /// The rows (empty slices when `row_len` is 0).
    pub(crate) fn rows(&self) -> impl Iterator<Item = &'a [C]> + use<'a, C> {
        let (xs, n) = (self.xs, self.row_len);
        (0..self.nrows).map(move |r| &xs[r * n..(r + 1) * n])
    }
}

/// The states of one compute type.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
struct Typed<C: Num> {
    fsum: Option<FSum>,
    nsum: Option<FSum>,
    isum: Option<ISum>,
    mom: Option<Mom>,
    nmom: Option<Mom>,
    mm: Option<MinMax<C>>,
    amin: Option<Arg<C>>,
    amax: Option<Arg<C>>,
}

impl<C: Num> Typed<C> {
    fn new(p: &Plan) -> Self {
        let (ax, n, nd) = (p.axis, p.row_len, p.need);
        Typed {
            fsum: nd.fsum.then(|| FSum::new(ax, n, false)),
            nsum: nd.nsum.then(|| FSum::new(ax, n, true)),
            isum: nd.isum.then(|| ISum::new(ax, n, C::WIDE)),
            mom: nd.mom.then(|| Mom::new(ax, n, false)),
            nmom: nd.nmom.then(|| Mom::new(ax, n, true)),
            mm: (nd.min || nd.max).then(|| MinMax::new(ax, n, nd.min, nd.max)),
            amin: nd.amin.then(Arg::new),
            amax: nd.amax.then(Arg::new),
        }
    }

    /// True when the states fit the plan (checked on deserialisation).
    fn is_consistent(&self, p: &Plan, rows: u64) -> bool {
        let (ax, nd) = (p.axis, p.need);
        let outs = p.outputs(rows as usize);
        fn opt<S>(s: &Option<S>, need: bool, ok: impl Fn(&S) -> bool) -> bool {
            match s {
                Some(s) => need && ok(s),
                None => !need,
            }
        }
        opt(&self.fsum, nd.fsum, |s| s.is_consistent(ax, outs, false))
            && opt(&self.nsum, nd.nsum, |s| s.is_consistent(ax, outs, true))
            && opt(&self.isum, nd.isum, |s| s.is_consistent(ax, outs, C::WIDE))
            && opt(&self.mom, nd.mom, |s| s.is_consistent(ax, outs, false))
            && opt(&self.nmom, nd.nmom, |s| s.is_consistent(ax, outs, true))
            && opt(&self.mm, nd.min || nd.max, |s| {
                s.is_consistent(outs, nd.min, nd.max)
            })
            && opt(&self.amin, nd.amin, |s| s.is_consistent(ax, outs))
            && opt(&self.amax, nd.amax, |s| s.is_consistent(ax, outs))
    }

    /// Updates every state with one tile.
    fn update_tile(&mut self, ax: ReduceAxis, t: &Tile<'_, C>) {
        if self.fsum.is_some() || self.mom.is_some() {
            sum::update_float::<C, false>(self.fsum.as_mut(), self.mom.as_mut(), ax, t);
        }
        if self.nsum.is_some() || self.nmom.is_some() {
            sum::update_float::<C, true>(self.nsum.as_mut(), self.nmom.as_mut(), ax, t);
        }
        if let Some(s) = &mut self.isum {
            s.update(ax, t);
        }
        if let Some(s) = &mut self.mm {
            s.update(ax, t);
        }
        if let Some(s) = &mut self.amin {
            s.update::<false>(ax, t);
        }
        if let Some(s) = &mut self.amax {
            s.update::<true>(ax, t);
        }
    }

    /// Updates with `nrows` whole rows, cut into tiles of about [`TILE`]
    /// elements.
    fn update(&mut self, p: &Plan, xs: &[C], nrows: usize, first_row: u64) {
        let n = p.row_len;
        let per_tile = TILE.checked_div(n).map_or(nrows, |g| g.max(1)).max(1);
        let mut r = 0;
        while r < nrows {
            let take = per_tile.min(nrows - r);
            let t = Tile {
                xs: &xs[r * n..(r + take) * n],
                nrows: take,
                row_len: n,
                first_row: first_row + r as u64,
            };
            self.update_tile(p.axis, &t);
            r += take;
        }
    }

    fn flush(&mut self) {
        if let Some(s) = &mut self.fsum {
            s.flush();
        }
        if let Some(s) = &mut self.nsum {
            s.flush();
        }
        if let Some(s) = &mut self.isum {
            s.flush();
        }
        if let Some(s) = &mut self.mom {
            s.flush(false);
        }
        if let Some(s) = &mut self.nmom {
            s.flush(true);
        }
    }

    /// Merges the states of the rows that follow.
    fn merge(&mut self, ax: ReduceAxis, mut next: Typed<C>) {
        self.flush();
        next.flush();
        fn both<S>(a: &mut Option<S>, b: Option<S>, f: impl FnOnce(&mut S, S)) {
            if let (Some(a), Some(b)) = (a, b) {
                f(a, b);
            }
        }
        both(&mut self.fsum, next.fsum, |a, b| a.merge(ax, b));
        both(&mut self.nsum, next.nsum, |a, b| a.merge(ax, b));
        both(&mut self.isum, next.isum, |a, b| a.merge(ax, b));
        both(&mut self.mom, next.mom, |a, b| a.merge(ax, b));
        both(&mut self.nmom, next.nmom, |a, b| a.merge(ax, b));
        both(&mut self.mm, next.mm, |a, b| a.merge(ax, b));
        both(&mut self.amin, next.amin, |a, b| a.merge::<false>(ax, b));
        both(&mut self.amax, next.amax, |a, b| a.merge::<true>(ax, b));
    }

    /// The results, one per op.
    fn finish(mut self, p: &Plan, ops: &[ReduceOp], rows: u64) -> Result<Vec<AnyArray>> {
        self.flush();
        let n = p.row_len;
        let (shape, count, empty): (Vec<usize>, u64, Option<&'static str>) = match p.axis {
            ReduceAxis::All => {
                let total = rows * n as u64;
                (vec![], total, (total == 0).then_some("array"))
            }
            ReduceAxis::Axis0 => (vec![n], rows, (rows == 0).then_some("axis")),
            ReduceAxis::Axis1 => (vec![rows as usize], n as u64, (n == 0).then_some("axis")),
        };
        let outs = p.outputs(rows as usize);
        let missing = || Error::Invalid("reduction state is missing a component".into());
        let f64_array = |v: Vec<f64>| -> Result<AnyArray> { Ok(AnyArray::from(array(&shape, v)?)) };
        let mut out = Vec::with_capacity(ops.len());
        for &op in ops {
            let float = p.input.is_float();
            let result = match op {
                ReduceOp::Sum | ReduceOp::NanSum if !float => {
                    let s = self.isum.as_ref().ok_or_else(missing)?;
                    if p.input.is_unsigned_int() {
                        let v = s
                            .values()
                            .iter()
                            .map(|&x| u64::try_from(x).map_err(|_| overflow(op, "uint64", x)))
                            .collect::<Result<Vec<u64>>>()?;
                        AnyArray::from(array(&shape, v)?)
                    } else {
                        let v = s
                            .values()
                            .iter()
                            .map(|&x| i64::try_from(x).map_err(|_| overflow(op, "int64", x)))
                            .collect::<Result<Vec<i64>>>()?;
                        AnyArray::from(array(&shape, v)?)
                    }
                }
                ReduceOp::Mean | ReduceOp::NanMean if !float => {
                    let s = self.isum.as_ref().ok_or_else(missing)?;
                    f64_array(
                        s.values()
                            .iter()
                            .map(|&x| x as f64 / count as f64)
                            .collect(),
                    )?
                }
                ReduceOp::Sum => f64_array(self.fsum.as_ref().ok_or_else(missing)?.values())?,
                ReduceOp::NanSum => f64_array(self.nsum.as_ref().ok_or_else(missing)?.values())?,
                ReduceOp::Mean => {
                    let s = self.fsum.as_ref().ok_or_else(missing)?;
                    f64_array(s.values().into_iter().map(|x| x / count as f64).collect())?
                }
                ReduceOp::NanMean => {
                    let s = self.nsum.as_ref().ok_or_else(missing)?;
                    let v = s
                        .values()
                        .into_iter()
                        .zip(s.counts())
                        .map(|(x, &k)| x / k as f64);
                    f64_array(v.collect())?
                }
                ReduceOp::Var { ddof }
                | ReduceOp::Std { ddof }
                | ReduceOp::NanVar { ddof }
                | ReduceOp::NanStd { ddof } => {
                    let m = if op.skips_nan() && float {
                        &self.nmom
                    } else {
                        &self.mom
                    };
                    let m = m.as_ref().ok_or_else(missing)?;
                    let sqrt = matches!(op, ReduceOp::Std { .. } | ReduceOp::NanStd { .. });
                    // Over All, a non-finite M2 is NaN where NumPy's mean is.
                    let sums = match (p.axis, op.skips_nan()) {
                        (ReduceAxis::All, false) => self.fsum.as_ref().map(FSum::values),
                        (ReduceAxis::All, true) => self.nsum.as_ref().map(FSum::values),
                        _ => None,
                    };
                    f64_array(m.variances(n, ddof, sqrt, sums.as_deref()))?
                }
                ReduceOp::Min | ReduceOp::Max | ReduceOp::NanMin | ReduceOp::NanMax => {
                    if let Some(what) = empty {
                        return Err(Error::Empty {
                            op: op.name().into(),
                            what,
                        });
                    }
                    let m = self.mm.as_ref().ok_or_else(missing)?;
                    let vals = if matches!(op, ReduceOp::Min | ReduceOp::NanMin) {
                        m.min()
                    } else {
                        m.max()
                    };
                    let v = vals.iter().enumerate().map(|(i, &x)| {
                        let nans = m.nans(i);
                        let is_nan = if op.skips_nan() {
                            nans == count
                        } else {
                            nans > 0
                        };
                        if is_nan { C::NAN } else { x }
                    });
                    C::into_any(array(&shape, v.collect())?, p.input)
                }
                ReduceOp::ArgMin | ReduceOp::ArgMax => {
                    if let Some(what) = empty {
                        return Err(Error::Empty {
                            op: op.name().into(),
                            what,
                        });
                    }
                    let a = if op == ReduceOp::ArgMin {
                        &self.amin
                    } else {
                        &self.amax
                    };
                    let a = a.as_ref().ok_or_else(missing)?;
                    if a.indices().len() != outs {
                        return Err(missing());
                    }
                    AnyArray::from(array(
                        &shape,
                        a.indices().iter().map(|&i| i as i64).collect(),
                    )?)
                }
            };
            out.push(result);
        }
        Ok(out)
    }
}

fn overflow(op: ReduceOp, dtype: &'static str, value: i128) -> Error {
    Error::IntegerOverflow {
        op: op.name().into(),
        dtype,
        value: value.to_string(),
    }
}

fn array<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| {
        Error::Invalid(format!(
            "reduction state does not match the result shape: {e}"
        ))
    })
}

/// The states of a partial, by compute type.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Data {
    U8(Typed<u8>),
    I8(Typed<i8>),
    I16(Typed<i16>),
    I32(Typed<i32>),
    I64(Typed<i64>),
    U16(Typed<u16>),
    U32(Typed<u32>),
    U64(Typed<u64>),
    F32(Typed<f32>),
    F64(Typed<f64>),
}

/// Calls `$body` with `$t` bound to the `Typed` states inside `$data`.
macro_rules! with_typed {
    ($data:expr, $t:ident => $body:expr) => {
        match $data {
            Data::U8($t) => $body,
            Data::I8($t) => $body,
            Data::I16($t) => $body,
            Data::I32($t) => $body,
            Data::I64($t) => $body,
            Data::U16($t) => $body,
            Data::U32($t) => $body,
            Data::U64($t) => $body,
            Data::F32($t) => $body,
            Data::F64($t) => $body,
        }
    };
}

/// Calls `$body` with `$a`, `$b` bound to the `Typed` states of two
/// partials of the same compute type, `$else` when they differ.
macro_rules! with_typed_pair {
    ($pair:expr, $a:ident, $b:ident => $body:expr, else $other:expr) => {
        match $pair {
            (Data::U8($a), Data::U8($b)) => $body,
            (Data::I8($a), Data::I8($b)) => $body,
            (Data::I16($a), Data::I16($b)) => $body,
            (Data::I32($a), Data::I32($b)) => $body,
            (Data::I64($a), Data::I64($b)) => $body,
            (Data::U16($a), Data::U16($b)) => $body,
            (Data::U32($a), Data::U32($b)) => $body,
            (Data::U64($a), Data::U64($b)) => $body,
            (Data::F32($a), Data::F32($b)) => $body,
            (Data::F64($a), Data::F64($b)) => $body,
            _ => $other,
        }
    };
}

impl Data {
    fn new(p: &Plan) -> Data {
        match p.input {
            DType::Bool | DType::U8 => Data::U8(Typed::new(p)),
            DType::I8 => Data::I8(Typed::new(p)),
            DType::I16 => Data::I16(Typed::new(p)),
            DType::I32 => Data::I32(Typed::new(p)),
            DType::I64 => Data::I64(Typed::new(p)),
            DType::U16 => Data::U16(Typed::new(p)),
            DType::U32 => Data::U32(Typed::new(p)),
            DType::U64 => Data::U64(Typed::new(p)),
            DType::F16 | DType::F32 => Data::F32(Typed::new(p)),
            DType::F64 => Data::F64(Typed::new(p)),
        }
    }

    /// True when the variant is the compute type of `input`.
    fn matches(&self, input: DType) -> bool {
        matches!(
            (self, input),
            (Data::U8(_), DType::Bool | DType::U8)
                | (Data::I8(_), DType::I8)
                | (Data::I16(_), DType::I16)
                | (Data::I32(_), DType::I32)
                | (Data::I64(_), DType::I64)
                | (Data::U16(_), DType::U16)
                | (Data::U32(_), DType::U32)
                | (Data::U64(_), DType::U64)
                | (Data::F32(_), DType::F16 | DType::F32)
                | (Data::F64(_), DType::F64)
        )
    }
}

/// The partial state of a [`ReducerSet`] (and of the engine's built-in
/// aggregates) over a contiguous run of rows: opaque, serialisable.
///
/// Serialisable: floats travel as bit patterns, so NaN and infinity survive
/// JSON. Misuse (a tile of the wrong dtype or width, rows out of order, a
/// merge of states of different reductions) is recorded and reported as
/// [`Error::Invalid`] by `finish`, never a panic.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "StateWire")]
pub struct ReduceState {
    plan: Plan,
    /// Global index of the first row covered.
    start: u64,
    /// Rows covered.
    rows: u64,
    data: Data,
    /// The first misuse seen.
    error: Option<String>,
    /// float16 → f32 conversion buffer.
    #[serde(skip)]
    scratch: Vec<f32>,
}

/// The serialised form of [`ReduceState`], validated on the way in.
#[derive(Deserialize)]
struct StateWire {
    plan: Plan,
    start: u64,
    rows: u64,
    data: Data,
    error: Option<String>,
}

impl TryFrom<StateWire> for ReduceState {
    type Error = String;

    fn try_from(w: StateWire) -> std::result::Result<ReduceState, String> {
        let ok = w.data.matches(w.plan.input)
            && with_typed!(&w.data, t => t.is_consistent(&w.plan, w.rows));
        if !ok {
            return Err(format!(
                "inconsistent reduction state ({} rows of {} {:?})",
                w.rows, w.plan.input, w.plan.axis
            ));
        }
        Ok(ReduceState {
            plan: w.plan,
            start: w.start,
            rows: w.rows,
            data: w.data,
            error: w.error,
            scratch: Vec::new(),
        })
    }
}

/// Calls `f` with the elements of `v` in C order: the view's own slice when
/// it is contiguous (tiles always are), else a copy.
fn with_slice<T: Copy, R>(v: ArrayView2<'_, T>, f: impl FnOnce(&[T]) -> R) -> R {
    match v.to_slice() {
        Some(xs) => f(xs),
        None => f(&v.iter().copied().collect::<Vec<T>>()),
    }
}

impl ReduceState {
    pub(crate) fn new(plan: Plan) -> ReduceState {
        ReduceState {
            plan,
            start: 0,
            rows: 0,
            data: Data::new(&plan),
            error: None,
            scratch: Vec::new(),
        }
    }

    /// Adds the rows `first_row .. first_row + tile.nrows()` (the same as
    /// [`ReducerSet::update`]).
    pub fn update(&mut self, tile: AnyView<'_>, first_row: u64) {
        if self.error.is_some() {
            return;
        }
        let p = self.plan;
        if tile.dtype() != p.input || tile.ncols() != p.row_len {
            self.error = Some(format!(
                "a reduction over {} rows of length {} was given a {} tile of {} columns",
                p.input,
                p.row_len,
                tile.dtype(),
                tile.ncols()
            ));
            return;
        }
        if self.rows > 0 && first_row != self.start + self.rows {
            self.error = Some(format!(
                "rows out of order: expected row {}, got row {first_row}",
                self.start + self.rows
            ));
            return;
        }
        let nrows = tile.nrows();
        let scratch = &mut self.scratch;
        match (&mut self.data, tile) {
            (Data::U8(t), AnyView::Bool(v)) => {
                with_slice(v, |xs| {
                    t.update(&p, bytemuck::cast_slice(xs), nrows, first_row)
                });
            }
            (Data::U8(t), AnyView::U8(v)) => with_slice(v, |xs| t.update(&p, xs, nrows, first_row)),
            (Data::I8(t), AnyView::I8(v)) => with_slice(v, |xs| t.update(&p, xs, nrows, first_row)),
            (Data::I16(t), AnyView::I16(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::I32(t), AnyView::I32(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::I64(t), AnyView::I64(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::U16(t), AnyView::U16(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::U32(t), AnyView::U32(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::U64(t), AnyView::U64(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::F32(t), AnyView::F32(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::F64(t), AnyView::F64(v)) => {
                with_slice(v, |xs| t.update(&p, xs, nrows, first_row))
            }
            (Data::F32(t), AnyView::F16(v)) => {
                with_slice(v, |xs| update_f16(&p, t, scratch, xs, nrows, first_row));
            }
            _ => {
                self.error = Some("reduction state of the wrong dtype".into());
                return;
            }
        }
        if self.rows == 0 {
            self.start = first_row;
        }
        self.rows += nrows as u64;
    }

    /// Merges `next`, the state of the rows right after those of `self`
    /// (the same as [`ReducerSet::merge`]).
    pub fn merge(&mut self, next: ReduceState) {
        if self.error.is_some() {
            return;
        }
        if next.error.is_some() {
            self.error = next.error;
            return;
        }
        if self.plan != next.plan {
            self.error = Some("merged the states of two different reductions".into());
            return;
        }
        if next.rows == 0 {
            return;
        }
        if self.rows == 0 {
            let scratch = std::mem::take(&mut self.scratch);
            *self = next;
            if self.scratch.capacity() < scratch.capacity() {
                self.scratch = scratch;
            }
            return;
        }
        if next.start != self.start + self.rows {
            self.error = Some(format!(
                "states merged out of order: rows {}..{} then rows {}..{}",
                self.start,
                self.start + self.rows,
                next.start,
                next.start + next.rows
            ));
            return;
        }
        let ax = self.plan.axis;
        let ok = with_typed_pair!((&mut self.data, next.data), a, b => { a.merge(ax, b); true }, else false);
        if !ok {
            self.error = Some("merged the states of two different reductions".into());
            return;
        }
        self.rows += next.rows;
    }

    /// The results of `ops` (which must be the ops `plan` was built from)
    /// for an array of `rows` rows.
    pub(crate) fn finish(
        mut self,
        plan: &Plan,
        ops: &[ReduceOp],
        rows: u64,
    ) -> Result<Vec<AnyArray>> {
        if let Some(e) = self.error {
            return Err(Error::Invalid(e));
        }
        if self.plan != *plan {
            return Err(Error::Invalid(
                "the reduction state belongs to a different reduction (axis, dtype, row length or ops differ)".into(),
            ));
        }
        if self.rows != rows || (rows > 0 && self.start != 0) {
            if plan.row_len == 0 && self.rows <= rows {
                // Zero-width rows need no data; the engine may skip them.
                let missing = rows - self.rows;
                let p = self.plan;
                with_typed!(&mut self.data, t => t.update(&p, &[], missing as usize, self.rows));
            } else {
                return Err(Error::Invalid(format!(
                    "the reduction state covers rows {}..{}, but the array has {rows} rows",
                    self.start,
                    self.start + self.rows
                )));
            }
        }
        let p = self.plan;
        with_typed!(self.data, t => t.finish(&p, ops, rows))
    }
}

/// float16 tiles: converted to f32 tile by tile in the partial's scratch
/// buffer, then reduced as f32 (exact: every f16 is an f32).
fn update_f16(
    p: &Plan,
    t: &mut Typed<f32>,
    scratch: &mut Vec<f32>,
    xs: &[f16],
    nrows: usize,
    first_row: u64,
) {
    let n = p.row_len;
    if n == 0 {
        t.update(p, &[], nrows, first_row);
        return;
    }
    let per_tile = (TILE / n).max(1);
    for (i, part) in xs.chunks(per_tile * n).enumerate() {
        if scratch.len() < part.len() {
            scratch.resize(part.len(), 0.0);
        }
        let buf = &mut scratch[..part.len()];
        part.convert_to_f32_slice(buf);
        t.update(p, buf, part.len() / n, first_row + (i * per_tile) as u64);
    }
}

/// Several reductions over one input (one dtype, one axis), sharing their
/// states: `mean` and `std` cost one sweep, `min` and `max` one state.
#[derive(Clone, Debug)]
pub struct ReducerSet {
    ops: Vec<ReduceOp>,
    plan: Plan,
    rows: u64,
}

impl ReducerSet {
    /// The reductions `ops` along `axis` of a `rows × row_len` array of
    /// dtype `input`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when `rows × row_len` overflows.
    pub fn new(
        ops: &[ReduceOp],
        axis: ReduceAxis,
        input: DType,
        rows: u64,
        row_len: usize,
    ) -> Result<ReducerSet> {
        if rows.checked_mul(row_len as u64).is_none() || usize::try_from(rows).is_err() {
            return Err(Error::Invalid(format!(
                "array of {rows} × {row_len} elements is too large"
            )));
        }
        Ok(ReducerSet {
            ops: ops.to_vec(),
            plan: Plan::new(ops, axis, input, row_len),
            rows,
        })
    }

    /// Bytes one partial occupies when it covers a block of `block_rows`
    /// rows (Axis1 partials hold one result per row; float16 partials a
    /// conversion buffer of one tile).
    pub fn state_bytes(&self, block_rows: usize) -> usize {
        self.plan.state_bytes(block_rows)
    }

    /// The dtype of `op`'s result for input of dtype `input` (as
    /// [`ReduceOp::result_dtype`]).
    pub fn result_dtype(op: ReduceOp, input: DType) -> DType {
        op.result_dtype(input)
    }

    /// Bytes an [`ReduceAxis::Axis1`] state adds per row it covers (one
    /// result per row; 0 for the other axes).
    pub fn state_bytes_per_row(&self) -> usize {
        self.plan.state_bytes_per_row()
    }

    /// The reductions, in the order of [`ReducerSet::finish`]'s results.
    pub fn ops(&self) -> &[ReduceOp] {
        &self.ops
    }

    /// An empty partial state.
    pub fn init(&self) -> ReduceState {
        ReduceState::new(self.plan)
    }

    /// Adds the rows `first_row .. first_row + tile.nrows()` (all `row_len`
    /// columns) to `partial`. Successive calls on one partial must come in
    /// increasing, contiguous row order. Misuse is reported by `finish`.
    pub fn update(&self, partial: &mut ReduceState, tile: AnyView<'_>, first_row: u64) {
        partial.update(tile, first_row);
    }

    /// Merges `next`, which covers the rows right after those of `into`.
    pub fn merge(&self, into: &mut ReduceState, next: ReduceState) {
        into.merge(next);
    }

    /// One result per op, in the order of `ops`: shape `[]` for All,
    /// `[row_len]` for Axis0, `[rows]` for Axis1.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] for min/max/argmin/argmax-like ops over a
    /// zero-length reduction, [`Error::IntegerOverflow`] for an exact integer
    /// sum that does not fit its dtype, [`Error::Invalid`] for a partial that
    /// does not cover rows `0..rows` or was misused.
    pub fn finish(&self, partial: ReduceState) -> Result<Vec<AnyArray>> {
        partial.finish(&self.plan, &self.ops, self.rows)
    }
}

impl crate::kernel::Kernel for ReducerSet {
    type State = ReduceState;

    fn init(&self) -> ReduceState {
        ReducerSet::init(self)
    }

    fn update(&self, state: &mut ReduceState, block: AnyView<'_>, first_row: u64) {
        state.update(block, first_row);
    }

    fn merge(&self, into: &mut ReduceState, next: ReduceState) {
        into.merge(next);
    }

    fn finish(&self, state: ReduceState) -> Result<Vec<AnyArray>> {
        ReducerSet::finish(self, state)
    }

    fn state_bytes(&self, rows: u64) -> u64 {
        ReducerSet::state_bytes(self, rows.min(usize::MAX as u64) as usize) as u64
    }
}
