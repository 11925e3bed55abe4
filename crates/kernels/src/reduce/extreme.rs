//! min/max (and their NaN-skipping variants) and argmin/argmax.
//!
//! min/max keep the minimum/maximum of the non-NaN elements (vectorised
//! selects that ignore NaN) and, separately, the number of NaNs: `min` is
//! NaN when that count is positive, `nanmin` when it equals the number of
//! elements. argmin/argmax keep the best value and its index; NaN beats
//! every number (NumPy returns the index of the first NaN) and ties keep
//! the first occurrence.

use serde::{Deserialize, Serialize};

use super::num::{Num, extremes, max_sel, min_sel};
use super::sum::{CHUNK, ROWS};
use super::{ReduceAxis, Tile, wire};

/// Running minima/maxima and NaN counts per output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct MinMax<C: Num> {
    /// Minimum of the non-NaN elements (empty when min is not needed).
    #[serde(with = "wire::nums")]
    min: Vec<C>,
    /// Maximum of the non-NaN elements (empty when max is not needed).
    #[serde(with = "wire::nums")]
    max: Vec<C>,
    /// NaNs seen (float types only; empty for integers).
    nan: Vec<u64>,
    want_min: bool,
    want_max: bool,
}

impl<C: Num> MinMax<C> {
    pub(crate) fn new(axis: ReduceAxis, row_len: usize, need_min: bool, need_max: bool) -> Self {
        let outs = match axis {
            ReduceAxis::All => 1,
            ReduceAxis::Axis0 => row_len,
            ReduceAxis::Axis1 => 0,
        };
        MinMax {
            min: vec![C::MIN_ID; if need_min { outs } else { 0 }],
            max: vec![C::MAX_ID; if need_max { outs } else { 0 }],
            nan: vec![0; if C::FLOAT { outs } else { 0 }],
            want_min: need_min,
            want_max: need_max,
        }
    }

    pub(crate) fn is_consistent(&self, outs: usize, need_min: bool, need_max: bool) -> bool {
        self.want_min == need_min
            && self.want_max == need_max
            && self.min.len() == if need_min { outs } else { 0 }
            && self.max.len() == if need_max { outs } else { 0 }
            && self.nan.len() == if C::FLOAT { outs } else { 0 }
    }

    pub(crate) fn bytes_per_output(need_min: bool, need_max: bool) -> usize {
        let c = std::mem::size_of::<C>();
        c * usize::from(need_min) + c * usize::from(need_max) + if C::FLOAT { 8 } else { 0 }
    }

    pub(crate) fn update(&mut self, axis: ReduceAxis, t: &Tile<'_, C>) {
        match (self.want_min, self.want_max) {
            (true, true) => self.update_impl::<true, true>(axis, t),
            (true, false) => self.update_impl::<true, false>(axis, t),
            (false, true) => self.update_impl::<false, true>(axis, t),
            (false, false) => {}
        }
    }

    fn update_impl<const MIN: bool, const MAX: bool>(&mut self, axis: ReduceAxis, t: &Tile<'_, C>) {
        match axis {
            ReduceAxis::All => {
                let (lo, hi, nan) = extremes::<C, MIN, MAX>(t.xs);
                if MIN {
                    self.min[0] = min_sel(self.min[0], lo);
                }
                if MAX {
                    self.max[0] = max_sel(self.max[0], hi);
                }
                if C::FLOAT {
                    self.nan[0] += nan;
                }
            }
            ReduceAxis::Axis1 => {
                for row in t.rows() {
                    let (lo, hi, nan) = extremes::<C, MIN, MAX>(row);
                    if MIN {
                        self.min.push(lo);
                    }
                    if MAX {
                        self.max.push(hi);
                    }
                    if C::FLOAT {
                        self.nan.push(nan);
                    }
                }
            }
            ReduceAxis::Axis0 => {
                let n = t.row_len;
                if n == 0 {
                    return;
                }
                let mut r = 0;
                while t.sweep() == ROWS && r + ROWS <= t.nrows {
                    let rows: [&[C]; ROWS] = std::array::from_fn(|i| t.row(r + i));
                    self.axis0_rows::<MIN, MAX, ROWS>(rows, n);
                    r += ROWS;
                }
                for i in r..t.nrows {
                    self.axis0_rows::<MIN, MAX, 1>([t.row(i)], n);
                }
            }
        }
    }

