//! Exact quantiles and medians along axis 0 or over all elements, equal to
//! `np.quantile(x, q, axis)` (default "linear" method, `q` a Python float)
//! and `np.median(x, axis)`.
//!
//! Only a few order statistics per column are needed — the values of
//! rank `floor((n-1)q)` and the next — so the data is not sorted. Each
//! value is mapped to an order-preserving integer key (see
//! [`super::key`]) and the ranks are found by **radix selection** over
//! read-only passes:
//!
//! 1. one pass finds each column's smallest and largest key and counts
//!    NaNs (a column with a NaN has a NaN quantile, as in NumPy);
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
//! When the histograms themselves cannot fit the budget (very many
//! columns under a tiny limit), the external sort ([`super::sort`]) is
//! used instead and the ranks are read from the sorted columns.
//!
//! The ranks are then combined exactly as NumPy does: `_lerp` in the
//! input's float type (float16 and float32 arithmetic rounded at each
//! step, `t` rounded to the type), float64 for integers; the median is
//! NumPy's mean of the middle values (float32 accumulation for float16).

use std::collections::{BTreeSet, HashMap};

use half::f16;
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::{ArrayFile, DType};
use outcore_spill::Consumer;

use super::key::SortKey;
use super::{reserve_slots, stream_file};
use crate::engine::{Engine, RunReport};
use crate::error::{Error, Result};
use crate::reduce::ReduceAxis;
use crate::value::{AnyArray, DynElement};

/// A quantile to compute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quantile {
    /// `np.median`: the middle value, or the mean of the two middle values.
    Median,
    /// `np.quantile(x, q)` with linear interpolation, `0 <= q <= 1`.
    Linear(f64),
}

impl Quantile {
    /// The ranks this quantile reads, for `n` values.
    fn ranks(self, n: u64) -> Vec<u64> {
        if n == 0 {
            return Vec::new();
        }
        match self {
            Quantile::Median if n % 2 == 1 => vec![n / 2],
            Quantile::Median => vec![n / 2 - 1, n / 2],
            Quantile::Linear(q) => {
                let (lo, hi, _) = linear_index(n, q);
                vec![lo, hi]
            }
        }
    }
}

/// How quantiles are found (see [`crate::EngineBuilder::quantile_method`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantileMethod {
    /// Radix selection, unless its histograms cannot fit the budget; then
    /// the external sort.
    #[default]
    Auto,
    /// Always radix selection (an error if the histograms cannot fit).
    Select,
    /// Always the external sort.
    Sort,
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

/// The result dtype of a quantile or median of `dtype`, as NumPy.
pub(crate) fn result_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::F32 | DType::F64 => dtype,
        _ => DType::F64,
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

/// Computes `kinds` of `src` along `axis` (all elements or axis 0), one
/// array per kind: shape `shape[1..]` for axis 0, 0-d for all.
pub(crate) fn compute(
    engine: &Engine,
    src: &ArrayFile,
    axis: ReduceAxis,
    kinds: &[Quantile],
    report: &mut RunReport,
) -> Result<Vec<AnyArray>> {
    outcore_chunker::with_dtype!(
        src.meta().dtype,
        T => compute_typed::<T>(engine, src, axis, kinds, report)
    )
}

