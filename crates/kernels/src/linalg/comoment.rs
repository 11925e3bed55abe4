//! `np.cov(x, rowvar=False, ddof=...)` and `np.corrcoef(x, rowvar=False)`
//! by centred accumulation, stable for data far from zero.
//!
//! A state keeps, for the rows it covers, their count `n`, a *shift* `s`
//! (the first of its rows, exactly as read), the mean `ȳ` of `y = x − s`
//! and the centred co-moments `M = Σ (y − ȳ)(y − ȳ)ᵀ`. Buffered rows are
//! centred on their own mean and their co-moments (one product on faer)
//! merge with Chan et al.'s exact pairwise update
//! `M = Ma + Mb + (na·nb/n) δδᵀ`, `δ = ȳb − ȳa`; two states with different
//! shifts merge with `δ = (sb − sa) + (ȳb − ȳa)`, the difference of the
//! shifts taken exactly. Every quantity multiplied is thus of the order of
//! the data's spread, not of its magnitude: columns of mean 1e8 and
//! standard deviation 1 keep all their digits, which `XᵀX − nμμᵀ` loses.
//!
//! NaN (and ±inf, whose centred values are NaN, as in NumPy) propagates to
//! the row and column of its variable. Results are `f64`, as
//! `np.cov`/`np.corrcoef` give for every real input dtype.

use std::ops::Range;

use ndarray::{Array2, ArrayD, IxDyn};

use super::{append_rows, buffer_rows, first_row, gemm_panel_add, mirror, rows_of, syrk_lower};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::value::{AnyArray, AnyView};

/// What a [`CoMoment`] kernel gives when it finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoMomentOutput {
    /// `np.cov(x, rowvar=False, ddof=ddof)`: the co-moments times
    /// `1 / (n − ddof)` (with NumPy's `n − ddof ≤ 0` → `0`, so inf/NaN).
    Cov {
        /// Delta degrees of freedom (1: the unbiased estimate).
        ddof: u32,
    },
    /// `np.corrcoef(x, rowvar=False)`: the covariance divided by the
    /// standard deviations of both variables, clipped to `[-1, 1]`.
    Corr,
}

/// The centred co-moments of the columns of row blocks of `cols` values
/// (columns are the variables), finished to a covariance or correlation
/// matrix (`cols × cols`, `f64`; 0-d for a 1-d input, as NumPy).
#[derive(Clone, Debug)]
pub struct CoMoment {
    cols: usize,
    buf_rows: usize,
    output: CoMomentOutput,
    scalar: bool,
    /// Only these rows of the matrix (a column panel), when set.
    panel: Option<Range<usize>>,
}

/// A [`CoMoment`] state.
#[derive(Debug, Default)]
pub struct CoMomentState {
    /// Rows merged into `mean` and `m2` (buffered rows not included).
    n: u64,
    /// The first row of the state, as `f64`; empty before any row.
    shift: Vec<f64>,
    /// The mean of `x − shift` over the `n` rows.
    mean: Vec<f64>,
    /// Row-major `cols × cols` centred co-moments, upper triangle filled
    /// (for a panel: its `rows × cols`, all filled).
    m2: Vec<f64>,
    /// For a panel: every column's own co-moment (the diagonal), which
    /// correlations divide by.
    diag: Vec<f64>,
    /// Buffered rows of `x − shift`, row-major.
    buf: Vec<f64>,
}

impl CoMoment {
    /// The kernel for rows of `cols` values, finishing to `output`.
    pub fn new(cols: usize, output: CoMomentOutput) -> CoMoment {
        CoMoment {
            cols,
            buf_rows: buffer_rows(cols),
            output,
            scalar: false,
            panel: None,
        }
    }

    /// The same kernel computing only rows `rows` of the matrix
    /// (`rows.len() × cols`: a panel, for matrices too large to hold).
    pub fn panel(mut self, rows: Range<usize>) -> CoMoment {
        self.panel = Some(rows.start.min(self.cols)..rows.end.min(self.cols));
        self
    }

