//! Sort, cumsum, median and quantiles against an in-memory reference,
//! across memory limits, threads, block sizes, quantile methods and every
//! dtype.
//!
//! * The reference is written here, plainly, from NumPy's definitions:
//!   `np.sort(x, axis=0)` is a per-column sort with every NaN last;
//!   `np.cumsum(x, axis=0)` adds row by row in the result dtype (int64 for
//!   bool and signed, uint64 for unsigned, floats their own type, float16
//!   through `half::f16` addition); quantiles sort the column and apply
//!   NumPy's linear interpolation (`_lerp`, with its clipping at the top
//!   index), medians NumPy's mean of the middle values; the nan-variants
//!   the same of the values that are not NaN (NaN where none is left;
//!   `nanmedian` along an axis shorter than 600 NumPy's masked-array sum
//!   of the middle values in the input's type); along axis 1 each row.
//!   Nothing of the engine's internals is used.
//! * Inputs: every dtype; 0–300 rows of 1–6 columns (some 1-d and 3-d);
//!   values with many duplicates, full-range and extreme integers, floats
//!   with NaN (of either sign), ±inf, subnormals; zeros all of one sign
//!   (NumPy leaves the order of -0.0 and +0.0 unspecified).
//! * Engines: limits from 25 KiB (the external sort then makes several
//!   runs and merges them two at a time, in up to three levels) to 64 MiB,
//!   1–3 threads, blocks of 1 byte to 8 MiB, quantiles by radix selection,
//!   by the external sort, or either. Every run must leave the spill directory
//!   empty and release its quota; a failed write leaves no output file.
//! * Results are compared bit for bit (any NaN equals any NaN), and must
//!   not depend on the threads, the limit or the method.

mod common;

use std::cmp::Ordering;
use std::fmt::Debug;
use std::path::Path;

use common::{Rng, config, int_range, read_any, round_to, same_bits, write_any};
use half::f16;
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::DType;
use outcore_exec::{AnyArray, Engine, Error, Expr, QuantileMethod, ReduceAxis, Scalar};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The quantiles checked (as Python floats in NumPy).
const QS: [f64; 6] = [0.0, 0.25, 0.5, 0.9, 0.999, 1.0];

// ---------------------------------------------------------------------------
// The reference.

/// An element type, with NumPy's order and arithmetic written plainly.
trait El: Copy + Debug + 'static {
    fn is_nan(self) -> bool;
    /// `np.sort` order: ascending, every NaN last.
    fn np_cmp(self, other: Self) -> Ordering;
    fn scalar(self) -> Scalar;
    /// The dtype of a quantile or median.
    fn quantile_dtype() -> DType;
    /// NumPy's `_lerp(a, b, t)` in the result dtype.
    fn lerp(a: Self, b: Self, t: f64) -> Scalar;
    /// NumPy's mean of the middle value(s).
    fn middle(a: Self, b: Option<Self>) -> Scalar;
    /// NumPy's masked-array median of the middle values (`np.nanmedian`
    /// along an axis shorter than 600): `(0 + a + b) / 2` in the type.
    fn ma_middle(a: Self, b: Self) -> Scalar;
    /// `np.cumsum(x, axis=0)` of a `rows × cols` C-order array: the result
    /// dtype and values, or the exact sum that left the integer result type.
    fn cumsum(x: &[Self], rows: usize, cols: usize) -> Result<(DType, Vec<Scalar>), String>;
}

/// Integer cumsum in `i128`, checked against the result type's range.
fn int_cumsum(
    x: impl Iterator<Item = i128>,
    rows: usize,
    cols: usize,
    unsigned: bool,
) -> Result<(DType, Vec<Scalar>), String> {
    let x: Vec<i128> = x.collect();
    let (lo, hi, dtype) = if unsigned {
        (0, i128::from(u64::MAX), DType::U64)
    } else {
        (i128::from(i64::MIN), i128::from(i64::MAX), DType::I64)
    };
    let mut out = x.clone();
    for r in 1..rows {
        for c in 0..cols {
            let s = out[(r - 1) * cols + c] + x[r * cols + c];
            if !(lo..=hi).contains(&s) {
                return Err(format!("row {r}, column {c}: {s}"));
            }
            out[r * cols + c] = s;
        }
    }
    let vals = out
        .into_iter()
        .map(|v| {
            if unsigned {
                Scalar::UInt(v as u64)
            } else {
                Scalar::Int(v as i64)
            }
        })
        .collect();
    Ok((dtype, vals))
}

/// `_lerp` for integer inputs: float64 arithmetic, exact difference.
fn int_lerp(a: i128, b: i128, t: f64) -> Scalar {
    let diff = (b - a) as f64;
    Scalar::Float(if t >= 0.5 {
        b as f64 - diff * (1.0 - t)
    } else {
        a as f64 + diff * t
    })
}

/// The mean of one or two middle integers, in float64 from +0.0.
fn int_middle(a: i128, b: Option<i128>) -> Scalar {
    Scalar::Float(match b {
        None => (0.0 + a as f64) / 1.0,
        Some(b) => (0.0 + a as f64 + b as f64) / 2.0,
    })
}

