//! Sums, means and variances: compensated float sums, exact integer sums and
//! the moments `(n, mean, M2)` merged with Chan's formula.
//!
//! # How the numerics work
//!
//! * **Float sums.** A run of elements (a tile for [`ReduceAxis::All`], a row
//!   for [`ReduceAxis::Axis1`], at most [`CHUNK`] elements at a time) is
//!   summed pairwise ([`pairwise`]); the run totals are folded into a running
//!   `(sum, compensation)` pair with TwoSum. For [`ReduceAxis::Axis0`] the
//!   rows are added into per-column accumulators ([`ROWS`] rows per sweep,
//!   summed as a small tree) and every [`GROUP`] rows the accumulators are
//!   folded into per-column `(sum, compensation)` pairs.
//! * **Integer sums** are exact: i64 lanes (64-bit values split into 32-bit
//!   halves) flushed into an i128 total.
//! * **Moments.** Each state holds `n`, the mean as an unevaluated sum
//!   `hi + lo` and `M2 = Σ(x − mean)²`. A run of elements is reduced in
//!   cache with two passes (its mean `K`, then `D = Σ(x − K)` and
//!   `Q = Σ(x − K)²`, which give the run's exact mean `K + D/n` and
//!   `M2 = Q − D²/n`) and merged into the state with Chan's formula, whose
//!   mean difference is taken on the `hi + lo` pairs: data at `1e9 ± 1` keeps
//!   its full precision. For [`ReduceAxis::Axis0`] the shift `K` of a group
//!   of rows is the column's running mean (the first value for the first
//!   group), so one pass over the rows suffices.
//!
//! The mean reported by `mean`/`nanmean` always comes from the compensated
//! sum, whether or not a variance was requested too.
//!
//! # Variances past float64's range
//!
//! NumPy computes `var` as `mean(abs(x − x.mean())**2)`: when finite values
//! overflow — their sum (so the mean is `±inf`), their deviations or the
//! squares — it is `inf`; with a `±inf` among the values (or a NaN, where
//! NaN is not skipped) it is NaN, and so it is when the mean is NaN
//! because the sum overflowed both ways. The shifted, Chan-merged moments
//! cannot tell these apart (both end in `inf − inf`), so the states keep
//! one more bit per output: whether a counted value was not finite. It is
//! found off the hot path. A run whose sum is not finite is scanned again
//! (a value that is not finite makes it so). For [`ReduceAxis::Axis0`],
//! such a value makes its column's `Σ(x − K)²` not finite at once, so the
//! sum of those over the columns is checked before a group of rows is
//! folded and at the end of each tile, and where it is not finite the
//! tile's rows since the last check are scanned, in the columns whose
//! `Σ(x − K)²` is not. A variance finishes as NaN when that bit is set;
//! otherwise, when `M2` or the sum is not finite, as NaN where the sum is
//! NaN and `inf` elsewhere. The sum is the compensated sum over
//! [`ReduceAxis::All`] and along [`ReduceAxis::Axis1`] (pairwise, as
//! NumPy's); along [`ReduceAxis::Axis0`] it is `n · mean`, never NaN,
//! since NumPy adds the rows in order and a running sum that has
//! overflowed to `±inf` stays there.

use serde::{Deserialize, Serialize};

use super::num::{
    LANES, Num, comp_add, comp_value, int_sum, leaf_dev, leaf_sum, pairwise, two_sum,
};
use super::{ReduceAxis, Tile, wire};

/// Elements reduced at once (in cache) by the two-pass moments of a run.
pub(crate) const CHUNK: usize = 4096;

/// Rows accumulated per column before the float accumulators are folded
/// into the compensated totals ([`ReduceAxis::Axis0`]).
pub(crate) const GROUP: u32 = 32;

/// Rows accumulated per column in i64 before the exact i128 fold
/// (|value| < 2³² per half, so 2¹⁵ rows cannot overflow).
const INT_GROUP: u32 = 1 << 15;

/// Elements summed in i64 lanes at once ([`int_sum`] limit).
const INT_CHUNK: usize = 1 << 15;

/// A compensated float sum per output (`sum`, or `nansum` with counts).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct FSum {
    /// All/Axis0: running sums; Axis1: the final sum of each row.
    #[serde(with = "wire::f64s")]
    s: Vec<f64>,
    /// All/Axis0: compensations (empty for Axis1).
    #[serde(with = "wire::f64s")]
    c: Vec<f64>,
    /// Axis0: the current group's plain sums.
    #[serde(with = "wire::f64s")]
    acc: Vec<f64>,
    /// NaN-skipping sums: elements that were not NaN, per output.
    cnt: Vec<u64>,
    /// Axis0: rows in the current group.
    in_group: u32,
}