    /// Rows of the result.
    fn out_rows(&self) -> usize {
        self.panel.as_ref().map_or(self.cols, Range::len)
    }

    /// The same kernel giving a 0-d result, as NumPy does for a 1-d input
    /// (one variable; `cols` must be 1).
    pub fn scalar_result(mut self) -> CoMoment {
        self.scalar = true;
        self
    }

    /// Centres the buffered rows on their mean and merges them.
    fn flush(&self, state: &mut CoMomentState) {
        let c = self.cols;
        let m = state.buf.len() / c.max(1);
        if m == 0 {
            return;
        }
        let mut mean_b = vec![0.0; c];
        for row in state.buf.chunks_exact(c) {
            mean_b.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        let inv = 1.0 / m as f64;
        mean_b.iter_mut().for_each(|s| *s *= inv);
        for row in state.buf.chunks_exact_mut(c) {
            row.iter_mut().zip(&mean_b).for_each(|(v, mu)| *v -= mu);
        }
        if state.m2.is_empty() {
            state.m2 = vec![0.0; self.out_rows() * c];
        }
        match &self.panel {
            None => syrk_lower(&mut state.m2, &state.buf, m, c),
            Some(p) => {
                gemm_panel_add(&mut state.m2, &state.buf, m, c, p);
                if state.diag.is_empty() {
                    state.diag = vec![0.0; c];
                }
                for row in state.buf.chunks_exact(c) {
                    state
                        .diag
                        .iter_mut()
                        .zip(row)
                        .for_each(|(d, z)| *d += z * z);
                }
            }
        }
        state.buf.clear();
        let mb = m as u64;
        if state.n == 0 {
            state.mean = mean_b;
        } else {
            let delta: Vec<f64> = mean_b.iter().zip(&state.mean).map(|(b, a)| b - a).collect();
            let panel = self.panel.as_ref();
            chan_update(
                &mut state.m2,
                &mut state.diag,
                &mut state.mean,
                &delta,
                state.n,
                mb,
                c,
                panel,
            );
        }
        state.n += mb;
    }

    fn finish_matrix(&self, state: CoMomentState) -> Array2<f64> {
        let (r, c) = (self.out_rows(), self.cols);
        let mut m2 = state.m2;
        if m2.is_empty() {
            m2 = vec![0.0; r * c];
        }
        let mut diag = state.diag;
        if diag.is_empty() {
            diag = vec![0.0; c];
        }
        if self.panel.is_none() {
            mirror(&mut m2, c);
        }
        let n = state.n as f64;
        let ddof = match self.output {
            CoMomentOutput::Cov { ddof } => f64::from(ddof),
            CoMomentOutput::Corr => 1.0,
        };
        // NumPy: fact = n - ddof, 0 when ≤ 0, then c *= 1 / fact.
        let fact = if n - ddof <= 0.0 { 0.0 } else { n - ddof };
        let scale = 1.0 / fact;
        m2.iter_mut().for_each(|v| *v *= scale);
        let mut cov = Array2::from_shape_vec((r, c), m2).unwrap_or_else(|_| Array2::zeros((r, c)));
        if self.output == CoMomentOutput::Corr {
            if self.scalar {
                // NumPy: diag of a 0-d array fails, so corrcoef gives c / c:
                // 1, or NaN for 0, ±inf and NaN.
                cov.mapv_inplace(|v| {
                    if v.is_finite() && v != 0.0 {
                        1.0
                    } else {
                        f64::NAN
                    }
                });
            } else {
                let std: Vec<f64> = match &self.panel {
                    None => (0..c).map(|i| cov[[i, i]].sqrt()).collect(),
                    Some(_) => diag.iter().map(|d| (d * scale).sqrt()).collect(),
                };
                let first = self.panel.as_ref().map_or(0, |p| p.start);
                for ((i, j), v) in cov.indexed_iter_mut() {
                    *v /= std[first + i];
                    *v /= std[j];
                    // np.clip keeps NaN.
                    *v = if v.is_nan() { *v } else { v.clamp(-1.0, 1.0) };
                }
            }
        }
        cov
    }
}

/// Chan et al.'s merge of the co-moments of `nb` rows whose mean is
/// `mean_a + delta` into those of the `na` rows before them, on the
/// upper triangle of the row-major `m2` (which already holds `Ma + Mb`),
/// or on a panel's rows and every column's own co-moment in `diag`.
#[allow(clippy::too_many_arguments)]
fn chan_update(
    m2: &mut [f64],
    diag: &mut [f64],
    mean: &mut [f64],
    delta: &[f64],
    na: u64,
    nb: u64,
    c: usize,
    panel: Option<&Range<usize>>,
) {
    let n = (na + nb) as f64;
    let w = (na as f64) * (nb as f64) / n;
    match panel {
        None => {
            for i in 0..c {
                let wd = w * delta[i];
                let row = &mut m2[i * c..(i + 1) * c];
                for j in i..c {
                    row[j] += wd * delta[j];
                }
            }
        }
        Some(p) => {
            for (r, i) in p.clone().enumerate() {
                let wd = w * delta[i];
                let row = &mut m2[r * c..(r + 1) * c];
                for j in 0..c {
                    row[j] += wd * delta[j];
                }
            }
            diag.iter_mut()
                .zip(delta)
                .for_each(|(d, x)| *d += w * x * x);
        }
    }
    let f = nb as f64 / n;
    mean.iter_mut().zip(delta).for_each(|(m, d)| *m += d * f);
}

impl Kernel for CoMoment {
    type State = CoMomentState;