macro_rules! int_el {
    ($($t:ty => $scalar:ident as $w:ty, $unsigned:expr);*) => {$(
        impl El for $t {
            fn is_nan(self) -> bool {
                false
            }
            fn np_cmp(self, other: Self) -> Ordering {
                self.cmp(&other)
            }
            fn scalar(self) -> Scalar {
                Scalar::$scalar(self as $w)
            }
            fn quantile_dtype() -> DType {
                DType::F64
            }
            fn lerp(a: Self, b: Self, t: f64) -> Scalar {
                int_lerp(a as i128, b as i128, t)
            }
            fn middle(a: Self, b: Option<Self>) -> Scalar {
                int_middle(a as i128, b.map(|b| b as i128))
            }
            fn ma_middle(a: Self, b: Self) -> Scalar {
                int_middle(a as i128, Some(b as i128))
            }
            fn cumsum(
                x: &[Self],
                rows: usize,
                cols: usize,
            ) -> Result<(DType, Vec<Scalar>), String> {
                int_cumsum(x.iter().map(|&v| v as i128), rows, cols, $unsigned)
            }
        }
    )*};
}

int_el!(
    i8 => Int as i64, false; i16 => Int as i64, false; i32 => Int as i64, false;
    i64 => Int as i64, false; u8 => UInt as u64, true; u16 => UInt as u64, true;
    u32 => UInt as u64, true; u64 => UInt as u64, true
);

impl El for bool {
    fn is_nan(self) -> bool {
        false
    }
    fn np_cmp(self, other: Self) -> Ordering {
        self.cmp(&other)
    }
    fn scalar(self) -> Scalar {
        Scalar::Bool(self)
    }
    fn quantile_dtype() -> DType {
        DType::F64
    }
    fn lerp(_: Self, _: Self, _: f64) -> Scalar {
        unreachable!("NumPy refuses quantiles of bool")
    }
    fn middle(a: Self, b: Option<Self>) -> Scalar {
        int_middle(i128::from(a), b.map(i128::from))
    }
    fn ma_middle(a: Self, b: Self) -> Scalar {
        int_middle(i128::from(a), Some(i128::from(b)))
    }
    fn cumsum(x: &[Self], rows: usize, cols: usize) -> Result<(DType, Vec<Scalar>), String> {
        int_cumsum(x.iter().map(|&v| i128::from(v)), rows, cols, false)
    }
}

macro_rules! float_el {
    ($($t:ty: $dtype:expr, $to_f64:expr, $of_f64:expr, $middle:expr);*) => {$(
        impl El for $t {
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn np_cmp(self, other: Self) -> Ordering {
                match (El::is_nan(self), El::is_nan(other)) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) => self.partial_cmp(&other).expect("neither is NaN"),
                }
            }
            fn scalar(self) -> Scalar {
                Scalar::Float($to_f64(self))
            }
            fn quantile_dtype() -> DType {
                $dtype
            }
            fn lerp(a: Self, b: Self, t: f64) -> Scalar {
                // In the input's type: t rounded to it, 1 - t in float64
                // then rounded, as NumPy's float64 gamma cast to the array.
                let diff = b - a;
                let v = if t >= 0.5 {
                    b - diff * $of_f64(1.0 - t)
                } else {
                    a + diff * $of_f64(t)
                };
                Scalar::Float($to_f64(v))
            }
            fn middle(a: Self, b: Option<Self>) -> Scalar {
                Scalar::Float($to_f64($middle(a, b)))
            }
            fn ma_middle(a: Self, b: Self) -> Scalar {
                Scalar::Float($to_f64(($of_f64(0.0) + a + b) / $of_f64(2.0)))
            }
            fn cumsum(
                x: &[Self],
                rows: usize,
                cols: usize,
            ) -> Result<(DType, Vec<Scalar>), String> {
                // The first row as is (-0.0 stays -0.0), then one addition
                // per row in the dtype.
                let mut out = x.to_vec();
                for r in 1..rows {
                    for c in 0..cols {
                        out[r * cols + c] = out[(r - 1) * cols + c] + x[r * cols + c];
                    }
                }
                Ok(($dtype, out.into_iter().map(El::scalar).collect()))
            }
        }
    )*};
}

float_el!(
    f64: DType::F64, |v: f64| v, |t: f64| t, |a: f64, b: Option<f64>| match b {
        None => (0.0 + a) / 1.0,
        Some(b) => (0.0 + a + b) / 2.0,
    };
    f32: DType::F32, f64::from, |t: f64| t as f32, |a: f32, b: Option<f32>| match b {
        None => (0.0f32 + a) / 1.0,
        Some(b) => (0.0f32 + a + b) / 2.0,
    };
    f16: DType::F16, f16::to_f64, f16::from_f64, |a: f16, b: Option<f16>| {
        // NumPy's mean of float16 accumulates in float32.
        f16::from_f32(match b {
            None => (0.0f32 + a.to_f32()) / 1.0,
            Some(b) => (0.0f32 + a.to_f32() + b.to_f32()) / 2.0,
        })
    }
);

/// A quantile to compute.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Median,
    Quantile(f64),
    NanMedian,
    NanQuantile(f64),
}

/// One result checked per case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Sort,
    Cumsum,
    Q(Kind, ReduceAxis),
}

impl Op {
    fn label(self) -> String {
        match self {
            Op::Sort => "sort(axis=0)".into(),
            Op::Cumsum => "cumsum(axis=0)".into(),
            Op::Q(Kind::Median, axis) => format!("median({axis:?})"),
            Op::Q(Kind::Quantile(q), axis) => format!("quantile({q}, {axis:?})"),
            Op::Q(Kind::NanMedian, axis) => format!("nanmedian({axis:?})"),
            Op::Q(Kind::NanQuantile(q), axis) => format!("nanquantile({q}, {axis:?})"),
        }
    }
}

