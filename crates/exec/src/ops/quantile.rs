//! Exact quantiles and medians along axis 0, axis 1 or over all
//! elements, equal to `np.quantile(x, q, axis)` (default "linear" method,
//! `q` a Python float), `np.median(x, axis)` and their nan-variants
//! `np.nanquantile` / `np.nanmedian` (NaN skipped; NaN only where a
//! column holds nothing else).
//!
//! Along axis 1 each row is one selection problem: one streamed pass
//! copies each row (its NaN left out when skipped) into a buffer reserved
//! per block in flight and selects its ranks there ([`Method::Rows`]).
//! Along axis 0 and over all elements:
//!
//! Only a few order statistics per column are needed — the values of
//! rank `floor((n-1)q)` and the next — so the data is not sorted. Each
//! value is mapped to an order-preserving integer key (see
//! [`outcore_kernels::key`]) and the ranks are found by **radix selection** over
//! read-only passes:
//!
//! 1. one pass finds each column's smallest and largest key and counts
//!    NaNs (a column with a NaN has a NaN quantile, as in NumPy; skipping
//!    NaN, each column's ranks come from its own count — NaN keys are
//!    the largest, so they never fall in an interval searched);
//! 2. each further pass splits the key interval still holding a wanted
//!    rank into up to 4096 buckets (a histogram per column and interval,
//!    merged over blocks) and keeps the bucket holding the rank — the
//!    interval shrinks by 12 bits of key per pass, usually far more in
//!    count;
//! 3. once the values left in the intervals fit in a fraction of the
//!    budget, one last pass collects them and the ranks are picked
//!    exactly in memory (an interval narrowed to a single key needs no
//!    collection at all).
//!
//! Everything selection holds is counted before anything is read: per
//! column and rank, the rank values, the results, the targets, their
//! intervals and lookup tables (held through all passes), and for each
//! pass its merged state and one per block in flight. When the worst
//! case — an interval per column and rank, histograms of 16 buckets —
//! cannot fit the budget (very many columns under a small limit: rows of
//! millions of values), the external sort ([`super::sort`]) is used
//! instead and the ranks are read from the sorted columns, a stripe of
//! short columns per mapped window. When neither fits, the computation is
//! refused before reading with [`Error::LimitTooSmall`], naming the
//! smallest limit with which one of them runs ([`plan`]).
//!
//! The ranks are then combined exactly as NumPy does: `_lerp` in the
//! input's float type (float16 and float32 arithmetic rounded at each
//! step, `t` rounded to the type), float64 for integers; the median is
//! NumPy's mean of the middle values (float32 accumulation for float16).

use half::f16;
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::{ArrayFile, DType};
use outcore_spill::Consumer;

use super::kind::{Quantile, QuantileMethod, quantile_dtype};
use super::{PAGE, reserve_slots, stream_file};
use crate::error::{Error, Result};
use crate::report::RunReport;
use crate::runtime::Runtime;
use outcore_kernels::ReduceAxis;
use outcore_kernels::key::SortKey;
use outcore_kernels::{AnyArray, DynElement};

/// Pushes the ranks quantile `q` reads, for `n` values, onto `out`.
fn push_ranks(q: Quantile, n: u64, out: &mut Vec<u64>) {
    if n == 0 {
        return;
    }
    match q.base() {
        Quantile::Linear(q) => {
            let (lo, hi, _) = linear_index(n, q);
            out.extend([lo, hi]);
        }
        _ if n % 2 == 1 => out.push(n / 2),
        _ => out.extend([n / 2 - 1, n / 2]),
    }
}

/// The distinct ranks `kinds` read, for `n` values, ascending, into `out`
/// (cleared first).
fn ranks_into(kinds: &[Quantile], n: u64, out: &mut Vec<u64>) {
    out.clear();
    for &k in kinds {
        push_ranks(k, n, out);
    }
    out.sort_unstable();
    out.dedup();
}

/// The most distinct ranks `kinds` read from a column of at most `n`
/// values: exactly those of `n` values, or when NaN are skipped (each
/// column its own count) an upper bound for any count.
fn rank_slots(kinds: &[Quantile], n: u64, skipna: bool) -> usize {
    if skipna {
        (2 * kinds.len() as u64).min(n) as usize
    } else {
        ranks_of(kinds, n).len()
    }
}

/// True when the quantiles `kinds` skip NaN (a step's kinds all do, or
/// none does: `lower` groups them so).
fn skips_nan(kinds: &[Quantile]) -> bool {
    kinds.first().is_some_and(|k| k.skips_nan())
}

/// The value of quantile `kind` of `n` sorted values, rank `r` being
/// `at(r)`; `ma` for NumPy's `nanmedian` along an axis shorter than 600
/// (its masked-array median: the middle values summed in the input's
/// type).
fn finish<T: QuantileElement>(kind: Quantile, n: u64, ma: bool, at: impl Fn(u64) -> T) -> T::Out {
    match kind.base() {
        Quantile::Linear(q) => {
            let (lo, hi, gamma) = linear_index(n, q);
            T::lerp(at(lo), at(hi), gamma)
        }
        _ if ma && n % 2 == 1 => T::ma_middle(at(n / 2), at(n / 2)),
        _ if ma => T::ma_middle(at(n / 2 - 1), at(n / 2)),
        _ if n % 2 == 1 => T::middle(at(n / 2), None),
        _ => T::middle(at(n / 2 - 1), Some(at(n / 2))),
    }
}

/// Whether NumPy's `nanmedian` takes its masked-array path: along an
/// axis (not over all elements) of an array of 2 or more dimensions
/// whose length is below 600.
fn numpy_ma_median(kinds: &[Quantile], ndim: usize, flat: bool, axis_len: u64) -> bool {
    skips_nan(kinds) && !flat && ndim >= 2 && axis_len < 600
}

/// NumPy's indexes for linear interpolation: the ranks below and above the
/// virtual index `(n-1)q`, and `gamma` as NumPy computes it (after
/// clipping at the ends, where NumPy's index is -1 for the last value).
fn linear_index(n: u64, q: f64) -> (u64, u64, f64) {
    let v = (n - 1) as f64 * q;
    if v >= (n - 1) as f64 {
        (n - 1, n - 1, v + 1.0)
    } else if v < 0.0 {
        (0, 0, v)
    } else {
        let prev = v.floor();
        (prev as u64, prev as u64 + 1, v - prev)
    }
}

