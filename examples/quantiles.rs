//! Exact per-column median and quantiles of an array larger than the
//! budget, bit for bit what NumPy returns — without holding the array.
//!
//! Replaces this NumPy code, which loads the array and then partitions a
//! copy of it (about twice the array's size in memory):
//!
//! ```python
//! x = np.load("x.npy")
//! med = np.median(x, axis=0)
//! q90, q999 = np.quantile(x, [0.9, 0.999], axis=0)
//! overall = np.median(x)
//! ```
//!
//! outcore finds each quantile by radix selection: a few read-only passes
//! that narrow every column's candidates with histograms, then one pass
//! that collects the few values left (`docs/spill.md`).
//!
//! Run: `cargo run --release --example quantiles [-- --size 1GiB --memory-limit 16MiB]`

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
    let args = common::Args::parse("512MiB", "32MiB")?;
    let cols = 256;
    let rows = (args.size / (cols * 8)).max(1);
    let nbytes = rows * cols * 8;
    let dir = tempfile::tempdir()?;
    let path = common::generate(
        dir.path(),
        "x.npy",
        rows,
        cols,
        DType::F64,
        Distribution::Normal,
        5,
    )?;
    let engine = Engine::builder().memory_limit(args.limit).build()?;
    let x = engine.open(&path)?;

    let median = x.median(0);
    // An independent check rides along in the same run: in every column,
    // at most half the values lie below the median and at least half lie
    // at or below it.
    let below = x.lt(&median).sum(0);
    let at_or_below = x.le(&median).sum(0);
    let wanted = (
        &median,
        x.quantile(0.9, 0),
        x.quantile(0.999, 0),
        x.median(None),
        &below,
        &at_or_below,
    );
    println!("{}", engine.explain(wanted.clone())?);
    let ((median, q90, q999, overall, below, at_or_below), report) =
        engine.compute_with_report(wanted)?;

    let f = |v: &outcore::AnyArray| v.to_f64().iter().copied().collect::<Vec<f64>>();
    println!("median per column:   {}", common::head(&f(&median), 4));
    println!("0.9 quantile:        {}", common::head(&f(&q90), 4));
    println!("0.999 quantile:      {}", common::head(&f(&q999), 4));
    println!("median of all {}: {:.6}", rows * cols, f(&overall)[0]);
    let half = rows as f64 / 2.0;
    let ok = f(&below)
        .iter()
        .zip(f(&at_or_below))
        .all(|(&lt, le)| lt <= half && le >= half);
    println!(
        "check: in every column, #(x < median) ≤ {half} ≤ #(x ≤ median): {}",
        if ok { "yes" } else { "NO" }
    );
    common::print_run("median + 2 quantiles + overall median", nbytes, &report);
    println!(
        "NumPy would hold the array and a partitioned copy: about {}; outcore's budget was {}.",
        format_bytes(2 * nbytes),
        format_bytes(args.limit)
    );
    if !ok {
        return Err("a median failed its check".into());
    }
    Ok(())
}