impl FSum {
    pub(crate) fn new(axis: ReduceAxis, row_len: usize, skip_nan: bool) -> FSum {
        let outs = match axis {
            ReduceAxis::All => 1,
            ReduceAxis::Axis0 => row_len,
            ReduceAxis::Axis1 => 0,
        };
        FSum {
            s: vec![0.0; outs],
            c: vec![0.0; outs],
            acc: if axis == ReduceAxis::Axis0 {
                vec![0.0; outs]
            } else {
                Vec::new()
            },
            cnt: if skip_nan { vec![0; outs] } else { Vec::new() },
            in_group: 0,
        }
    }

    /// True when the vectors fit `outs` outputs.
    pub(crate) fn is_consistent(&self, axis: ReduceAxis, outs: usize, skip_nan: bool) -> bool {
        let (c, acc) = match axis {
            ReduceAxis::All => (outs, 0),
            ReduceAxis::Axis0 => (outs, outs),
            ReduceAxis::Axis1 => (0, 0),
        };
        self.s.len() == outs
            && self.c.len() == c
            && self.acc.len() == acc
            && self.cnt.len() == if skip_nan { outs } else { 0 }
            && self.in_group < GROUP
    }

    pub(crate) fn bytes_per_output(axis: ReduceAxis, skip_nan: bool) -> usize {
        let floats = match axis {
            ReduceAxis::All => 2,
            ReduceAxis::Axis0 => 3,
            ReduceAxis::Axis1 => 1,
        };
        8 * floats + if skip_nan { 8 } else { 0 }
    }

    fn fold(&mut self) {
        for ((s, c), a) in self.s.iter_mut().zip(&mut self.c).zip(&mut self.acc) {
            comp_add(s, c, *a);
            *a = 0.0;
        }
        self.in_group = 0;
    }

    /// Folds a pending Axis0 group.
    pub(crate) fn flush(&mut self) {
        if self.in_group > 0 {
            self.fold();
        }
    }

    /// Merges the state of the rows that follow. Both must be flushed.
    pub(crate) fn merge(&mut self, axis: ReduceAxis, next: FSum) {
        if axis == ReduceAxis::Axis1 {
            self.s.extend(next.s);
            self.cnt.extend(next.cnt);
            return;
        }
        // A non-finite next sum makes this one non-finite too, and then the
        // compensation is ignored.
        for ((s, c), (ns, nc)) in self
            .s
            .iter_mut()
            .zip(&mut self.c)
            .zip(next.s.into_iter().zip(next.c))
        {
            comp_add(s, c, ns);
            *c += nc;
        }
        for (a, b) in self.cnt.iter_mut().zip(next.cnt) {
            *a += b;
        }
    }

    /// The sums per output (flushed state).
    pub(crate) fn values(&self) -> Vec<f64> {
        if self.c.is_empty() {
            self.s.clone()
        } else {
            self.s
                .iter()
                .zip(&self.c)
                .map(|(&s, &c)| comp_value(s, c))
                .collect()
        }
    }

    /// Non-NaN counts per output (NaN-skipping sums only).
    pub(crate) fn counts(&self) -> &[u64] {
        &self.cnt
    }
}

/// An exact integer sum per output.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ISum {
    /// All/Axis0: running totals; Axis1: the sum of each row.
    #[serde(with = "wire::i128s")]
    s: Vec<i128>,
    /// Axis0: the current group's sums of the low 32-bit halves.
    lo: Vec<i64>,
    /// Axis0: the current group's sums of the high halves (64-bit types).
    hi: Vec<i64>,
    /// Axis0: rows in the current group.
    in_group: u32,
}

impl ISum {
    pub(crate) fn new(axis: ReduceAxis, row_len: usize, wide: bool) -> ISum {
        let outs = match axis {
            ReduceAxis::All => 1,
            ReduceAxis::Axis0 => row_len,
            ReduceAxis::Axis1 => 0,
        };
        let group = if axis == ReduceAxis::Axis0 { outs } else { 0 };
        ISum {
            s: vec![0; outs],
            lo: vec![0; group],
            hi: vec![0; if wide { group } else { 0 }],
            in_group: 0,
        }
    }

