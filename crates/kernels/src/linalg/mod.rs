//! Dense linear algebra over row blocks: Gram matrices (`X.T @ X`),
//! centred co-moments (covariance, correlation), row-block products
//! (`X @ W`) and the symmetric eigen-decomposition behind PCA.
//!
//! The products run on [`faer`]'s matrix multiplication (blocked, with
//! runtime CPU-feature dispatch), sequentially: the engine owns the
//! threads and gives each worker its own blocks. Values of every dtype
//! are converted to `f64` as they are buffered, so `float32` input
//! accumulates in `float64`.
//!
//! * [`gram::Gram`] — `X.T @ X`, one triangle computed, the other mirrored;
//! * [`comoment::CoMoment`] — `np.cov` / `np.corrcoef` (`rowvar=False`) by
//!   centred accumulation: each buffered run of rows is centred on its own
//!   mean and merged with Chan et al.'s exact update
//!   `C = Ca + Cb + (na·nb/n) δδᵀ`, never `XᵀX − nμμᵀ`;
//! * [`cross::Cross`] — `X.T @ Y` of two arrays with the same rows;
//! * [`matmul_rows`] — `X @ W` for a block of rows;
//! * [`pca`] — principal axes from a covariance matrix.
//!
//! Rows reach a kernel a tile (a few thousand values) at a time; products
//! of so few rows would be bound by memory traffic over the `c × c`
//! accumulator, so states buffer rows (at most [`BUFFER_ELEMS`] values,
//! and at least [`MIN_BUFFER_ROWS`] rows) and multiply a whole buffer at
//! once.

pub mod comoment;
pub mod cross;
pub mod gram;
pub mod pca;

use faer::linalg::matmul::triangular::{BlockStructure, matmul as tri_matmul};
use faer::{Accum, MatMut, MatRef, Par};
use half::f16;

use crate::value::AnyView;

/// Values a state buffers before it multiplies them into its accumulator
/// (1 MiB of `f64`).
pub const BUFFER_ELEMS: usize = 1 << 17;

/// The fewest rows a buffer holds, however wide the rows.
pub const MIN_BUFFER_ROWS: usize = 64;

/// The most rows a buffer holds, however narrow the rows.
pub const MAX_BUFFER_ROWS: usize = 512;

/// Rows buffered before a product, for rows of `cols` values.
pub fn buffer_rows(cols: usize) -> usize {
    (BUFFER_ELEMS / cols.max(1)).clamp(MIN_BUFFER_ROWS, MAX_BUFFER_ROWS)
}

/// Appends the rows of `block` to `buf` as `f64`, in row-major order
/// (NumPy's `astype(float64)`).
pub fn rows_to_f64(buf: &mut Vec<f64>, block: AnyView<'_>) {
    append_rows(buf, block, None);
}

/// Appends the rows of `block` to `buf` as `f64`, in row-major order,
/// each value minus `shift[j]` of its column when `shift` is given.
pub(crate) fn append_rows(buf: &mut Vec<f64>, block: AnyView<'_>, shift: Option<&[f64]>) {
    macro_rules! rows {
        ($a:expr, $conv:expr) => {{
            let conv = $conv;
            for row in $a.rows() {
                match shift {
                    Some(s) => buf.extend(row.iter().zip(s).map(|(v, s)| conv(*v) - s)),
                    None => buf.extend(row.iter().map(|v| conv(*v))),
                }
            }
        }};
    }
    match block {
        AnyView::Bool(a) => rows!(a, |v: bool| f64::from(u8::from(v))),
        AnyView::I8(a) => rows!(a, f64::from),
        AnyView::I16(a) => rows!(a, f64::from),
        AnyView::I32(a) => rows!(a, f64::from),
        AnyView::I64(a) => rows!(a, |v: i64| v as f64),
        AnyView::U8(a) => rows!(a, f64::from),
        AnyView::U16(a) => rows!(a, f64::from),
        AnyView::U32(a) => rows!(a, f64::from),
        AnyView::U64(a) => rows!(a, |v: u64| v as f64),
        AnyView::F16(a) => rows!(a, |v: f16| f64::from(v)),
        AnyView::F32(a) => rows!(a, f64::from),
        AnyView::F64(a) => rows!(a, |v: f64| v),
    }
}

/// The first row of `block` as `f64`.
pub(crate) fn first_row(block: AnyView<'_>) -> Vec<f64> {
    let mut v = Vec::with_capacity(block.ncols());
    if block.nrows() > 0 {
        append_rows(&mut v, rows_of(block, 0, 1), None);
    }
    v
}

/// Rows `r0 .. r1` of `v`.
pub(crate) fn rows_of(v: AnyView<'_>, r0: usize, r1: usize) -> AnyView<'_> {
    macro_rules! s {
        ($($var:ident),*) => {
            match v {
                $(AnyView::$var(a) => AnyView::$var(a.slice_move(ndarray::s![r0..r1, ..])),)*
            }
        };
    }
    s!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, F32, F64)
}

