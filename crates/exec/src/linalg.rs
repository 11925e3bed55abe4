//! Linear algebra over streamed arrays: `X.T @ X` ([`Expr::gram`]),
//! `X.T @ Y` ([`Expr::t_dot`]),
//! `np.cov` / `np.corrcoef` with `rowvar=False` ([`Expr::cov`],
//! [`Expr::corrcoef`]), `X @ W` for a `W` in memory ([`Expr::dot`]) and
//! PCA ([`Engine::pca`], [`Pca::transform`]).
//!
//! The matrices are kernel nodes (`outcore_kernels::linalg`): they share
//! the pass of the other reductions over the same input, their `c × c`
//! states are reserved in the budget (one per block in flight and the
//! merged one), and a limit too small for them is refused before anything
//! is read. `dot` is a `map_blocks` stage: its `n × k` result streams like
//! any elementwise expression.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView2};
use outcore_chunker::{ArrayFile, ArrayWriter, DType, OutputSpec, with_dtype};
use outcore_kernels::linalg::comoment::{CoMoment, CoMomentOutput};
use outcore_kernels::linalg::cross::{Cross, RowSource};
use outcore_kernels::linalg::gram::Gram;
use outcore_kernels::linalg::pca::pca_from_cov;
use outcore_kernels::linalg::{matmul_rows, rows_to_f64};
use outcore_kernels::{AnyArray, AnyView, DynKernel};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::expr::{Expr, Extent, Node};
use crate::kernel::KernelSpec;

/// Which matrix a [`LinalgKernel`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Gram,
    Cov(u32),
    Corr,
}

/// A Gram or co-moment kernel node.
struct LinalgKernel {
    what: What,
    /// A 1-d input: one variable, a 0-d result (NumPy's `np.cov` of a
    /// vector).
    scalar: bool,
    /// Only these rows of the matrix (a column panel).
    panel: Option<Range<usize>>,
}

impl KernelSpec for LinalgKernel {
    fn describe(&self, arg: &str) -> String {
        let rows = match &self.panel {
            Some(p) => format!("[{}:{}]", p.start, p.end),
            None => String::new(),
        };
        match self.what {
            What::Gram => format!("gram({arg}){rows}"),
            What::Cov(ddof) => format!("cov({arg}, ddof={ddof}){rows}"),
            What::Corr => format!("corrcoef({arg}){rows}"),
        }
    }

    fn build(&self, _input: DType, _rows: u64, row_len: usize) -> Result<Arc<dyn DynKernel>> {
        let comoment = |output| {
            let k = CoMoment::new(row_len, output);
            let k = if self.scalar { k.scalar_result() } else { k };
            match &self.panel {
                Some(p) => k.panel(p.clone()),
                None => k,
            }
        };
        Ok(match self.what {
            What::Gram => {
                let k = Gram::new(row_len);
                Arc::new(match &self.panel {
                    Some(p) => k.panel(p.clone()),
                    None => k,
                })
            }
            What::Cov(ddof) => Arc::new(comoment(CoMomentOutput::Cov { ddof })),
            What::Corr => Arc::new(comoment(CoMomentOutput::Corr)),
        })
    }
}

/// `X.T @ Y` with `Y` a file: its rows are read beside `X`'s blocks.
struct TDotKernel {
    y: Arc<ArrayFile>,
}

impl KernelSpec for TDotKernel {
    fn describe(&self, arg: &str) -> String {
        format!("t_dot({arg}, {})", self.y.path().display())
    }

    fn build(&self, _input: DType, _rows: u64, row_len: usize) -> Result<Arc<dyn DynKernel>> {
        let y: Arc<dyn RowSource> = Arc::new(FileRows(self.y.clone()));
        Ok(Arc::new(Cross::new(row_len, y)))
    }
}

/// The rows of a file as the cross-product kernel's `Y`.
struct FileRows(Arc<ArrayFile>);

impl RowSource for FileRows {
    fn cols(&self) -> usize {
        self.0.meta().row_len()
    }

    fn bytes_for(&self, rows: usize) -> u64 {
        // A block read by pread (a mapped one holds no memory of its own).
        rows as u64 * self.0.meta().row_bytes() as u64
    }

