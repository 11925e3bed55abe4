//! User aggregates as expressions (`Expr::aggregate`): they share the pass
//! of the built-in reductions over the same input, their results feed
//! later expressions whatever their shape, their states are reserved in
//! the budget, and they answer the same whatever the threads and blocks.

mod common;

use common::{read_any, write_any};
use ndarray::{Array2, ArrayView2};
use outcore_chunker::{DType, ReadMode};
use outcore_exec::aggregate::Aggregate;
use outcore_exec::{AnyArray, Engine, Error};

/// Counts of values in `bins` equal-width bins over `[lo, hi)`: a result
/// of its own shape, `[bins]`.
#[derive(Clone)]
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

    fn update(&self, state: &mut Vec<u64>, block: ArrayView2<'_, f64>, _first_row: u64) {
        let width = (self.hi - self.lo) / self.bins as f64;
        for &x in block.iter() {
            if x >= self.lo && x < self.hi {
                let bin = (((x - self.lo) / width) as usize).min(self.bins - 1);
                state[bin] += 1;
            }
        }
    }

    fn merge(&self, into: &mut Vec<u64>, next: Vec<u64>) {
        into.iter_mut().zip(next).for_each(|(a, b)| *a += b);
    }

    fn finish(
        &self,
        state: Vec<u64>,
        _rows: u64,
        _row_len: usize,
    ) -> outcore_exec::Result<Vec<u64>> {
        Ok(state)
    }

    fn state_bytes(&self, _row_len: usize) -> usize {
        std::mem::size_of::<Vec<u64>>() + 8 * self.bins
    }

    fn output_shape(&self, _rows: u64, _row_len: usize) -> Vec<u64> {
        vec![self.bins as u64]
    }
}

/// The largest value of each column, with the row it was first seen in
/// checked to arrive in order: a per-column result (the input's trailing
/// shape) that broadcasts along rows.
struct ColumnMax;

impl Aggregate<f32> for ColumnMax {
    /// (maxima, the next row expected)
    type State = (Vec<f32>, u64);
    type Output = Vec<f32>;

    fn init(&self, row_len: usize) -> (Vec<f32>, u64) {
        (vec![f32::NEG_INFINITY; row_len], 0)
    }

    fn update(&self, (m, next): &mut (Vec<f32>, u64), block: ArrayView2<'_, f32>, first_row: u64) {
        if *next != first_row {
            // Rows out of order would be a bug of the engine.
            m.iter_mut().for_each(|v| *v = f32::NAN);
        }
        *next = first_row + block.nrows() as u64;
        for row in block.rows() {
            for (v, &x) in m.iter_mut().zip(row) {
                *v = v.max(x);
            }
        }
    }

    fn merge(&self, (a, _): &mut (Vec<f32>, u64), (b, _): (Vec<f32>, u64)) {
        a.iter_mut().zip(b).for_each(|(a, b)| *a = a.max(b));
    }

    fn finish(
        &self,
        (m, _): (Vec<f32>, u64),
        _rows: u64,
        _row_len: usize,
    ) -> outcore_exec::Result<Vec<f32>> {
        Ok(m)
    }

    fn state_bytes(&self, row_len: usize) -> usize {
        64 + 4 * row_len
    }

    fn output_shape(&self, _rows: u64, row_len: usize) -> Vec<u64> {
        vec![row_len as u64]
    }
}

/// How many values are above a threshold: one value (the default shape).
struct CountAbove(f64);

impl Aggregate<f64> for CountAbove {
    type State = u64;
    type Output = u64;

    fn init(&self, _row_len: usize) -> u64 {
        0
    }

    fn update(&self, n: &mut u64, block: ArrayView2<'_, f64>, _first_row: u64) {
        *n += block.iter().filter(|&&v| v > self.0).count() as u64;
    }

    fn merge(&self, n: &mut u64, next: u64) {
        *n += next;
    }

    fn finish(&self, n: u64, _rows: u64, _row_len: usize) -> outcore_exec::Result<u64> {
        if n == 0 {
            return Err(Error::Empty {
                op: "count_above".into(),
                what: "array",
            });
        }
        Ok(n)
    }
}