    fn init(&self) -> CoMomentState {
        CoMomentState::default()
    }

    fn update(&self, state: &mut CoMomentState, block: AnyView<'_>, _first_row: u64) {
        let c = self.cols;
        if c == 0 || block.ncols() != c || block.nrows() == 0 {
            return;
        }
        if state.shift.is_empty() {
            state.shift = first_row(block);
        }
        let mut start = 0;
        let n = block.nrows();
        while start < n {
            if state.buf.capacity() == 0 {
                state.buf.reserve_exact(self.buf_rows * c);
            }
            let room = self.buf_rows - state.buf.len() / c;
            let end = (start + room).min(n);
            append_rows(
                &mut state.buf,
                rows_of(block, start, end),
                Some(&state.shift),
            );
            if state.buf.len() / c >= self.buf_rows {
                self.flush(state);
            }
            start = end;
        }
    }

    fn merge(&self, into: &mut CoMomentState, mut next: CoMomentState) {
        self.flush(into);
        self.flush(&mut next);
        if next.n == 0 {
            return;
        }
        if into.n == 0 {
            *into = next;
            return;
        }
        let c = self.cols;
        // The means of both in `into`'s shifted frame: the shifts'
        // difference first (exact for nearby values), then the means'.
        let delta: Vec<f64> = (0..c)
            .map(|j| (next.shift[j] - into.shift[j]) + (next.mean[j] - into.mean[j]))
            .collect();
        into.m2.iter_mut().zip(&next.m2).for_each(|(a, b)| *a += b);
        into.diag
            .iter_mut()
            .zip(&next.diag)
            .for_each(|(a, b)| *a += b);
        let panel = self.panel.as_ref();
        chan_update(
            &mut into.m2,
            &mut into.diag,
            &mut into.mean,
            &delta,
            into.n,
            next.n,
            c,
            panel,
        );
        into.n += next.n;
    }

