//! Downcast float64 to float32 and float16: how much space it saves and how
//! much precision it costs — the classic answer to "Unable to allocate".
//!
//! Replaces:
//!
//! ```python
//! x = np.load("x.npy")                                  # all of it in memory
//! np.save("x32.npy", x.astype(np.float32))
//! err = np.abs(np.load("x32.npy").astype(np.float64) - x).max()
//! ```
//!
//! Run: `cargo run --release --example downcast [-- --size 512MiB --memory-limit 64MiB]`

#[path = "common/mod.rs"]
mod common;

use outcore::chunker::synth::Distribution;
use outcore::{DType, Engine, format_bytes};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::Args::parse("512MiB", "64MiB")?;
    let cols = 128;
    let rows = (args.size / (cols * 8)).max(1);
    let dir = tempfile::tempdir()?;
    let x_path = common::generate(
        dir.path(),
        "x.npy",
        rows,
        cols,
        DType::F64,
        Distribution::Normal,
        7,
    )?;
    let engine = Engine::builder()
        .memory_limit(args.limit)
        .fsync(false)
        .build()?;
    let x = engine.open(&x_path)?;
    let nbytes = rows * cols * 8;
    for dtype in [DType::F32, DType::F16] {
        let out = dir.path().join(format!("x_{}.npy", dtype.short_name()));
        let report = engine.write_npy(&x.cast(dtype), &out)?;
        common::print_run(&format!("cast to {dtype}"), nbytes, &report);
        // Max absolute and relative error, one fused pass over both files.
        let y = engine.open(&out)?.cast(DType::F64);
        let abs = (&y - &x).abs();
        // Relative to |x|, where x is in float16's normal range (below it,
        // float16 has fewer digits, and 0 has no relative error).
        let rel = &abs / &x.abs().maximum(6.2e-5);
        let (max_abs, max_rel) = engine.compute((abs.max(None), rel.max(None)))?;
        println!(
            "  {}: {} → {} (saves {}); max |error| {:.3e}, max relative error {:.3e} (|x| ≥ 6.2e-5)",
            dtype,
            format_bytes(nbytes),
            format_bytes(std::fs::metadata(&out)?.len()),
            format_bytes(nbytes - nbytes * dtype.itemsize() as u64 / 8),
            max_abs.as_f64_scalar().unwrap_or(f64::NAN),
            max_rel.as_f64_scalar().unwrap_or(f64::NAN),
        );
    }
    println!(
        "float32 keeps ~7 significant digits, float16 ~3 (and overflows past 65504): \
         choose by the precision your data needs."
    );
    Ok(())
}
