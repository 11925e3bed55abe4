//! Elementwise work between two on-disk arrays, fused into one pass: both
//! files are read block by block in step, nothing of full size is ever in
//! memory.
//!
//! Replaces:
//!
//! ```python
//! a, b = np.load("a.npy"), np.load("b.npy")
//! gain = np.where(b > a, b - a, 0.0).sum(axis=0)
//! rel = (b - a) / (np.abs(a) + np.abs(b) + 1e-12)
//! np.save("rel.npy", rel.astype(np.float32))
//! ```
//!
//! Run: `cargo run --release --example two_arrays [-- --size 256MiB --memory-limit 32MiB]`

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
    let args = common::Args::parse("256MiB", "32MiB")?;
    let cols = 32;
    let rows = (args.size / (cols * 8)).max(1);
    let dir = tempfile::tempdir()?;
    let a_path = common::generate(
        dir.path(),
        "a.npy",
        rows,
        cols,
        DType::F64,
        Distribution::Normal,
        1,
    )?;
    let b_path = common::generate(
        dir.path(),
        "b.npy",
        rows,
        cols,
        DType::F64,
        Distribution::Normal,
        2,
    )?;
    let engine = Engine::builder()
        .memory_limit(args.limit)
        .fsync(false)
        .build()?;
    let (a, b) = (engine.open(&a_path)?, engine.open(&b_path)?);

    let gain = b.gt(&a).select(&b - &a, 0.0).sum(0);
    let (gain, report) = engine.compute_with_report(&gain)?;
    println!(
        "gain per column: {}",
        common::head(gain.to_f64().as_slice().unwrap_or(&[]), 4)
    );
    common::print_run("where + sum over two arrays", 2 * rows * cols * 8, &report);

    let rel = ((&b - &a) / (a.abs() + b.abs() + 1e-12)).cast(DType::F32);
    println!("{}", engine.explain(&rel)?);
    let report = engine.write_npy(&rel, dir.path().join("rel.npy"))?;
    common::print_run(
        "relative difference to float32",
        2 * rows * cols * 8,
        &report,
    );
    let r = engine.open(dir.path().join("rel.npy"))?;
    let (lo, hi) = engine.compute((r.min(None), r.max(None)))?;
    println!(
        "rel.npy lies in [{:.4}, {:.4}] (it must lie in [-1, 1])",
        lo.as_f64_scalar().unwrap_or(f64::NAN),
        hi.as_f64_scalar().unwrap_or(f64::NAN)
    );
    Ok(())
}