    pub(crate) fn is_consistent(&self, axis: ReduceAxis, outs: usize, wide: bool) -> bool {
        let group = if axis == ReduceAxis::Axis0 { outs } else { 0 };
        self.s.len() == outs
            && self.lo.len() == group
            && self.hi.len() == if wide { group } else { 0 }
            && self.in_group < INT_GROUP
    }

    pub(crate) fn bytes_per_output(axis: ReduceAxis) -> usize {
        if axis == ReduceAxis::Axis0 { 32 } else { 16 }
    }

    pub(crate) fn update<C: Num>(&mut self, axis: ReduceAxis, t: &Tile<'_, C>) {
        match axis {
            ReduceAxis::All => {
                for ch in t.xs.chunks(INT_CHUNK) {
                    self.s[0] += int_sum(ch);
                }
            }
            ReduceAxis::Axis1 => {
                for row in t.rows() {
                    self.s.push(row.chunks(INT_CHUNK).map(int_sum).sum());
                }
            }
            ReduceAxis::Axis0 => {
                let n = t.row_len;
                if n == 0 {
                    return;
                }
                let mut r = 0;
                while r < t.nrows {
                    let take = t
                        .sweep()
                        .min(t.nrows - r)
                        .min((INT_GROUP - self.in_group) as usize);
                    if take == ROWS {
                        let rows: [&[C]; ROWS] = std::array::from_fn(|i| t.row(r + i));
                        self.axis0_rows::<C, ROWS>(rows, n);
                    } else {
                        for i in r..r + take {
                            self.axis0_rows::<C, 1>([t.row(i)], n);
                        }
                    }
                    r += take;
                    self.in_group += take as u32;
                    if self.in_group == INT_GROUP {
                        self.fold();
                    }
                }
            }
        }
    }

    /// Axis0: `R` rows into the per-column i64 group sums.
    #[inline(always)]
    fn axis0_rows<C: Num, const R: usize>(&mut self, rows: [&[C]; R], n: usize) {
        let rows: [&[C]; R] = rows.map(|row| &row[..n]);
        let lo = &mut self.lo[..n];
        if C::WIDE {
            let hi = &mut self.hi[..n];
            for c in 0..n {
                for row in &rows {
                    let (h, l) = row[c].split();
                    lo[c] += l;
                    hi[c] += h;
                }
            }
        } else {
            for c in 0..n {
                lo[c] += rows.iter().map(|row| row[c].split().1).sum::<i64>();
            }
        }
    }

    fn fold(&mut self) {
        for (s, l) in self.s.iter_mut().zip(&mut self.lo) {
            *s += i128::from(*l);
            *l = 0;
        }
        for (s, h) in self.s.iter_mut().zip(&mut self.hi) {
            *s += i128::from(*h) << 32;
            *h = 0;
        }
        self.in_group = 0;
    }

    pub(crate) fn flush(&mut self) {
        if self.in_group > 0 {
            self.fold();
        }
    }

    pub(crate) fn merge(&mut self, axis: ReduceAxis, next: ISum) {
        if axis == ReduceAxis::Axis1 {
            self.s.extend(next.s);
        } else {
            for (a, b) in self.s.iter_mut().zip(next.s) {
                *a += b;
            }
        }
    }

    pub(crate) fn values(&self) -> &[i128] {
        &self.s
    }
}

/// Moments `(n, mean = hi + lo, M2)` per output, for var/std (or
/// nanvar/nanstd when NaN is skipped).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Mom {
    /// All/Axis0: elements seen; Axis1: non-NaN elements per row (NaN-skipping only).
    #[serde(with = "wire::f64s")]
    n: Vec<f64>,
    /// All/Axis0: the mean is `hi + lo`.
    #[serde(with = "wire::f64s")]
    hi: Vec<f64>,
    #[serde(with = "wire::f64s")]
    lo: Vec<f64>,
    /// Σ(x − mean)² per output (per row for Axis1).
    #[serde(with = "wire::f64s")]
    m2: Vec<f64>,
    /// Axis0 group: the shift K (= `hi` once the column has values).
    #[serde(with = "wire::f64s")]
    k: Vec<f64>,
    /// Axis0 group: Σ(x − K).
    #[serde(with = "wire::f64s")]
    d: Vec<f64>,
    /// Axis0 group: Σ(x − K)².
    #[serde(with = "wire::f64s")]
    q: Vec<f64>,
    /// Axis0 group: non-NaN elements per column (NaN-skipping only).
    #[serde(with = "wire::f64s")]
    gn: Vec<f64>,
    /// Axis0: whether the column's shift has been set.
    kset: Vec<bool>,
    /// All/Axis0: whether a counted value was not finite (`±inf`, or NaN
    /// where NaN is not skipped): the variance is then NaN, where a
    /// non-finite `M2` of finite values is an overflow (see the module doc).
    bad: Vec<bool>,
    /// Axis0: columns whose shift is not set yet.
    unset: u64,
    /// Axis0: rows in the current group.
    in_group: u32,
}