/// An element type quantiles can be taken of.
trait QuantileElement: SortKey {
    /// The result type.
    type Out: DynElement + Copy;
    /// NumPy's `_lerp(a, b, t)`.
    fn lerp(a: Self, b: Self, t: f64) -> Self::Out;
    /// NumPy's mean of one or two middle values.
    fn middle(a: Self, b: Option<Self>) -> Self::Out;
    /// NumPy's masked-array median of the middle values `a` and `b`
    /// (`b == a` for an odd count): `(0 + a + b) / 2` in the input's float
    /// type (so float16 overflows past 65504 as in NumPy), float64 for
    /// integers.
    fn ma_middle(a: Self, b: Self) -> Self::Out;
    /// NaN of the result type.
    fn nan() -> Self::Out;
}

macro_rules! int_quantile {
    ($($t:ty),*) => {$(
        impl QuantileElement for $t {
            type Out = f64;
            fn lerp(a: $t, b: $t, t: f64) -> f64 {
                // NumPy subtracts in the integer type, which wraps for
                // signed types (numpy#29315); the exact difference is used
                // here, equal to NumPy's wherever NumPy's does not wrap.
                let diff = (b as i128 - a as i128) as f64;
                let lerp = a as f64 + diff * t;
                if t >= 0.5 { b as f64 - diff * (1.0 - t) } else { lerp }
            }
            fn middle(a: $t, b: Option<$t>) -> f64 {
                match b {
                    None => (0.0 + a as f64) / 1.0,
                    Some(b) => (0.0 + a as f64 + b as f64) / 2.0,
                }
            }
            fn ma_middle(a: $t, b: $t) -> f64 {
                (0.0 + a as f64 + b as f64) / 2.0
            }
            fn nan() -> f64 {
                f64::NAN
            }
        }
    )*};
}
int_quantile!(i8, i16, i32, i64, u8, u16, u32, u64);

impl QuantileElement for bool {
    type Out = f64;
    fn lerp(a: bool, b: bool, t: f64) -> f64 {
        u8::lerp(u8::from(a), u8::from(b), t)
    }
    fn middle(a: bool, b: Option<bool>) -> f64 {
        u8::middle(u8::from(a), b.map(u8::from))
    }
    fn ma_middle(a: bool, b: bool) -> f64 {
        u8::ma_middle(u8::from(a), u8::from(b))
    }
    fn nan() -> f64 {
        f64::NAN
    }
}

macro_rules! float_quantile {
    ($($t:ty: $from:expr, $acc:ty, $to_acc:expr, $from_acc:expr);*) => {$(
        impl QuantileElement for $t {
            type Out = $t;
            fn lerp(a: $t, b: $t, t: f64) -> $t {
                let diff = b - a;
                let lerp = a + diff * $from(t);
                if t >= 0.5 { b - diff * $from(1.0 - t) } else { lerp }
            }
            fn middle(a: $t, b: Option<$t>) -> $t {
                // NumPy's sum starts from +0.0 (so -0.0 alone gives 0.0).
                let s: $acc = (0.0 as $acc) + $to_acc(a);
                match b {
                    None => $from_acc(s / 1.0),
                    Some(b) => $from_acc((s + $to_acc(b)) / 2.0),
                }
            }
            fn ma_middle(a: $t, b: $t) -> $t {
                // NumPy's add.reduce starts from +0.0; each step rounds.
                let two: $t = $from(2.0);
                ($from(0.0) + a + b) / two
            }
            fn nan() -> $t {
                <$t>::NAN
            }
        }
    )*};
}
float_quantile!(
    f64: |t: f64| t, f64, |x: f64| x, |x: f64| x;
    f32: |t: f64| t as f32, f32, |x: f32| x, |x: f32| x;
    f16: f16::from_f64, f32, f16::to_f32, f16::from_f32
);

/// How the quantiles of one array are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// Radix selection.
    Select,
    /// The external sort, then the ranks read from the sorted columns.
    Sort,
    /// Along axis 1: one pass, each row's ranks selected in memory.
    Rows,
}

/// A quantile target being narrowed: rank `ranks.of(iv.col)[r]` of
/// column `iv.col`.
#[derive(Clone, Copy, Debug)]
struct Target {
    r: usize,
    iv: Interval,
}

/// The sizes that decide the memory of quantiles of one array.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Rows read per block (of the array as stored).
    pub(crate) rows: u64,
    /// Values per row.
    pub(crate) row_len: usize,
    /// Item size of the input.
    pub(crate) itemsize: usize,
    /// Item size of the results.
    pub(crate) out_itemsize: usize,
    /// Over all elements (one column) rather than along axis 0.
    pub(crate) flat: bool,
    /// Distinct ranks wanted per column.
    pub(crate) ranks: usize,
    /// Results (quantiles and medians) per column.
    pub(crate) kinds: usize,
    /// NaN skipped: each column has its own count and ranks.
    pub(crate) skipna: bool,
}

/// Bytes of per-column statistics in the first pass of radix selection:
/// smallest key, largest key, NaN count.
const STATS_BYTES: u64 = 24;
/// Buckets of the smallest histogram pass (a power of two).
const MIN_BUCKET_BITS: u32 = 4;
/// Windows reading ranks from sorted short columns are at least this
/// large (see [`Sizes::rank_window`]).
const RANK_WINDOW_MIN: u64 = 64 << 10;
/// Bytes of a collected key's vector header, per interval.
const VEC_BYTES: u64 = std::mem::size_of::<Vec<u64>>() as u64;

impl Sizes {
    fn cols(&self) -> u64 {
        if self.flat { 1 } else { self.row_len as u64 }
    }

    fn row_bytes(&self) -> u64 {
        (self.row_len as u64 * self.itemsize as u64).max(1)
    }

    /// The rank values and NaN flags of every column, and the results.
    fn ranked_bytes(&self) -> u64 {
        // Skipping NaN, each column keeps its count and its ranks.
        let own = if self.skipna {
            8 + self.ranks as u64 * 8
        } else {
            0
        };
        self.cols()
            * (self.ranks as u64 * self.itemsize as u64
                + 1
                + own
                + self.kinds as u64 * self.out_itemsize as u64)
    }