    /// Axis0: `R` rows into the per-column extremes (one load and store of
    /// the state per `R` rows).
    #[inline(always)]
    fn axis0_rows<const MIN: bool, const MAX: bool, const R: usize>(
        &mut self,
        rows: [&[C]; R],
        n: usize,
    ) {
        let rows: [&[C]; R] = rows.map(|row| &row[..n]);
        let mn: &mut [C] = if MIN { &mut self.min[..n] } else { &mut [] };
        let mx: &mut [C] = if MAX { &mut self.max[..n] } else { &mut [] };
        let nn: &mut [u64] = if C::FLOAT {
            &mut self.nan[..n]
        } else {
            &mut []
        };
        for c in 0..n {
            let x: [C; R] = std::array::from_fn(|i| rows[i][c]);
            if MIN {
                mn[c] = x.iter().fold(mn[c], |a, &b| min_sel(a, b));
            }
            if MAX {
                mx[c] = x.iter().fold(mx[c], |a, &b| max_sel(a, b));
            }
            if C::FLOAT {
                nn[c] += x.iter().map(|v| u64::from(v.is_nan())).sum::<u64>();
            }
        }
    }

    /// Merges the state of the rows that follow.
    pub(crate) fn merge(&mut self, axis: ReduceAxis, next: MinMax<C>) {
        if axis == ReduceAxis::Axis1 {
            self.min.extend(next.min);
            self.max.extend(next.max);
            self.nan.extend(next.nan);
            return;
        }
        for (a, b) in self.min.iter_mut().zip(next.min) {
            *a = min_sel(*a, b);
        }
        for (a, b) in self.max.iter_mut().zip(next.max) {
            *a = max_sel(*a, b);
        }
        for (a, b) in self.nan.iter_mut().zip(next.nan) {
            *a += b;
        }
    }

    pub(crate) fn min(&self) -> &[C] {
        &self.min
    }

    pub(crate) fn max(&self) -> &[C] {
        &self.max
    }

    /// NaN count of output `i`.
    pub(crate) fn nans(&self, i: usize) -> u64 {
        self.nan.get(i).copied().unwrap_or(0)
    }
}

/// Running argmin (`MAX = false`) or argmax (`MAX = true`) per output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Arg<C: Num> {
    /// All/Axis0: the best value so far (empty before the first row;
    /// unused for Axis1).
    #[serde(with = "wire::nums")]
    val: Vec<C>,
    /// The index of the best value: flat C-order index (All), row (Axis0),
    /// column (Axis1, one per row).
    idx: Vec<u64>,
}

/// True when `x` replaces the current best `b` (strictly better, or the
/// first NaN).
#[inline(always)]
fn better<C: Num, const MAX: bool>(x: C, b: C) -> bool {
    let strictly = if MAX { x > b } else { x < b };
    strictly | (C::FLOAT && x.is_nan() & !b.is_nan())
}

impl<C: Num> Arg<C> {
    pub(crate) fn new() -> Self {
        Arg {
            val: Vec::new(),
            idx: Vec::new(),
        }
    }

    pub(crate) fn is_consistent(&self, axis: ReduceAxis, outs: usize) -> bool {
        match axis {
            ReduceAxis::All | ReduceAxis::Axis0 => {
                (self.val.is_empty() || self.val.len() == outs) && self.idx.len() == self.val.len()
            }
            ReduceAxis::Axis1 => self.val.is_empty() && self.idx.len() == outs,
        }
    }

    pub(crate) fn bytes_per_output(axis: ReduceAxis) -> usize {
        match axis {
            ReduceAxis::Axis1 => 8,
            _ => 8 + std::mem::size_of::<C>(),
        }
    }

