//! `X.T @ X`: the Gram matrix of the columns of a `rows × cols` array.
//!
//! Accumulated in `f64` whatever the input dtype (NaN propagates to the
//! rows and columns of the matrix it touches); only one triangle is
//! multiplied, the other is mirrored when the state finishes.

use std::ops::Range;

use ndarray::Array2;
use outcore_chunker::DType;

use super::{append_rows, buffer_rows, gemm_panel_add, mirror, syrk_lower};
use crate::error::Result;
use crate::kernel::Kernel;
use crate::value::{AnyArray, AnyView};

/// The Gram matrix `X.T @ X` (`cols × cols`, `f64`) of row blocks of
/// `cols` values.
#[derive(Clone, Debug)]
pub struct Gram {
    cols: usize,
    buf_rows: usize,
    /// Only these rows of the matrix (a column panel), when set.
    panel: Option<Range<usize>>,
}

/// A [`Gram`] state: the products of the rows multiplied so far, and the
/// rows buffered since.
#[derive(Debug, Default)]
pub struct GramState {
    /// Row-major `cols × cols`, one triangle filled; empty until used.
    acc: Vec<f64>,
    /// Buffered rows, row-major, as `f64`.
    buf: Vec<f64>,
}

impl Gram {
    /// The kernel for rows of `cols` values.
    pub fn new(cols: usize) -> Gram {
        Gram {
            cols,
            buf_rows: buffer_rows(cols),
            panel: None,
        }
    }

    /// The same kernel computing only rows `rows` of the matrix
    /// (`rows.len() × cols`: a panel, for matrices too large to hold).
    pub fn panel(mut self, rows: Range<usize>) -> Gram {
        self.panel = Some(rows.start.min(self.cols)..rows.end.min(self.cols));
        self
    }

    /// Rows of the result.
    fn out_rows(&self) -> usize {
        self.panel.as_ref().map_or(self.cols, Range::len)
    }

    /// NumPy's dtype of `x.T @ x` when it is computed this way: the input's
    /// for floats (float32 stays float32, rounded once from the `f64`
    /// sums), float64 for integers and bool (NumPy multiplies integers
    /// exactly, with wrap-around; here they are summed in `f64`).
    pub fn result_dtype(input: DType) -> DType {
        match input {
            DType::F16 | DType::F32 => input,
            _ => DType::F64,
        }
    }

    fn flush(&self, state: &mut GramState) {
        let rows = state.buf.len() / self.cols.max(1);
        if rows == 0 {
            return;
        }
        if state.acc.is_empty() {
            state.acc = vec![0.0; self.out_rows() * self.cols];
        }
        match &self.panel {
            None => syrk_lower(&mut state.acc, &state.buf, rows, self.cols),
            Some(p) => gemm_panel_add(&mut state.acc, &state.buf, rows, self.cols, p),
        }
        state.buf.clear();
    }
}

impl Kernel for Gram {
    type State = GramState;

    fn init(&self) -> GramState {
        GramState::default()
    }

    fn update(&self, state: &mut GramState, block: AnyView<'_>, _first_row: u64) {
        if self.cols == 0 || block.ncols() != self.cols {
            return;
        }
        let mut start = 0;
        let n = block.nrows();
        while start < n {
            if state.buf.capacity() == 0 {
                state.buf.reserve_exact(self.buf_rows * self.cols);
            }
            let room = self.buf_rows - state.buf.len() / self.cols;
            let end = (start + room).min(n);
            append_rows(&mut state.buf, super::rows_of(block, start, end), None);
            if state.buf.len() / self.cols >= self.buf_rows {
                self.flush(state);
            }
            start = end;
        }
    }

    fn merge(&self, into: &mut GramState, mut next: GramState) {
        self.flush(into);
        self.flush(&mut next);
        if next.acc.is_empty() {
            return;
        }
        if into.acc.is_empty() {
            into.acc = next.acc;
            return;
        }
        into.acc
            .iter_mut()
            .zip(&next.acc)
            .for_each(|(a, b)| *a += b);
    }

    fn finish(&self, mut state: GramState) -> Result<Vec<AnyArray>> {
        self.flush(&mut state);
        let (r, c) = (self.out_rows(), self.cols);
        let mut acc = state.acc;
        if acc.is_empty() {
            acc = vec![0.0; r * c];
        }
        if self.panel.is_none() {
            mirror(&mut acc, c);
        }
        let out = Array2::from_shape_vec((r, c), acc)
            .map_err(|e| crate::Error::Invalid(format!("internal: gram shape: {e}")))?;
        Ok(vec![AnyArray::from(out.into_dyn())])
    }

    fn state_bytes(&self, _rows: u64) -> u64 {
        let (r, c) = (self.out_rows() as u64, self.cols as u64);
        (std::mem::size_of::<GramState>() as u64) + 8 * (r * c + self.buf_rows as u64 * c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    #[test]
    fn gram_over_blocks_is_xtx() {
        let x = Array2::from_shape_fn((1000, 7), |(i, j)| ((i * 7 + j) as f64 * 0.37).sin());
        let k = Gram::new(7);
        let mut a = k.init();
        for t in 0..10 {
            k.update(
                &mut a,
                AnyView::from(x.slice(s![t * 50..(t + 1) * 50, ..])),
                0,
            );
        }
        let mut b = k.init();
        k.update(&mut b, AnyView::from(x.slice(s![500.., ..])), 500);
        k.merge(&mut a, b);
        let out = k.finish(a).unwrap().remove(0).to_f64();
        let want = x.t().dot(&x);
        for ((i, j), w) in want.indexed_iter() {
            assert!((out[[i, j]] - w).abs() < 1e-9 * w.abs().max(1.0), "{i},{j}");
        }
        // A panel: rows 2..5 of the matrix.
        let k = Gram::new(7).panel(2..5);
        let mut a = k.init();
        k.update(&mut a, AnyView::from(x.view()), 0);
        let out = k.finish(a).unwrap().remove(0).to_f64();
        assert_eq!(out.shape(), &[3, 7]);
        for ((i, j), w) in want.slice(s![2..5, ..]).indexed_iter() {
            assert!((out[[i, j]] - w).abs() < 1e-9 * w.abs().max(1.0), "{i},{j}");
        }
    }
}