/// Every result checked for an input, in order.
fn ops() -> Vec<Op> {
    let mut v = vec![Op::Sort, Op::Cumsum];
    // Plain and nan-variants of one axis are computed together.
    for axis in [ReduceAxis::Axis0, ReduceAxis::All, ReduceAxis::Axis1] {
        v.push(Op::Q(Kind::Median, axis));
        v.extend(QS.iter().map(|&q| Op::Q(Kind::Quantile(q), axis)));
        v.push(Op::Q(Kind::NanMedian, axis));
        v.extend(
            [0.0, 0.5, 0.999, 1.0]
                .iter()
                .map(|&q| Op::Q(Kind::NanQuantile(q), axis)),
        );
    }
    v
}

/// An error the engine must return.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ErrKind {
    /// `Error::IntegerOverflow`.
    Overflow,
    /// `Error::Empty` (quantile of nothing).
    Empty,
    /// `Error::Invalid` naming bool (quantile of bool).
    Bool,
    /// `Error::Invalid` naming axis 1 (of an array of fewer than 2
    /// dimensions).
    Axis,
}

/// What the engine must return for one op.
#[derive(Clone, Debug)]
enum Want {
    Values {
        dtype: DType,
        shape: Vec<usize>,
        vals: Vec<Scalar>,
    },
    Err(ErrKind),
}

/// Rows and columns as the engine streams a shape (1-d: one column).
fn rows_cols(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [r] => (*r, 1),
        [r, rest @ ..] => (*r, rest.iter().product()),
    }
}

/// The quantile of one column (unsorted), or an error; `ma` for NumPy's
/// masked-array `nanmedian` (along an axis shorter than 600).
fn quantile_of<T: El>(col: &[T], kind: Kind, ma: bool) -> Result<Scalar, ErrKind> {
    let (col, kind) = match kind {
        // The nan-variants: the same of the values that are not NaN,
        // NaN where there are none (NumPy warns, and does not raise).
        Kind::NanMedian | Kind::NanQuantile(_) => {
            let kept: Vec<T> = col.iter().copied().filter(|v| !v.is_nan()).collect();
            if kept.is_empty() {
                return Ok(Scalar::Float(f64::NAN));
            }
            let base = match kind {
                Kind::NanQuantile(q) => Kind::Quantile(q),
                _ => Kind::Median,
            };
            (kept, base)
        }
        _ => (col.to_vec(), kind),
    };
    let n = col.len();
    if n == 0 {
        return match kind {
            // np.median of nothing: NaN (with a RuntimeWarning).
            Kind::Quantile(_) => Err(ErrKind::Empty),
            _ => Ok(Scalar::Float(f64::NAN)),
        };
    }
    let mut s = col;
    s.sort_by(|a, b| a.np_cmp(*b));
    if s.iter().any(|v| v.is_nan()) {
        return Ok(Scalar::Float(f64::NAN));
    }
    Ok(match kind {
        Kind::Median if ma && n % 2 == 1 => T::ma_middle(s[n / 2], s[n / 2]),
        Kind::Median if ma => T::ma_middle(s[n / 2 - 1], s[n / 2]),
        Kind::Median | Kind::NanMedian if n % 2 == 1 => T::middle(s[n / 2], None),
        Kind::Median | Kind::NanMedian => T::middle(s[n / 2 - 1], Some(s[n / 2])),
        Kind::Quantile(q) | Kind::NanQuantile(q) => {
            let v = (n - 1) as f64 * q;
            // NumPy clips an index at or above the last to -1 (the last
            // value) and computes gamma = v - (-1).
            let (lo, hi, gamma) = if v >= (n - 1) as f64 {
                (n - 1, n - 1, v + 1.0)
            } else {
                let lo = v.floor();
                (lo as usize, lo as usize + 1, v - lo)
            };
            T::lerp(s[lo], s[hi], gamma)
        }
    })
}

/// The reference result of every op of [`ops`] on `x` (C order, `shape`).
fn reference<T: El>(x: &[T], shape: &[usize], dtype: DType) -> Vec<(Op, Want)> {
    let (rows, cols) = rows_cols(shape);
    let mut out = Vec::new();
    for op in ops() {
        let want = match op {
            Op::Sort => {
                let mut sorted = x.to_vec();
                for c in 0..cols {
                    let mut col: Vec<T> = (0..rows).map(|r| x[r * cols + c]).collect();
                    col.sort_by(|a, b| a.np_cmp(*b));
                    for (r, v) in col.into_iter().enumerate() {
                        sorted[r * cols + c] = v;
                    }
                }
                Want::Values {
                    dtype,
                    shape: shape.to_vec(),
                    vals: sorted.into_iter().map(El::scalar).collect(),
                }
            }
            Op::Cumsum => match T::cumsum(x, rows, cols) {
                Ok((dtype, vals)) => Want::Values {
                    dtype,
                    shape: shape.to_vec(),
                    vals,
                },
                Err(_) => Want::Err(ErrKind::Overflow),
            },
            // Bool is refused first, whatever the axis.
            Op::Q(Kind::Quantile(_) | Kind::NanQuantile(_), _) if dtype == DType::Bool => {
                Want::Err(ErrKind::Bool)
            }
            Op::Q(_, ReduceAxis::Axis1) if shape.len() < 2 => Want::Err(ErrKind::Axis),
            Op::Q(kind, axis) => {
                let (columns, out_shape): (Vec<Vec<T>>, Vec<usize>) = match axis {
                    ReduceAxis::All => (vec![x.to_vec()], Vec::new()),
                    ReduceAxis::Axis1 => (
                        (0..rows)
                            .map(|r| x[r * cols..(r + 1) * cols].to_vec())
                            .collect(),
                        vec![rows],
                    ),
                    _ => (
                        (0..cols)
                            .map(|c| (0..rows).map(|r| x[r * cols + c]).collect())
                            .collect(),
                        shape.get(1..).unwrap_or_default().to_vec(),
                    ),
                };
                // NumPy's nanmedian along an axis shorter than 600 of a
                // 2-d or larger array is its masked-array median.
                let axis_len = if axis == ReduceAxis::Axis1 {
                    cols
                } else {
                    rows
                };
                let ma = kind == Kind::NanMedian
                    && axis != ReduceAxis::All
                    && shape.len() >= 2
                    && axis_len < 600;
                match columns
                    .iter()
                    .map(|col| quantile_of(col, kind, ma))
                    .collect::<Result<Vec<Scalar>, ErrKind>>()
                {
                    Ok(vals) => Want::Values {
                        dtype: T::quantile_dtype(),
                        shape: out_shape,
                        vals,
                    },
                    Err(e) => Want::Err(e),
                }
            }
        };
        out.push((op, want));
    }
    out
}

