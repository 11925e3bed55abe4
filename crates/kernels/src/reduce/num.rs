//! Element types as the kernels see them, and the summation primitives
//! every kernel is built from.
//!
//! Kernels are generic over [`Num`], the *compute* type: `bool` tiles are
//! reduced as `u8` and `float16` tiles are converted to `f32` first, so ten
//! monomorphisations cover the twelve dtypes.

use std::fmt;

use half::f16;
use ndarray::ArrayD;
use outcore_chunker::DType;

use crate::value::AnyArray;

/// Elements per leaf of the pairwise sum (NumPy uses 128; larger leaves cut
/// the recursion overhead, and with [`LANES`] accumulators each lane still
/// adds at most 128 terms in sequence, so the error stays below
/// `(128 + log₂(n / 1024) + 3) · ε · Σ|x|`).
const PW_BLOCK: usize = 1024;

/// Independent accumulators in the inner loops, so the compiler can use
/// vector registers.
pub(crate) const LANES: usize = 8;

/// A compute type of the kernels.
pub(crate) trait Num: Copy + Send + Sync + PartialOrd + fmt::Debug + 'static {
    /// True for `f32` and `f64` (the only types that can hold NaN).
    const FLOAT: bool;
    /// True for `i64` and `u64`, whose exact sums need the hi/lo split.
    const WIDE: bool;
    /// The identity of `min` (`+inf` or the largest value).
    const MIN_ID: Self;
    /// The identity of `max` (`-inf` or the smallest value).
    const MAX_ID: Self;
    /// NaN (zero for integers, which never need it).
    const NAN: Self;

    /// The value as `f64` (rounded for 64-bit integers beyond 2⁵³).
    fn to_f64(self) -> f64;

    /// `(hi, lo)` with `value = hi · 2³² + lo`, `|hi| ≤ 2³²`, `0 ≤ lo < 2³²`
    /// (integers only; narrow types return `(0, value)`).
    fn split(self) -> (i64, i64);

    /// The bit pattern, for serialisation.
    fn to_wire(self) -> u64;

    /// Inverse of [`Num::to_wire`].
    fn from_wire(w: u64) -> Self;

    /// Wraps computed values as an array of the input dtype (`u8` → `bool`
    /// when the input was bool, `f32` → `float16` when it was float16).
    fn into_any(values: ArrayD<Self>, input: DType) -> AnyArray;

    /// True for NaN.
    #[inline(always)]
    #[allow(clippy::eq_op)] // x != x is the NaN test, and vectorises
    fn is_nan(self) -> bool {
        self != self
    }
}

macro_rules! impl_int {
    ($($t:ty, $wide:expr, $split:expr);*) => {$(
        impl Num for $t {
            const FLOAT: bool = false;
            const WIDE: bool = $wide;
            const MIN_ID: Self = <$t>::MAX;
            const MAX_ID: Self = <$t>::MIN;
            const NAN: Self = 0;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn split(self) -> (i64, i64) {
                $split(self)
            }
            #[inline]
            fn to_wire(self) -> u64 {
                self as u64
            }
            #[inline]
            fn from_wire(w: u64) -> Self {
                w as $t
            }
            fn into_any(values: ArrayD<Self>, _input: DType) -> AnyArray {
                AnyArray::from(values)
            }
        }
    )*};
}

// Wide types: arithmetic shift for i64, logical for u64; both halves fit an
// i64 (|hi| ≤ 2³²).
impl_int!(i8, false, |v: i8| (0, i64::from(v));
          i16, false, |v: i16| (0, i64::from(v));
          i32, false, |v: i32| (0, i64::from(v));
          u16, false, |v: u16| (0, i64::from(v));
          u32, false, |v: u32| (0, i64::from(v));
          i64, true, |v: i64| (v >> 32, v & 0xFFFF_FFFF);
          u64, true, |v: u64| ((v >> 32) as i64, (v & 0xFFFF_FFFF) as i64));