/// `acc += bᵀ b` on the lower triangle (diagonal included) of the
/// row-major `cols × cols` accumulator, for the row-major `rows × cols`
/// buffer `b`. The upper triangle is left as it is.
pub(crate) fn syrk_lower(acc: &mut [f64], b: &[f64], rows: usize, cols: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    // Row-major `b` (rows × cols) is column-major `bᵀ` (cols × rows).
    let bt = MatRef::from_column_major_slice(&b[..rows * cols], cols, rows);
    // The accumulator is symmetric in what is read: take it column-major,
    // so its lower triangle is the row-major upper one; mirrored later.
    let dst = MatMut::from_column_major_slice_mut(&mut acc[..cols * cols], cols, cols);
    tri_matmul(
        dst,
        BlockStructure::TriangularLower,
        Accum::Add,
        bt,
        BlockStructure::Rectangular,
        bt.transpose(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
}

/// `acc += b[:, panel]ᵀ b` for the row-major `rows × cols` buffer `b` and
/// the row-major `panel.len() × cols` accumulator: rows `panel` of `bᵀ b`.
pub(crate) fn gemm_panel_add(
    acc: &mut [f64],
    b: &[f64],
    rows: usize,
    cols: usize,
    panel: &std::ops::Range<usize>,
) {
    let p = panel.len();
    if rows == 0 || cols == 0 || p == 0 || panel.end > cols {
        return;
    }
    let lhs = MatRef::from_row_major_slice_with_stride(&b[panel.start..rows * cols], rows, p, cols);
    let rhs = MatRef::from_row_major_slice(&b[..rows * cols], rows, cols);
    let dst = MatMut::from_row_major_slice_mut(&mut acc[..p * cols], p, cols);
    faer::linalg::matmul::matmul(dst, Accum::Add, lhs.transpose(), rhs, 1.0, Par::Seq);
}

/// Copies the triangle [`syrk_lower`] fills onto the other one, making the
/// row-major `cols × cols` matrix symmetric.
pub(crate) fn mirror(acc: &mut [f64], cols: usize) {
    // syrk_lower fills the column-major lower triangle: row-major (i, j)
    // with j ≥ i.
    for i in 0..cols {
        for j in (i + 1)..cols {
            acc[j * cols + i] = acc[i * cols + j];
        }
    }
}

/// `acc += aᵀ b` for row-major `a` (`rows × ca`), `b` (`rows × cb`) and
/// the row-major `ca × cb` accumulator, on faer's matrix product.
pub(crate) fn gemm_tn_add(
    acc: &mut [f64],
    a: &[f64],
    b: &[f64],
    rows: usize,
    ca: usize,
    cb: usize,
) {
    if rows == 0 || ca == 0 || cb == 0 {
        return;
    }
    let at = MatRef::from_column_major_slice(&a[..rows * ca], ca, rows);
    let b = MatRef::from_row_major_slice(&b[..rows * cb], rows, cb);
    let dst = MatMut::from_row_major_slice_mut(&mut acc[..ca * cb], ca, cb);
    faer::linalg::matmul::matmul(dst, Accum::Add, at, b, 1.0, Par::Seq);
}

/// `out = x @ w` for row-major `x` (`rows × cols`), `w` (`cols × k`) and
/// `out` (`rows × k`), on faer's matrix product (sequential).
///
/// # Panics
///
/// If a slice is shorter than its shape (a caller's bug, not input).
pub fn matmul_rows(x: &[f64], rows: usize, cols: usize, w: &[f64], k: usize, out: &mut [f64]) {
    let out = &mut out[..rows * k];
    if rows == 0 || k == 0 {
        return;
    }
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    let x = MatRef::from_row_major_slice(&x[..rows * cols], rows, cols);
    let w = MatRef::from_row_major_slice(&w[..cols * k], cols, k);
    let dst = MatMut::from_row_major_slice_mut(out, rows, k);
    faer::linalg::matmul::matmul(dst, Accum::Replace, x, w, 1.0, Par::Seq);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syrk_lower_is_xtx() {
        let (rows, cols) = (5, 3);
        let b: Vec<f64> = (0..rows * cols).map(|i| (i as f64).sin()).collect();
        let mut acc = vec![0.0; cols * cols];
        syrk_lower(&mut acc, &b, rows, cols);
        mirror(&mut acc, cols);
        for i in 0..cols {
            for j in 0..cols {
                let want: f64 = (0..rows).map(|r| b[r * cols + i] * b[r * cols + j]).sum();
                assert!((acc[i * cols + j] - want).abs() < 1e-12, "{i},{j}");
            }
        }
    }

    #[test]
    fn matmul_rows_is_x_at_w() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
        let w = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3 × 2
        let mut out = [0.0; 4];
        matmul_rows(&x, 2, 3, &w, 2, &mut out);
        assert_eq!(out, [4.0, 5.0, 10.0, 11.0]);
    }
}