    fn rows_f64(&self, rows: Range<u64>, out: &mut Vec<f64>) -> std::result::Result<(), String> {
        let block = self.0.read_rows(rows).map_err(|e| e.to_string())?;
        let view: AnyView<'_> = with_dtype!(block.dtype(), T => AnyView::from(
            block.view::<T>().map_err(|e| e.to_string())?
        ));
        rows_to_f64(out, view);
        // A mapped block reports a truncation once its bytes were read.
        block.check().map_err(|e| e.to_string())
    }
}

impl Expr {
    /// `x.T @ y` for two 2-d arrays with the same rows (`n × cx` and
    /// `n × cy`): a `cx × cy` matrix, summed in `f64` on faer's product
    /// (float32 when both are float32, float64 otherwise).
    ///
    /// `x` may be any streamed expression; `y` must be an opened file,
    /// whose rows are read beside each block of `x` (they are not listed
    /// among the pass's inputs in `explain`, but their read buffer is in
    /// the kernel's reserved state).
    pub fn t_dot(&self, y: &Expr) -> Expr {
        if self.is_invalid() {
            return self.clone();
        }
        if y.is_invalid() {
            return y.clone();
        }
        let (Extent::Full { rows, ndim, .. }, Node::Source(file)) = (&self.extent, &*y.node) else {
            return Expr::invalid(format!(
                "t_dot needs an array streamed by rows and an opened file, not ({self}, {y})"
            ));
        };
        let yshape = y.shape();
        if *ndim != 2 || yshape.len() != 2 {
            return Expr::invalid(format!(
                "t_dot needs two 2-d arrays, not shapes {:?} and {yshape:?}",
                self.shape()
            ));
        }
        if yshape[0] != *rows {
            return Expr::invalid(format!(
                "t_dot: shapes {:?} and {yshape:?} not aligned: {rows} rows != {} rows",
                self.shape(),
                yshape[0]
            ));
        }
        let dtype = if self.dtype == DType::F32 && y.dtype == DType::F32 {
            DType::F32
        } else {
            DType::F64
        };
        let c = self.extent.row_len() as u64;
        let spec: Arc<dyn KernelSpec> = Arc::new(TDotKernel { y: file.clone() });
        Expr::new(
            Node::Kernel(spec, self.clone()),
            dtype,
            Extent::Value {
                shape: vec![c, yshape[1]],
            },
        )
    }

    /// `x.T @ x`: the `c × c` Gram matrix of a 2-d array of `n × c`.
    ///
    /// Computed in `f64` on faer's matrix product (one triangle, mirrored),
    /// in the same pass as the other reductions over `x`. The dtype is
    /// NumPy's for floats (float32 stays float32, rounded once from the
    /// `f64` sums) and float64 for integers and bool (NumPy would multiply
    /// those exactly, in their own dtype).
    pub fn gram(&self) -> Expr {
        self.linalg(What::Gram, "gram")
    }

    /// `np.cov(x, rowvar=False, ddof=ddof)`: the `c × c` covariance of the
    /// columns of a 2-d `n × c` array (a 0-d value for a 1-d array, one
    /// variable), float64 for every input dtype as in NumPy.
    ///
    /// Stable: accumulated as centred co-moments merged with Chan et al.'s
    /// exact update, never as `XᵀX − nμμᵀ`, so data far from zero (mean
    /// 1e8, spread 1) keeps its digits. NaN propagates to its variable's
    /// row and column; `n − ddof ≤ 0` gives inf/NaN as NumPy (which warns).
    pub fn cov(&self, ddof: u32) -> Expr {
        self.linalg(What::Cov(ddof), "cov")
    }

    /// `np.corrcoef(x, rowvar=False)`: the covariance over the product of
    /// the standard deviations, clipped to `[-1, 1]` (float64; a constant
    /// column gives NaN, as in NumPy).
    pub fn corrcoef(&self) -> Expr {
        self.linalg(What::Corr, "corrcoef")
    }

    fn linalg(&self, what: What, name: &str) -> Expr {
        self.linalg_rows(what, name, None)
    }

