//! Standardize columns, `(x − mean) / std`, into a new float64 file: a
//! statistics pass and a write pass, with the output renamed into place only
//! when complete. This is the pipeline that makes Dask hold the whole array.
//!
//! Replaces:
//!
//! ```python
//! x = np.load("x.npy")
//! np.save("z.npy", (x - x.mean(axis=0)) / x.std(axis=0, ddof=1))
//! ```
//!
//! Run: `cargo run --release --example standardize [-- --size 1GiB --memory-limit 64MiB]`

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
    let rows = (args.size / (cols * 8)).max(1);
    let dir = tempfile::tempdir()?;
    let path = common::generate(
        dir.path(),
        "x.npy",
        rows,
        cols,
        DType::F64,
        Distribution::Uniform,
        11,
    )?;
    let engine = Engine::builder()
        .memory_limit(args.limit)
        .progress(true)
        .fsync(false)
        .build()?;
    let x = engine.open(&path)?;
    let z = (&x - &x.mean(0)) / &x.std(0, 1);
    println!("{}", engine.explain(&z)?);
    let out = dir.path().join("z.npy");
    let report = engine.write_npy(&z, &out)?;
    common::print_run("standardize", rows * cols * 8, &report);

    let z = engine.open(&out)?;
    let (m, s) = engine.compute((z.mean(0), z.std(0, 1)))?;
    let (m, s) = (m.to_f64(), s.to_f64());
    let worst_m = m.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let worst_s = s.iter().fold(0.0f64, |a, v| a.max((v - 1.0).abs()));
    println!(
        "check: every column of z.npy has |mean| ≤ {worst_m:.1e} and |std − 1| ≤ {worst_s:.1e}"
    );
    Ok(())
}
