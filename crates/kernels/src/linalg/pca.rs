//! Principal axes from a covariance matrix: the eigen-decomposition of the
//! symmetric `c × c` covariance (faer's self-adjoint eigensolver), as
//! scikit-learn's `PCA(svd_solver="full")` reports it.

use faer::{Mat, Side};
use ndarray::{Array1, Array2, ArrayView2};

use crate::error::{Error, Result};

/// What a PCA fit gives (scikit-learn's attribute names).
#[derive(Clone, Debug, PartialEq)]
pub struct PcaFit {
    /// `components_`: the `k` principal axes (`k × c`), by decreasing
    /// explained variance, each signed so that its entry of largest
    /// magnitude is positive (scikit-learn's `svd_flip` with
    /// `u_based_decision=False`).
    pub components: Array2<f64>,
    /// `explained_variance_`: the covariance's `k` largest eigenvalues
    /// (negative rounding noise clipped to 0).
    pub explained_variance: Array1<f64>,
    /// `explained_variance_ratio_`: each over the sum of all eigenvalues.
    pub explained_variance_ratio: Array1<f64>,
    /// `singular_values_`: `sqrt(explained_variance · (n − 1))`.
    pub singular_values: Array1<f64>,
    /// `noise_variance_`: the mean of the eigenvalues left out (0 when
    /// `k = min(n, c)`).
    pub noise_variance: f64,
}

/// The PCA of `n_samples` rows from their covariance `cov` (`ddof = 1`),
/// keeping `k` components.
///
/// # Errors
///
/// [`Error::Invalid`] when `cov` is not square, has non-finite values
/// (NaN or inf in the data, which scikit-learn refuses too), `k` is 0 or
/// more than `min(n_samples, c)`, or the eigensolver does not converge.
pub fn pca_from_cov(cov: ArrayView2<'_, f64>, n_samples: u64, k: usize) -> Result<PcaFit> {
    let c = cov.nrows();
    if cov.ncols() != c {
        return Err(Error::Invalid(format!(
            "PCA needs a square covariance matrix, not {c} × {}",
            cov.ncols()
        )));
    }
    let most = (n_samples.min(c as u64)) as usize;
    if k == 0 || k > most {
        return Err(Error::Invalid(format!(
            "PCA keeps 1 to min(rows, columns) = {most} components ({n_samples} rows, {c} \
             columns), not {k}"
        )));
    }
    if let Some(j) = (0..c).find(|&j| !cov.row(j).iter().all(|v| v.is_finite())) {
        return Err(Error::Invalid(format!(
            "PCA of data with NaN or inf: column {j} of the covariance is not finite"
        )));
    }
    let a = Mat::<f64>::from_fn(c, c, |i, j| cov[[i, j]]);
    let evd = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Invalid(format!("PCA: the eigensolver failed ({e:?})")))?;
    let u = evd.U();
    let s = evd.S().column_vector();
    // Ascending from faer: the largest last.
    let values: Vec<f64> = (0..c).rev().map(|i| s[i].max(0.0)).collect();
    let total: f64 = values.iter().take(most).sum();
    let mut components = Array2::<f64>::zeros((k, c));
    for (r, i) in (0..c).rev().take(k).enumerate() {
        let col = u.col(i);
        // svd_flip: the first entry of largest magnitude made positive.
        let mut arg = 0;
        for j in 0..c {
            if col[j].abs() > col[arg].abs() {
                arg = j;
            }
        }
        let sign = if col[arg] < 0.0 { -1.0 } else { 1.0 };
        for j in 0..c {
            components[[r, j]] = sign * col[j];
        }
    }
    let explained_variance = Array1::from_iter(values.iter().take(k).copied());
    let explained_variance_ratio = explained_variance.mapv(|v| v / total);
    let nm1 = n_samples.saturating_sub(1) as f64;
    let singular_values = explained_variance.mapv(|v| (v * nm1).sqrt());
    let rest = &values[k..most];
    let noise_variance = if rest.is_empty() {
        0.0
    } else {
        rest.iter().sum::<f64>() / rest.len() as f64
    };
    Ok(PcaFit {
        components,
        explained_variance,
        explained_variance_ratio,
        singular_values,
        noise_variance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn diagonal_covariance() {
        let cov = array![[1.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 2.0]];
        let fit = pca_from_cov(cov.view(), 10, 2).unwrap();
        assert_eq!(fit.explained_variance.to_vec(), vec![4.0, 2.0]);
        assert_eq!(fit.components.row(0).to_vec(), vec![0.0, 1.0, 0.0]);
        assert_eq!(fit.components.row(1).to_vec(), vec![0.0, 0.0, 1.0]);
        assert!((fit.explained_variance_ratio[0] - 4.0 / 7.0).abs() < 1e-15);
        assert_eq!(fit.noise_variance, 1.0);
        assert!(pca_from_cov(cov.view(), 10, 4).is_err());
        assert!(pca_from_cov(cov.view(), 10, 0).is_err());
    }
}
