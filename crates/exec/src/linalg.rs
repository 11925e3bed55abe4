//! Linear algebra over streamed arrays: `X.T @ X` ([`Expr::gram`]),
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
use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView2};
use outcore_chunker::DType;
use outcore_kernels::DynKernel;
use outcore_kernels::linalg::comoment::{CoMoment, CoMomentOutput};
use outcore_kernels::linalg::gram::Gram;
use outcore_kernels::linalg::matmul_rows;
use outcore_kernels::linalg::pca::pca_from_cov;

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
}

impl KernelSpec for LinalgKernel {
    fn describe(&self, arg: &str) -> String {
        match self.what {
            What::Gram => format!("gram({arg})"),
            What::Cov(ddof) => format!("cov({arg}, ddof={ddof})"),
            What::Corr => format!("corrcoef({arg})"),
        }
    }

    fn build(&self, _input: DType, _rows: u64, row_len: usize) -> Result<Arc<dyn DynKernel>> {
        Ok(match self.what {
            What::Gram => Arc::new(Gram::new(row_len)),
            What::Cov(ddof) => {
                let k = CoMoment::new(row_len, CoMomentOutput::Cov { ddof });
                Arc::new(if self.scalar { k.scalar_result() } else { k })
            }
            What::Corr => {
                let k = CoMoment::new(row_len, CoMomentOutput::Corr);
                Arc::new(if self.scalar { k.scalar_result() } else { k })
            }
        })
    }
}

impl Expr {
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
        let extent = if scalar {
            Extent::Scalar
        } else {
            Extent::Value { shape: vec![c, c] }
        };
        let spec: Arc<dyn KernelSpec> = Arc::new(LinalgKernel { what, scalar });
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

impl Pca {
    /// `pca.transform(x)`: `(x − mean) @ components.T`, an `n × k` float64
    /// array streamed block by block.
    pub fn transform(&self, x: &Expr) -> Expr {
        x.dot_centred(self.mean.clone(), self.components.t().to_owned())
    }
}

impl Engine {
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