    /// Rows `panel` of the matrix (all of it for `None`).
    fn linalg_rows(&self, what: What, name: &str, panel: Option<Range<usize>>) -> Expr {
        if self.is_invalid() {
            return self.clone();
        }
        let Extent::Full { ndim, .. } = self.extent else {
            return Expr::invalid(format!(
                "{name} needs an array streamed by rows, not a reduced value ({self})"
            ));
        };
        let c = self.extent.row_len() as u64;
        let scalar = ndim < 2;
        if ndim > 2 || (what == What::Gram && scalar) {
            return Expr::invalid(format!(
                "{name} needs a 2-d array (rows × columns), not {ndim}-d ({self})"
            ));
        }
        let dtype = match what {
            What::Gram => Gram::result_dtype(self.dtype),
            What::Cov(_) | What::Corr => DType::F64,
        };
        let rows = panel.as_ref().map_or(c, |p| p.len() as u64);
        let extent = if scalar {
            Extent::Scalar
        } else {
            Extent::Value {
                shape: vec![rows, c],
            }
        };
        let spec: Arc<dyn KernelSpec> = Arc::new(LinalgKernel {
            what,
            scalar,
            panel,
        });
        Expr::new(Node::Kernel(spec, self.clone()), dtype, extent)
    }

    /// `x @ w` for a 2-d `n × c` array `x` and `w` of `c × k` in memory:
    /// an `n × k` float64 array that streams like any elementwise
    /// expression (written to a file, reduced, combined with what follows)
    /// — one product on faer per block.
    pub fn dot(&self, w: Array2<f64>) -> Expr {
        self.block_product("dot", None, w)
    }

    /// `(x − mean) @ w`: as [`Expr::dot`] with each row centred first
    /// (`mean` of length `c`), in float64.
    pub fn dot_centred(&self, mean: Array1<f64>, w: Array2<f64>) -> Expr {
        self.block_product("dot", Some(mean), w)
    }

    fn block_product(&self, name: &str, mean: Option<Array1<f64>>, w: Array2<f64>) -> Expr {
        if self.is_invalid() {
            return self.clone();
        }
        let Extent::Full { ndim, .. } = self.extent else {
            return Expr::invalid(format!(
                "{name} needs an array streamed by rows, not a reduced value ({self})"
            ));
        };
        let c = self.extent.row_len();
        if ndim != 2 {
            return Expr::invalid(format!(
                "{name} needs a 2-d array (rows × columns), not {ndim}-d ({self})"
            ));
        }
        if w.nrows() != c {
            return Expr::invalid(format!(
                "{name}: shapes {:?} and {:?} not aligned: {c} (dim 1) != {} (dim 0)",
                self.shape(),
                w.shape(),
                w.nrows()
            ));
        }
        if let Some(m) = &mean
            && m.len() != c
        {
            return Expr::invalid(format!(
                "{name}: a mean of {} values for rows of {c}",
                m.len()
            ));
        }
        let k = w.ncols();
        let w: Vec<f64> = w.iter().copied().collect();
        let mean: Option<Vec<f64>> = mean.map(|m| m.to_vec());
        self.map_blocks::<f64, f64, _>(k, move |x: ArrayView2<'_, f64>| {
            let rows = x.nrows();
            let mut xs: Cow<'_, [f64]> = match x.as_slice() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(x.iter().copied().collect()),
            };
            if let Some(m) = &mean {
                let xs = xs.to_mut();
                for row in xs.chunks_exact_mut(c.max(1)) {
                    row.iter_mut().zip(m).for_each(|(v, mu)| *v -= mu);
                }
            }
            let mut out = vec![0.0; rows * k];
            matmul_rows(&xs, rows, c, &w, k, &mut out);
            Array2::from_shape_vec((rows, k), out).unwrap_or_else(|_| Array2::zeros((rows, k)))
        })
    }
}