    /// What the per-row selection along axis 1 holds through its pass:
    /// every row's results.
    fn rows_fixed(&self) -> u64 {
        self.rows * self.kinds as u64 * self.out_itemsize as u64
    }

    /// The bytes one block holds per row along axis 1: the row read and
    /// its results.
    fn rows_per_row(&self) -> u64 {
        self.row_bytes() + self.kinds as u64 * self.out_itemsize as u64
    }

    /// The smallest limit for quantiles along axis 1: the results, one
    /// row read with its results, and a copy of the row to select in.
    fn rows_minimum(&self) -> u64 {
        self.rows_fixed() + self.rows_per_row() + self.row_bytes()
    }

    /// What radix selection holds through all its passes: the rank values,
    /// NaN flags and results ([`Self::ranked_bytes`]), a target per column
    /// and rank, and at most as many intervals with their lookup tables.
    fn select_fixed(&self) -> u64 {
        let targets = self.cols() * self.ranks as u64;
        let lookup = (self.cols() + 1) * 8 + targets * (8 + 8 + 4);
        self.ranked_bytes()
            + targets * std::mem::size_of::<Target>() as u64
            + targets * std::mem::size_of::<Interval>() as u64
            + lookup
    }

    /// The smallest limit for radix selection, whatever the data: its
    /// fixed part, then the larger of the first pass (merged statistics,
    /// a block's statistics and one row) and the smallest histogram pass
    /// over an interval per column and rank (merged, a block's, one row);
    /// a collection pass runs only when it fits what is left.
    fn select_minimum(&self) -> u64 {
        let stats = self.cols() * STATS_BYTES;
        let hist = self.cols() * self.ranks as u64 * (8 << MIN_BUCKET_BITS);
        self.select_fixed() + 2 * stats.max(hist) + self.row_bytes()
    }

    /// The smallest window through which the ranks are read from the
    /// sorted columns: one value where columns are long (each rank is
    /// mapped alone), else a stripe of columns — at least 64 KiB, or a
    /// 64th of the data when that is less — so that short columns (rows
    /// of millions of values) are read a few thousand at a time, never
    /// one map per column.
    fn rank_window(&self) -> u64 {
        let isz = self.itemsize as u64;
        let n = if self.flat {
            self.rows * self.row_len as u64
        } else {
            self.rows
        };
        let column = n * isz;
        let stripe = RANK_WINDOW_MIN.min((column * self.cols()).div_ceil(64));
        if column <= stripe { stripe } else { isz }.max(isz)
    }

    /// Bytes held while reading the ranks from the sorted columns: the
    /// ranked values and results, and one window.
    fn rank_reading(&self) -> u64 {
        self.ranked_bytes() + self.rank_window() + 2 * PAGE
    }

    /// The smallest limit for the external sort and reading its ranks.
    fn sort_minimum(&self) -> u64 {
        super::sort::minimum(self.rows, self.row_len, self.itemsize, self.flat)
            .max(self.rank_reading())
    }
}

/// Chooses how quantiles of an array of `sizes` run under the engine's
/// limit, before anything is read: radix selection when its worst case
/// fits (unless the sort is forced), else the external sort; an
/// [`Error::LimitTooSmall`] naming the smallest limit that works when
/// neither fits.
pub(crate) fn plan(rt: &Runtime, sizes: &Sizes) -> Result<Method> {
    let limit = rt.budget().limit();
    let method = rt.quantile_method();
    let select = sizes.select_minimum();
    let sort = sizes.sort_minimum();
    let cols = sizes.cols();
    if method != QuantileMethod::Sort && limit >= select {
        return Ok(Method::Select);
    }
    if method != QuantileMethod::Select && limit >= sort {
        return Ok(Method::Sort);
    }
    let ranked = sizes.ranked_bytes();
    let select_detail = format!(
        "radix selection: {} B per column ({} of them) of rank values, results, targets and \
         histograms, and one row of {} B; smallest limit {select} B",
        select.saturating_sub(sizes.row_bytes()) / cols.max(1),
        cols,
        sizes.row_bytes()
    );
    let sort_detail = format!(
        "external sort: one row read and one sorted ({} B), then {ranked} B of rank values \
         and results; smallest limit {sort} B",
        2 * sizes.row_bytes()
    );
    let (row_bytes, minimum, detail) = match method {
        QuantileMethod::Select => (
            sizes.row_bytes(),
            select,
            format!("quantile: {select_detail}; or use the sort method (smallest limit {sort} B)"),
        ),
        QuantileMethod::Sort => (
            2 * sizes.row_bytes(),
            sort,
            format!("quantile: {sort_detail}"),
        ),
        _ if select <= sort => (
            sizes.row_bytes(),
            select,
            format!("quantile: {select_detail}; {sort_detail}"),
        ),
        _ => (
            2 * sizes.row_bytes(),
            sort,
            format!("quantile: {sort_detail}; {select_detail}"),
        ),
    };
    Err(Error::LimitTooSmall {
        limit,
        row_bytes,
        minimum,
        detail,
    })
}

/// Plans quantiles along axis 1 (`sizes.rows` rows of `sizes.row_len`
/// values): [`Method::Rows`] when every row's results, one row read and
/// one copy of it fit the limit, else [`Error::LimitTooSmall`].
fn plan_rows(rt: &Runtime, sizes: &Sizes) -> Result<Method> {
    let limit = rt.budget().limit();
    let minimum = sizes.rows_minimum();
    if limit >= minimum {
        return Ok(Method::Rows);
    }
    Err(Error::LimitTooSmall {
        limit,
        row_bytes: sizes.row_bytes(),
        minimum,
        detail: format!(
            "quantiles along axis 1: {} B of results ({} rows), one row read and one copy of it \
             to select in ({} B each); smallest limit {minimum} B",
            sizes.rows_fixed(),
            sizes.rows,
            sizes.row_bytes()
        ),
    })
}

/// The distinct ranks `kinds` read, for `n` values, ascending.
fn ranks_of(kinds: &[Quantile], n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    ranks_into(kinds, n, &mut out);
    out
}

