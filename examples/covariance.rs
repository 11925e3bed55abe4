//! Covariance, correlation and the Gram matrix of a tall array, in one
//! streaming pass under a small budget — stable far from zero (centred
//! co-moments merged exactly), on a blocked matrix product.
//!
//! Replaces:
//!
//! ```python
//! x = np.load("x.npy", mmap_mode="r")
//! cov = np.cov(x, rowvar=False)        # centres a full copy of x first
//! corr = np.corrcoef(x, rowvar=False)
//! gram = x.T @ x
//! ```
//!
//! Run: `cargo run --release --example covariance [-- --size 1GiB --memory-limit 64MiB]`

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
    let args = common::Args::parse("512MiB", "64MiB")?;
    let cols = 256;
    let rows = (args.size / (cols * 8)).max(2);
    let dir = tempfile::tempdir()?;
    let path = common::generate(
        dir.path(),
        "x.npy",
        rows,
        cols,
        DType::F64,
        Distribution::Normal,
        14,
    )?;
    let engine = Engine::builder()
        .memory_limit(args.limit)
        .progress(true)
        .fsync(false)
        .build()?;
    let x = engine.open(&path)?;
    // Shifted far from zero: x.T x − nμμᵀ would lose every digit here.
    let shifted = &x + 1e8;
    let (cov, corr, gram, report) = {
        let (v, report) =
            engine.compute_with_report(vec![shifted.cov(1), x.corrcoef(), x.gram()])?;
        let mut v = v.into_iter();
        let (a, b, c) = (v.next(), v.next(), v.next());
        (
            a.ok_or("cov")?,
            b.ok_or("corrcoef")?,
            c.ok_or("gram")?,
            report,
        )
    };
    common::print_run("cov + corrcoef + gram", rows * cols * 8, &report);
    let (cov, corr, gram) = (cov.to_f64(), corr.to_f64(), gram.to_f64());
    let n = rows as f64;
    println!(
        "cov of x + 1e8: diagonal {} (normal data: ≈ 1)",
        common::head(
            &(0..cols as usize).map(|i| cov[[i, i]]).collect::<Vec<_>>(),
            4
        )
    );
    let worst_corr = (0..cols as usize)
        .flat_map(|i| {
            (0..cols as usize)
                .filter(move |&j| j != i)
                .map(move |j| (i, j))
        })
        .fold(0.0f64, |m, (i, j)| m.max(corr[[i, j]].abs()));
    println!(
        "corrcoef: unit diagonal, largest |off-diagonal| {worst_corr:.2e} (independent columns)"
    );
    println!(
        "gram: x.T @ x / n has diagonal {}",
        common::head(&(0..4).map(|i| gram[[i, i]] / n).collect::<Vec<_>>(), 4)
    );
    Ok(())
}