/// Which `c × c` matrix [`Engine::write_matrix_npy`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matrix {
    /// `x.T @ x` ([`Expr::gram`]).
    Gram,
    /// `np.cov(x, rowvar=False, ddof=ddof)` ([`Expr::cov`]).
    Cov {
        /// Delta degrees of freedom.
        ddof: u32,
    },
    /// `np.corrcoef(x, rowvar=False)` ([`Expr::corrcoef`]).
    Corrcoef,
}

impl Matrix {
    fn what(self) -> (What, &'static str) {
        match self {
            Matrix::Gram => (What::Gram, "gram"),
            Matrix::Cov { ddof } => (What::Cov(ddof), "cov"),
            Matrix::Corrcoef => (What::Corr, "corrcoef"),
        }
    }
}

/// How [`Engine::write_matrix_npy`] splits a `c × c` matrix into column
/// panels: `panel_rows` rows of the matrix per pass over the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanelPlan {
    /// Columns of the data (the matrix is `cols × cols`).
    pub cols: usize,
    /// Rows of the matrix each pass computes (the last may have fewer).
    pub panel_rows: usize,
    /// Passes over the data: one per panel.
    pub passes: usize,
    /// The estimated peak memory of one pass, in bytes.
    pub pass_peak_bytes: u64,
    /// The memory limit.
    pub memory_limit: u64,
}

impl std::fmt::Display for PanelPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} x {} matrix in {} panel{} of {} rows ({} pass{} over the data), \
             estimated peak {} B per pass of a {} B limit",
            self.cols,
            self.cols,
            self.passes,
            if self.passes == 1 { "" } else { "s" },
            self.panel_rows,
            self.passes,
            if self.passes == 1 { "" } else { "es" },
            self.pass_peak_bytes,
            self.memory_limit
        )
    }
}

/// A fitted PCA (scikit-learn's `PCA(n_components=k, svd_solver="full")`
/// attributes), from [`Engine::pca`].
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    /// `mean_`: the column means (float64).
    pub mean: Array1<f64>,
    /// `components_`: `k × c` principal axes, by decreasing variance, each
    /// signed so that its entry of largest magnitude is positive
    /// (scikit-learn's `svd_flip`).
    pub components: Array2<f64>,
    /// `explained_variance_`: the `k` largest eigenvalues of the
    /// covariance (`ddof = 1`).
    pub explained_variance: Array1<f64>,
    /// `explained_variance_ratio_`.
    pub explained_variance_ratio: Array1<f64>,
    /// `singular_values_`.
    pub singular_values: Array1<f64>,
    /// `noise_variance_`.
    pub noise_variance: f64,
    /// `n_samples_`: the rows fitted.
    pub n_samples: u64,
}

/// Writes a computed panel (a float matrix) as rows from `first_row`.
fn write_rows(writer: &ArrayWriter, first_row: u64, panel: &AnyArray) -> Result<()> {
    macro_rules! put {
        ($a:expr) => {{
            let a = $a
                .view()
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| Error::Invalid(format!("internal: a panel is not 2-d: {e}")))?;
            let a = a.as_standard_layout();
            writer.write_block(first_row, a.view())?;
        }};
    }
    match panel {
        AnyArray::F64(a) => put!(a),
        AnyArray::F32(a) => put!(a),
        AnyArray::F16(a) => put!(a),
        other => {
            return Err(Error::Invalid(format!(
                "internal: a panel of dtype {}",
                other.dtype()
            )));
        }
    }
    Ok(())
}

impl Pca {
    /// `pca.transform(x)`: `(x − mean) @ components.T`, an `n × k` float64
    /// array streamed block by block.
    pub fn transform(&self, x: &Expr) -> Expr {
        x.dot_centred(self.mean.clone(), self.components.t().to_owned())
    }
}