/// The plan of quantiles `kinds` of a `dtype` array of `shape` along
/// `axis`, for planning before anything runs; `None` where nothing would
/// be read (an empty array or axis, or arguments [`compute`] refuses).
pub(crate) fn plan_for(
    rt: &Runtime,
    dtype: DType,
    shape: &[u64],
    axis: ReduceAxis,
    kinds: &[Quantile],
) -> Result<Option<Method>> {
    let rows = shape.first().copied().unwrap_or(1);
    let row_len: u64 = shape.iter().skip(1).product();
    let skipna = skips_nan(kinds);
    let Ok(row_len) = usize::try_from(row_len) else {
        return Ok(None);
    };
    if axis == ReduceAxis::Axis1 {
        if rows == 0 || kinds.is_empty() {
            return Ok(None);
        }
        let sizes = Sizes {
            rows,
            row_len,
            itemsize: dtype.itemsize(),
            out_itemsize: quantile_dtype(dtype).itemsize(),
            flat: false,
            ranks: 0,
            kinds: kinds.len(),
            skipna,
        };
        return plan_rows(rt, &sizes).map(Some);
    }
    let flat = axis == ReduceAxis::All;
    let n = if flat { rows * row_len as u64 } else { rows };
    if n == 0 || row_len == 0 || kinds.is_empty() {
        return Ok(None);
    }
    let sizes = Sizes {
        rows,
        row_len,
        itemsize: dtype.itemsize(),
        out_itemsize: quantile_dtype(dtype).itemsize(),
        flat,
        ranks: rank_slots(kinds, n, skipna),
        kinds: kinds.len(),
        skipna,
    };
    plan(rt, &sizes).map(Some)
}

/// Computes `kinds` of `src` along `axis`, one array per kind: shape
/// `shape[1..]` for axis 0, `[rows]` for axis 1, 0-d for all. The kinds
/// all skip NaN or none does.
pub(crate) fn compute(
    rt: &Runtime,
    src: &ArrayFile,
    axis: ReduceAxis,
    kinds: &[Quantile],
    report: &mut RunReport,
) -> Result<Vec<AnyArray>> {
    outcore_chunker::with_dtype!(
        src.meta().dtype,
        T => compute_typed::<T>(rt, src, axis, kinds, report)
    )
}

/// The ranks each column reads: one list for every column, or — NaN
/// skipped — a list per column from its count of values that are not
/// NaN, padded to `r_n` by repeating its last rank.
struct Ranks {
    r_n: usize,
    /// 0 (one shared list) or `r_n`.
    stride: usize,
    table: Vec<u64>,
}

impl Ranks {
    fn shared(ranks: Vec<u64>) -> Ranks {
        Ranks {
            r_n: ranks.len(),
            stride: 0,
            table: ranks,
        }
    }

    fn per_column(r_n: usize, cols: usize) -> Ranks {
        Ranks {
            r_n,
            stride: r_n,
            table: Vec::with_capacity(r_n * cols),
        }
    }

    /// Appends the ranks of the next column, of `n` values.
    fn push(&mut self, kinds: &[Quantile], n: u64, scratch: &mut Vec<u64>) {
        ranks_into(kinds, n, scratch);
        let last = scratch.last().copied().unwrap_or(0);
        self.table.extend(
            scratch
                .iter()
                .copied()
                .chain(std::iter::repeat(last))
                .take(self.r_n),
        );
    }

    /// The ranks of column `col`.
    fn of(&self, col: usize) -> &[u64] {
        let s = col * self.stride;
        &self.table[s..s + self.r_n]
    }
}

/// The values of the wanted ranks of every column: `values[col * R + i]`
/// is rank `ranks.of(col)[i]` of column `col` (meaningless where
/// `nan[col]`: a column holding a NaN has NaN quantiles, one of only NaN
/// has NaN nan-quantiles). `counts` holds each column's count of values
/// that are not NaN when NaN are skipped (else it is empty: every column
/// has all `n`).
struct Ranked<T> {
    values: Vec<T>,
    nan: Vec<bool>,
    ranks: Ranks,
    counts: Vec<u64>,
}