impl Num for u8 {
    const FLOAT: bool = false;
    const WIDE: bool = false;
    const MIN_ID: Self = u8::MAX;
    const MAX_ID: Self = u8::MIN;
    const NAN: Self = 0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn split(self) -> (i64, i64) {
        (0, i64::from(self))
    }
    #[inline]
    fn to_wire(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn from_wire(w: u64) -> Self {
        w as u8
    }
    fn into_any(values: ArrayD<Self>, input: DType) -> AnyArray {
        if input == DType::Bool {
            AnyArray::from(values.mapv(|v| v != 0))
        } else {
            AnyArray::from(values)
        }
    }
}

impl Num for f32 {
    const FLOAT: bool = true;
    const WIDE: bool = false;
    const MIN_ID: Self = f32::INFINITY;
    const MAX_ID: Self = f32::NEG_INFINITY;
    const NAN: Self = f32::NAN;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn split(self) -> (i64, i64) {
        (0, 0)
    }
    #[inline]
    fn to_wire(self) -> u64 {
        u64::from(self.to_bits())
    }
    #[inline]
    fn from_wire(w: u64) -> Self {
        f32::from_bits(w as u32)
    }
    fn into_any(values: ArrayD<Self>, input: DType) -> AnyArray {
        if input == DType::F16 {
            AnyArray::from(values.mapv(f16::from_f32))
        } else {
            AnyArray::from(values)
        }
    }
}

impl Num for f64 {
    const FLOAT: bool = true;
    const WIDE: bool = false;
    const MIN_ID: Self = f64::INFINITY;
    const MAX_ID: Self = f64::NEG_INFINITY;
    const NAN: Self = f64::NAN;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn split(self) -> (i64, i64) {
        (0, 0)
    }
    #[inline]
    fn to_wire(self) -> u64 {
        self.to_bits()
    }
    #[inline]
    fn from_wire(w: u64) -> Self {
        f64::from_bits(w)
    }
    fn into_any(values: ArrayD<Self>, _input: DType) -> AnyArray {
        AnyArray::from(values)
    }
}

/// Knuth's branch-free TwoSum: `s + e == a + b` exactly.
#[inline(always)]
pub(crate) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// Adds `x` to the compensated running sum `(s, c)`.
#[inline(always)]
pub(crate) fn comp_add(s: &mut f64, c: &mut f64, x: f64) {
    let (t, e) = two_sum(*s, x);
    *s = t;
    *c += e;
}

/// The value of a compensated sum. A non-finite running sum is returned as
/// is, so `inf` stays `inf` instead of turning NaN through the compensation.
#[inline(always)]
pub(crate) fn comp_value(s: f64, c: f64) -> f64 {
    if s.is_finite() { s + c } else { s }
}

#[inline(always)]
fn add_n<const N: usize>(a: [f64; N], b: [f64; N]) -> [f64; N] {
    std::array::from_fn(|k| a[k] + b[k])
}

/// NumPy's pairwise summation: `leaf` sums blocks of up to 128 elements
/// (with [`LANES`] independent accumulators), halves are combined
/// recursively; N sums at once. The error is `O(log n · ε · Σ|term|)`.
#[inline(always)]
pub(crate) fn pairwise<T: Copy, const N: usize>(
    xs: &[T],
    leaf: impl Fn(&[T]) -> [f64; N] + Copy,
) -> [f64; N] {
    // Short runs (rows of Axis1) skip the out-of-line recursion.
    if xs.len() <= PW_BLOCK {
        leaf(xs)
    } else {
        pairwise_split(xs, leaf)
    }
}

fn pairwise_split<T: Copy, const N: usize>(
    xs: &[T],
    leaf: impl Fn(&[T]) -> [f64; N] + Copy,
) -> [f64; N] {
    let half = xs.len() / 2 / LANES * LANES;
    add_n(pairwise(&xs[..half], leaf), pairwise(&xs[half..], leaf))
}

/// The lanes of an accumulator, combined pairwise.
#[inline(always)]
fn fold_lanes(a: [f64; LANES]) -> f64 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// `Σ f(x)` over the full lane chunks of `xs`, with [`LANES`] accumulators.
///
/// One accumulator array per loop: with two in one loop LLVM's SLP
/// vectoriser pairs the two sums of one lane instead of the lanes of one
/// sum, and the loop runs scalar.
#[inline(always)]
fn lanes<C: Num>(xs: &[C], f: impl Fn(C) -> f64) -> f64 {
    let mut a = [0.0; LANES];
    for ch in xs.chunks_exact(LANES) {
        for j in 0..LANES {
            a[j] += f(ch[j]);
        }
    }
    fold_lanes(a)
}

/// Leaf of [`pairwise`]: `[Σx, n]` (NaN propagates), or with `SKIP`
/// over the non-NaN elements only.
#[inline(always)]
pub(crate) fn leaf_sum<C: Num, const SKIP: bool>(xs: &[C]) -> [f64; 2] {
    let rem = xs.chunks_exact(LANES).remainder();
    let (mut sum, mut cnt) = if SKIP {
        (
            lanes(xs, |x| if x.is_nan() { 0.0 } else { x.to_f64() }),
            lanes(xs, |x| if x.is_nan() { 0.0 } else { 1.0 }),
        )
    } else {
        (lanes(xs, |x| x.to_f64()), (xs.len() - rem.len()) as f64)
    };
    for &x in rem {
        if !(SKIP && x.is_nan()) {
            sum += x.to_f64();
            cnt += 1.0;
        }
    }
    [sum, cnt]
}

/// Leaf of [`pairwise`]: `[Σ(x − k), Σ(x − k)²]`, with `SKIP` over the
/// non-NaN elements.
#[inline(always)]
pub(crate) fn leaf_dev<C: Num, const SKIP: bool>(xs: &[C], k: f64) -> [f64; 2] {
    let dev = |x: C| {
        if SKIP && x.is_nan() {
            0.0
        } else {
            x.to_f64() - k
        }
    };
    let mut d = lanes(xs, dev);
    let mut q = lanes(xs, |x| {
        let v = dev(x);
        v * v
    });
    for &x in xs.chunks_exact(LANES).remainder() {
        let v = dev(x);
        d += v;
        q += v * v;
    }
    [d, q]
}

/// `min` keeping `a` unless `b` is strictly smaller (so NaN `b` is ignored).
#[inline(always)]
pub(crate) fn min_sel<C: PartialOrd + Copy>(a: C, b: C) -> C {
    if b < a { b } else { a }
}

/// `max` keeping `a` unless `b` is strictly larger (so NaN `b` is ignored).
#[inline(always)]
pub(crate) fn max_sel<C: PartialOrd + Copy>(a: C, b: C) -> C {
    if b > a { b } else { a }
}

/// The minimum and maximum of the non-NaN elements (identities when there
/// are none) and the number of NaNs, with [`LANES`] accumulators each.
/// `MIN`/`MAX` select which extreme is computed.
#[inline]
pub(crate) fn extremes<C: Num, const MIN: bool, const MAX: bool>(xs: &[C]) -> (C, C, u64) {
    let mut mn = [C::MIN_ID; LANES];
    let mut mx = [C::MAX_ID; LANES];
    let mut nan = [0u64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for ch in &mut chunks {
        for j in 0..LANES {
            let x = ch[j];
            if MIN {
                mn[j] = min_sel(mn[j], x);
            }
            if MAX {
                mx[j] = max_sel(mx[j], x);
            }
            if C::FLOAT {
                nan[j] += u64::from(x.is_nan());
            }
        }
    }
    let mut lo = C::MIN_ID;
    let mut hi = C::MAX_ID;
    let mut nans = 0;
    for j in 0..LANES {
        lo = min_sel(lo, mn[j]);
        hi = max_sel(hi, mx[j]);
        nans += nan[j];
    }
    for &x in chunks.remainder() {
        lo = min_sel(lo, x);
        hi = max_sel(hi, x);
        if C::FLOAT {
            nans += u64::from(x.is_nan());
        }
    }
    (lo, hi, nans)
}

/// The exact sum of integers, accumulated as `Σ hi · 2³² + Σ lo` in i64
/// lanes; `xs.len()` must stay below 2²⁴ so the lanes cannot overflow.
#[inline]
pub(crate) fn int_sum<C: Num>(xs: &[C]) -> i128 {
    let mut lo = [0i64; LANES];
    let mut hi = [0i64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for ch in &mut chunks {
        for j in 0..LANES {
            let (h, l) = ch[j].split();
            lo[j] += l;
            if C::WIDE {
                hi[j] += h;
            }
        }
    }
    let mut l: i64 = lo.iter().sum();
    let mut h: i64 = hi.iter().sum();
    for &x in chunks.remainder() {
        let (xh, xl) = x.split();
        l += xl;
        h += xh;
    }
    (i128::from(h) << 32) + i128::from(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_roundtrip() {
        for v in [i64::MIN, -1, 0, 1, i64::MAX, -(1 << 32), (1 << 32) - 1] {
            let (h, l) = v.split();
            assert_eq!((i128::from(h) << 32) + i128::from(l), i128::from(v));
        }
        for v in [0u64, 1, u64::MAX, 1 << 63] {
            let (h, l) = v.split();
            assert_eq!((i128::from(h) << 32) + i128::from(l), i128::from(v));
        }
        assert_eq!(int_sum(&[i64::MAX; 20]), 20 * i128::from(i64::MAX));
        assert_eq!(int_sum(&[u64::MAX; 9]), 9 * i128::from(u64::MAX));
        assert_eq!(int_sum(&[i8::MIN; 1000]), -128_000);
    }

    #[test]
    fn two_sum_is_exact() {
        let (s, e) = two_sum(1e16, 1.0);
        assert_eq!(s, 1e16);
        assert_eq!(e, 1.0);
        assert_eq!(comp_value(f64::INFINITY, f64::NAN), f64::INFINITY);
    }

    #[test]
    fn extremes_ignore_nan_and_count_it() {
        let xs = [3.0, f64::NAN, -1.0, 7.0, 2.0, f64::NAN, 0.5, 9.0, -4.0, 1.0];
        let (lo, hi, nan) = extremes::<f64, true, true>(&xs);
        assert_eq!((lo, hi, nan), (-4.0, 9.0, 2));
        let [s, n] = pairwise(&[1.0f32; 1000][..], leaf_sum::<f32, false>);
        assert_eq!((s, n), (1000.0, 1000.0));
        let [s, n] = pairwise(&xs[..], leaf_sum::<f64, true>);
        assert_eq!((s, n), (17.5, 8.0));
        let [d, q] = pairwise(&xs[..], |c| leaf_dev::<f64, true>(c, 1.0));
        assert_eq!((d, q), (9.5, 134.25));
    }
}
