//! Your own reductions with the `Aggregate` trait: a histogram, and the Gram
//! matrix XᵀX of centred data → the covariance matrix. The engine runs them
//! in parallel over blocks, merges partial states in block order, and keeps
//! everything under the budget. As expressions (`Expr::aggregate`) they
//! share one pass with the built-in reductions over the same input, and
//! their results feed later expressions. States are serialisable (serde),
//! so they could be merged across processes too.
//!
//! Replaces:
//!
//! ```python
//! x = np.load("x.npy")
//! counts, _ = np.histogram(x, bins=16, range=(-4, 4))
//! mean, std = x.mean(), x.std()
//! cov = np.cov(x, rowvar=False)
//! ```
//!
//! Run: `cargo run --release --example custom_aggregate [-- --size 256MiB --memory-limit 32MiB]`

#[path = "common/mod.rs"]
mod common;

use ndarray::{Array2, ArrayView2};
use outcore::aggregate::Aggregate;
use outcore::chunker::synth::Distribution;
use outcore::{DType, Engine};
use serde::{Deserialize, Serialize};

/// Counts of values in equal-width bins over `[lo, hi)`.
struct Histogram {
    lo: f64,
    hi: f64,
    bins: usize,
}

impl Aggregate<f64> for Histogram {
    type State = Vec<u64>;
    type Output = Vec<u64>;

    fn init(&self, _row_len: usize) -> Vec<u64> {
        vec![0; self.bins]
    }

    fn update(&self, counts: &mut Vec<u64>, block: ArrayView2<'_, f64>, _first_row: u64) {
        let scale = self.bins as f64 / (self.hi - self.lo);
        for &x in block {
            if x >= self.lo && x < self.hi {
                counts[(((x - self.lo) * scale) as usize).min(self.bins - 1)] += 1;
            }
        }
    }

    fn merge(&self, into: &mut Vec<u64>, next: Vec<u64>) {
        into.iter_mut().zip(next).for_each(|(a, b)| *a += b);
    }

    fn finish(&self, counts: Vec<u64>, _rows: u64, _row_len: usize) -> outcore::Result<Vec<u64>> {
        Ok(counts)
    }

    fn state_bytes(&self, _row_len: usize) -> usize {
        self.bins * 8
    }

    fn output_shape(&self, _rows: u64, _row_len: usize) -> Vec<u64> {
        vec![self.bins as u64]
    }
}

/// XᵀX of the rows, as a flat row_len × row_len matrix.
struct Gram;

#[derive(Serialize, Deserialize)]
struct GramState {
    n: usize,
    g: Vec<f64>,
}

impl Aggregate<f64> for Gram {
    type State = GramState;
    type Output = Array2<f64>;

    fn init(&self, row_len: usize) -> GramState {
        GramState {
            n: row_len,
            g: vec![0.0; row_len * row_len],
        }
    }

    fn update(&self, s: &mut GramState, block: ArrayView2<'_, f64>, _first_row: u64) {
        let gram = block.t().dot(&block); // matrixmultiply, cache-blocked
        s.g.iter_mut().zip(gram.iter()).for_each(|(a, b)| *a += b);
    }

    fn merge(&self, into: &mut GramState, next: GramState) {
        into.g.iter_mut().zip(next.g).for_each(|(a, b)| *a += b);
    }

    fn finish(&self, s: GramState, _rows: u64, _row_len: usize) -> outcore::Result<Array2<f64>> {
        Array2::from_shape_vec((s.n, s.n), s.g).map_err(|e| outcore::Error::Invalid(e.to_string()))
    }

    fn state_bytes(&self, row_len: usize) -> usize {
        row_len * row_len * 8
    }

    fn output_shape(&self, _rows: u64, row_len: usize) -> Vec<u64> {
        vec![row_len as u64, row_len as u64]
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::Args::parse("256MiB", "32MiB")?;
    let cols = 8;
    let rows = (args.size / (cols * 8)).max(2);
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

    // The histogram, the mean and the std in one pass over the file.
    let t = std::time::Instant::now();
    let hist = x.aggregate(Histogram {
        lo: -4.0,
        hi: 4.0,
        bins: 16,
    });
    let ((counts, mean, std), report) =
        engine.compute_with_report((&hist, x.mean(None), x.std(None, 0)))?;
    println!(
        "histogram of N(0, 1) over [-4, 4), 16 bins, mean {:+.4}, std {:.4} \
         ({:.3} s, {} pass{}):",
        mean.to_f64()[[]],
        std.to_f64()[[]],
        t.elapsed().as_secs_f64(),
        report.passes,
        if report.passes == 1 { "" } else { "es" }
    );
    let outcore::AnyArray::U64(counts) = counts else {
        return Err("the histogram's counts are uint64".into());
    };
    let total: u64 = counts.iter().sum();
    for (i, c) in counts.iter().enumerate() {
        let lo = -4.0 + i as f64 * 0.5;
        println!(
            "  [{lo:+.1}, {:+.1}) {c:>10} {}",
            lo + 0.5,
            "#".repeat((*c * 200 / total.max(1)) as usize)
        );
    }

    // Covariance = Gram matrix of the centred data / (n − 1): the engine
    // computes the column means in a first pass, then streams x − mean
    // through the aggregate in a second (stable: no E[xxᵀ] − μμᵀ), and
    // divides the matrix as an expression of its result.
    let t = std::time::Instant::now();
    let centred = &x - &x.mean(0);
    let cov = engine.compute(centred.aggregate(Gram) / (rows - 1) as f64)?;
    let cov = cov.to_f64().into_dimensionality::<ndarray::Ix2>()?;
    println!(
        "covariance ({:.3} s), top-left 3 × 3:",
        t.elapsed().as_secs_f64()
    );
    for r in 0..3.min(cols as usize) {
        let row: Vec<String> = (0..3.min(cols as usize))
            .map(|c| format!("{:+.4}", cov[[r, c]]))
            .collect();
        println!("  [{}]", row.join(", "));
    }
    // Its diagonal is each column's variance (ddof = 1).
    let var = engine.compute(x.var(0, 1))?.to_f64();
    let worst = (0..cols as usize)
        .map(|i| (cov[[i, i]] - var[i]).abs())
        .fold(0.0, f64::max);
    println!("check: diagonal vs var(ddof=1) differ by at most {worst:.2e}");
    Ok(())
}