fn compute_typed<T: QuantileElement>(
    rt: &Runtime,
    src: &ArrayFile,
    axis: ReduceAxis,
    kinds: &[Quantile],
    report: &mut RunReport,
) -> Result<Vec<AnyArray>> {
    let meta = src.meta();
    let (rows, row_len) = (meta.rows(), meta.row_len());
    let skipna = skips_nan(kinds);
    if kinds.iter().any(|k| k.skips_nan() != skipna) {
        return Err(Error::Invalid(
            "internal: quantiles skipping NaN and not, computed together".into(),
        ));
    }
    for k in kinds {
        if let Quantile::Linear(q) = k.base()
            && !(0.0..=1.0).contains(&q)
        {
            return Err(Error::Invalid(format!(
                "quantile {q} is outside [0, 1] (NumPy: Quantiles must be in the range [0, 1])"
            )));
        }
    }
    let linear = kinds
        .iter()
        .any(|k| matches!(k.base(), Quantile::Linear(_)));
    if meta.dtype == DType::Bool && linear {
        return Err(Error::Invalid(
            "quantile of a bool array is undefined (NumPy raises TypeError: numpy boolean \
             subtract); cast to an integer dtype first"
                .into(),
        ));
    }
    let flat = match axis {
        ReduceAxis::All => true,
        ReduceAxis::Axis0 => false,
        ReduceAxis::Axis1 => return compute_rows::<T>(rt, src, kinds, report),
    };
    let (cols, n) = if flat {
        (1, rows * row_len as u64)
    } else {
        (row_len, rows)
    };
    let out_shape: Vec<usize> = if flat {
        Vec::new()
    } else {
        meta.shape[1..].iter().map(|&d| d as usize).collect()
    };
    // NumPy's nanquantile of nothing is NaN; its quantile raises.
    if n == 0 && cols > 0 && linear && !skipna {
        return Err(Error::Empty {
            op: "quantile".into(),
            what: if flat { "array" } else { "axis" },
        });
    }
    let ma = numpy_ma_median(kinds, meta.shape.len(), flat, n);
    let r_n = rank_slots(kinds, n, skipna);
    let sizes = Sizes {
        rows,
        row_len,
        itemsize: std::mem::size_of::<T>(),
        out_itemsize: std::mem::size_of::<T::Out>(),
        flat,
        ranks: r_n,
        kinds: kinds.len(),
        skipna,
    };
    // Refused here, before anything is read, when neither method fits;
    // what each holds is reserved for as long as it is held.
    let (ranked, _held) = if n == 0 || cols == 0 {
        (
            Ranked {
                values: Vec::new(),
                nan: vec![true; cols],
                ranks: Ranks::shared(Vec::new()),
                counts: Vec::new(),
            },
            Vec::new(),
        )
    } else {
        let ranks = if skipna {
            None
        } else {
            Some(ranks_of(kinds, n))
        };
        match plan(rt, &sizes)? {
            Method::Select | Method::Rows => {
                let fixed = sizes.select_fixed();
                let (held, _) = reserve_slots(rt, &[(Consumer::State, fixed)], &[], 0)?;
                report.note_reservations(&[(Consumer::State, fixed)]);
                let ranked = select::<T>(rt, src, flat, cols, (kinds, ranks, r_n), fixed, report)?;
                (ranked, held)
            }
            Method::Sort => {
                let sorted = super::sort::sort_columns::<T>(rt, src, flat, report)?;
                let limit = rt.budget().limit();
                let ranked_bytes = sizes.ranked_bytes();
                let isz = std::mem::size_of::<T>() as u64;
                let window = (limit.saturating_sub(ranked_bytes + 2 * PAGE))
                    .min(super::sort::WINDOW_MAX)
                    / isz
                    * isz;
                let window = window.max(sizes.rank_window());
                let held_bytes = ranked_bytes + window + 2 * PAGE;
                let (held, _) = reserve_slots(rt, &[(Consumer::State, held_bytes)], &[], 0)?;
                report.note_reservations(&[(Consumer::State, held_bytes)]);
                let ranked = read_ranks::<T>(rt, &sorted, cols, (kinds, ranks, r_n), window)?;
                (ranked, held)
            }
        }
    };
    let mut out = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let mut res: Vec<T::Out> = Vec::with_capacity(cols);
        for (col, &nan) in ranked.nan.iter().enumerate() {
            if nan {
                res.push(T::nan());
                continue;
            }
            let v = &ranked.values[col * r_n..(col + 1) * r_n];
            let rl = ranked.ranks.of(col);
            let at = |r: u64| v[rl.partition_point(|&x| x < r).min(r_n - 1)];
            let n = ranked.counts.get(col).copied().unwrap_or(n);
            res.push(finish(kind, n, ma, at));
        }
        let array = ArrayD::from_shape_vec(IxDyn(&out_shape), res)
            .map_err(|e| Error::Invalid(format!("internal: quantile shape: {e}")))?;
        out.push(<T::Out as DynElement>::into_any(array));
    }
    Ok(out)
}

/// Quantiles along axis 1: one streamed pass; each row is copied (its
/// NaN left out when skipped) into a buffer reserved per block in flight
/// and its ranks are selected there, in memory. The results of every row
/// are reserved for the whole pass.
fn compute_rows<T: QuantileElement>(
    rt: &Runtime,
    src: &ArrayFile,
    kinds: &[Quantile],
    report: &mut RunReport,
) -> Result<Vec<AnyArray>> {
    let meta = src.meta();
    let (rows, row_len) = (meta.rows(), meta.row_len());
    let skipna = skips_nan(kinds);
    let linear = kinds
        .iter()
        .any(|k| matches!(k.base(), Quantile::Linear(_)));
    if row_len == 0 && rows > 0 && linear && !skipna {
        return Err(Error::Empty {
            op: "quantile".into(),
            what: "axis",
        });
    }
    let k_n = kinds.len();
    let sizes = Sizes {
        rows,
        row_len,
        itemsize: std::mem::size_of::<T>(),
        out_itemsize: std::mem::size_of::<T::Out>(),
        flat: false,
        ranks: 0,
        kinds: k_n,
        skipna,
    };
    let mut results: Vec<Vec<T::Out>> = Vec::new();
    let ma = numpy_ma_median(kinds, 2, false, row_len as u64);
    let _held = if rows == 0 || row_len == 0 {
        // Empty rows: NaN each (the results reserved all the same).
        let held = if rows > 0 {
            plan_rows(rt, &sizes)?;
            let fixed = sizes.rows_fixed();
            let (held, _) = reserve_slots(rt, &[(Consumer::State, fixed)], &[], 0)?;
            report.note_reservations(&[(Consumer::State, fixed)]);
            held
        } else {
            Vec::new()
        };
        results = vec![vec![T::nan(); rows as usize]; k_n];
        held
    } else {
        plan_rows(rt, &sizes)?;
        let fixed = sizes.rows_fixed();
        let avail = rt.budget().limit().saturating_sub(fixed);
        let row_bytes = sizes.row_bytes();
        let per_row = sizes.rows_per_row();
        let Some((block_rows, slots)) = pass_size(rt, avail, per_row, rows, 0, row_bytes) else {
            return Err(super::too_small(
                rt,
                row_bytes,
                sizes.rows_minimum(),
                "internal: quantiles along axis 1 do not fit the limit they were planned for",
            ));
        };
        let (held, slots) = reserve_slots(
            rt,
            &[(Consumer::State, fixed)],
            &[
                (Consumer::Reader, block_rows * row_bytes),
                (
                    Consumer::State,
                    row_bytes + block_rows * (per_row - row_bytes),
                ),
            ],
            slots,
        )?;
        report.note_reservations(&[
            (
                Consumer::Reader,
                block_rows * row_bytes * slots.len() as u64,
            ),
            (
                Consumer::State,
                fixed + (row_bytes + block_rows * (per_row - row_bytes)) * slots.len() as u64,
            ),
        ]);
        for _ in 0..k_n {
            results.push(Vec::with_capacity(rows as usize));
        }
        let mut blocks = 0;
        let read = stream_file(
            rt,
            "blocks of quantiles along axis 1",
            src,
            block_rows,
            slots,
            |_rows, block| {
                let data = block.as_slice::<T>()?;
                let mut row_buf: Vec<T> = Vec::with_capacity(row_len);
                let mut rl: Vec<u64> = Vec::with_capacity(2 * k_n);
                let mut vals: Vec<T> = Vec::with_capacity(2 * k_n);
                let mut out: Vec<T::Out> = Vec::with_capacity(data.len() / row_len * k_n);
                for row in data.chunks_exact(row_len) {
                    row_buf.clear();
                    if skipna {
                        row_buf.extend(row.iter().copied().filter(|v| !v.is_nan()));
                    } else {
                        row_buf.extend_from_slice(row);
                    }
                    let n = row_buf.len() as u64;
                    if n == 0 || (!skipna && row_buf.iter().any(|v| v.is_nan())) {
                        out.extend(std::iter::repeat_n(T::nan(), k_n));
                        continue;
                    }
                    ranks_into(kinds, n, &mut rl);
                    vals.clear();
                    // Ascending ranks: each selection leaves the larger
                    // values after it, where the next one is selected.
                    let mut from = 0usize;
                    for &r in &rl {
                        let r = r as usize;
                        let (_, v, _) =
                            row_buf[from..].select_nth_unstable_by_key(r - from, |x| x.key());
                        vals.push(*v);
                        from = r + 1;
                    }
                    let at = |r: u64| vals[rl.partition_point(|&x| x < r)];
                    out.extend(kinds.iter().map(|&k| finish(k, n, ma, at)));
                }
                Ok(out)
            },
            |_rows, out: Vec<T::Out>| {
                for row in out.chunks_exact(k_n) {
                    for (res, &v) in results.iter_mut().zip(row) {
                        res.push(v);
                    }
                }
                blocks += 1;
                Ok(())
            },
        )?;
        report.bytes_read += read;
        report.blocks += blocks;
        report.passes += 1;
        held
    };
    results
        .into_iter()
        .map(|res| {
            let array = ArrayD::from_shape_vec(IxDyn(&[rows as usize]), res)
                .map_err(|e| Error::Invalid(format!("internal: quantile shape: {e}")))?;
            Ok(<T::Out as DynElement>::into_any(array))
        })
        .collect()
}