/// An aggregate whose states claim more memory than any test limit.
struct Huge;

impl Aggregate<f64> for Huge {
    type State = ();
    type Output = u8;

    fn init(&self, _row_len: usize) {}

    fn update(&self, _: &mut (), _: ArrayView2<'_, f64>, _: u64) {}

    fn merge(&self, _: &mut (), _: ()) {}

    fn finish(&self, _: (), _: u64, _: usize) -> outcore_exec::Result<u8> {
        Ok(0)
    }

    fn state_bytes(&self, _row_len: usize) -> usize {
        64 << 20
    }
}

/// An aggregate that panics on its `n`th update.
struct PanicsOnUpdate;

impl Aggregate<f64> for PanicsOnUpdate {
    type State = u64;
    type Output = u64;

    fn init(&self, _row_len: usize) -> u64 {
        0
    }

    fn update(&self, n: &mut u64, _: ArrayView2<'_, f64>, first_row: u64) {
        *n += 1;
        assert!(first_row < 500, "an aggregate's own bug at row {first_row}");
    }

    fn merge(&self, n: &mut u64, next: u64) {
        *n += next;
    }

    fn finish(&self, n: u64, _: u64, _: usize) -> outcore_exec::Result<u64> {
        Ok(n)
    }
}

fn data(rows: usize, cols: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        ((r * 7919 + c * 104_729) % 1000) as f64 / 100.0 - 2.0
    })
}

fn f64s(a: &AnyArray) -> Vec<f64> {
    a.to_f64().iter().copied().collect()
}

fn engines() -> Vec<Engine> {
    let mut v = Vec::new();
    for (threads, block_bytes) in [(1, 8 << 20), (3, 4096), (2, 24)] {
        for mode in [ReadMode::Mmap, ReadMode::Pread] {
            v.push(common::engine(threads, block_bytes, mode));
        }
    }
    v
}

#[test]
fn an_aggregate_and_mean_over_the_same_input_read_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let x = data(1000, 3);
    write_any(&path, &AnyArray::from(x.clone().into_dyn()));
    let hist = Histogram {
        lo: -2.0,
        hi: 8.0,
        bins: 5,
    };
    let mut want = vec![0u64; 5];
    for &v in x.iter() {
        want[((v + 2.0) / 2.0) as usize] += 1;
    }
    for engine in engines() {
        let e = engine.open(&path).unwrap();
        let h = e.aggregate(hist.clone());
        assert_eq!(h.dtype(), DType::U64);
        assert_eq!(h.shape(), vec![5]);
        let ((mean, counts), report) = engine.compute_with_report((e.mean(0), &h)).unwrap();
        assert_eq!(report.passes, 1, "one pass for both");
        assert_eq!(report.bytes_read, 1000 * 3 * 8, "the file's data, once");
        assert_eq!(counts, AnyArray::from(ndarray::arr1(&want).into_dyn()));
        let mean = f64s(&mean);
        for (c, got) in mean.iter().enumerate() {
            let m = x.column(c).sum() / 1000.0;
            assert!((got - m).abs() < 1e-12, "{got} vs {m}");
        }
        // explain agrees: one pass, both reductions in it.
        let plan = engine.explain((e.mean(0), &h)).unwrap();
        assert_eq!(plan.passes.len(), 1, "{plan}");
        assert_eq!(plan.passes[0].reductions.len(), 2, "{plan}");
    }
}