impl Mom {
    pub(crate) fn new(axis: ReduceAxis, row_len: usize, skip_nan: bool) -> Mom {
        match axis {
            ReduceAxis::All => Mom {
                n: vec![0.0],
                hi: vec![0.0],
                lo: vec![0.0],
                m2: vec![0.0],
                bad: vec![false],
                ..Mom::default()
            },
            ReduceAxis::Axis0 => Mom {
                n: vec![0.0; row_len],
                hi: vec![0.0; row_len],
                lo: vec![0.0; row_len],
                m2: vec![0.0; row_len],
                k: vec![0.0; row_len],
                d: vec![0.0; row_len],
                q: vec![0.0; row_len],
                gn: if skip_nan {
                    vec![0.0; row_len]
                } else {
                    Vec::new()
                },
                kset: vec![false; row_len],
                bad: vec![false; row_len],
                unset: row_len as u64,
                in_group: 0,
            },
            ReduceAxis::Axis1 => Mom::default(),
        }
    }

    pub(crate) fn is_consistent(&self, axis: ReduceAxis, outs: usize, skip_nan: bool) -> bool {
        let len_ok = |v: &[f64], want: usize| v.len() == want;
        match axis {
            ReduceAxis::All | ReduceAxis::Axis0 => {
                let group = if axis == ReduceAxis::Axis0 { outs } else { 0 };
                len_ok(&self.n, outs)
                    && len_ok(&self.hi, outs)
                    && len_ok(&self.lo, outs)
                    && len_ok(&self.m2, outs)
                    && len_ok(&self.k, group)
                    && len_ok(&self.d, group)
                    && len_ok(&self.q, group)
                    && len_ok(&self.gn, if skip_nan { group } else { 0 })
                    && self.kset.len() == group
                    && self.bad.len() == outs
                    && self.unset == self.kset.iter().filter(|&&s| !s).count() as u64
                    && self.in_group < GROUP
            }
            ReduceAxis::Axis1 => {
                len_ok(&self.m2, outs)
                    && len_ok(&self.n, if skip_nan { outs } else { 0 })
                    && self.hi.is_empty()
                    && self.lo.is_empty()
                    && self.k.is_empty()
                    && self.kset.is_empty()
                    && self.bad.is_empty()
            }
        }
    }

    pub(crate) fn bytes_per_output(axis: ReduceAxis, skip_nan: bool) -> usize {
        match axis {
            ReduceAxis::All => 33,
            ReduceAxis::Axis0 => 8 * 7 + 2 + if skip_nan { 8 } else { 0 },
            ReduceAxis::Axis1 => 8 + if skip_nan { 8 } else { 0 },
        }
    }

    /// Sets the shift of the columns that have none yet from `row`
    /// (NaN-skipping: from the first non-NaN value).
    #[cold]
    fn set_shifts<C: Num, const SKIP: bool>(&mut self, row: &[C]) {
        for (c, &x) in row.iter().enumerate() {
            if !(self.kset[c] || SKIP && x.is_nan()) {
                let v = x.to_f64();
                self.k[c] = v;
                self.hi[c] = v;
                self.lo[c] = 0.0;
                self.kset[c] = true;
                self.unset -= 1;
            }
        }
    }

    /// Folds the current Axis0 group into the per-column moments.
    fn fold<const SKIP: bool>(&mut self) {
        let g_all = f64::from(self.in_group);
        let n = self.n.len();
        let (nn, hi, lo, m2) = (
            &mut self.n[..n],
            &mut self.hi[..n],
            &mut self.lo[..n],
            &mut self.m2[..n],
        );
        let (k, d, q) = (&mut self.k[..n], &mut self.d[..n], &mut self.q[..n]);
        let gn: &mut [f64] = if SKIP { &mut self.gn[..n] } else { &mut [] };
        for c in 0..n {
            let g = if SKIP { gn[c] } else { g_all };
            let na = nn[c];
            let tot = na + g;
            let inv_g = if g > 0.0 { 1.0 / g } else { 0.0 };
            let w = if tot > 0.0 { g / tot } else { 0.0 };
            let dd = d[c];
            let mg = dd * inv_g; // group mean − K; K == hi
            let dm = mg - lo[c]; // group mean − (hi + lo)
            m2[c] += (q[c] - dd * mg) + dm * dm * (na * w);
            let (h, l) = two_sum(hi[c], lo[c] + dm * w);
            hi[c] = h;
            lo[c] = l;
            nn[c] = tot;
            k[c] = h;
            d[c] = 0.0;
            q[c] = 0.0;
            if SKIP {
                gn[c] = 0.0;
            }
        }
        self.in_group = 0;
    }

