//! Sort every column of an array larger than the budget into a new file:
//! an external merge sort through unnamed spill files.
//!
//! Replaces this NumPy code, which holds the array and its sorted copy:
//!
//! ```python
//! x = np.load("x.npy")
//! np.save("s.npy", np.sort(x, axis=0))
//! ```
//!
//! outcore sorts runs that fit the budget, writes them to a spill file
//! (unnamed: nothing is left behind, even after `kill -9`), merges them
//! with one mapped window per run, and writes the rows of the result
//! (`docs/spill.md`).
//!
//! Run: `cargo run --release --example sort [-- --size 1GiB --memory-limit 32MiB]`

#[path = "common/mod.rs"]
mod common;

use outcore::chunker::synth::Distribution;
use outcore::{ArrayFile, DType, Engine, format_bytes};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::Args::parse("256MiB", "32MiB")?;
    let cols = 64;
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
        9,
    )?;
    let engine = Engine::builder()
        .memory_limit(args.limit)
        .progress(true)
        .fsync(false)
        .build()?;
    let x = engine.open(&path)?;
    let sorted = x.sort();
    println!("{}", engine.explain(&sorted)?);
    let out = dir.path().join("s.npy");
    let report = engine.write_npy(&sorted, &out)?;
    common::print_run("sort", nbytes, &report);
    println!("spilled {}", format_bytes(report.bytes_spilled));

    // Check: the same values (column sums and minima agree) and every
    // column non-decreasing, read back a few thousand rows at a time.
    let s = engine.open(&out)?;
    let (sum_x, sum_s, min_x, first_row) =
        engine.compute((x.sum(0), s.sum(0), x.min(0), s.min(0)))?;
    let (sum_x, sum_s) = (sum_x.to_f64(), sum_s.to_f64());
    let sums_agree = sum_x
        .iter()
        .zip(sum_s.iter())
        .all(|(a, b)| (a - b).abs() <= 1e-9 * rows as f64);
    let minima_agree = min_x.to_f64() == first_row.to_f64();
    let ordered = columns_non_decreasing(&out, cols as usize)?;
    println!(
        "check: column sums agree: {sums_agree}, minima agree: {minima_agree}, every column sorted: {ordered}"
    );
    println!(
        "NumPy would hold the array and its sorted copy: {}; outcore's budget was {}.",
        format_bytes(2 * nbytes),
        format_bytes(args.limit)
    );
    if !(sums_agree && minima_agree && ordered) {
        return Err("the sorted file failed its check".into());
    }
    Ok(())
}

/// Whether every column of the float64 file at `path` is non-decreasing,
/// reading 4096 rows at a time.
fn columns_non_decreasing(
    path: &std::path::Path,
    cols: usize,
) -> Result<bool, Box<dyn std::error::Error>> {
    let file = ArrayFile::open(path)?;
    let rows = file.meta().rows();
    let mut last: Option<Vec<f64>> = None;
    let mut start = 0;
    while start < rows {
        let end = (start + 4096).min(rows);
        let block = file.read_rows(start..end)?;
        for row in block.as_slice::<f64>()?.chunks_exact(cols) {
            if let Some(prev) = &last
                && prev.iter().zip(row).any(|(p, v)| p > v)
            {
                return Ok(false);
            }
            last = Some(row.to_vec());
        }
        start = end;
    }
    Ok(true)
}