/// Calls `$body` with `$x` bound to the typed array inside an `AnyArray`.
macro_rules! typed {
    ($a:expr, $x:ident => $body:expr) => {
        match $a {
            AnyArray::Bool($x) => $body,
            AnyArray::I8($x) => $body,
            AnyArray::I16($x) => $body,
            AnyArray::I32($x) => $body,
            AnyArray::I64($x) => $body,
            AnyArray::U8($x) => $body,
            AnyArray::U16($x) => $body,
            AnyArray::U32($x) => $body,
            AnyArray::U64($x) => $body,
            AnyArray::F16($x) => $body,
            AnyArray::F32($x) => $body,
            AnyArray::F64($x) => $body,
        }
    };
}

fn reference_of(a: &AnyArray) -> Vec<(Op, Want)> {
    typed!(a, x => reference(x.as_slice().expect("C order"), a.shape(), a.dtype()))
}

// ---------------------------------------------------------------------------
// Inputs.

/// How an input's values are drawn.
#[derive(Clone, Debug)]
struct Values {
    /// Integers: small / full range / small with the extremes / near the
    /// extremes. Floats: quarters / continuous / wide magnitudes /
    /// subnormals. Bool: fair / mostly false / mostly true / all false.
    mode: u8,
    /// Values are drawn from a pool of this many (0: each drawn afresh).
    pool: usize,
    /// Rate of NaN (and ±inf with `infs`) among floats.
    special: f64,
    infs: bool,
    /// Every zero is -0.0 (else +0.0): never both.
    neg_zero: bool,
    /// NaNs of either sign (else all positive).
    neg_nan: bool,
}

#[derive(Clone, Debug)]
struct Input {
    dtype: DType,
    shape: Vec<usize>,
    seed: u64,
    values: Values,
}

/// `x` rounded to a float dtype, as `f64`.
fn smallest_subnormal(d: DType) -> f64 {
    match d {
        DType::F16 => 2f64.powi(-24),
        DType::F32 => 2f64.powi(-149),
        _ => f64::from_bits(1),
    }
}

impl Values {
    fn draw_int(&self, d: DType, rng: &mut Rng) -> i128 {
        let (lo, hi) = int_range(d);
        if d == DType::Bool {
            let p = [0.5, 0.05, 0.95, 0.0][self.mode as usize];
            return i128::from(rng.chance(p));
        }
        let small = |rng: &mut Rng| {
            let v = i128::from(rng.range(-9, 9));
            if lo == 0 { v + 9 } else { v }
        };
        match self.mode {
            0 => small(rng),
            1 => {
                let span = (hi - lo) as u128;
                let r =
                    ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) % (span + 1);
                lo + r as i128
            }
            2 if rng.chance(0.15) => {
                if rng.chance(0.5) {
                    lo
                } else {
                    hi
                }
            }
            2 => small(rng),
            _ => {
                let k = i128::from(rng.range(0, 9));
                if rng.chance(0.5) { lo + k } else { hi - k }
            }
        }
    }

    /// A finite value of float dtype `d` (rounded to it), as `f64`.
    fn draw_float(&self, d: DType, rng: &mut Rng) -> f64 {
        if rng.chance(0.05) {
            // Zeros often: their sign must survive (made -0.0 when asked).
            return 0.0;
        }
        let v = match self.mode {
            0 => rng.range(-12, 12) as f64 / 4.0,
            1 => (rng.unit() - 0.5) * 2000.0,
            2 => {
                let sign = if rng.chance(0.5) { -1.0 } else { 1.0 };
                sign * (1.0 + rng.unit()) * 2f64.powi(rng.range(-30, 30) as i32)
            }
            _ => rng.range(-5, 5) as f64 * smallest_subnormal(d),
        };
        round_to(d, v)
    }

    /// `n` values of `d`: integers exact (bool as 0/1), floats as `f64`
    /// already rounded to `d` (zeros and NaNs fixed up after conversion).
    fn draw(&self, d: DType, n: usize, rng: &mut Rng) -> (Vec<i128>, Vec<f64>) {
        if d.is_float() {
            let pool: Vec<f64> = (0..self.pool).map(|_| self.draw_float(d, rng)).collect();
            let v = (0..n)
                .map(|_| {
                    if rng.chance(self.special) {
                        match (self.infs, rng.below(3)) {
                            (true, 1) => f64::INFINITY,
                            (true, 2) => f64::NEG_INFINITY,
                            _ if self.neg_nan && rng.chance(0.5) => -f64::NAN,
                            _ => f64::NAN,
                        }
                    } else if pool.is_empty() {
                        self.draw_float(d, rng)
                    } else {
                        pool[rng.below(pool.len() as u64) as usize]
                    }
                })
                .collect();
            (Vec::new(), v)
        } else {
            let pool: Vec<i128> = (0..self.pool).map(|_| self.draw_int(d, rng)).collect();
            let v = (0..n)
                .map(|_| {
                    if pool.is_empty() || d == DType::Bool {
                        self.draw_int(d, rng)
                    } else {
                        pool[rng.below(pool.len() as u64) as usize]
                    }
                })
                .collect();
            (v, Vec::new())
        }
    }
}