/// What selection looks for: the kinds, the ranks every column reads
/// (`None` when NaN are skipped: each column's own, from its count), and
/// the rank slots per column.
type Wanted<'a> = (&'a [Quantile], Option<Vec<u64>>, usize);

/// Ranks read from the externally sorted columns: where a column's `n`
/// values fit a window of `window` bytes, a stripe of columns is read
/// through one mapped window; longer columns map each value they read.
/// NaN sort last, so a column's count of values that are not NaN is
/// where its NaN start.
fn read_ranks<T: QuantileElement>(
    rt: &Runtime,
    sorted: &super::sort::SortedColumns,
    cols: usize,
    (kinds, shared, r_n): Wanted<'_>,
    window: u64,
) -> Result<Ranked<T>> {
    let isz = std::mem::size_of::<T>() as u64;
    let n = sorted.n;
    let skipna = shared.is_none();
    let mut ranked = Ranked {
        values: Vec::with_capacity(cols * r_n),
        nan: Vec::with_capacity(cols),
        ranks: match shared {
            Some(r) => Ranks::shared(r),
            None => Ranks::per_column(r_n, cols),
        },
        counts: Vec::with_capacity(if skipna { cols } else { 0 }),
    };
    let mut scratch = Vec::with_capacity(2 * kinds.len());
    // The column's count (NaN skipped) and NaN flag, its ranks pushed.
    let mut start_column = |ranked: &mut Ranked<T>, valid: u64| -> bool {
        if skipna {
            ranked.counts.push(valid);
            ranked.ranks.push(kinds, valid, &mut scratch);
            ranked.nan.push(valid == 0);
            valid == 0
        } else {
            let nan = valid < n;
            ranked.nan.push(nan);
            nan
        }
    };
    let column_bytes = n * isz;
    if column_bytes <= window {
        let width = (window / column_bytes).max(1) as usize;
        let mut c0 = 0;
        while c0 < cols {
            rt.check_cancel("columns of sorted quantile ranks", c0 as u64, cols as u64)?;
            let c1 = (c0 + width).min(cols);
            let w = sorted.file.map(
                c0 as u64 * column_bytes,
                ((c1 - c0) as u64 * column_bytes) as usize,
            )?;
            let v = super::sort::values::<T>(&w)?;
            for (j, col) in v.chunks_exact(n as usize).enumerate() {
                let valid = col.partition_point(|x| !x.is_nan()) as u64;
                let nan = start_column(&mut ranked, valid);
                let rl = ranked.ranks.of(c0 + j);
                let vals: Vec<T> = rl
                    .iter()
                    .map(|&r| if nan { col[0] } else { col[r as usize] })
                    .collect();
                ranked.values.extend(vals);
            }
            c0 = c1;
        }
    } else {
        let get = |col: usize, rank: u64| -> Result<T> {
            let w = sorted
                .file
                .map((col as u64 * n + rank) * isz, isz as usize)?;
            Ok(super::sort::values::<T>(&w)?[0])
        };
        for col in 0..cols {
            rt.check_cancel("columns of sorted quantile ranks", col as u64, cols as u64)?;
            // The first NaN, by bisection (none when the last is not).
            let valid = if !get(col, n - 1)?.is_nan() {
                n
            } else if !skipna {
                0
            } else {
                let (mut lo, mut hi) = (0, n - 1);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if get(col, mid)?.is_nan() {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                lo
            };
            let nan = start_column(&mut ranked, valid);
            for i in 0..r_n {
                let r = ranked.ranks.of(col)[i];
                ranked
                    .values
                    .push(if nan { T::from_key(0) } else { get(col, r)? });
            }
        }
    }
    Ok(ranked)
}

/// A key interval of one column that holds wanted ranks: `count` values
/// have keys in `lo..=hi`, `below` have smaller keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Interval {
    col: usize,
    lo: u64,
    hi: u64,
    below: u64,
    count: u64,
}

/// The per-element form of the intervals of one pass, grouped by column.
struct Lookup {
    /// Intervals of column `j`: `start[j] .. start[j + 1]`.
    start: Vec<usize>,
    lo: Vec<u64>,
    width: Vec<u64>,
    shift: Vec<u32>,
}

impl Lookup {
    fn new(intervals: &[Interval], cols: usize, bucket_bits: u32) -> Lookup {
        let mut start = vec![0; cols + 1];
        for iv in intervals {
            start[iv.col + 1] += 1;
        }
        for j in 0..cols {
            start[j + 1] += start[j];
        }
        let width: Vec<u64> = intervals.iter().map(|iv| iv.hi - iv.lo).collect();
        Lookup {
            start,
            lo: intervals.iter().map(|iv| iv.lo).collect(),
            shift: width
                .iter()
                .map(|w| (64 - w.leading_zeros()).saturating_sub(bucket_bits))
                .collect(),
            width,
        }
    }

