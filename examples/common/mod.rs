//! Shared plumbing of the examples: arguments, data generation, reporting.
#![allow(dead_code)] // each example uses a different part

use std::path::{Path, PathBuf};
use std::time::Instant;

use outcore::chunker::synth::{Distribution, Generator, write_array};
use outcore::{DType, OutputSpec, RunReport, format_bytes, parse_size};

/// `--size SIZE` (or `OUTCORE_SIZE`) and `--memory-limit SIZE`.
pub(crate) struct Args {
    /// Bytes of input data to generate.
    pub(crate) size: u64,
    /// The engine's memory limit.
    pub(crate) limit: u64,
}

impl Args {
    /// Parses the command line with these defaults.
    pub(crate) fn parse(
        default_size: &str,
        default_limit: &str,
    ) -> Result<Args, Box<dyn std::error::Error>> {
        let mut size = std::env::var("OUTCORE_SIZE").unwrap_or_else(|_| default_size.into());
        let mut limit = default_limit.to_string();
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--size" => size = args.next().ok_or("--size needs a value")?,
                "--memory-limit" => limit = args.next().ok_or("--memory-limit needs a value")?,
                other => {
                    return Err(format!(
                        "unknown argument {other} (expected --size SIZE, --memory-limit SIZE)"
                    )
                    .into());
                }
            }
        }
        Ok(Args {
            size: parse_size(&size)?,
            limit: parse_size(&limit)?,
        })
    }
}

/// Writes a `rows × cols` array of `dtype` into `dir`, printing what it does.
pub(crate) fn generate(
    dir: &Path,
    name: &str,
    rows: u64,
    cols: u64,
    dtype: DType,
    dist: Distribution,
    seed: u64,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join(name);
    let t = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    write_array(
        &path,
        OutputSpec::npy(dtype, vec![rows, cols]).fsync(false),
        &Generator::new(dist, seed),
        8 << 20,
        threads,
        &|_| {},
    )?;
    println!(
        "made {name}: {rows} × {cols} {dtype} ({}) in {:.2} s",
        format_bytes(rows * cols * dtype.itemsize() as u64),
        t.elapsed().as_secs_f64()
    );
    reset_peak_rss();
    Ok(path)
}

/// Resets the process's peak RSS (VmHWM) so that the figures printed after
/// it are the engine's, not the data generator's (Linux: writing 5 to
/// /proc/self/clear_refs; elsewhere nothing happens).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One line: time, throughput over `input_bytes` per pass, peak RSS vs budget.
pub(crate) fn print_run(what: &str, input_bytes: u64, r: &RunReport) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "{what}: {:.3} s, {} pass{}, {:.2} GB/s of input, peak RSS {} (budget {})",
        secs,
        r.passes,
        if r.passes == 1 { "" } else { "es" },
        (input_bytes * r.passes as u64) as f64 / secs.max(1e-9) / 1e9,
        r.peak_rss.map_or("n/a".into(), format_bytes),
        format_bytes(r.memory_limit),
    );
}

/// The first `n` values of a slice, for printing.
pub(crate) fn head(v: &[f64], n: usize) -> String {
    let parts: Vec<String> = v.iter().take(n).map(|x| format!("{x:.5}")).collect();
    format!(
        "[{}{}]",
        parts.join(", "),
        if v.len() > n { ", …" } else { "" }
    )
}
