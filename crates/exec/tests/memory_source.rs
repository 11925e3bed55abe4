//! Arrays in memory as sources (`Engine::array` over
//! `ArrayFile::from_memory`) and values in memory that broadcast per
//! column or per row (`Expr::row_values`, `Expr::column_values`): the
//! same results as the arrays computed in memory, at any block size and
//! thread count, also when a pass spills.

use std::sync::Arc;

use ndarray::{Array1, Array2, Axis};
use outcore_chunker::{ArrayFile, ByteOrder, DType, Layout};
use outcore_exec::{AnyArray, Engine, Expr};

const ROWS: usize = 1_000;
const COLS: usize = 6;

fn data() -> Array2<f64> {
    Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
        ((r * 31 + c * 7) % 97) as f64 / 3.0 - c as f64
    })
}

fn engine(threads: usize, block_bytes: u64) -> Engine {
    Engine::builder()
        .memory_limit(8 << 20)
        .threads(threads)
        .block_bytes(block_bytes)
        .build()
        .unwrap()
}

fn memory_array(engine: &Engine, a: &Array2<f64>) -> Expr {
    let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let file = ArrayFile::from_memory(
        Arc::new(bytes),
        "<ndarray>",
        DType::F64,
        vec![a.nrows() as u64, a.ncols() as u64],
        ByteOrder::NATIVE,
        Layout::C,
    )
    .unwrap();
    engine.array(file)
}

fn close(got: &AnyArray, want: &[f64]) {
    let got = got.to_f64().into_raw_vec_and_offset().0;
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn an_array_in_memory_reduces_as_in_memory() {
    let a = data();
    for threads in [1, 3] {
        for block_bytes in [COLS as u64 * 8, 4 << 10, 1 << 20] {
            let engine = engine(threads, block_bytes);
            let x = memory_array(&engine, &a);
            let (sum, std) = engine.compute((x.sum(0), x.std(0, 0))).unwrap();
            close(&sum, a.sum_axis(Axis(0)).as_slice().unwrap());
            close(&std, a.std_axis(Axis(0), 0.0).as_slice().unwrap());
        }
    }
}

#[test]
fn row_and_column_values_broadcast_as_numpy_does() {
    let a = data();
    let offsets = Array1::from_shape_fn(COLS, |c| c as f64 * 1.5);
    let weights = Array1::from_shape_fn(ROWS, |r| (r % 5) as f64);
    let engine = engine(2, 4 << 10);
    let x = memory_array(&engine, &a);
    let shifted = &x - &Expr::row_values(AnyArray::F64(offsets.clone().into_dyn()));
    let weighted = &x * &Expr::column_values(AnyArray::F64(weights.clone().into_dyn()));
    assert_eq!(shifted.shape(), vec![ROWS as u64, COLS as u64]);
    let (s, w) = engine.compute((shifted.sum(0), weighted.sum(0))).unwrap();
    let want_s = (&a - &offsets).sum_axis(Axis(0));
    let want_w = (&a * &weights.insert_axis(Axis(1))).sum_axis(Axis(0));
    close(&s, want_s.as_slice().unwrap());
    close(&w, want_w.as_slice().unwrap());
    // Whole arrays stream through too (in memory here: it fits).
    let full = engine.compute(shifted.clone()).unwrap();
    close(&full, (&a - &offsets).as_slice().unwrap());
}

#[test]
fn values_of_the_wrong_length_are_an_error_naming_both_lengths() {
    let engine = engine(1, 1 << 20);
    let x = memory_array(&engine, &data());
    let bad = &x + &Expr::row_values(AnyArray::F64(Array1::zeros(COLS + 1).into_dyn()));
    let err = engine.compute(bad.sum(0)).unwrap_err().to_string();
    assert!(
        err.contains(&format!("{}", COLS + 1)) && err.contains(&COLS.to_string()),
        "{err}"
    );
    let bad = &x * &Expr::column_values(AnyArray::F64(Array1::zeros(ROWS - 1).into_dyn()));
    let err = engine.compute(bad.sum(0)).unwrap_err().to_string();
    assert!(err.contains(&format!("{}", ROWS - 1)), "{err}");
}
