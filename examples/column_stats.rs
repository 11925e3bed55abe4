//! Every per-column statistic in one pass over a file larger than the budget.
//!
//! Replaces a chunk loop that users write by hand (and get wrong: float32
//! accumulation, E[x²]−E[x]² variance, the ragged last chunk):
//!
//! ```python
//! x = np.load("x.npy", mmap_mode="r")
//! s = np.zeros(x.shape[1]); s2 = np.zeros(x.shape[1]); n = 0
//! for i in range(0, len(x), 100_000):
//!     c = x[i:i + 100_000]; s += c.sum(0); s2 += (c * c).sum(0); n += len(c)
//! mean = s / n; std = np.sqrt(s2 / n - mean ** 2)      # catastrophic cancellation
//! ```
//!
//! Run: `cargo run --release --example column_stats [-- --size 1GiB --memory-limit 32MiB]`

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
    let args = common::Args::parse("512MiB", "32MiB")?;
    let cols = 64;
    let rows = (args.size / (cols * 4)).max(1);
    let dir = tempfile::tempdir()?;
    // float32 data: outcore accumulates it in float64.
    let path = common::generate(
        dir.path(),
        "x.npy",
        rows,
        cols,
        DType::F32,
        Distribution::Normal,
        3,
    )?;
    let engine = Engine::builder().memory_limit(args.limit).build()?;
    let x = engine.open(&path)?;
    // A shifted column makes the naive E[x²]−E[x]² formula fail.
    let shifted = &x + 1.0e4;
    let stats = vec![
        x.sum(0),
        x.mean(0),
        x.std(0, 1),
        x.min(0),
        x.max(0),
        x.argmax(0),
        shifted.std(0, 1),
    ];
    println!("{}", engine.explain(stats.clone())?);
    let (values, report) = engine.compute_with_report(stats)?;
    let names = [
        "sum",
        "mean",
        "std (ddof=1)",
        "min",
        "max",
        "argmax",
        "std of x + 1e4",
    ];
    for (name, v) in names.iter().zip(&values) {
        let f = v.to_f64();
        println!(
            "{name:>16}: {} ({})",
            common::head(f.as_slice().unwrap_or(&[]), 4),
            v.dtype()
        );
    }
    common::print_run("column stats", rows * cols * 4, &report);
    Ok(())
}
