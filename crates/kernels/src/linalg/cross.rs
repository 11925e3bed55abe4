//! `X.T @ Y`: the cross products of the columns of two arrays with the
//! same rows, `X` streamed through the kernel and `Y`'s matching rows
//! fetched from a [`RowSource`] (the engine gives a file's) when a buffer
//! of `X` rows is multiplied.

use std::ops::Range;
use std::sync::Arc;

use ndarray::Array2;

use super::{append_rows, buffer_rows, rows_of};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::value::{AnyArray, AnyView};

/// Where the rows of `Y` come from: rows by global index, as `f64`.
pub trait RowSource: Send + Sync {
    /// Values per row.
    fn cols(&self) -> usize;

    /// Bytes the source holds while it hands over `rows` rows (a read
    /// buffer), for the memory budget.
    fn bytes_for(&self, rows: usize) -> u64;

    /// Appends rows `rows` as `f64`, row-major, to `out`.
    ///
    /// # Errors
    ///
    /// A message naming what failed (a read error).
    fn rows_f64(&self, rows: Range<u64>, out: &mut Vec<f64>) -> std::result::Result<(), String>;
}

/// `X.T @ Y` (`cx × cy`, `f64`) for row blocks of `X` of `cx` values and
/// the rows of `Y` with the same indices.
#[derive(Clone)]
pub struct Cross {
    cx: usize,
    buf_rows: usize,
    y: Arc<dyn RowSource>,
}

impl std::fmt::Debug for Cross {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cross({} × {})", self.cx, self.y.cols())
    }
}

/// A [`Cross`] state.
#[derive(Debug, Default)]
pub struct CrossState {
    /// Row-major `cx × cy`; empty until used.
    acc: Vec<f64>,
    /// Buffered rows of `X`, row-major.
    xbuf: Vec<f64>,
    /// The rows of `Y` for the buffer (reused).
    ybuf: Vec<f64>,
    /// The global index of the first buffered row.
    start: u64,
    /// The first failure to fetch rows of `Y`.
    error: Option<String>,
}

impl Cross {
    /// The kernel for rows of `cx` values of `X`, with `Y` from `y`.
    pub fn new(cx: usize, y: Arc<dyn RowSource>) -> Cross {
        Cross {
            cx,
            buf_rows: buffer_rows(cx + y.cols()),
            y,
        }
    }

    fn flush(&self, state: &mut CrossState) {
        let (cx, cy) = (self.cx, self.y.cols());
        let m = state.xbuf.len() / cx.max(1);
        if m == 0 {
            return;
        }
        if state.acc.is_empty() {
            state.acc = vec![0.0; cx * cy];
        }
        state.ybuf.clear();
        let rows = state.start..state.start + m as u64;
        match self.y.rows_f64(rows, &mut state.ybuf) {
            Ok(()) if state.ybuf.len() == m * cy => {
                super::gemm_tn_add(&mut state.acc, &state.xbuf, &state.ybuf, m, cx, cy);
            }
            Ok(()) => {
                state.error.get_or_insert_with(|| {
                    format!(
                        "internal: {} values of Y for {m} rows of {cy}",
                        state.ybuf.len()
                    )
                });
            }
            Err(e) => {
                state.error.get_or_insert(e);
            }
        }
        state.start += m as u64;
        state.xbuf.clear();
    }
}

impl Kernel for Cross {
    type State = CrossState;

    fn init(&self) -> CrossState {
        CrossState::default()
    }

    fn update(&self, state: &mut CrossState, block: AnyView<'_>, first_row: u64) {
        let cx = self.cx;
        if cx == 0 || block.ncols() != cx || block.nrows() == 0 {
            return;
        }
        let buffered = (state.xbuf.len() / cx) as u64;
        if buffered > 0 && state.start + buffered != first_row {
            self.flush(state);
        }
        if state.xbuf.is_empty() {
            state.start = first_row;
        }
        let mut start = 0;
        let n = block.nrows();
        while start < n {
            if state.xbuf.capacity() == 0 {
                state.xbuf.reserve_exact(self.buf_rows * cx);
            }
            let room = self.buf_rows - state.xbuf.len() / cx;
            let end = (start + room).min(n);
            append_rows(&mut state.xbuf, rows_of(block, start, end), None);
            if state.xbuf.len() / cx >= self.buf_rows {
                self.flush(state);
            }
            start = end;
        }
    }

    fn merge(&self, into: &mut CrossState, mut next: CrossState) {
        self.flush(into);
        self.flush(&mut next);
        if into.error.is_none() {
            into.error = next.error;
        }
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

    fn finish(&self, mut state: CrossState) -> Result<Vec<AnyArray>> {
        self.flush(&mut state);
        if let Some(e) = state.error {
            return Err(Error::Invalid(e));
        }
        let (cx, cy) = (self.cx, self.y.cols());
        let mut acc = state.acc;
        if acc.is_empty() {
            acc = vec![0.0; cx * cy];
        }
        let out = Array2::from_shape_vec((cx, cy), acc)
            .map_err(|e| Error::Invalid(format!("internal: t_dot shape: {e}")))?;
        Ok(vec![AnyArray::from(out.into_dyn())])
    }

    fn state_bytes(&self, _rows: u64) -> u64 {
        let (cx, cy) = (self.cx as u64, self.y.cols() as u64);
        let b = self.buf_rows as u64;
        (std::mem::size_of::<CrossState>() as u64)
            + 8 * (cx * cy + b * (cx + cy))
            + self.y.bytes_for(self.buf_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    struct Mem(Array2<f64>);

    impl RowSource for Mem {
        fn cols(&self) -> usize {
            self.0.ncols()
        }
        fn bytes_for(&self, _rows: usize) -> u64 {
            0
        }
        fn rows_f64(
            &self,
            rows: Range<u64>,
            out: &mut Vec<f64>,
        ) -> std::result::Result<(), String> {
            let v = self.0.slice(s![rows.start as usize..rows.end as usize, ..]);
            out.extend(v.iter().copied());
            Ok(())
        }
    }

    #[test]
    fn cross_is_xt_y() {
        let x = Array2::from_shape_fn((700, 4), |(i, j)| ((i * 4 + j) as f64 * 0.3).sin());
        let y = Array2::from_shape_fn((700, 3), |(i, j)| ((i * 3 + j) as f64 * 0.7).cos());
        let k = Cross::new(4, Arc::new(Mem(y.clone())));
        let mut merged = k.init();
        for b in 0..7 {
            let mut st = k.init();
            for t in 0..10 {
                let r = b * 100 + t * 10;
                k.update(&mut st, AnyView::from(x.slice(s![r..r + 10, ..])), r as u64);
            }
            k.merge(&mut merged, st);
        }
        let got = k.finish(merged).unwrap().remove(0).to_f64();
        let want = x.t().dot(&y);
        for ((i, j), w) in want.indexed_iter() {
            assert!((got[[i, j]] - w).abs() < 1e-10, "{i},{j}");
        }
    }
}