    fn finish(&self, mut state: CoMomentState) -> Result<Vec<AnyArray>> {
        self.flush(&mut state);
        let cov = self.finish_matrix(state);
        let out: ArrayD<f64> = if self.scalar {
            let v = cov.iter().next().copied().ok_or_else(|| {
                Error::Invalid("internal: a one-variable covariance of no variable".into())
            })?;
            ArrayD::from_elem(IxDyn(&[]), v)
        } else {
            cov.into_dyn()
        };
        Ok(vec![AnyArray::from(out)])
    }

    fn state_bytes(&self, _rows: u64) -> u64 {
        let (r, c) = (self.out_rows() as u64, self.cols as u64);
        (std::mem::size_of::<CoMomentState>() as u64)
            + 8 * (r * c + self.buf_rows as u64 * c + 4 * c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    fn naive_cov(x: &Array2<f64>, ddof: f64) -> Array2<f64> {
        let n = x.nrows() as f64;
        let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
        let xc = x - &mean;
        xc.t().dot(&xc) / (n - ddof)
    }

    fn run(k: &CoMoment, x: &Array2<f64>, block: usize) -> Array2<f64> {
        let mut merged = k.init();
        let mut r = 0;
        while r < x.nrows() {
            let e = (r + block).min(x.nrows());
            let mut st = k.init();
            // Tiles of 3 rows within a block, as the engine calls update.
            let mut t = r;
            while t < e {
                let te = (t + 3).min(e);
                k.update(&mut st, AnyView::from(x.slice(s![t..te, ..])), t as u64);
                t = te;
            }
            k.merge(&mut merged, st);
            r = e;
        }
        let out = k.finish(merged).unwrap().remove(0);
        out.to_f64().into_dimensionality().unwrap()
    }

    #[test]
    fn cov_matches_centred_reference_across_blocks() {
        let x = Array2::from_shape_fn((777, 5), |(i, j)| {
            1e8 + ((i * 5 + j) as f64 * 0.731).sin() * (j + 1) as f64
        });
        let want = naive_cov(&x, 1.0);
        for block in [1, 7, 100, 777] {
            let got = run(
                &CoMoment::new(5, CoMomentOutput::Cov { ddof: 1 }),
                &x,
                block,
            );
            for ((i, j), w) in want.indexed_iter() {
                assert!(
                    (got[[i, j]] - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{block}: {i},{j}"
                );
            }
        }
    }

    #[test]
    fn panels_are_rows_of_the_whole() {
        let mut x = Array2::from_shape_fn((333, 6), |(i, j)| {
            1e6 + ((i * 6 + j) as f64 * 0.41).sin() * (j + 1) as f64
        });
        x[[40, 4]] = f64::NAN;
        for output in [CoMomentOutput::Cov { ddof: 1 }, CoMomentOutput::Corr] {
            let whole = run(&CoMoment::new(6, output), &x, 50);
            for (a, b) in [(0, 2), (2, 5), (5, 6)] {
                let got = run(&CoMoment::new(6, output).panel(a..b), &x, 37);
                assert_eq!(got.shape(), &[b - a, 6]);
                for ((i, j), g) in got.indexed_iter() {
                    let w = whole[[a + i, j]];
                    assert!(
                        (w.is_nan() && g.is_nan()) || (g - w).abs() <= 1e-9 * w.abs().max(1e-3),
                        "{output:?} {a}..{b}: [{i},{j}] {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn corr_has_unit_diagonal_and_nan_column() {
        let mut x = Array2::from_shape_fn((50, 3), |(i, j)| ((i * 3 + j) as f64).cos());
        x[[10, 2]] = f64::NAN;
        let got = run(&CoMoment::new(3, CoMomentOutput::Corr), &x, 16);
        assert!((got[[0, 0]] - 1.0).abs() < 1e-12);
        assert!(got[[0, 1]].abs() <= 1.0);
        assert!(got[[2, 0]].is_nan() && got[[1, 2]].is_nan() && got[[2, 2]].is_nan());
        assert!(!got[[1, 0]].is_nan());
    }
}
