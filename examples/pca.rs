//! PCA of a tall array: one pass for the mean and the covariance, an
//! eigen-decomposition of the small `c × c` matrix, then the projection
//! `(x − mean) @ components.T` streamed to a new file.
//!
//! Replaces:
//!
//! ```python
//! from sklearn.decomposition import PCA
//! x = np.load("x.npy")                  # the whole array in memory
//! pca = PCA(n_components=8, svd_solver="full").fit(x)
//! np.save("z.npy", pca.transform(x))
//! ```
//!
//! Run: `cargo run --release --example pca [-- --size 1GiB --memory-limit 64MiB]`

#[path = "common/mod.rs"]
mod common;

use outcore::chunker::synth::Distribution;
use outcore::{DType, Engine};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::Args::parse("256MiB", "64MiB")?;
    let cols = 64;
    let rows = (args.size / (cols * 8)).max(8);
    let dir = tempfile::tempdir()?;
    let path = common::generate(
        dir.path(),
        "x.npy",
        rows,
        cols,
        DType::F64,
        Distribution::Normal,
        15,
    )?;
    let engine = Engine::builder()
        .memory_limit(args.limit)
        .progress(true)
        .fsync(false)
        .build()?;
    // Columns of growing spread: the leading components are the widest columns.
    let scale: ndarray::Array2<f64> =
        ndarray::Array2::from_diag(&ndarray::Array1::from_shape_fn(cols as usize, |j| {
            1.0 + j as f64
        }));
    let x = engine.open(&path)?.dot(scale);
    let t = std::time::Instant::now();
    let fit = engine.pca(&x, 8)?;
    println!(
        "fit: {:.3} s; explained variance {}",
        t.elapsed().as_secs_f64(),
        common::head(fit.explained_variance.as_slice().unwrap_or(&[]), 4)
    );
    println!(
        "explained variance ratio {}",
        common::head(fit.explained_variance_ratio.as_slice().unwrap_or(&[]), 4)
    );
    let out = dir.path().join("z.npy");
    let report = engine.write_npy(&fit.transform(&x), &out)?;
    common::print_run("transform", rows * cols * 8, &report);
    let z = engine.open(&out)?;
    let var = engine.compute(z.var(0, 1))?.to_f64();
    println!(
        "check: the variance of each projected column {} equals the explained variance",
        common::head(var.as_slice().unwrap_or(&[]), 4)
    );
    Ok(())
}