impl Input {
    fn array(&self) -> AnyArray {
        let n: usize = self.shape.iter().product();
        let mut rng = Rng(self.seed);
        let (ints, floats) = self.values.draw(self.dtype, n, &mut rng);
        let sh = IxDyn(&self.shape);
        let neg_zero = self.values.neg_zero;
        macro_rules! ints {
            ($t:ty) => {
                AnyArray::from(
                    ArrayD::from_shape_vec(sh, ints.iter().map(|&v| v as $t).collect()).unwrap(),
                )
            };
        }
        macro_rules! floats {
            ($t:ty, $of:expr, $zero:expr, $neg_zero:expr) => {
                AnyArray::from(
                    ArrayD::from_shape_vec(
                        sh,
                        floats
                            .iter()
                            .map(|&v| {
                                let v: $t = $of(v);
                                if v == $zero {
                                    if neg_zero { $neg_zero } else { $zero }
                                } else {
                                    v
                                }
                            })
                            .collect(),
                    )
                    .unwrap(),
                )
            };
        }
        match self.dtype {
            DType::Bool => AnyArray::from(
                ArrayD::from_shape_vec(sh, ints.iter().map(|&v| v != 0).collect()).unwrap(),
            ),
            DType::I8 => ints!(i8),
            DType::I16 => ints!(i16),
            DType::I32 => ints!(i32),
            DType::I64 => ints!(i64),
            DType::U8 => ints!(u8),
            DType::U16 => ints!(u16),
            DType::U32 => ints!(u32),
            DType::U64 => ints!(u64),
            DType::F16 => floats!(f16, f16::from_f64, f16::ZERO, f16::NEG_ZERO),
            DType::F32 => floats!(f32, |v: f64| v as f32, 0.0f32, -0.0f32),
            DType::F64 => floats!(f64, |v: f64| v, 0.0f64, -0.0f64),
        }
    }
}

/// An engine configuration.
#[derive(Clone, Debug)]
struct Config {
    threads: usize,
    limit: u64,
    block_bytes: u64,
    method: QuantileMethod,
}

impl Config {
    fn engine(&self, spill: &Path) -> Engine {
        Engine::builder()
            .memory_limit(self.limit)
            .threads(self.threads)
            .block_bytes(self.block_bytes)
            .quantile_method(self.method)
            .spill_dir(spill)
            .fsync(false)
            .build()
            .expect("engine builds")
    }
}

#[derive(Clone, Debug)]
struct Case {
    input: Input,
    config: Config,
}

fn input_strategy() -> impl Strategy<Value = Input> {
    (
        0..DType::ALL.len(),
        prop_oneof![3 => Just(2usize), 1 => Just(1usize), 1 => Just(3usize)],
        prop_oneof![1 => 0usize..=3, 5 => 0usize..=300],
        (1usize..=6, 1usize..=3),
        any::<u64>(),
        (0u8..4, 0usize..5, 0usize..5),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(d, rank, rows, (c1, c2), seed, (mode, pool, special), (infs, neg_zero, neg_nan))| {
                let shape = match rank {
                    1 => vec![rows],
                    2 => vec![rows, c1],
                    // Trailing dims of at most 3 × 3.
                    _ => vec![rows, c1.min(3), c2],
                };
                Input {
                    dtype: DType::ALL[d],
                    shape,
                    seed,
                    values: Values {
                        mode,
                        pool: [1, 2, 5, 30, 0][pool],
                        special: [0.0, 0.0, 0.01, 0.1, 0.5][special],
                        infs,
                        neg_zero,
                        neg_nan,
                    },
                }
            },
        )
}

fn method_strategy() -> impl Strategy<Value = QuantileMethod> {
    prop_oneof![
        Just(QuantileMethod::Auto),
        Just(QuantileMethod::Select),
        Just(QuantileMethod::Sort),
    ]
}

fn config_strategy() -> impl Strategy<Value = Config> {
    (
        1usize..=3,
        // Tiny (several runs, merge levels of fan-in 2) to roomy. Below
        // ~24.1 KiB a merge of two runs cannot fit (see
        // `limit_below_the_sort_minimum`).
        prop_oneof![
            4 => (25u64 << 10)..(200 << 10),
            1 => Just(1u64 << 20),
            1 => Just(64u64 << 20),
        ],
        prop_oneof![
            Just(1u64),
            Just(64),
            Just(512),
            Just(4096),
            Just(1 << 20),
            Just(8 << 20),
        ],
        method_strategy(),
    )
        .prop_map(|(threads, limit, block_bytes, method)| Config {
            threads,
            limit,
            block_bytes,
            method,
        })
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (input_strategy(), config_strategy()).prop_map(|(input, config)| Case { input, config })
}

// ---------------------------------------------------------------------------
// Running the engine.

/// What the engine returned for every op of [`ops`], in order.
struct Outcome {
    results: Vec<(Op, Result<AnyArray, Error>)>,
    /// Merge levels of the sort, as `explain` describes it.
    levels: u32,
}