impl Engine {
    /// The column panels [`Engine::write_matrix_npy`] would use for `what`
    /// of the 2-d `x`: the widest panel (the whole matrix if it fits) whose
    /// pass fits the memory limit. Nothing is read.
    ///
    /// # Errors
    ///
    /// As [`Engine::explain`]; [`Error::LimitTooSmall`] when even a panel
    /// of one row does not fit (naming the smallest limit that works).
    pub fn matrix_panels(&self, x: &Expr, what: Matrix) -> Result<PanelPlan> {
        x.check()?;
        let shape = x.shape();
        if shape.len() != 2 {
            return Err(Error::Shape(format!(
                "a matrix by panels needs a 2-d array (rows × columns), not shape {shape:?}"
            )));
        }
        let c = shape[1] as usize;
        let (w, name) = what.what();
        let mut rows = c.max(1);
        loop {
            let e = x.linalg_rows(w, name, Some(0..rows.min(c)));
            match self.explain(std::slice::from_ref(&e)) {
                Ok(plan) => {
                    let peak = plan.passes.iter().map(|p| p.peak_bytes).max().unwrap_or(0);
                    return Ok(PanelPlan {
                        cols: c,
                        panel_rows: rows.min(c),
                        passes: c.div_ceil(rows.max(1)),
                        pass_peak_bytes: peak,
                        memory_limit: plan.memory_limit,
                    });
                }
                Err(Error::LimitTooSmall { .. }) if rows > 1 => rows = rows.div_ceil(2),
                Err(e) => return Err(e),
            }
        }
    }

    /// Computes `what` of the 2-d `x` into a `.npy` file, in column panels
    /// when the `c × c` matrix does not fit the memory limit at once: each
    /// pass over the data computes `panel_rows` rows of the matrix (all
    /// columns, so a panel costs `n · panel_rows · c` products) and writes
    /// them in place. The output is written atomically, as
    /// [`Engine::write_npy`] writes.
    ///
    /// # Errors
    ///
    /// As [`Engine::matrix_panels`] and [`Engine::write_npy`].
    pub fn write_matrix_npy(
        &self,
        x: &Expr,
        what: Matrix,
        path: impl AsRef<std::path::Path>,
    ) -> Result<PanelPlan> {
        let plan = self.matrix_panels(x, what)?;
        let c = plan.cols;
        let (w, name) = what.what();
        let whole = x.linalg_rows(w, name, None);
        let path = path.as_ref();
        let spec = OutputSpec::npy(whole.dtype(), vec![c as u64, c as u64]);
        let spec = self.output_spec(x, path, spec)?;
        let writer = ArrayWriter::create(path, spec)?;
        let mut start = 0;
        while start < c {
            let end = (start + plan.panel_rows.max(1)).min(c);
            let panel = self.compute(&x.linalg_rows(w, name, Some(start..end)))?;
            write_rows(&writer, start as u64, &panel)?;
            start = end;
        }
        writer.finish()?;
        Ok(plan)
    }

    /// Fits a PCA of the rows of the 2-d `x` (`n × c`) keeping `k`
    /// components: one pass computes the mean and the `c × c` covariance
    /// (centred co-moments), then faer's symmetric eigensolver gives the
    /// principal axes — scikit-learn's full-SVD PCA up to rounding, with
    /// its sign convention.
    ///
    /// # Errors
    ///
    /// As [`Engine::compute`]; [`Error::Invalid`] for `k` = 0 or more than
    /// `min(n, c)`, and for data with NaN or inf.
    pub fn pca(&self, x: &Expr, k: usize) -> Result<Pca> {
        x.check()?;
        let shape = x.shape();
        if shape.len() != 2 {
            return Err(Error::Shape(format!(
                "pca needs a 2-d array (rows × columns), not shape {shape:?}"
            )));
        }
        let mean = x.cast(DType::F64).mean(0);
        let (mean, cov) = self.compute((&mean, &x.cov(1)))?;
        let mean = mean
            .to_f64()
            .into_dimensionality::<ndarray::Ix1>()
            .map_err(|e| Error::Invalid(format!("internal: pca mean: {e}")))?;
        let cov = cov
            .to_f64()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| Error::Invalid(format!("internal: pca covariance: {e}")))?;
        let fit = pca_from_cov(cov.view(), shape[0], k)?;
        Ok(Pca {
            mean,
            components: fit.components,
            explained_variance: fit.explained_variance,
            explained_variance_ratio: fit.explained_variance_ratio,
            singular_values: fit.singular_values,
            noise_variance: fit.noise_variance,
            n_samples: shape[0],
        })
    }
}