    pub(crate) fn flush(&mut self, skip_nan: bool) {
        if self.in_group > 0 {
            if skip_nan {
                self.fold::<true>();
            } else {
                self.fold::<false>();
            }
        }
    }

    /// Merges the state of the rows that follow. Both must be flushed.
    pub(crate) fn merge(&mut self, axis: ReduceAxis, next: Mom) {
        if axis == ReduceAxis::Axis1 {
            self.n.extend(next.n);
            self.m2.extend(next.m2);
            return;
        }
        for i in 0..self.n.len().min(next.n.len()) {
            let mut a = [self.n[i], self.hi[i], self.lo[i], self.m2[i]];
            chan_merge(&mut a, [next.n[i], next.hi[i], next.lo[i], next.m2[i]]);
            [self.n[i], self.hi[i], self.lo[i], self.m2[i]] = a;
        }
        for (a, b) in self.bad.iter_mut().zip(next.bad) {
            *a |= b;
        }
        if axis == ReduceAxis::Axis0 {
            // Shifts follow the merged means.
            for (((k, &h), s), &n) in self
                .k
                .iter_mut()
                .zip(&self.hi)
                .zip(&mut self.kset)
                .zip(&self.n)
            {
                if n > 0.0 {
                    *k = h;
                    *s = true;
                }
            }
            self.unset = self.kset.iter().filter(|&&s| !s).count() as u64;
        }
    }

    /// The variance per output, `M2 / (n − ddof)` (NaN when `n ≤ ddof`),
    /// or its square root with `sqrt` (flushed state; `row_len` is `n` for
    /// Axis1 without NaN skipping). Past float64's range it follows NumPy
    /// (see the module doc): NaN where a counted value was not finite or the
    /// sum NumPy's mean divides is NaN, `inf` where that sum or `M2`
    /// overflowed. That sum is `sums` (the compensated sums, over
    /// [`ReduceAxis::All`]) or `n · mean` ([`ReduceAxis::Axis0`], where
    /// NumPy adds the rows in order: never NaN for finite values). Axis1
    /// states hold `M2` so resolved already.
    pub(crate) fn variances(
        &self,
        row_len: usize,
        ddof: u32,
        sqrt: bool,
        sums: Option<&[f64]>,
    ) -> Vec<f64> {
        let ddof = f64::from(ddof);
        let var = |n: f64, m2: f64| {
            let dof = n - ddof;
            // Rounding can leave M2 a hair below zero; NaN stays NaN.
            let m2 = if m2 < 0.0 { 0.0 } else { m2 };
            let var = if dof > 0.0 { m2 / dof } else { f64::NAN };
            if sqrt { var.sqrt() } else { var }
        };
        if self.bad.is_empty() {
            // Axis1.
            let fixed = row_len as f64;
            return if self.n.is_empty() {
                self.m2.iter().map(|&m2| var(fixed, m2)).collect()
            } else {
                self.m2
                    .iter()
                    .zip(&self.n)
                    .map(|(&m2, &n)| var(n, m2))
                    .collect()
            };
        }
        let moments = self
            .m2
            .iter()
            .zip(&self.n)
            .zip(self.hi.iter().zip(&self.lo));
        moments
            .zip(&self.bad)
            .enumerate()
            .map(|(i, (((&m2, &n), (&hi, &lo)), &bad))| {
                // NaN only where `sums` is (n · mean has no say).
                let sum = match sums {
                    Some(s) => s.get(i).copied().unwrap_or(0.0),
                    None => n * (hi + lo),
                };
                if bad {
                    f64::NAN
                } else if sum.is_finite() && m2.is_finite() {
                    var(n, m2)
                } else {
                    var(
                        n,
                        overflowed_m2(false, if sums.is_some() { sum } else { 0.0 }),
                    )
                }
            })
            .collect()
    }