/// Merge levels of `x.sort()`, from `explain` ("..., N merge levels of
/// fan-in F ...").
fn merge_levels(engine: &Engine, x: &Expr) -> Result<u32, String> {
    let explain = engine.explain(x.sort()).map_err(|e| e.to_string())?;
    let step = explain
        .steps
        .iter()
        .find(|s| s.starts_with("sort "))
        .ok_or_else(|| format!("no sort step in {:?}", explain.steps))?;
    if step.contains(" in memory ") {
        return Ok(0);
    }
    let before = step
        .split(" merge level")
        .next()
        .filter(|b| b.len() < step.len())
        .ok_or_else(|| format!("no merge levels in {step:?}"))?;
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no merge level count in {step:?}"))
}

/// The files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

fn quantile_expr(x: &Expr, kind: Kind, axis: ReduceAxis) -> Expr {
    match kind {
        Kind::Median => x.median(axis),
        Kind::Quantile(q) => x.quantile(q, axis),
        Kind::NanMedian => x.nanmedian(axis),
        Kind::NanQuantile(q) => x.nanquantile(q, axis),
    }
}

/// Runs every op of [`ops`] on `input` under `config`; checks that the
/// spill directory is left empty, the quota released and no output file
/// left by a failed write.
fn run_engine(array: &AnyArray, config: &Config) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (spill, out) = (dir.path().join("spill"), dir.path().join("out"));
    std::fs::create_dir(&spill).map_err(|e| e.to_string())?;
    std::fs::create_dir(&out).map_err(|e| e.to_string())?;
    let path = dir.path().join("x.npy");
    write_any(&path, array);
    let engine = config.engine(&spill);
    let x = engine.open(&path).map_err(|e| e.to_string())?;
    let levels = merge_levels(&engine, &x)?;
    let mut results = Vec::new();
    let mut written = Vec::new();
    let ops = ops();
    let mut i = 0;
    while i < ops.len() {
        match ops[i] {
            op @ (Op::Sort | Op::Cumsum) => {
                let (e, name) = if op == Op::Sort {
                    (x.sort(), "sort.npy")
                } else {
                    (x.cumsum(), "cumsum.npy")
                };
                let p = out.join(name);
                let r = engine.write_npy(&e, &p).map(|_| read_any(&p));
                if r.is_ok() {
                    written.push(name.to_string());
                }
                results.push((op, r));
                i += 1;
            }
            Op::Q(_, axis) => {
                // The quantiles of one axis, computed together.
                let group: Vec<Op> = ops[i..]
                    .iter()
                    .copied()
                    .take_while(|o| matches!(o, Op::Q(_, a) if *a == axis))
                    .collect();
                i += group.len();
                let exprs: Vec<Expr> = group
                    .iter()
                    .map(|o| match o {
                        Op::Q(kind, axis) => quantile_expr(&x, *kind, *axis),
                        _ => unreachable!(),
                    })
                    .collect();
                match engine.compute(exprs.clone()) {
                    Ok(values) => {
                        results.extend(group.iter().copied().zip(values.into_iter().map(Ok)))
                    }
                    Err(group_err) => {
                        // One by one: some must fail (bool, empty), or
                        // radix selection's histograms for all the ranks
                        // at once did not fit a tiny limit.
                        let alone: Vec<Result<AnyArray, Error>> =
                            exprs.iter().map(|e| engine.compute(e)).collect();
                        let expected = alone.iter().any(Result::is_err)
                            || (config.method == QuantileMethod::Select
                                && matches!(group_err, Error::LimitTooSmall { .. }));
                        if !expected {
                            return Err(format!(
                                "the quantiles along {axis:?} failed together ({group_err}) \
                                 though each alone succeeds"
                            ));
                        }
                        results.extend(group.iter().copied().zip(alone));
                    }
                }
            }
        }
    }
    // Nothing left behind.
    let left = files_in(&spill);
    if !left.is_empty() {
        return Err(format!("spill directory not empty: {left:?}"));
    }
    if engine.spill_space().used() != 0 {
        return Err(format!(
            "{} bytes of spill quota still held",
            engine.spill_space().used()
        ));
    }
    written.sort();
    let outputs = files_in(&out);
    if outputs != written {
        return Err(format!(
            "output directory holds {outputs:?}, expected only {written:?}"
        ));
    }
    Ok(Outcome { results, levels })
}

// ---------------------------------------------------------------------------
// Comparing.

/// `got` equals `want` bit for bit (any NaN equals any NaN).
fn same_array(
    got: &AnyArray,
    dtype: DType,
    shape: &[usize],
    vals: &[Scalar],
) -> Result<(), String> {
    if got.dtype() != dtype || got.shape() != shape {
        return Err(format!(
            "got {} {:?}, want {dtype} {shape:?}",
            got.dtype(),
            got.shape()
        ));
    }
    for (i, (g, w)) in got.scalars().zip(vals).enumerate() {
        if !same_bits(g, *w) {
            return Err(format!("element {i}: got {g:?}, want {w:?}"));
        }
    }
    Ok(())
}

