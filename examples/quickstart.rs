//! Column statistics and standardization of a float64 array larger than
//! the memory budget.
//!
//! Replaces this NumPy code, which needs the whole array (and two
//! temporaries of its size) in memory:
//!
//! ```python
//! x = np.load("x.npy")                       # 1 GiB
//! m, s = x.mean(axis=0), x.std(axis=0)       # two passes
//! z = ((x - m) / s).astype(np.float32)       # 2 GiB of temporaries
//! np.save("z.npy", z)
//! ```
//!
//! Run: `cargo run --release --example quickstart [-- --size 256MiB --memory-limit 64MiB]`
//! (or set `OUTCORE_SIZE`). It makes its data in a temporary directory and
//! removes it afterwards.

use std::time::Instant;

use outcore::chunker::synth::{Distribution, Generator, write_array};
use outcore::{DType, Engine, OutputSpec, format_bytes, parse_size};

const COLS: u64 = 256;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut size = std::env::var("OUTCORE_SIZE").unwrap_or_else(|_| "1GiB".into());
    let mut limit = "64MiB".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => size = args.next().ok_or("--size needs a value")?,
            "--memory-limit" => limit = args.next().ok_or("--memory-limit needs a value")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let size = parse_size(&size)?;
    let limit = parse_size(&limit)?;
    let rows = (size / (COLS * 8)).max(1);

    let dir = tempfile::tempdir()?;
    let x_path = dir.path().join("x.npy");
    let z_path = dir.path().join("z.npy");

    println!(
        "generating {} of float64 ({rows} × {COLS}) in {}",
        format_bytes(rows * COLS * 8),
        dir.path().display()
    );
    let t = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    write_array(
        &x_path,
        OutputSpec::npy(DType::F64, vec![rows, COLS]).fsync(false),
        &Generator::new(Distribution::Normal, 1),
        8 << 20,
        threads,
        &|_| {},
    )?;
    println!("  {:.2} s", t.elapsed().as_secs_f64());
    // Report the engine's peak memory, not the generator's (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    let engine = Engine::builder()
        .memory_limit(limit)
        .progress(true)
        .fsync(false)
        .build()?;
    let x = engine.open(&x_path)?;

    // 1. Column statistics, one pass.
    let (mean, std) = (x.mean(0), x.std(0, 0));
    println!("\n{}", engine.explain((&mean, &std))?);
    let ((mean, std), report) = engine.compute_with_report((&mean, &std))?;
    let (mean, std) = (mean.to_f64(), std.to_f64());
    let nbytes = rows * COLS * 8;
    println!(
        "column stats: mean[0..3] = {:.5?}, std[0..3] = {:.5?}",
        &mean.as_slice().unwrap_or(&[])[..3.min(mean.len())],
        &std.as_slice().unwrap_or(&[])[..3.min(std.len())]
    );
    print_run("stats", nbytes, &report);

    // 2. Standardize to float32: one stats pass + one write pass.
    let z = ((&x - &x.mean(0)) / &x.std(0, 0)).cast(DType::F32);
    println!("\n{}", engine.explain(&z)?);
    let report = engine.write_npy(&z, &z_path)?;
    print_run("standardize", nbytes, &report);

    // 3. Check the output: its columns have mean 0 and std 1.
    let zf = engine.open(&z_path)?;
    let (zm, zs) = engine.compute((zf.mean(0), zf.std(0, 0)))?;
    let worst_mean = zm.to_f64().iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let worst_std = zs
        .to_f64()
        .iter()
        .fold(0.0f64, |a, v| a.max((v - 1.0).abs()));
    println!(
        "\ncheck: z.npy is {} ({} saved vs float64); max |mean| = {worst_mean:.1e}, max |std - 1| = {worst_std:.1e}",
        format_bytes(std::fs::metadata(&z_path)?.len()),
        format_bytes(nbytes / 2),
    );
    println!(
        "NumPy would need about {} in memory for this (the array and two temporaries); \
         outcore's budget was {}.",
        format_bytes(nbytes * 3),
        format_bytes(limit)
    );
    Ok(())
}

fn print_run(what: &str, nbytes: u64, r: &outcore::RunReport) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "{what}: {:.3} s, {} pass{}, {:.2} GB/s of input, peak RSS {} (budget {})",
        secs,
        r.passes,
        if r.passes == 1 { "" } else { "es" },
        (nbytes * r.passes as u64) as f64 / secs / 1e9,
        r.peak_rss.map_or("n/a".into(), format_bytes),
        format_bytes(r.memory_limit),
    );
}