    /// Axis0: sets the flag of the columns that have a counted value that
    /// is not finite in `rows` of `t` (cold: only when the `Σ(x − K)²` of
    /// some column is not finite after them, and only such columns can
    /// have one). A flagged column's variance is NaN whatever follows, so
    /// its moments restart from zero: it trips these checks again only if
    /// it overflows or holds such a value again.
    #[cold]
    #[inline(never)]
    fn find_non_finite<C: Num, const SKIP: bool>(
        &mut self,
        t: &Tile<'_, C>,
        rows: std::ops::Range<usize>,
    ) {
        let n = t.row_len;
        let suspects: Vec<usize> = (0..n)
            .filter(|&c| !(self.bad[c] || self.q[c].is_finite()))
            .collect();
        for r in rows {
            let row = t.row(r);
            for &c in &suspects {
                self.bad[c] |= counted_non_finite::<C, SKIP>(row[c]);
            }
        }
        for c in 0..n {
            if self.bad[c] && !self.q[c].is_finite() {
                self.k[c] = 0.0;
                self.d[c] = 0.0;
                self.q[c] = 0.0;
                self.hi[c] = 0.0;
                self.lo[c] = 0.0;
                self.m2[c] = 0.0;
            }
        }
    }
}

/// A value that counts (not a skipped NaN) and is not finite.
#[inline(always)]
fn counted_non_finite<C: Num, const SKIP: bool>(x: C) -> bool {
    let v = x.to_f64();
    if SKIP {
        v.is_infinite()
    } else {
        !v.is_finite()
    }
}

/// Axis1: resolves the `M2` of the rows of `t` that is not finite (see
/// [`overflowed_m2`]; cold: only for a tile where one is).
#[cold]
#[inline(never)]
fn resolve_rows<C: Num, const SKIP: bool>(m2: &mut [f64], t: &Tile<'_, C>) {
    for (m, row) in m2.iter_mut().zip(t.rows()) {
        if !m.is_finite() {
            let [s1, _] = pairwise(row, leaf_sum::<C, SKIP>);
            *m = overflowed_m2(any_non_finite::<C, SKIP>(row), s1);
        }
    }
}

/// Whether `xs` holds a counted value that is not finite (cold: only for a
/// run whose sum is not finite).
#[cold]
#[inline(never)]
fn any_non_finite<C: Num, const SKIP: bool>(xs: &[C]) -> bool {
    xs.iter().any(|&x| counted_non_finite::<C, SKIP>(x))
}

/// The `M2` of values whose `M2` or sum came out not finite: NaN when a
/// counted value is not finite (`bad`) or the sum is NaN, else `inf` (an
/// overflow), as NumPy's.
#[cold]
#[inline(never)]
fn overflowed_m2(bad: bool, sum: f64) -> f64 {
    if bad || sum.is_nan() {
        f64::NAN
    } else {
        f64::INFINITY
    }
}

/// Chan's merge of moments `[n, hi, lo, m2]`; `b` follows `a`.
#[inline]
fn chan_merge(a: &mut [f64; 4], b: [f64; 4]) {
    let [na, ha, la, ma] = *a;
    let [nb, hb, lb, mb] = b;
    if nb == 0.0 {
        return;
    }
    if na == 0.0 {
        let (h, l) = two_sum(hb, lb);
        *a = [nb, h, l, mb];
        return;
    }
    let tot = na + nb;
    let w = nb / tot;
    let delta = (hb - ha) + (lb - la);
    let m2 = ma + mb + delta * delta * (na * w);
    let (h, l) = two_sum(ha, la + delta * w);
    *a = [tot, h, l, m2];
}

/// One run of elements (part of a tile or a row): pass 1 sums it into
/// `sum`/`cnt`; with `MOM`, pass 2 adds its moments to `mom`, and `bad`
/// is set when a counted value is not finite.
#[inline]
fn run<C: Num, const SKIP: bool, const MOM: bool>(
    xs: &[C],
    sum: &mut (f64, f64),
    cnt: &mut u64,
    mom: &mut [f64; 4],
    bad: &mut bool,
) {
    for ch in xs.chunks(CHUNK) {
        let [s1, k] = pairwise(ch, leaf_sum::<C, SKIP>);
        comp_add(&mut sum.0, &mut sum.1, s1);
        *cnt += k as u64;
        // A counted value that is not finite makes the run's sum so.
        if MOM && !s1.is_finite() && !*bad {
            *bad = any_non_finite::<C, SKIP>(ch);
        }
        if MOM && k > 0.0 {
            let shift = s1 / k;
            let [d, q] = pairwise(ch, |c| leaf_dev::<C, SKIP>(c, shift));
            let mg = d / k;
            chan_merge(mom, [k, shift, mg, q - d * mg]);
        }
    }
}