    /// Calls `f(interval, offset of key in it)` for each interval of
    /// column `col` holding `key`.
    #[inline]
    fn each(&self, col: usize, key: u64, mut f: impl FnMut(usize, u64)) {
        for i in self.start[col]..self.start[col + 1] {
            let d = key.wrapping_sub(self.lo[i]);
            if d <= self.width[i] {
                f(i, d);
            }
        }
    }
}

/// Calls `f(col, value)` for every element of a block.
#[inline]
fn each_value<T: SortKey>(data: &[T], cols: usize, flat: bool, mut f: impl FnMut(usize, T)) {
    if flat {
        for &v in data {
            f(0, v);
        }
    } else {
        for row in data.chunks_exact(cols) {
            for (j, &v) in row.iter().enumerate() {
                f(j, v);
            }
        }
    }
}

/// Rows per block and slots for a pass whose merged state is `merged`
/// bytes and whose per-block state is `state` bytes, within `avail`
/// bytes, or `None` if it cannot fit.
fn pass_size(
    rt: &Runtime,
    avail: u64,
    row_bytes: u64,
    rows: u64,
    merged: u64,
    state: u64,
) -> Option<(u64, usize)> {
    let threads = rt.threads().max(1);
    for slots in [threads + 1, 1] {
        let per_slot = (avail.saturating_sub(merged)) / slots as u64;
        let block = per_slot.saturating_sub(state) / row_bytes.max(1);
        if block > 0 {
            let block = block
                .min((rt.block_bytes() / row_bytes.max(1)).max(1))
                .min(rows.max(1));
            return Some((block, slots));
        }
    }
    None
}

/// Runs one read pass over `src` with per-block states merged in order
/// into the state `start` makes, within what the budget has beside the
/// `held` bytes selection holds. Returns the merged state and the
/// reservation standing for it (drop it after the state).
#[allow(clippy::too_many_arguments)] // a pass is its three closures plus what sizes it; a struct would only rename them
fn read_pass<T: SortKey, S: Send, M>(
    rt: &Runtime,
    src: &ArrayFile,
    held: u64,
    (merged_bytes, state_bytes): (u64, u64),
    report: &mut RunReport,
    start: impl FnOnce() -> M,
    init: impl Fn() -> S + Send + Sync,
    update: impl Fn(&mut S, &[T]) + Send + Sync,
    mut merge: impl FnMut(&mut M, S),
) -> Result<(M, Vec<outcore_spill::Reservation>)> {
    let meta = src.meta();
    let row_bytes = meta.row_bytes() as u64;
    let avail = rt.budget().limit().saturating_sub(held);
    let Some((block_rows, slots)) =
        pass_size(rt, avail, row_bytes, meta.rows(), merged_bytes, state_bytes)
    else {
        return Err(super::too_small(
            rt,
            row_bytes,
            held + merged_bytes + state_bytes + row_bytes,
            "internal: a quantile pass does not fit the limit it was planned for",
        ));
    };
    let (fixed, slots) = reserve_slots(
        rt,
        &[(Consumer::State, merged_bytes)],
        &[
            (Consumer::Reader, block_rows * row_bytes),
            (Consumer::State, state_bytes),
        ],
        slots,
    )?;
    report.note_reservations(&[
        (
            Consumer::Reader,
            block_rows * row_bytes * slots.len() as u64,
        ),
        (
            Consumer::State,
            held + merged_bytes + state_bytes * slots.len() as u64,
        ),
    ]);
    let mut merged = start();
    let mut blocks = 0;
    let read = stream_file(
        rt,
        "blocks of a quantile pass",
        src,
        block_rows,
        slots,
        |_rows, block| {
            let mut s = init();
            update(&mut s, block.as_slice::<T>()?);
            Ok(s)
        },
        |_rows, s| {
            merge(&mut merged, s);
            blocks += 1;
            Ok(())
        },
    )?;
    report.bytes_read += read;
    report.blocks += blocks;
    report.passes += 1;
    Ok((merged, fixed))
}