fn check_error(got: &Error, want: ErrKind) -> Result<(), String> {
    let ok = match want {
        ErrKind::Overflow => matches!(got, Error::IntegerOverflow { .. }),
        ErrKind::Empty => matches!(got, Error::Empty { op, .. } if op == "quantile"),
        ErrKind::Bool => matches!(got, Error::Invalid(m) if m.contains("bool")),
        ErrKind::Axis => matches!(got, Error::Invalid(m) if m.contains("axis 1")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected a {want:?} error, got: {got}"))
    }
}

fn check_against_reference(outcome: &Outcome, wants: &[(Op, Want)]) -> Result<(), String> {
    if outcome.results.len() != wants.len() {
        return Err(format!(
            "{} results for {} ops",
            outcome.results.len(),
            wants.len()
        ));
    }
    for ((op, got), (op2, want)) in outcome.results.iter().zip(wants) {
        assert_eq!(op, op2, "results in the order of ops()");
        let what = op.label();
        match (got, want) {
            (Ok(got), Want::Values { dtype, shape, vals }) => {
                same_array(got, *dtype, shape, vals).map_err(|e| format!("{what}: {e}"))?
            }
            (Err(e), Want::Err(kind)) => {
                check_error(e, *kind).map_err(|e| format!("{what}: {e}"))?
            }
            (Ok(got), Want::Err(kind)) => {
                return Err(format!("{what}: expected a {kind:?} error, got {got:?}"));
            }
            (Err(e), Want::Values { .. }) => return Err(format!("{what}: unexpected error: {e}")),
        }
    }
    Ok(())
}

/// Two outcomes agree bit for bit (any NaN equals any NaN: NaNs of both
/// signs sort together, in no specified order) and fail alike.
fn same_outcome(a: &Outcome, b: &Outcome) -> Result<(), String> {
    for ((op, x), (_, y)) in a.results.iter().zip(&b.results) {
        let what = op.label();
        match (x, y) {
            (Ok(x), Ok(y)) => {
                let vals: Vec<Scalar> = y.scalars().collect();
                same_array(x, y.dtype(), y.shape(), &vals).map_err(|e| format!("{what}: {e}"))?
            }
            (Err(x), Err(y)) if std::mem::discriminant(x) == std::mem::discriminant(y) => {}
            (x, y) => return Err(format!("{what}: {x:?} vs {y:?}")),
        }
    }
    Ok(())
}

fn describe(input: &Input, array: &AnyArray) -> String {
    let mut s = format!("{input:?}");
    if array.len() <= 24 {
        s += &format!("\n  values {:?}", array.to_scalars());
    }
    s
}

fn run_case(case: &Case) -> Result<(), String> {
    let array = case.input.array();
    let wants = reference_of(&array);
    let outcome = run_engine(&array, &case.config)?;
    check_against_reference(&outcome, &wants).map_err(|e| {
        format!(
            "{e}\n  {}\n  {:?}, {} merge levels",
            describe(&case.input, &array),
            case.config,
            outcome.levels
        )
    })
}

proptest! {
    #![proptest_config(config(64))]

    /// Sort, cumsum, medians and quantiles (both axes) equal the reference
    /// bit for bit, under any limit, threads, block size and method.
    #[test]
    fn ops_match_reference(case in case_strategy()) {
        run_case(&case).map_err(TestCaseError::fail)?;
    }

    /// The same input under a tiny limit with three threads, a roomy one
    /// with one thread, and one in between gives the same bits, by any
    /// quantile method.
    #[test]
    fn results_do_not_depend_on_threads_or_limit(
        input in input_strategy(),
        methods in (method_strategy(), method_strategy()),
        limit in (25u64 << 10)..(64 << 10),
        block_bytes in prop_oneof![Just(1u64), Just(100), Just(8 << 20)],
    ) {
        let array = input.array();
        let configs = [
            Config {
                threads: 1,
                limit: 64 << 20,
                block_bytes: 8 << 20,
                method: QuantileMethod::Auto,
            },
            Config { threads: 3, limit, block_bytes, method: methods.0 },
            Config { threads: 2, limit: 150 << 10, block_bytes: 4096, method: methods.1 },
        ];
        let outcomes = configs
            .iter()
            .map(|c| run_engine(&array, c))
            .collect::<Result<Vec<Outcome>, String>>()
            .map_err(TestCaseError::fail)?;
        for (c, o) in configs.iter().zip(&outcomes).skip(1) {
            same_outcome(&outcomes[0], o).map_err(|e| TestCaseError::fail(format!(
                "{e}\n  {}\n  {c:?} ({} merge levels) differs from {:?}",
                describe(&input, &array), o.levels, configs[0]
            )))?;
        }
    }
}

// ---------------------------------------------------------------------------
// Named cases.

/// A 300 × 6 input with duplicates (and, for floats, NaN and ±inf).
/// 28.1 KiB: more than a 26 KiB limit holds in memory (so a sort
/// spills), with few enough rows for the axis-1 quantiles' results and
/// few enough columns for the radix selection's state to fit it.
fn wide_input(dtype: DType) -> Input {
    let shape = if dtype.itemsize() == 8 {
        vec![150, 24]
    } else {
        vec![450, 64 / dtype.itemsize()]
    };
    Input {
        dtype,
        shape,
        seed: 7,
        values: Values {
            mode: 0,
            pool: 30,
            special: 0.01,
            infs: true,
            neg_zero: false,
            neg_nan: true,
        },
    }
}

/// Under a tiny limit the sort really makes several runs and merges them in
/// several levels, and still equals the reference; the run report counts
/// one pass for the runs, one per level and one writing the rows.
#[test]
fn tiny_limits_merge_in_several_levels() {
    for dtype in [DType::F64, DType::I16, DType::F16] {
        let input = wide_input(dtype);
        let array = input.array();
        let wants = reference_of(&array);
        for method in [QuantileMethod::Sort, QuantileMethod::Select] {
            let config = Config {
                threads: 3,
                limit: 26 << 10,
                block_bytes: 512,
                method,
            };
            let outcome = run_engine(&array, &config).unwrap();
            assert!(
                outcome.levels >= 2,
                "{dtype}: only {} merge levels",
                outcome.levels
            );
            check_against_reference(&outcome, &wants).unwrap_or_else(|e| panic!("{dtype}: {e}"));

            // The report agrees with explain.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.npy");
            write_any(&path, &array);
            let engine = config.engine(dir.path());
            let x = engine.open(&path).unwrap();
            let report = engine
                .write_npy(&x.sort(), dir.path().join("s.npy"))
                .unwrap();
            assert_eq!(report.passes, outcome.levels as usize + 2, "{report:?}");
            // The runs, then each level, write the data once.
            let data = 28_800; // every dtype's wide input
            assert_eq!(
                report.bytes_spilled,
                (u64::from(outcome.levels) + 1) * data,
                "{report:?}"
            );
        }
    }
}

/// An int64 cumsum whose running total leaves int64 is an error (NumPy
/// would wrap), and leaves no output file — whether the overflow falls in
/// the first block or a later one.
#[test]
fn cumsum_int64_overflow_is_an_error() {
    for (rows, at) in [(3usize, 2usize), (300, 250)] {
        let mut col = vec![1i64; rows];
        col[0] = i64::MAX - (at as i64 - 1);
        // Two columns; only column 1 overflows, at row `at`.
        let mut v = Vec::new();
        for (r, &c) in col.iter().enumerate() {
            v.extend([-(r as i64), c]);
        }
        let array = AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[rows, 2]), v).unwrap());
        let want = reference_of(&array);
        assert!(matches!(
            want[1],
            (Op::Cumsum, Want::Err(ErrKind::Overflow))
        ));
        for (threads, limit) in [(1, 64u64 << 20), (3, 26 << 10)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.npy");
            write_any(&path, &array);
            let engine = Config {
                threads,
                limit,
                block_bytes: 64,
                method: QuantileMethod::Auto,
            }
            .engine(dir.path());
            let x = engine.open(&path).unwrap();
            let out = dir.path().join("c.npy");
            let err = engine.write_npy(&x.cumsum(), &out).unwrap_err();
            match &err {
                Error::IntegerOverflow { dtype, value, .. } => {
                    assert_eq!(*dtype, "int64");
                    assert_eq!(value, &(i128::from(i64::MAX) + 1).to_string());
                }
                other => panic!("expected IntegerOverflow, got {other}"),
            }
            assert!(!out.exists());
            assert_eq!(files_in(dir.path()), ["x.npy"]);
        }
    }
}