/// Updates the float sum and/or moments of one tile. `SKIP` selects the
/// NaN-skipping variants (`nansum`, `nanmean`, `nanvar`, `nanstd`).
pub(crate) fn update_float<C: Num, const SKIP: bool>(
    sum: Option<&mut FSum>,
    mom: Option<&mut Mom>,
    axis: ReduceAxis,
    t: &Tile<'_, C>,
) {
    match (sum, mom) {
        (Some(s), Some(m)) => update_impl::<C, SKIP, true, true>(s, m, axis, t),
        (Some(s), None) => update_impl::<C, SKIP, true, false>(s, &mut Mom::default(), axis, t),
        (None, Some(m)) => update_impl::<C, SKIP, false, true>(&mut FSum::default(), m, axis, t),
        (None, None) => {}
    }
}

fn update_impl<C: Num, const SKIP: bool, const S: bool, const M: bool>(
    sum: &mut FSum,
    mom: &mut Mom,
    axis: ReduceAxis,
    t: &Tile<'_, C>,
) {
    match axis {
        ReduceAxis::All => {
            let mut ss = if S { (sum.s[0], sum.c[0]) } else { (0.0, 0.0) };
            let mut cnt = 0;
            let mut mm = if M {
                [mom.n[0], mom.hi[0], mom.lo[0], mom.m2[0]]
            } else {
                [0.0; 4]
            };
            let mut bad = M && mom.bad[0];
            run::<C, SKIP, M>(t.xs, &mut ss, &mut cnt, &mut mm, &mut bad);
            if S {
                (sum.s[0], sum.c[0]) = ss;
                if SKIP {
                    sum.cnt[0] += cnt;
                }
            }
            if M {
                [mom.n[0], mom.hi[0], mom.lo[0], mom.m2[0]] = mm;
                mom.bad[0] = bad;
            }
        }
        // Rows of one chunk: the general path below without its merges.
        ReduceAxis::Axis1 if t.row_len <= CHUNK => {
            if S {
                sum.s.reserve(t.nrows);
                sum.cnt.reserve(if SKIP { t.nrows } else { 0 });
            }
            if M {
                mom.m2.reserve(t.nrows);
                mom.n.reserve(if SKIP { t.nrows } else { 0 });
            }
            let first = mom.m2.len();
            for row in t.rows() {
                let [s1, k] = pairwise(row, leaf_sum::<C, SKIP>);
                if S {
                    sum.s.push(s1);
                    if SKIP {
                        sum.cnt.push(k as u64);
                    }
                }
                if M {
                    let m2 = if k > 0.0 {
                        let shift = s1 / k;
                        let [d, q] = pairwise(row, |c| leaf_dev::<C, SKIP>(c, shift));
                        q - d * (d / k)
                    } else {
                        0.0
                    };
                    mom.m2.push(m2);
                    if SKIP {
                        mom.n.push(k);
                    }
                }
            }
            // A sum that is not finite makes the shift, so `M2`, not finite.
            if M && !finite_sum(&mom.m2[first..]) {
                resolve_rows::<C, SKIP>(&mut mom.m2[first..], t);
            }
        }
        ReduceAxis::Axis1 => {
            for row in t.rows() {
                let mut ss = (0.0, 0.0);
                let mut cnt = 0;
                let mut mm = [0.0; 4];
                let mut bad = false;
                run::<C, SKIP, M>(row, &mut ss, &mut cnt, &mut mm, &mut bad);
                if S {
                    sum.s.push(comp_value(ss.0, ss.1));
                    if SKIP {
                        sum.cnt.push(cnt);
                    }
                }
                if M {
                    let (m2, s) = (mm[3], comp_value(ss.0, ss.1));
                    mom.m2.push(if m2.is_finite() && s.is_finite() {
                        m2
                    } else {
                        overflowed_m2(bad, s)
                    });
                    if SKIP {
                        mom.n.push(mm[0]);
                    }
                }
            }
        }
        ReduceAxis::Axis0 => axis0::<C, SKIP, S, M>(sum, mom, t),
    }
}