fn compute_typed<T: QuantileElement>(
    engine: &Engine,
    src: &ArrayFile,
    axis: ReduceAxis,
    kinds: &[Quantile],
    report: &mut RunReport,
) -> Result<Vec<AnyArray>> {
    let meta = src.meta();
    let (rows, row_len) = (meta.rows(), meta.row_len());
    let flat = match axis {
        ReduceAxis::All => true,
        ReduceAxis::Axis0 => false,
        ReduceAxis::Axis1 => {
            return Err(Error::Invalid(
                "quantiles along axis 1 are not supported (use axis 0 or all)".into(),
            ));
        }
    };
    for k in kinds {
        if let Quantile::Linear(q) = k
            && !(0.0..=1.0).contains(q)
        {
            return Err(Error::Invalid(format!(
                "quantile {q} is outside [0, 1] (NumPy: Quantiles must be in the range [0, 1])"
            )));
        }
    }
    if meta.dtype == DType::Bool && kinds.iter().any(|k| matches!(k, Quantile::Linear(_))) {
        return Err(Error::Invalid(
            "quantile of a bool array is undefined (NumPy raises TypeError: numpy boolean \
             subtract); cast to an integer dtype first"
                .into(),
        ));
    }
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
    if n == 0 && cols > 0 && kinds.iter().any(|k| matches!(k, Quantile::Linear(_))) {
        return Err(Error::Empty {
            op: "quantile".into(),
            what: if flat { "array" } else { "axis" },
        });
    }
    let ranks: Vec<u64> = kinds
        .iter()
        .flat_map(|k| k.ranks(n))
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    // values[col][i] = the value of rank ranks[i]; None for NaN columns.
    let values: Vec<Option<Vec<T>>> = if n == 0 || cols == 0 {
        vec![None; cols]
    } else {
        let method = engine.quantile_method();
        let selected = match method {
            QuantileMethod::Sort => None,
            _ => select::<T>(engine, src, flat, cols, &ranks, report)?,
        };
        match selected {
            Some(v) => v,
            None if method == QuantileMethod::Select => {
                return Err(super::too_small(
                    engine,
                    0,
                    0,
                    "quantile: radix selection's histograms do not fit; use the sort method",
                ));
            }
            None => by_sort::<T>(engine, src, flat, cols, &ranks, report)?,
        }
    };
    let rank_index: HashMap<u64, usize> = ranks.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    let mut out = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let mut res: Vec<T::Out> = Vec::with_capacity(cols);
        for col in &values {
            let Some(v) = col else {
                res.push(T::nan());
                continue;
            };
            let at = |r: u64| v[rank_index[&r]];
            res.push(match kind {
                Quantile::Median if n % 2 == 1 => T::middle(at(n / 2), None),
                Quantile::Median => T::middle(at(n / 2 - 1), Some(at(n / 2))),
                Quantile::Linear(q) => {
                    let (lo, hi, gamma) = linear_index(n, q);
                    T::lerp(at(lo), at(hi), gamma)
                }
            });
        }
        let array = ArrayD::from_shape_vec(IxDyn(&out_shape), res)
            .map_err(|e| Error::Invalid(format!("internal: quantile shape: {e}")))?;
        out.push(<T::Out as DynElement>::into_any(array));
    }
    Ok(out)
}

/// Ranks read from the externally sorted columns.
fn by_sort<T: QuantileElement>(
    engine: &Engine,
    src: &ArrayFile,
    flat: bool,
    cols: usize,
    ranks: &[u64],
    report: &mut RunReport,
) -> Result<Vec<Option<Vec<T>>>> {
    let sorted = super::sort::sort_columns::<T>(engine, src, flat, report)?;
    let mut out = Vec::with_capacity(cols);
    for col in 0..cols {
        // NaN sorts last: a column holds one if its last value is NaN.
        if sorted.get::<T>(col, sorted.n - 1)?.is_nan() {
            out.push(None);
            continue;
        }
        let v = ranks
            .iter()
            .map(|&r| sorted.get::<T>(col, r))
            .collect::<Result<Vec<T>>>()?;
        out.push(Some(v));
    }
    Ok(out)
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

/// Rows per block and slots for a pass whose per-block state is
/// `state` bytes (plus one merged copy), or `None` if it cannot fit.
fn pass_size(engine: &Engine, row_bytes: u64, rows: u64, state: u64) -> Option<(u64, usize)> {
    let limit = engine.budget().limit();
    let threads = engine.threads().max(1);
    for slots in [threads + 1, 1] {
        let fixed = state;
        let per_slot = (limit.saturating_sub(fixed)) / slots as u64;
        let block = per_slot.saturating_sub(state) / row_bytes.max(1);
        if block > 0 {
            let block = block
                .min((engine.block_bytes() / row_bytes.max(1)).max(1))
                .min(rows.max(1));
            return Some((block, slots));
        }
    }
    None
}

/// Runs one read pass over `src` with per-block states merged in order.
#[allow(clippy::too_many_arguments)]
fn read_pass<T: SortKey, S: Send>(
    engine: &Engine,
    src: &ArrayFile,
    state_bytes: u64,
    report: &mut RunReport,
    init: impl Fn() -> S + Send + Sync,
    update: impl Fn(&mut S, &[T]) + Send + Sync,
    mut merge: impl FnMut(S),
) -> Result<Option<()>> {
    let meta = src.meta();
    let row_bytes = meta.row_bytes() as u64;
    let Some((block_rows, slots)) = pass_size(engine, row_bytes, meta.rows(), state_bytes) else {
        return Ok(None);
    };
    let (_fixed, slots) = reserve_slots(
        engine,
        &[(Consumer::State, state_bytes)],
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
        (Consumer::State, state_bytes * (slots.len() as u64 + 1)),
    ]);
    let mut blocks = 0;
    let read = stream_file(
        engine,
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
            merge(s);
            blocks += 1;
            Ok(())
        },
    )?;
    report.bytes_read += read;
    report.blocks += blocks;
    report.passes += 1;
    Ok(Some(()))
}

