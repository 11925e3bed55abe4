//! Micro-benchmarks of the engine's kernels through the public API.
//!
//! Each dtype gets a 32 MiB `.npy` file (256 columns) written once into a
//! temporary directory; it stays in the page cache, so these measure the
//! kernels and the streaming machinery, not the disk. Results read in GB/s
//! of input (`Throughput::Bytes`).
//!
//! Run: `cargo bench --bench kernels` (a few minutes), or filter, e.g.
//! `cargo bench --bench kernels -- float64/`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outcore::chunker::synth::{Distribution, Generator, write_array};
use outcore::{Element, Engine, OutputSpec};

/// Size of each input file.
const INPUT_BYTES: u64 = 32 << 20;
/// Columns of each input file.
const COLS: u64 = 256;

/// Writes the input for `T` into `dir` and returns its path and data size.
fn make_input<T: Element>(dir: &Path) -> (std::path::PathBuf, u64) {
    let dtype = T::DATA_TYPE;
    let rows = INPUT_BYTES / (COLS * dtype.itemsize() as u64);
    let path = dir.join(format!("x-{dtype}.npy"));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    write_array(
        &path,
        OutputSpec::npy(dtype, vec![rows, COLS]).fsync(false),
        &Generator::new(Distribution::Uniform, 1),
        8 << 20,
        threads,
        &|_| {},
    )
    .expect("writing the bench input");
    (path, rows * COLS * dtype.itemsize() as u64)
}

/// The kernels for one dtype: column sum, column mean + std (one pass),
/// global min, global argmax, and a fused elementwise chain written to a
/// new `.npy`.
fn bench_kernels<T: Element>(c: &mut Criterion) {
    let dtype = T::DATA_TYPE;
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let (input, input_bytes) = make_input::<T>(dir.path());
    let out = dir.path().join("out.npy");
    let engine = Engine::builder()
        .fsync(false)
        .overwrite(true)
        .build()
        .expect("building the engine");
    let x = engine.open(&input).expect("opening the bench input");

    let mut group = c.benchmark_group(dtype.to_string());
    group.throughput(Throughput::Bytes(input_bytes));
    group.bench_function("sum_axis0", |b| {
        b.iter(|| black_box(engine.compute(x.sum(0)).expect("sum")));
    });
    group.bench_function("mean_std_axis0", |b| {
        b.iter(|| black_box(engine.compute((x.mean(0), x.std(0, 0))).expect("mean, std")));
    });
    group.bench_function("min_all", |b| {
        b.iter(|| black_box(engine.compute(x.min(None)).expect("min")));
    });
    group.bench_function("argmax_all", |b| {
        b.iter(|| black_box(engine.compute(x.argmax(None)).expect("argmax")));
    });
    let chain = ((&x - 1.0) * 2.0).abs().sqrt();
    group.bench_function("fused_chain_to_npy", |b| {
        b.iter(|| black_box(engine.write_npy(&chain, &out).expect("write_npy")));
    });
    group.finish();
}

fn f64s(c: &mut Criterion) {
    bench_kernels::<f64>(c);
}

fn f32s(c: &mut Criterion) {
    bench_kernels::<f32>(c);
}

fn i32s(c: &mut Criterion) {
    bench_kernels::<i32>(c);
}

criterion_group! {
    name = kernels;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = f64s, f32s, i32s
}
criterion_main!(kernels);