/// Radix selection of `ranks` in every column, beside the `held` bytes
/// reserved for what it keeps between passes ([`Sizes::select_fixed`]).
fn select<T: QuantileElement>(
    rt: &Runtime,
    src: &ArrayFile,
    flat: bool,
    cols: usize,
    (kinds, shared, r_n): Wanted<'_>,
    held: u64,
    report: &mut RunReport,
) -> Result<Ranked<T>> {
    let avail = rt.budget().limit().saturating_sub(held);
    let meta = src.meta();
    let row_bytes = meta.row_bytes() as u64;
    let n = if flat { meta.len() } else { meta.rows() };
    let skipna = shared.is_none();
    // Pass 1: smallest and largest key, NaN count, per column.
    let stats_bytes = cols as u64 * STATS_BYTES;
    let (stats, stats_held) = read_pass::<T, _, _>(
        rt,
        src,
        held,
        (stats_bytes, stats_bytes),
        report,
        || vec![(u64::MAX, 0u64, 0u64); cols],
        || vec![(u64::MAX, 0u64, 0u64); cols],
        |s, data| {
            each_value(data, cols, flat, |j, v| {
                let st = &mut s[j];
                if v.is_nan() {
                    st.2 += 1;
                } else {
                    let k = v.key();
                    st.0 = st.0.min(k);
                    st.1 = st.1.max(k);
                }
            })
        },
        |a: &mut Vec<(u64, u64, u64)>, b| {
            for (a, b) in a.iter_mut().zip(b) {
                a.0 = a.0.min(b.0);
                a.1 = a.1.max(b.1);
                a.2 += b.2;
            }
        },
    )?;
    // A column holding NaN has NaN quantiles; skipping NaN, one holding
    // nothing else.
    let mut ranked = Ranked {
        values: vec![T::from_key(0); cols * r_n],
        nan: stats
            .iter()
            .map(|s| if skipna { s.2 == n } else { s.2 > 0 })
            .collect(),
        ranks: match shared {
            Some(r) => Ranks::shared(r),
            None => Ranks::per_column(r_n, cols),
        },
        counts: if skipna {
            stats.iter().map(|s| n - s.2).collect()
        } else {
            Vec::new()
        },
    };
    if skipna {
        let mut scratch = Vec::with_capacity(2 * kinds.len());
        for &count in &ranked.counts {
            ranked.ranks.push(kinds, count, &mut scratch);
        }
    }
    let live = ranked.nan.iter().filter(|&&nan| !nan).count();
    let mut targets: Vec<Target> = Vec::with_capacity(live * r_n);
    for (j, &(lo, hi, nans)) in stats.iter().enumerate() {
        if ranked.nan[j] {
            continue;
        }
        for r in 0..r_n {
            targets.push(Target {
                r,
                iv: Interval {
                    col: j,
                    lo,
                    hi,
                    below: 0,
                    // NaN are above every interval: their keys are the
                    // largest and the first pass left them out.
                    count: n - nans,
                },
            });
        }
    }
    drop(stats);
    drop(stats_held);
    let slots = rt.threads() as u64 + 2;
    loop {
        // Intervals narrowed to one key are answered.
        targets.retain(|t| {
            if t.iv.lo == t.iv.hi {
                ranked.values[t.iv.col * r_n + t.r] = T::from_key(t.iv.lo);
                false
            } else {
                true
            }
        });
        if targets.is_empty() {
            break;
        }
        let mut intervals: Vec<Interval> = Vec::with_capacity(targets.len());
        intervals.extend(targets.iter().map(|t| t.iv));
        intervals.sort_unstable_by_key(|iv| (iv.col, iv.lo, iv.hi));
        intervals.dedup();
        let candidates: u64 = intervals.iter().map(|iv| iv.count).sum();
        let headers = intervals.len() as u64 * VEC_BYTES;
        // The collected keys: exact vectors once merged; a block's grow
        // by doubling.
        let (merged, state) = (candidates * 8 + headers, 2 * candidates * 8 + headers);
        if state.saturating_mul(slots) <= avail / 2
            && pass_size(rt, avail, row_bytes, meta.rows(), merged, state).is_some()
        {
            collect::<T>(
                rt,
                src,
                flat,
                cols,
                &intervals,
                (held, merged, state),
                &targets,
                &mut ranked,
                report,
            )?;
            break;
        }
        // A histogram pass: as many buckets as the budget allows.
        let hist = |bits: u32| intervals.len() as u64 * (8u64 << bits);
        let mut bits = 12u32;
        while bits > MIN_BUCKET_BITS && hist(bits).saturating_mul(slots) > avail / 2 {
            bits -= 1;
        }
        let lookup = Lookup::new(&intervals, cols, bits);
        let buckets = 1usize << bits;
        let (merged, merged_held) = read_pass::<T, _, _>(
            rt,
            src,
            held,
            (hist(bits), hist(bits)),
            report,
            || vec![0u64; intervals.len() * buckets],
            || vec![0u64; intervals.len() * buckets],
            |h, data| {
                each_value(data, cols, flat, |j, v| {
                    lookup.each(j, v.key(), |i, d| {
                        h[i * buckets + (d >> lookup.shift[i]) as usize] += 1;
                    })
                })
            },
            |a: &mut Vec<u64>, h| {
                for (a, b) in a.iter_mut().zip(h) {
                    *a += b;
                }
            },
        )?;
        for t in &mut targets {
            let (r, iv) = (t.r, t.iv);
            let i = intervals
                .binary_search_by_key(&(iv.col, iv.lo, iv.hi), |x| (x.col, x.lo, x.hi))
                .map_err(|_| Error::Invalid("internal: lost a quantile interval".into()))?;
            let h = &merged[i * buckets..(i + 1) * buckets];
            let want = ranked.ranks.of(iv.col)[r] - iv.below;
            let mut before = 0;
            let shift = lookup.shift[i];
            for (b, &c) in h.iter().enumerate() {
                if want < before + c {
                    let lo = iv.lo + ((b as u64) << shift);
                    let hi = lo.saturating_add((1u64 << shift) - 1).min(iv.hi);
                    t.iv = Interval {
                        col: iv.col,
                        lo,
                        hi,
                        below: iv.below + before,
                        count: c,
                    };
                    break;
                }
                before += c;
            }
        }
        drop(merged);
        drop(merged_held);
    }
    Ok(ranked)
}

/// The last pass: collects the keys in `intervals` and picks the ranks
/// (`sizes`: the bytes selection holds, the merged keys' and a block's).
#[allow(clippy::too_many_arguments)] // the selection state it reads, each part borrowed apart
fn collect<T: QuantileElement>(
    rt: &Runtime,
    src: &ArrayFile,
    flat: bool,
    cols: usize,
    intervals: &[Interval],
    (held, merged, state): (u64, u64, u64),
    targets: &[Target],
    ranked: &mut Ranked<T>,
    report: &mut RunReport,
) -> Result<()> {
    let lookup = Lookup::new(intervals, cols, 0);
    let r_n = ranked.ranks.r_n;
    let (mut keys, keys_held) = read_pass::<T, _, _>(
        rt,
        src,
        held,
        (merged, state),
        report,
        || {
            intervals
                .iter()
                .map(|iv| Vec::with_capacity(iv.count as usize))
                .collect::<Vec<Vec<u64>>>()
        },
        || vec![Vec::new(); intervals.len()],
        |s: &mut Vec<Vec<u64>>, data| {
            each_value(data, cols, flat, |j, v| {
                let k = v.key();
                lookup.each(j, k, |i, _| s[i].push(k));
            })
        },
        |a: &mut Vec<Vec<u64>>, s| {
            for (a, b) in a.iter_mut().zip(s) {
                a.extend(b);
            }
        },
    )?;
    for k in &mut keys {
        k.sort_unstable();
    }
    for t in targets {
        let iv = t.iv;
        let i = intervals
            .binary_search_by_key(&(iv.col, iv.lo, iv.hi), |x| (x.col, x.lo, x.hi))
            .map_err(|_| Error::Invalid("internal: lost a quantile interval".into()))?;
        let key = keys[i]
            .get((ranked.ranks.of(iv.col)[t.r] - iv.below) as usize)
            .copied()
            .ok_or_else(|| Error::Invalid("internal: quantile rank not collected".into()))?;
        ranked.values[iv.col * r_n + t.r] = T::from_key(key);
    }
    drop(keys);
    drop(keys_held);
    Ok(())
}