/// Radix selection of `ranks` in every column; `None` when the budget
/// cannot hold the passes' states.
fn select<T: QuantileElement>(
    engine: &Engine,
    src: &ArrayFile,
    flat: bool,
    cols: usize,
    ranks: &[u64],
    report: &mut RunReport,
) -> Result<Option<Vec<Option<Vec<T>>>>> {
    let limit = engine.budget().limit();
    let n = if flat {
        src.meta().len()
    } else {
        src.meta().rows()
    };
    // Pass 1: smallest and largest key, NaN count, per column.
    let stats_bytes = cols as u64 * 24;
    let mut stats = vec![(u64::MAX, 0u64, 0u64); cols];
    let done = read_pass::<T, _>(
        engine,
        src,
        stats_bytes,
        report,
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
        |s| {
            for (a, b) in stats.iter_mut().zip(s) {
                a.0 = a.0.min(b.0);
                a.1 = a.1.max(b.1);
                a.2 += b.2;
            }
        },
    )?;
    if done.is_none() {
        return Ok(None);
    }
    // Targets: (column, index into ranks) → its current interval.
    let mut targets: Vec<(usize, usize, Interval)> = Vec::new();
    let mut found: Vec<Option<Vec<Option<T>>>> = Vec::with_capacity(cols);
    for (j, &(lo, hi, nans)) in stats.iter().enumerate() {
        if nans > 0 {
            found.push(None);
            continue;
        }
        found.push(Some(vec![None; ranks.len()]));
        for r in 0..ranks.len() {
            targets.push((
                j,
                r,
                Interval {
                    col: j,
                    lo,
                    hi,
                    below: 0,
                    count: n,
                },
            ));
        }
    }
    loop {
        // Intervals narrowed to one key are answered.
        targets.retain(|&(j, r, iv)| {
            if iv.lo == iv.hi {
                if let Some(v) = &mut found[j] {
                    v[r] = Some(T::from_key(iv.lo));
                }
                false
            } else {
                true
            }
        });
        if targets.is_empty() {
            break;
        }
        let mut intervals: Vec<Interval> = targets.iter().map(|t| t.2).collect();
        intervals.sort_by_key(|iv| (iv.col, iv.lo, iv.hi));
        intervals.dedup();
        let candidates: u64 = intervals.iter().map(|iv| iv.count).sum();
        let slots = engine.threads() as u64 + 2;
        if candidates.saturating_mul(8 * slots) <= limit / 2 {
            collect::<T>(
                engine,
                src,
                flat,
                cols,
                &intervals,
                candidates,
                ranks,
                &mut targets,
                &mut found,
                report,
            )?;
            break;
        }
        // A histogram pass: as many buckets as the budget allows.
        let mut bits = 12u32;
        let hist = |bits: u32| intervals.len() as u64 * (8u64 << bits);
        while bits > 4 && hist(bits) * slots > limit / 2 {
            bits -= 1;
        }
        if hist(bits) * slots > limit / 2 {
            return Ok(None);
        }
        let lookup = Lookup::new(&intervals, cols, bits);
        let buckets = 1usize << bits;
        let mut merged = vec![0u64; intervals.len() * buckets];
        let done = read_pass::<T, _>(
            engine,
            src,
            hist(bits),
            report,
            || vec![0u64; intervals.len() * buckets],
            |h, data| {
                each_value(data, cols, flat, |j, v| {
                    lookup.each(j, v.key(), |i, d| {
                        h[i * buckets + (d >> lookup.shift[i]) as usize] += 1;
                    })
                })
            },
            |h| {
                for (a, b) in merged.iter_mut().zip(h) {
                    *a += b;
                }
            },
        )?;
        if done.is_none() {
            return Ok(None);
        }
        for t in &mut targets {
            let (_, r, iv) = *t;
            let i = intervals
                .binary_search_by_key(&(iv.col, iv.lo, iv.hi), |x| (x.col, x.lo, x.hi))
                .map_err(|_| Error::Invalid("internal: lost a quantile interval".into()))?;
            let h = &merged[i * buckets..(i + 1) * buckets];
            let want = ranks[r] - iv.below;
            let mut before = 0;
            let shift = lookup.shift[i];
            for (b, &c) in h.iter().enumerate() {
                if want < before + c {
                    let lo = iv.lo + ((b as u64) << shift);
                    let hi = lo.saturating_add((1u64 << shift) - 1).min(iv.hi);
                    t.2 = Interval {
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
    }
    let mut out = Vec::with_capacity(cols);
    for col in found {
        out.push(match col {
            None => None,
            Some(v) => Some(
                v.into_iter()
                    .collect::<Option<Vec<T>>>()
                    .ok_or_else(|| Error::Invalid("internal: a quantile rank was lost".into()))?,
            ),
        });
    }
    Ok(Some(out))
}

/// The last pass: collects the keys in `intervals` and picks the ranks.
#[allow(clippy::too_many_arguments)]
fn collect<T: QuantileElement>(
    engine: &Engine,
    src: &ArrayFile,
    flat: bool,
    cols: usize,
    intervals: &[Interval],
    candidates: u64,
    ranks: &[u64],
    targets: &mut Vec<(usize, usize, Interval)>,
    found: &mut [Option<Vec<Option<T>>>],
    report: &mut RunReport,
) -> Result<()> {
    let lookup = Lookup::new(intervals, cols, 0);
    let mut keys: Vec<Vec<u64>> = vec![Vec::new(); intervals.len()];
    read_pass::<T, _>(
        engine,
        src,
        candidates * 8,
        report,
        || vec![Vec::new(); intervals.len()],
        |s: &mut Vec<Vec<u64>>, data| {
            each_value(data, cols, flat, |j, v| {
                let k = v.key();
                lookup.each(j, k, |i, _| s[i].push(k));
            })
        },
        |s| {
            for (a, b) in keys.iter_mut().zip(s) {
                a.extend(b);
            }
        },
    )?
    .ok_or_else(|| Error::Invalid("internal: quantile collection does not fit".into()))?;
    for k in &mut keys {
        k.sort_unstable();
    }
    for &(j, r, iv) in targets.iter() {
        let i = intervals
            .binary_search_by_key(&(iv.col, iv.lo, iv.hi), |x| (x.col, x.lo, x.hi))
            .map_err(|_| Error::Invalid("internal: lost a quantile interval".into()))?;
        let key = keys[i]
            .get((ranks[r] - iv.below) as usize)
            .copied()
            .ok_or_else(|| Error::Invalid("internal: quantile rank not collected".into()))?;
        if let Some(v) = &mut found[j] {
            v[r] = Some(T::from_key(key));
        }
    }
    targets.clear();
    Ok(())
}