/// Axis0: rows added into per-column accumulators (contiguous inner loop),
/// [`ROWS`] rows per sweep so the accumulators are loaded and stored once per
/// block of rows; blocks never straddle a [`GROUP`] boundary.
fn axis0<C: Num, const SKIP: bool, const S: bool, const M: bool>(
    sum: &mut FSum,
    mom: &mut Mom,
    t: &Tile<'_, C>,
) {
    let n = t.row_len;
    if n == 0 {
        return;
    }
    let mut in_group = if S { sum.in_group } else { mom.in_group };
    // Rows of `t` before `checked` have been checked for values that are
    // not finite, when a group is folded and at the end of the tile: the
    // sum of the columns' Σ(x − K)² is then not finite.
    let mut checked = 0;
    let mut r = 0;
    while r < t.nrows {
        let take = t.sweep().min(t.nrows - r).min((GROUP - in_group) as usize);
        if M && mom.unset > 0 {
            for i in r..r + take {
                mom.set_shifts::<C, SKIP>(t.row(i));
            }
        }
        if take == ROWS {
            let rows: [&[C]; ROWS] = std::array::from_fn(|i| t.row(r + i));
            axis0_rows::<C, SKIP, S, M, ROWS>(sum, mom, rows, n);
        } else {
            for i in r..r + take {
                axis0_rows::<C, SKIP, S, M, 1>(sum, mom, [t.row(i)], n);
            }
        }
        r += take;
        in_group += take as u32;
        if in_group == GROUP {
            if S {
                sum.fold();
            }
            if M {
                if !finite_sum(&mom.q[..n]) {
                    mom.find_non_finite::<C, SKIP>(t, checked..r);
                }
                checked = r;
                mom.in_group = in_group;
                mom.fold::<SKIP>();
            }
            in_group = 0;
        }
    }
    if S {
        sum.in_group = in_group;
    }
    if M {
        mom.in_group = in_group;
        if checked < t.nrows && !finite_sum(&mom.q[..n]) {
            mom.find_non_finite::<C, SKIP>(t, checked..t.nrows);
        }
    }
}

/// Whether the sum of `q` is finite: false when one is `±inf` or NaN (or,
/// rarely, when finite ones add up past float64's range: the callers'
/// cold paths then find nothing). One add per value, in independent lanes
/// so the loop vectorises.
#[inline]
fn finite_sum(q: &[f64]) -> bool {
    let mut acc = [0.0; LANES];
    let chunks = q.chunks_exact(LANES);
    let rem = chunks.remainder();
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a += x;
        }
    }
    acc.iter().chain(rem).sum::<f64>().is_finite()
}

/// Rows swept at once by the Axis0 kernels where that helps (see
/// [`Tile::sweep`]).
pub(crate) const ROWS: usize = 4;

/// The sum of `R` values: pairwise for 4, in order otherwise.
#[inline(always)]
pub(crate) fn tree<const R: usize>(v: [f64; R]) -> f64 {
    if R == 4 {
        (v[0] + v[1]) + (v[2] + v[3])
    } else {
        v.iter().skip(1).fold(v[0], |a, &b| a + b)
    }
}

/// Adds `R` rows into the Axis0 accumulators.
#[inline(always)]
fn axis0_rows<C: Num, const SKIP: bool, const S: bool, const M: bool, const R: usize>(
    sum: &mut FSum,
    mom: &mut Mom,
    rows: [&[C]; R],
    n: usize,
) {
    let rows: [&[C]; R] = rows.map(|row| &row[..n]);
    let acc: &mut [f64] = if S { &mut sum.acc[..n] } else { &mut [] };
    let cnt: &mut [u64] = if S && SKIP {
        &mut sum.cnt[..n]
    } else {
        &mut []
    };
    let k: &[f64] = if M { &mom.k[..n] } else { &[] };
    let d: &mut [f64] = if M { &mut mom.d[..n] } else { &mut [] };
    let q: &mut [f64] = if M { &mut mom.q[..n] } else { &mut [] };
    let gn: &mut [f64] = if M && SKIP { &mut mom.gn[..n] } else { &mut [] };
    for c in 0..n {
        let x: [C; R] = std::array::from_fn(|i| rows[i][c]);
        let nan: [bool; R] = std::array::from_fn(|i| SKIP && x[i].is_nan());
        if S {
            acc[c] += tree::<R>(std::array::from_fn(|i| {
                if nan[i] { 0.0 } else { x[i].to_f64() }
            }));
            if SKIP {
                cnt[c] += nan.iter().map(|&b| u64::from(!b)).sum::<u64>();
            }
        }
        if M {
            let kc = k[c];
            let dv: [f64; R] =
                std::array::from_fn(|i| if nan[i] { 0.0 } else { x[i].to_f64() - kc });
            d[c] += tree(dv);
            q[c] += tree(dv.map(|v| v * v));
            if SKIP {
                gn[c] += tree(nan.map(|b| if b { 0.0 } else { 1.0 }));
            }
        }
    }
}