/// A spill quota too small for the sort's files is `Error::Spill` naming
/// the quota, not a panic, and leaves no output file; twice the data (the
/// runs and one merge level alive at once) is enough.
#[test]
fn spill_quota_too_small_is_an_error() {
    let input = wide_input(DType::F64);
    let array = input.array();
    let wants = reference_of(&array);
    let data = (150 * 24 * 8) as u64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_any(&path, &array);
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let engine_with = |quota: u64, method: QuantileMethod| {
        Engine::builder()
            .memory_limit(26 << 10)
            .threads(2)
            .quantile_method(method)
            .spill_dir(&spill)
            .spill_quota(quota)
            .fsync(false)
            .build()
            .unwrap()
    };
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let expect_quota_error = |r: outcore_exec::Result<_>, what: &str| {
        let err = r.err().unwrap_or_else(|| panic!("{what}: no error"));
        assert!(
            matches!(err, Error::Spill(_)) && err.to_string().contains("spill quota"),
            "{what}: {err}"
        );
        assert!(files_in(&out).is_empty(), "{what}: {:?}", files_in(&out));
        assert!(files_in(&spill).is_empty());
    };
    for quota in [0, data - 1, data, 2 * data - 1] {
        let engine = engine_with(quota, QuantileMethod::Sort);
        let x = engine.open(&path).unwrap();
        assert!(merge_levels(&engine, &x).unwrap() >= 1);
        let what = format!("quota {quota}");
        expect_quota_error(
            engine.write_npy(&x.sort(), out.join("s.npy")).map(|_| ()),
            &format!("sort, {what}"),
        );
        expect_quota_error(
            engine.compute(x.median(0)).map(|_| ()),
            &format!("median by sort, {what}"),
        );
        expect_quota_error(
            engine.compute(x.quantile(0.5, None)).map(|_| ()),
            &format!("quantile by sort, {what}"),
        );
        // An expression is spilled before its cumsum.
        if quota < data {
            expect_quota_error(
                engine
                    .write_npy(&(&x * 2.0).cumsum(), out.join("c.npy"))
                    .map(|_| ()),
                &format!("cumsum of an expression, {what}"),
            );
        }
        assert_eq!(engine.spill_space().used(), 0);
    }
    // Enough: the runs and one merge level.
    let engine = engine_with(2 * data, QuantileMethod::Sort);
    let x = engine.open(&path).unwrap();
    engine.write_npy(&x.sort(), out.join("s.npy")).unwrap();
    let Want::Values { dtype, shape, vals } = &wants[0].1 else {
        unreachable!()
    };
    same_array(&read_any(&out.join("s.npy")), *dtype, shape, vals).unwrap();
    assert!(files_in(&spill).is_empty());
    assert_eq!(engine.spill_space().used(), 0);
}

/// A limit below what a merge of two runs needs is `Error::LimitTooSmall`,
/// not a panic, and leaves no output file.
#[test]
fn limit_below_the_sort_minimum() {
    let input = wide_input(DType::F64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_any(&path, &input.array());
    let engine = Config {
        threads: 1,
        limit: 20 << 10,
        block_bytes: 4096,
        method: QuantileMethod::Sort,
    }
    .engine(dir.path());
    let x = engine.open(&path).unwrap();
    let out = dir.path().join("s.npy");
    let err = engine.write_npy(&x.sort(), &out).unwrap_err();
    assert!(matches!(err, Error::LimitTooSmall { .. }), "{err}");
    assert!(!out.exists());
    assert_eq!(files_in(dir.path()), ["x.npy"]);
}