#[test]
fn an_aggregate_result_feeds_later_expressions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let x = data(700, 4).mapv(|v| v as f32);
    write_any(&path, &AnyArray::from(x.clone().into_dyn()));
    let maxima: Vec<f32> = (0..4)
        .map(|c| {
            x.column(c)
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .collect();
    for engine in engines() {
        let e = engine.open(&path).unwrap();
        // Per column: broadcasts along rows, in a second pass.
        let m = e.aggregate(ColumnMax);
        assert_eq!(m.shape(), vec![4]);
        let out = dir.path().join("centred.npy");
        let report = engine.write_npy(&(&e - &m), &out).unwrap();
        assert_eq!(report.passes, 2);
        let got = read_any(&out);
        let want = x.clone() - ndarray::Array1::from(maxima.clone());
        assert_eq!(got, AnyArray::from(want.into_dyn()));
        std::fs::remove_file(&out).unwrap();
        // Over a computed array of another dtype: cast (and converted a
        // tile at a time) to the aggregate's f32.
        let doubled = (&e.cast(DType::F64) * 2.0).aggregate(ColumnMax);
        let got = f64s(&engine.compute(&doubled).unwrap());
        let want: Vec<f64> = maxima.iter().map(|&v| f64::from(v) * 2.0).collect();
        assert_eq!(got, want);
        // One value: broadcasts everywhere, and combines with reductions.
        let above = e.cast(DType::F64).aggregate(CountAbove(0.0));
        let n = x.iter().filter(|&&v| f64::from(v) > 0.0).count() as f64;
        let share = engine.compute(above.cast(DType::F64) / 2800.0).unwrap();
        assert_eq!(f64s(&share), vec![n / 2800.0]);
        // ... and with the values of another reduction of the same pass.
        let (both, sum) = engine
            .compute((above.cast(DType::F64) + e.sum(None), e.sum(None)))
            .unwrap();
        assert_eq!(f64s(&both), vec![n + f64s(&sum)[0]]);
    }
}

#[test]
fn a_result_of_its_own_shape_combines_only_with_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_any(&path, &AnyArray::from(data(50, 2).into_dyn()));
    let engine = common::engine(2, 1 << 20, ReadMode::Mmap);
    let e = engine.open(&path).unwrap();
    let hist = Histogram {
        lo: -2.0,
        hi: 8.0,
        bins: 3,
    };
    let h = e.aggregate(hist.clone()).cast(DType::F64);
    let twice = engine.compute(&h * 2.0).unwrap();
    let once = engine.compute(&h).unwrap();
    assert_eq!(
        f64s(&twice),
        f64s(&once).iter().map(|v| v * 2.0).collect::<Vec<_>>()
    );
    let total = engine.compute(&h + &h).unwrap();
    assert_eq!(f64s(&total), f64s(&twice));
    for bad in [&e + &h, &h + &e.mean(0)] {
        assert!(
            matches!(bad.check(), Err(Error::Shape(_) | Error::Invalid(_))),
            "{bad:?}"
        );
        assert!(engine.compute(&bad).is_err());
    }
}

#[test]
fn aggregate_states_are_reserved_and_errors_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_any(&path, &AnyArray::from(data(1000, 3).into_dyn()));
    let engine = Engine::builder()
        .memory_limit(16 << 20)
        .threads(2)
        .block_bytes(4096)
        .build()
        .unwrap();
    let e = engine.open(&path).unwrap();
    // A state of 64 MiB per block cannot fit 16 MiB: refused before reading.
    for err in [
        engine.compute(e.aggregate(Huge)).unwrap_err(),
        engine.explain(e.aggregate(Huge)).unwrap_err(),
    ] {
        let Error::LimitTooSmall { minimum, .. } = err else {
            panic!("expected LimitTooSmall, got {err:?}");
        };
        assert!(minimum > 64 << 20, "{minimum}");
    }
    // The aggregate's own error comes back as it was.
    let none = engine.compute(e.aggregate(CountAbove(1e9))).unwrap_err();
    assert!(
        matches!(&none, Error::Empty { op, .. } if op == "count_above"),
        "{none:?}"
    );
    let none = engine.aggregate(&e, CountAbove(1e9)).unwrap_err();
    assert!(
        matches!(&none, Error::Empty { op, .. } if op == "count_above"),
        "{none:?}"
    );
    // A panic is that run's error, and the engine goes on.
    let err = engine.compute(e.aggregate(PanicsOnUpdate)).unwrap_err();
    assert!(
        matches!(&err, Error::Panic(msg) if msg.contains("own bug")),
        "{err:?}"
    );
    assert_eq!(engine.budget().reserved(), 0);
    assert!(engine.aggregate(&e, CountAbove(0.0)).unwrap() > 0);
}