    pub(crate) fn update<const MAX: bool>(&mut self, axis: ReduceAxis, t: &Tile<'_, C>) {
        match axis {
            ReduceAxis::All => {
                let mut best = self.val.first().copied().zip(self.idx.first().copied());
                let base = t.first_row * t.row_len as u64;
                arg_run::<C, MAX>(t.xs, base, &mut best);
                if let Some((v, i)) = best {
                    self.val.clear();
                    self.val.push(v);
                    self.idx.clear();
                    self.idx.push(i);
                }
            }
            ReduceAxis::Axis1 => {
                for row in t.rows() {
                    let mut best = None;
                    arg_run::<C, MAX>(row, 0, &mut best);
                    self.idx.push(best.map_or(0, |(_, i)| i));
                }
            }
            ReduceAxis::Axis0 => {
                let n = t.row_len;
                if n == 0 || t.nrows == 0 {
                    return;
                }
                let mut i = 0;
                if self.val.is_empty() {
                    self.val = t.row(0).to_vec();
                    self.idx = vec![t.first_row; n];
                    i = 1;
                }
                let (val, idx) = (&mut self.val[..n], &mut self.idx[..n]);
                while t.sweep() == ROWS && i + ROWS <= t.nrows {
                    let block: [&[C]; ROWS] = std::array::from_fn(|k| t.row(i + k));
                    arg_rows::<C, MAX, ROWS>(val, idx, block, t.first_row + i as u64);
                    i += ROWS;
                }
                for i in i..t.nrows {
                    arg_rows::<C, MAX, 1>(val, idx, [t.row(i)], t.first_row + i as u64);
                }
            }
        }
    }

    /// Merges the state of the rows that follow (ties keep `self`).
    pub(crate) fn merge<const MAX: bool>(&mut self, axis: ReduceAxis, next: Arg<C>) {
        if axis == ReduceAxis::Axis1 {
            self.idx.extend(next.idx);
            return;
        }
        if self.val.is_empty() {
            *self = next;
            return;
        }
        for ((v, i), (nv, ni)) in self
            .val
            .iter_mut()
            .zip(&mut self.idx)
            .zip(next.val.into_iter().zip(next.idx))
        {
            if better::<C, MAX>(nv, *v) {
                *v = nv;
                *i = ni;
            }
        }
    }

    pub(crate) fn indices(&self) -> &[u64] {
        &self.idx
    }
}

/// Axis0: `R` rows (rows `r`, `r + 1`, ...) into the per-column best values
/// and their row indices.
#[inline(always)]
fn arg_rows<C: Num, const MAX: bool, const R: usize>(
    val: &mut [C],
    idx: &mut [u64],
    rows: [&[C]; R],
    r: u64,
) {
    let n = val.len().min(idx.len());
    let (val, idx) = (&mut val[..n], &mut idx[..n]);
    let rows: [&[C]; R] = rows.map(|row| &row[..n]);
    for c in 0..n {
        let (mut b, mut i) = (val[c], idx[c]);
        for (k, row) in rows.iter().enumerate() {
            let x = row[c];
            let take = better::<C, MAX>(x, b);
            b = if take { x } else { b };
            i = if take { r + k as u64 } else { i };
        }
        val[c] = b;
        idx[c] = i;
    }
}

/// Folds the best element of a contiguous run into `best` (index = `base` +
/// position). Each chunk is scanned vectorised for its extreme and NaNs;
/// the position is looked up only when the chunk improves on `best`.
fn arg_run<C: Num, const MAX: bool>(xs: &[C], base: u64, best: &mut Option<(C, u64)>) {
    let mut off = base;
    for ch in xs.chunks(CHUNK) {
        let (lo, hi, nan) = if MAX {
            extremes::<C, false, true>(ch)
        } else {
            extremes::<C, true, false>(ch)
        };
        if nan > 0 {
            if best.is_none_or(|(b, _)| !b.is_nan())
                && let Some(p) = ch.iter().position(|x| x.is_nan())
            {
                *best = Some((ch[p], off + p as u64));
            }
        } else {
            let m = if MAX { hi } else { lo };
            if best.is_none_or(|(b, _)| better::<C, MAX>(m, b))
                && let Some(p) = ch.iter().position(|&x| x == m)
            {
                *best = Some((m, off + p as u64));
            }
        }
        off += ch.len() as u64;
    }
}
