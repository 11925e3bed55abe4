//! Tests of the reductions: every op × dtype × axis against a naive exact
//! reference, through every tile and block split; accuracy; NumPy's edge
//! cases; serialisation.

use half::f16;
use ndarray::{Array2, ArrayD, Ix2, s};
use outcore_chunker::DType;
use proptest::prelude::*;

use super::*;
use crate::value::Scalar;

// ---------------------------------------------------------------------------
// Helpers: arrays of any dtype, views of row ranges, running a ReducerSet.

/// Rows `a..b` of a 2-d array as a view.
fn view_rows(arr: &AnyArray, a: usize, b: usize) -> AnyView<'_> {
    macro_rules! v {
        ($($var:ident),*) => {
            match arr {
                $(AnyArray::$var(x) => AnyView::$var(
                    x.view().into_dimensionality::<Ix2>().expect("2-d").slice_move(s![a..b, ..]),
                ),)*
            }
        };
    }
    v!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, F32, F64)
}

/// A `rows × row_len` array of `dtype` built from `f(i)` for the flat index.
fn make(dtype: DType, rows: usize, row_len: usize, f: impl Fn(usize) -> (u64, f64)) -> AnyArray {
    let n = rows * row_len;
    fn shaped<T>(rows: usize, row_len: usize, v: Vec<T>) -> ArrayD<T> {
        Array2::from_shape_vec((rows, row_len), v)
            .expect("shape")
            .into_dyn()
    }
    macro_rules! ints {
        ($t:ty) => {
            AnyArray::from(shaped(
                rows,
                row_len,
                (0..n).map(|i| f(i).0 as $t).collect::<Vec<$t>>(),
            ))
        };
    }
    match dtype {
        DType::Bool => AnyArray::from(shaped(
            rows,
            row_len,
            (0..n).map(|i| f(i).0 & 1 == 1).collect::<Vec<bool>>(),
        )),
        DType::I8 => ints!(i8),
        DType::I16 => ints!(i16),
        DType::I32 => ints!(i32),
        DType::I64 => ints!(i64),
        DType::U8 => ints!(u8),
        DType::U16 => ints!(u16),
        DType::U32 => ints!(u32),
        DType::U64 => ints!(u64),
        DType::F16 => AnyArray::from(shaped(
            rows,
            row_len,
            (0..n).map(|i| f16::from_f64(f(i).1)).collect::<Vec<f16>>(),
        )),
        DType::F32 => AnyArray::from(shaped(
            rows,
            row_len,
            (0..n).map(|i| f(i).1 as f32).collect::<Vec<f32>>(),
        )),
        DType::F64 => AnyArray::from(shaped(
            rows,
            row_len,
            (0..n).map(|i| f(i).1).collect::<Vec<f64>>(),
        )),
    }
}

fn dims(a: &AnyArray) -> (usize, usize) {
    (a.shape()[0], a.shape()[1])
}

/// Runs `ops` over `arr` with blocks of `block` rows cut into tiles of
/// `tile` rows, merged in order; `json` round-trips every block's partial
/// through JSON first.
fn run_split(
    ops: &[ReduceOp],
    axis: ReduceAxis,
    arr: &AnyArray,
    block: usize,
    tile: usize,
    json: bool,
) -> Result<Vec<AnyArray>> {
    let (rows, row_len) = dims(arr);
    let set = ReducerSet::new(ops, axis, arr.dtype(), rows as u64, row_len)?;
    let mut acc: Option<ReduceState> = None;
    let mut b0 = 0;
    while b0 < rows {
        let b1 = (b0 + block).min(rows);
        let mut p = set.init();
        let mut t0 = b0;
        while t0 < b1 {
            let t1 = (t0 + tile).min(b1);
            set.update(&mut p, view_rows(arr, t0, t1), t0 as u64);
            t0 = t1;
        }
        if json {
            let text = serde_json::to_string(&p).expect("serialise");
            p = serde_json::from_str(&text).expect("deserialise");
        }
        match &mut acc {
            None => acc = Some(p),
            Some(a) => set.merge(a, p),
        }
        b0 = b1;
    }
    set.finish(acc.unwrap_or_else(|| set.init()))
}

fn run(ops: &[ReduceOp], axis: ReduceAxis, arr: &AnyArray) -> Result<Vec<AnyArray>> {
    let rows = dims(arr).0;
    run_split(ops, axis, arr, rows.max(1), rows.max(1), false)
}

fn run1(op: ReduceOp, axis: ReduceAxis, arr: &AnyArray) -> Result<AnyArray> {
    run(&[op], axis, arr).map(|mut v| v.remove(0))
}

fn f64s(a: &AnyArray) -> Vec<f64> {
    a.to_f64().iter().copied().collect()
}

fn f64_2d(rows: usize, row_len: usize, v: Vec<f64>) -> AnyArray {
    AnyArray::from(
        Array2::from_shape_vec((rows, row_len), v)
            .expect("shape")
            .into_dyn(),
    )
}

// ---------------------------------------------------------------------------
// The reference: exact sums (Shewchuk), i128 for integers, first-occurrence
// scans.

/// Correctly rounded sum of finite floats (Shewchuk / Python's math.fsum),
/// with IEEE rules for NaN and infinities.
fn fsum(xs: &[f64]) -> f64 {
    if xs.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let pinf = xs.contains(&f64::INFINITY);
    let ninf = xs.contains(&f64::NEG_INFINITY);
    match (pinf, ninf) {
        (true, true) => return f64::NAN,
        (true, false) => return f64::INFINITY,
        (false, true) => return f64::NEG_INFINITY,
        _ => {}
    }
    let mut partials: Vec<f64> = Vec::new();
    for &x in xs {
        let mut x = x;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        partials.push(x);
    }
    // Round the partials (Python's msum tail, including the half-way fix).
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        n -= 1;
        let x = hi;
        let y = partials[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}

#[derive(Clone, Debug, PartialEq)]
enum Want {
    Int(i128),
    /// Expected float, and the tolerance.
    Float(f64, f64),
    Bool(bool),
    Index(i64),
}

#[derive(Clone, Debug, PartialEq)]
enum WantErr {
    Empty,
    Overflow,
}

fn scalar_f64(s: Scalar) -> f64 {
    match s {
        Scalar::Bool(b) => f64::from(u8::from(b)),
        Scalar::Int(i) => i as f64,
        Scalar::UInt(u) => u as f64,
        Scalar::Float(f) => f,
    }
}

fn scalar_i128(s: Scalar) -> Option<i128> {
    match s {
        Scalar::Bool(b) => Some(i128::from(b)),
        Scalar::Int(i) => Some(i128::from(i)),
        Scalar::UInt(u) => Some(i128::from(u)),
        Scalar::Float(_) => None,
    }
}

/// The elements reduced into each output, in order.
fn lines(vals: &[Scalar], rows: usize, row_len: usize, axis: ReduceAxis) -> Vec<Vec<Scalar>> {
    match axis {
        ReduceAxis::All => vec![vals.to_vec()],
        ReduceAxis::Axis0 => (0..row_len)
            .map(|c| (0..rows).map(|r| vals[r * row_len + c]).collect())
            .collect(),
        ReduceAxis::Axis1 => (0..rows)
            .map(|r| vals[r * row_len..(r + 1) * row_len].to_vec())
            .collect(),
    }
}

fn reference(
    op: ReduceOp,
    axis: ReduceAxis,
    arr: &AnyArray,
) -> std::result::Result<Vec<Want>, WantErr> {
    let (rows, row_len) = dims(arr);
    let dtype = arr.dtype();
    let vals = arr.to_scalars();
    let empty = match axis {
        ReduceAxis::All => rows * row_len == 0,
        ReduceAxis::Axis0 => rows == 0,
        ReduceAxis::Axis1 => row_len == 0,
    };
    let min_like = matches!(
        op,
        ReduceOp::Min
            | ReduceOp::Max
            | ReduceOp::NanMin
            | ReduceOp::NanMax
            | ReduceOp::ArgMin
            | ReduceOp::ArgMax
    );
    if min_like && empty {
        return Err(WantErr::Empty);
    }
    let float = dtype.is_float();
    let mut out = Vec::new();
    for line in lines(&vals, rows, row_len, axis) {
        let xs: Vec<f64> = line.iter().map(|&s| scalar_f64(s)).collect();
        let kept: Vec<f64> = if op.skips_nan() {
            xs.iter().copied().filter(|x| !x.is_nan()).collect()
        } else {
            xs.clone()
        };
        let abs: f64 = kept.iter().filter(|x| x.is_finite()).map(|x| x.abs()).sum();
        let n = kept.len() as f64;
        let want = match op {
            ReduceOp::Sum | ReduceOp::NanSum if !float => {
                let s: i128 = line.iter().map(|&v| scalar_i128(v).expect("int")).sum();
                let fits = if dtype.is_unsigned_int() {
                    u64::try_from(s).is_ok()
                } else {
                    i64::try_from(s).is_ok()
                };
                if !fits {
                    return Err(WantErr::Overflow);
                }
                Want::Int(s)
            }
            ReduceOp::Mean | ReduceOp::NanMean if !float => {
                let s: i128 = line.iter().map(|&v| scalar_i128(v).expect("int")).sum();
                Want::Float(s as f64 / n, 0.0)
            }
            ReduceOp::Sum | ReduceOp::NanSum => Want::Float(fsum(&kept), 1e-13 * abs),
            ReduceOp::Mean | ReduceOp::NanMean => Want::Float(fsum(&kept) / n, 1e-13 * abs / n),
            ReduceOp::Var { ddof }
            | ReduceOp::Std { ddof }
            | ReduceOp::NanVar { ddof }
            | ReduceOp::NanStd { ddof } => {
                let mean = fsum(&kept) / n;
                let sq: Vec<f64> = kept.iter().map(|x| (x - mean) * (x - mean)).collect();
                let dof = n - f64::from(ddof);
                let var = if dof > 0.0 { fsum(&sq) / dof } else { f64::NAN };
                let scale = kept.iter().map(|x| x * x).sum::<f64>() / n.max(1.0);
                let tol = 1e-10 * var.abs() + 1e-13 * scale;
                if matches!(op, ReduceOp::Std { .. } | ReduceOp::NanStd { .. }) {
                    Want::Float(var.sqrt(), 1e-10 * var.sqrt() + tol.sqrt())
                } else {
                    Want::Float(var, tol)
                }
            }
            ReduceOp::Min | ReduceOp::Max | ReduceOp::NanMin | ReduceOp::NanMax => {
                let is_min = matches!(op, ReduceOp::Min | ReduceOp::NanMin);
                if float {
                    let v = if kept.iter().any(|x| x.is_nan()) || kept.is_empty() {
                        f64::NAN
                    } else if is_min {
                        kept.iter().copied().fold(f64::INFINITY, f64::min)
                    } else {
                        kept.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    };
                    Want::Float(v, 0.0)
                } else {
                    let it = line.iter().map(|&v| scalar_i128(v).expect("int"));
                    let v = if is_min { it.min() } else { it.max() }.expect("non-empty");
                    if dtype == DType::Bool {
                        Want::Bool(v == 1)
                    } else {
                        Want::Int(v)
                    }
                }
            }
            ReduceOp::ArgMin | ReduceOp::ArgMax => {
                let is_min = op == ReduceOp::ArgMin;
                let idx = if let Some(p) = xs.iter().position(|x| x.is_nan()) {
                    p
                } else {
                    let mut best = 0;
                    for (i, _) in line.iter().enumerate() {
                        let (a, b) = (&line[i], &line[best]);
                        let better = match (scalar_i128(*a), scalar_i128(*b)) {
                            (Some(a), Some(b)) => {
                                if is_min {
                                    a < b
                                } else {
                                    a > b
                                }
                            }
                            _ => {
                                let (a, b) = (scalar_f64(*a), scalar_f64(*b));
                                if is_min { a < b } else { a > b }
                            }
                        };
                        if better {
                            best = i;
                        }
                    }
                    best
                };
                Want::Index(idx as i64)
            }
        };
        out.push(want);
    }
    Ok(out)
}

fn check(got: &AnyArray, want: &[Want], what: &str) {
    let g = got.to_scalars();
    assert_eq!(g.len(), want.len(), "{what}: length");
    for (i, (g, w)) in g.iter().zip(want).enumerate() {
        let ok = match (g, w) {
            (Scalar::Int(a), Want::Int(b)) => i128::from(*a) == *b,
            (Scalar::UInt(a), Want::Int(b)) => i128::from(*a) == *b,
            (Scalar::Int(a), Want::Index(b)) => a == b,
            (Scalar::Bool(a), Want::Bool(b)) => a == b,
            (Scalar::Float(a), Want::Float(b, tol)) => {
                (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= *tol
            }
            _ => false,
        };
        assert!(ok, "{what}: output {i}: got {g:?}, want {w:?}");
    }
}

fn expect(op: ReduceOp, axis: ReduceAxis, arr: &AnyArray, got: Result<AnyArray>, what: &str) {
    match (reference(op, axis, arr), got) {
        (Ok(want), Ok(got)) => {
            assert_eq!(got.dtype(), op.result_dtype(arr.dtype()), "{what}: dtype");
            let expect_shape: Vec<usize> = match axis {
                ReduceAxis::All => vec![],
                ReduceAxis::Axis0 => vec![dims(arr).1],
                ReduceAxis::Axis1 => vec![dims(arr).0],
            };
            assert_eq!(got.shape(), &expect_shape[..], "{what}: shape");
            check(&got, &want, what);
        }
        (Err(WantErr::Empty), Err(Error::Empty { .. })) => {}
        (Err(WantErr::Overflow), Err(Error::IntegerOverflow { .. })) => {}
        (want, got) => panic!("{what}: want {want:?}, got {got:?}"),
    }
}

const AXES: [ReduceAxis; 3] = [ReduceAxis::All, ReduceAxis::Axis0, ReduceAxis::Axis1];

fn all_ops() -> Vec<ReduceOp> {
    let mut ops = ReduceOp::ALL.to_vec();
    ops.extend([
        ReduceOp::Var { ddof: 1 },
        ReduceOp::Std { ddof: 1 },
        ReduceOp::NanVar { ddof: 2 },
        ReduceOp::NanStd { ddof: 1 },
    ]);
    ops
}

/// One random element: integer bits and a float of a chosen kind.
fn element() -> impl Strategy<Value = (u64, f64)> {
    let float = prop_oneof![
        6 => -100.0..100.0f64,
        2 => (-3i32..4).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => -1e6..1e6f64,
        1 => Just(-0.0),
    ];
    let int = prop_oneof![
        4 => (0u64..8).prop_map(|v| v.wrapping_sub(4)),
        1 => any::<u64>(),
        1 => prop_oneof![Just(i64::MAX as u64), Just(i64::MIN as u64), Just(u64::MAX), Just(u64::MAX - 1)],
    ];
    (int, float)
}

fn case() -> impl Strategy<Value = (usize, ReduceAxis, usize, usize, Vec<(u64, f64)>)> {
    let rows = prop_oneof![3 => 0usize..9, 1 => 9usize..48];
    // Wide rows (over 256 bytes for most dtypes) take the row-by-row Axis0
    // sweeps; narrow ones the 4-row sweeps.
    let row_len = prop_oneof![10 => 0usize..7, 1 => 33usize..300];
    (0usize..12, 0usize..3, rows, row_len).prop_flat_map(|(d, a, rows, row_len)| {
        (
            Just(d),
            Just(AXES[a]),
            Just(rows),
            Just(row_len),
            proptest::collection::vec(element(), rows * row_len),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every op × dtype × axis: every block size and every tile size give
    /// the reference result; the shared set gives the same results as each
    /// op alone (bit for bit).
    #[test]
    fn every_op_dtype_axis_and_split((d, axis, rows, row_len, elems) in case()) {
        let dtype = DType::ALL[d];
        let arr = make(dtype, rows, row_len, |i| elems[i]);
        let ops = all_ops();
        for &op in &ops {
            let alone = run1(op, axis, &arr);
            expect(op, axis, &arr, alone, &format!("{op} {dtype} {axis:?} {rows}x{row_len}"));
        }
        // Every block and tile size for small arrays; a selection (several
        // Axis0 groups per block, ragged ends) for larger ones.
        let splits: Vec<(usize, usize)> = if rows <= 8 {
            (1..=rows.max(1)).flat_map(|b| (1..=b).map(move |t| (b, t))).collect()
        } else {
            [1, 2, 3, 7, 16, 17, 33, rows]
                .into_iter()
                .filter(|&b| b <= rows)
                .flat_map(|b| [1, 3, 5, 16, b].into_iter().filter(move |&t| t <= b).map(move |t| (b, t)))
                .collect()
        };
        // Ops that succeed run together (shared states); failing ones alone.
        let (ok_ops, err_ops): (Vec<ReduceOp>, Vec<ReduceOp>) =
            ops.iter().copied().partition(|&op| reference(op, axis, &arr).is_ok());
        for (block, tile) in splits {
            let json = (block + tile) % 3 == 0;
            let what = |op: ReduceOp| format!("{op} {dtype} {axis:?} {rows}x{row_len} block {block} tile {tile}");
            let got = run_split(&ok_ops, axis, &arr, block, tile, json).expect("shared run");
            for (&op, got) in ok_ops.iter().zip(got) {
                expect(op, axis, &arr, Ok(got), &what(op));
            }
            for &op in &err_ops {
                let got = run_split(&[op], axis, &arr, block, tile, json).map(|mut v| v.remove(0));
                expect(op, axis, &arr, got, &what(op));
            }
        }
        // Shared states give what each op gives alone, bit for bit.
        let shared = run(&ok_ops, axis, &arr).expect("shared");
        for (op, got) in ok_ops.iter().zip(shared) {
            let alone = run1(*op, axis, &arr).expect("alone");
            prop_assert_eq!(got.to_scalars().iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
                            alone.to_scalars().iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
                            "{} shared vs alone", op);
        }
    }
}

// ---------------------------------------------------------------------------
// Accuracy.

/// Deterministic xorshift.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs like the engine: tiles of ~4096 elements, blocks of `block_rows`.
fn engine_like(
    ops: &[ReduceOp],
    axis: ReduceAxis,
    arr: &AnyArray,
    block_rows: usize,
) -> Vec<AnyArray> {
    let row_len = dims(arr).1;
    let tile = (4096 / row_len.max(1)).max(1);
    run_split(ops, axis, arr, block_rows, tile, false).expect("run")
}

#[test]
fn float32_sum_accuracy() {
    // 1e7 elements in release; 1e6 in debug builds (same code paths).
    let n: usize = if cfg!(debug_assertions) {
        1 << 20
    } else {
        10_000_000
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Values of magnitude 2^-10 .. 2^10, mixed signs: exact as i128 at 2^34.
    let xs: Vec<f32> = (0..n)
        .map(|_| {
            let m = (rng.unit() * 20.0 - 10.0).exp2() * (1.0 + rng.unit());
            let v = m as f32;
            if rng.next() & 3 == 0 { -v } else { v }
        })
        .collect();
    let scale = (1u64 << 34) as f64;
    let exact: i128 = xs.iter().map(|&x| (f64::from(x) * scale) as i128).sum();
    let exact = exact as f64 / scale;
    let abs: f64 = xs.iter().map(|x| f64::from(x.abs())).sum();
    let row_len = 1000;
    let rows = n / row_len;
    let arr = AnyArray::from(
        Array2::from_shape_vec((rows, row_len), xs[..rows * row_len].to_vec())
            .expect("shape")
            .into_dyn(),
    );
    let exact_t: i128 = xs[..rows * row_len]
        .iter()
        .map(|&x| (f64::from(x) * scale) as i128)
        .sum();
    let exact_t = exact_t as f64 / scale;
    let got = f64s(&engine_like(&[ReduceOp::Sum], ReduceAxis::All, &arr, 4096)[0])[0];
    let rel = (got - exact_t).abs() / abs;
    println!(
        "float32 sum of {} elements: relative error {rel:.3e} of Σ|x| (exact {exact})",
        rows * row_len
    );
    assert!(rel < 1e-13, "relative error {rel:e}");
    // Column sums too.
    let cols = f64s(&engine_like(&[ReduceOp::Sum], ReduceAxis::Axis0, &arr, 4096)[0]);
    for c in (0..row_len).step_by(97) {
        let col: Vec<f32> = (0..rows).map(|r| xs[r * row_len + c]).collect();
        let e: i128 = col.iter().map(|&x| (f64::from(x) * scale) as i128).sum();
        let e = e as f64 / scale;
        let a: f64 = col.iter().map(|x| f64::from(x.abs())).sum();
        assert!(
            (cols[c] - e).abs() <= 1e-13 * a,
            "column {c}: {} vs {e}",
            cols[c]
        );
    }
}

#[test]
fn float64_sum_accuracy() {
    let n: usize = if cfg!(debug_assertions) {
        1 << 20
    } else {
        1 << 24
    };
    let mut rng = Rng(12345);
    let xs: Vec<f64> = (0..n)
        .map(|_| {
            let v = (rng.unit() * 20.0 - 10.0).exp2() * (1.0 + rng.unit());
            if rng.next() & 1 == 0 { -v } else { v }
        })
        .collect();
    let scale = (1u64 << 62) as f64;
    let exact: i128 = xs.iter().map(|&x| (x * scale) as i128).sum();
    let exact = exact as f64 / scale;
    let abs: f64 = xs.iter().map(|x| x.abs()).sum();
    let arr = AnyArray::from(
        Array2::from_shape_vec((n / 256, 256), xs)
            .expect("shape")
            .into_dyn(),
    );
    let got = f64s(
        &engine_like(
            &[ReduceOp::Sum, ReduceOp::Mean],
            ReduceAxis::All,
            &arr,
            1 << 15,
        )[0],
    )[0];
    let rel = (got - exact).abs() / abs;
    println!("float64 sum of {n} elements: relative error {rel:.3e} of Σ|x|");
    assert!(rel < 1e-15, "relative error {rel:e}");
}

/// The 1e9-element float64 sum, streamed like the engine (tiles of 2048
/// elements, blocks of 2²³ elements merged in order) against an exact i128
/// reference: `cargo test --release -p outcore-exec -- --ignored sum_1e9 --nocapture`.
#[test]
#[ignore = "1e9 elements: run by hand in --release (about 10 s)"]
fn float64_sum_1e9_accuracy() {
    let (row_len, rows) = (256usize, 1_000_000_000 / 256);
    let tile_rows = 8;
    let block_rows = (1 << 23) / row_len;
    let set = ReducerSet::new(
        &[ReduceOp::Sum, ReduceOp::Mean],
        ReduceAxis::All,
        DType::F64,
        rows as u64,
        row_len,
    )
    .expect("set");
    let scale = (1u64 << 62) as f64;
    let (mut exact, mut abs) = (0i128, 0.0f64);
    let mut rng = Rng(4242);
    let mut acc: Option<ReduceState> = None;
    let mut tile = vec![0.0f64; tile_rows * row_len];
    let mut r = 0;
    while r < rows {
        let mut p = set.init();
        let end = (r + block_rows).min(rows);
        while r < end {
            let n = tile_rows.min(end - r);
            for x in &mut tile[..n * row_len] {
                // Magnitudes 2^-10 .. 2^10, mixed signs, biased positive.
                let v = (rng.unit() * 20.0 - 10.0).exp2() * (1.0 + rng.unit());
                *x = if rng.next().is_multiple_of(3) { -v } else { v };
                exact += (*x * scale) as i128;
                abs += x.abs();
            }
            let view =
                ndarray::ArrayView2::from_shape((n, row_len), &tile[..n * row_len]).expect("view");
            set.update(&mut p, AnyView::F64(view), r as u64);
            r += n;
        }
        match &mut acc {
            None => acc = Some(p),
            Some(a) => set.merge(a, p),
        }
    }
    let got = f64s(&set.finish(acc.expect("partial")).expect("finish")[0])[0];
    let exact = exact as f64 / scale;
    let rel = (got - exact).abs() / abs;
    println!(
        "float64 sum of {} elements: relative error {rel:.3e} of Σ|x| (sum {exact:e}, Σ|x| {abs:e})",
        rows * row_len
    );
    assert!(rel < 1e-13, "relative error {rel:e}");
}

#[test]
fn variance_at_large_offset() {
    let (rows, row_len) = (3000, 7);
    let mut rng = Rng(777);
    let u: Vec<f64> = (0..rows * row_len)
        .map(|_| rng.unit() * 2.0 - 1.0)
        .collect();
    let xs: Vec<f64> = u.iter().map(|v| 1e9 + v).collect();
    // x − 1e9 is exact, so the reference works on small numbers.
    let d: Vec<f64> = xs.iter().map(|x| x - 1e9).collect();
    let arr = f64_2d(rows, row_len, xs.clone());
    let darr = f64_2d(rows, row_len, d);
    let mut worst = 0.0f64;
    for axis in AXES {
        for op in [
            ReduceOp::Var { ddof: 0 },
            ReduceOp::Std { ddof: 1 },
            ReduceOp::NanStd { ddof: 0 },
        ] {
            let want = f64s(&run1(op, axis, &darr).expect("ref"));
            for block in [1, 17, 1000, rows] {
                let got = f64s(
                    &run_split(&[op, ReduceOp::Mean], axis, &arr, block, 3, false).expect("run")[0],
                );
                for (g, w) in got.iter().zip(&want) {
                    worst = worst.max((g - w).abs() / w);
                    assert!(
                        (g - w).abs() <= 1e-12 * w,
                        "{op} {axis:?} block {block}: {g} vs {w}"
                    );
                }
            }
        }
    }
    println!("variance of 1e9 + U(-1, 1): worst relative error {worst:.2e}");
    // Alternating 1e9 ± 1: std exactly 1.
    let alt = f64_2d(
        1000,
        4,
        (0..4000)
            .map(|i| if i % 2 == 0 { 1e9 + 1.0 } else { 1e9 - 1.0 })
            .collect(),
    );
    let s = f64s(&run1(ReduceOp::Std { ddof: 0 }, ReduceAxis::All, &alt).expect("std"))[0];
    assert!((s - 1.0).abs() < 1e-12, "std {s}");
    let mean = f64s(&run1(ReduceOp::Mean, ReduceAxis::All, &alt).expect("mean"))[0];
    assert_eq!(mean, 1e9);
}

#[test]
fn float16_does_not_overflow() {
    let arr = make(DType::F16, 10_000, 3, |_| (0, 60000.0));
    let ops = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Std { ddof: 0 },
    ];
    let out = run(&ops, ReduceAxis::All, &arr).expect("run");
    assert_eq!(f64s(&out[0]), vec![60000.0 * 30000.0]);
    assert_eq!(f64s(&out[1]), vec![60000.0]);
    assert_eq!(out[2].dtype(), DType::F16);
    assert_eq!(f64s(&out[2]), vec![60000.0]);
    assert_eq!(f64s(&out[3]), vec![0.0]);
    let cols = run1(ReduceOp::Sum, ReduceAxis::Axis0, &arr).expect("run");
    assert_eq!(f64s(&cols), vec![6e8; 3]);
}

// ---------------------------------------------------------------------------
// NumPy's edge cases.

#[test]
fn nan_propagation_and_first_nan_index() {
    let nan = f64::NAN;
    let arr = f64_2d(2, 4, vec![3.0, nan, 1.0, nan, 1.0, 5.0, nan, 0.0]);
    let all = |op| f64s(&run1(op, ReduceAxis::All, &arr).expect("run"));
    assert!(all(ReduceOp::Sum)[0].is_nan());
    assert!(all(ReduceOp::Mean)[0].is_nan());
    assert!(all(ReduceOp::Min)[0].is_nan());
    assert!(all(ReduceOp::Max)[0].is_nan());
    assert!(all(ReduceOp::Std { ddof: 0 })[0].is_nan());
    assert_eq!(all(ReduceOp::ArgMin), vec![1.0]);
    assert_eq!(all(ReduceOp::ArgMax), vec![1.0]);
    assert_eq!(all(ReduceOp::NanSum), vec![10.0]);
    assert_eq!(all(ReduceOp::NanMean), vec![2.0]);
    assert_eq!(all(ReduceOp::NanMin), vec![0.0]);
    assert_eq!(all(ReduceOp::NanMax), vec![5.0]);
    let cols = f64s(&run1(ReduceOp::ArgMin, ReduceAxis::Axis0, &arr).expect("run"));
    assert_eq!(cols, vec![1.0, 0.0, 1.0, 0.0]);
    let rows = f64s(&run1(ReduceOp::ArgMax, ReduceAxis::Axis1, &arr).expect("run"));
    assert_eq!(rows, vec![1.0, 2.0]);
    // inf − inf is NaN; inf alone stays inf.
    let inf = f64_2d(1, 3, vec![f64::INFINITY, 1.0, f64::NEG_INFINITY]);
    assert!(f64s(&run1(ReduceOp::Sum, ReduceAxis::All, &inf).expect("run"))[0].is_nan());
    let pinf = f64_2d(1, 3, vec![f64::INFINITY, 1.0, 2.0]);
    assert_eq!(
        f64s(&run1(ReduceOp::Sum, ReduceAxis::All, &pinf).expect("run")),
        vec![f64::INFINITY]
    );
    assert_eq!(
        f64s(&run1(ReduceOp::Mean, ReduceAxis::All, &pinf).expect("run")),
        vec![f64::INFINITY]
    );
    assert!(
        f64s(&run1(ReduceOp::Var { ddof: 0 }, ReduceAxis::All, &pinf).expect("run"))[0].is_nan()
    );
}

#[test]
fn ties_go_to_the_first_occurrence() {
    let arr = f64_2d(3, 3, vec![2.0, 1.0, 1.0, 1.0, 5.0, 5.0, 1.0, 5.0, 0.5]);
    for (block, tile) in [(3, 3), (1, 1), (2, 1)] {
        let got =
            |op, axis| f64s(&run_split(&[op], axis, &arr, block, tile, false).expect("run")[0]);
        assert_eq!(got(ReduceOp::ArgMin, ReduceAxis::All), vec![8.0]);
        assert_eq!(got(ReduceOp::ArgMax, ReduceAxis::All), vec![4.0]);
        assert_eq!(
            got(ReduceOp::ArgMin, ReduceAxis::Axis0),
            vec![1.0, 0.0, 2.0]
        );
        assert_eq!(
            got(ReduceOp::ArgMax, ReduceAxis::Axis0),
            vec![0.0, 1.0, 1.0]
        );
        assert_eq!(
            got(ReduceOp::ArgMin, ReduceAxis::Axis1),
            vec![1.0, 0.0, 2.0]
        );
        assert_eq!(
            got(ReduceOp::ArgMax, ReduceAxis::Axis1),
            vec![0.0, 1.0, 1.0]
        );
    }
    let ints = make(DType::I32, 2, 3, |i| ([7, 3, 3, 3, 7, 7][i], 0.0));
    assert_eq!(
        f64s(&run1(ReduceOp::ArgMin, ReduceAxis::All, &ints).expect("run")),
        vec![1.0]
    );
    assert_eq!(
        f64s(&run1(ReduceOp::ArgMax, ReduceAxis::All, &ints).expect("run")),
        vec![0.0]
    );
}

#[test]
fn all_nan_variants() {
    let nan = f64::NAN;
    let arr = f64_2d(2, 2, vec![nan, 1.0, nan, 3.0]);
    let cols = |op| f64s(&run1(op, ReduceAxis::Axis0, &arr).expect("run"));
    assert_eq!(cols(ReduceOp::NanSum), vec![0.0, 4.0]);
    for op in [
        ReduceOp::NanMean,
        ReduceOp::NanMin,
        ReduceOp::NanMax,
        ReduceOp::NanVar { ddof: 0 },
        ReduceOp::NanStd { ddof: 0 },
    ] {
        let v = cols(op);
        assert!(v[0].is_nan(), "{op}: {v:?}");
        assert!(!v[1].is_nan(), "{op}: {v:?}");
    }
    assert_eq!(cols(ReduceOp::NanVar { ddof: 0 })[1], 1.0);
    assert!(cols(ReduceOp::NanVar { ddof: 2 })[1].is_nan());
    let all_nan = f64_2d(3, 2, vec![nan; 6]);
    assert_eq!(
        f64s(&run1(ReduceOp::NanSum, ReduceAxis::All, &all_nan).expect("run")),
        vec![0.0]
    );
    assert!(
        f64s(&run1(ReduceOp::NanMax, ReduceAxis::Axis1, &all_nan).expect("run"))
            .iter()
            .all(|v| v.is_nan())
    );
}

#[test]
fn empty_inputs() {
    let empty = f64_2d(0, 5, vec![]);
    let all = |op| run1(op, ReduceAxis::All, &empty);
    assert_eq!(f64s(&all(ReduceOp::Sum).expect("sum")), vec![0.0]);
    assert_eq!(f64s(&all(ReduceOp::NanSum).expect("nansum")), vec![0.0]);
    assert!(f64s(&all(ReduceOp::Mean).expect("mean"))[0].is_nan());
    assert!(f64s(&all(ReduceOp::Std { ddof: 0 }).expect("std"))[0].is_nan());
    assert!(matches!(
        all(ReduceOp::Min),
        Err(Error::Empty { what: "array", .. })
    ));
    assert!(matches!(
        all(ReduceOp::ArgMax),
        Err(Error::Empty { what: "array", .. })
    ));
    // np.min(np.zeros((0, 5)), axis=1) is an empty array; axis=0 an error.
    assert_eq!(
        run1(ReduceOp::Min, ReduceAxis::Axis1, &empty)
            .expect("axis1")
            .shape(),
        &[0]
    );
    assert!(matches!(
        run1(ReduceOp::Min, ReduceAxis::Axis0, &empty),
        Err(Error::Empty { what: "axis", .. })
    ));
    assert_eq!(
        f64s(&run1(ReduceOp::Sum, ReduceAxis::Axis0, &empty).expect("sum")),
        vec![0.0; 5]
    );
    // (5, 0): axis 0 reduces empty columns (none), axis 1 empty rows.
    let thin = f64_2d(5, 0, vec![]);
    assert_eq!(
        run1(ReduceOp::Max, ReduceAxis::Axis0, &thin)
            .expect("axis0")
            .shape(),
        &[0]
    );
    assert!(matches!(
        run1(ReduceOp::Max, ReduceAxis::Axis1, &thin),
        Err(Error::Empty { .. })
    ));
    assert_eq!(
        f64s(&run1(ReduceOp::Sum, ReduceAxis::Axis1, &thin).expect("sum")),
        vec![0.0; 5]
    );
    assert!(
        f64s(&run1(ReduceOp::Mean, ReduceAxis::Axis1, &thin).expect("mean"))
            .iter()
            .all(|v| v.is_nan())
    );
    // An engine that never calls update for zero-width rows.
    let set = ReducerSet::new(&[ReduceOp::Sum], ReduceAxis::Axis1, DType::I32, 4, 0).expect("set");
    let out = set.finish(set.init()).expect("finish");
    assert_eq!(out[0].to_scalars(), vec![Scalar::Int(0); 4]);
}

#[test]
fn integer_sums_are_exact_or_fail() {
    let over = make(DType::I64, 2, 1, |i| ([i64::MAX as u64, 1][i], 0.0));
    for axis in [ReduceAxis::All, ReduceAxis::Axis0] {
        match run1(ReduceOp::Sum, axis, &over) {
            Err(Error::IntegerOverflow {
                value,
                dtype: "int64",
                ..
            }) => assert_eq!(value, "9223372036854775808"),
            other => panic!("{other:?}"),
        }
    }
    // Exact through an intermediate that does not fit.
    let back = make(DType::I64, 3, 1, |i| {
        ([i64::MAX as u64, 1, u64::MAX][i], 0.0)
    });
    assert_eq!(
        run1(ReduceOp::Sum, ReduceAxis::All, &back)
            .expect("sum")
            .to_scalars(),
        vec![Scalar::Int(i64::MAX)]
    );
    let u = make(DType::U64, 1, 2, |i| ([u64::MAX - 1, 1][i], 0.0));
    let s = run1(ReduceOp::Sum, ReduceAxis::Axis1, &u).expect("sum");
    assert_eq!(s.dtype(), DType::U64);
    assert_eq!(s.to_scalars(), vec![Scalar::UInt(u64::MAX)]);
    let u2 = make(DType::U64, 1, 2, |i| ([u64::MAX, 1][i], 0.0));
    assert!(matches!(
        run1(ReduceOp::NanSum, ReduceAxis::Axis1, &u2),
        Err(Error::IntegerOverflow {
            dtype: "uint64",
            ..
        })
    ));
    // Many rows (beyond one i64 group).
    let big = make(DType::U32, 70_000, 2, |_| (u64::from(u32::MAX), 0.0));
    let cols = run1(ReduceOp::Sum, ReduceAxis::Axis0, &big).expect("sum");
    assert_eq!(
        cols.to_scalars(),
        vec![Scalar::UInt(70_000 * u64::from(u32::MAX)); 2]
    );
    let bools = make(DType::Bool, 3, 2, |i| (i as u64, 0.0));
    let s = run1(ReduceOp::Sum, ReduceAxis::All, &bools).expect("sum");
    assert_eq!(s.dtype(), DType::I64);
    assert_eq!(s.to_scalars(), vec![Scalar::Int(3)]);
}

#[test]
fn op_names_parse_and_display() {
    for op in ReduceOp::ALL {
        assert_eq!(ReduceOp::parse(op.name(), 0), Some(op));
        assert_eq!(op.to_string(), op.name());
    }
    assert_eq!(
        ReduceOp::parse("NanStd", 1),
        Some(ReduceOp::NanStd { ddof: 1 })
    );
    assert_eq!(ReduceOp::parse("median", 0), None);
    assert_eq!(
        ReducerSet::result_dtype(ReduceOp::Sum, DType::U8),
        DType::U64
    );
    assert_eq!(
        ReducerSet::result_dtype(ReduceOp::Sum, DType::Bool),
        DType::I64
    );
    assert_eq!(
        ReducerSet::result_dtype(ReduceOp::Max, DType::F16),
        DType::F16
    );
    assert_eq!(
        ReducerSet::result_dtype(ReduceOp::Std { ddof: 1 }, DType::I8),
        DType::F64
    );
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let set = ReducerSet::new(&[ReduceOp::Sum], ReduceAxis::All, DType::F64, 4, 2).expect("set");
    let good = f64_2d(4, 2, vec![1.0; 8]);
    let bad = make(DType::F32, 4, 2, |_| (0, 1.0));
    let mut p = set.init();
    set.update(&mut p, view_rows(&bad, 0, 4), 0);
    assert!(matches!(set.finish(p), Err(Error::Invalid(_))));
    // Out of order.
    let mut a = set.init();
    set.update(&mut a, view_rows(&good, 2, 4), 2);
    let mut b = set.init();
    set.update(&mut b, view_rows(&good, 0, 2), 0);
    set.merge(&mut a, b);
    assert!(matches!(set.finish(a), Err(Error::Invalid(_))));
    // Missing rows.
    let mut c = set.init();
    set.update(&mut c, view_rows(&good, 0, 3), 0);
    assert!(matches!(set.finish(c), Err(Error::Invalid(_))));
    // A state of another reduction.
    let other = ReducerSet::new(&[ReduceOp::Max], ReduceAxis::All, DType::F64, 4, 2).expect("set");
    let mut d = other.init();
    other.update(&mut d, view_rows(&good, 0, 4), 0);
    assert!(matches!(set.finish(d), Err(Error::Invalid(_))));
    // Garbage from the wire.
    assert!(serde_json::from_str::<ReduceState>("{\"plan\":1}").is_err());
}

#[test]
fn states_roundtrip_through_json_with_nan_and_inf() {
    let arr = f64_2d(3, 2, vec![f64::NAN, 1.0, f64::INFINITY, 2.0, -1.0, 3.0]);
    for axis in AXES {
        let ops = all_ops();
        let set = ReducerSet::new(&ops, axis, DType::F64, 3, 2).expect("set");
        let mut p = set.init();
        set.update(&mut p, view_rows(&arr, 0, 2), 0);
        let text = serde_json::to_string(&p).expect("serialise");
        let mut back: ReduceState = serde_json::from_str(&text).expect("deserialise");
        let mut q = set.init();
        set.update(&mut q, view_rows(&arr, 2, 3), 2);
        let mut p2 = p.clone();
        set.merge(&mut back, q.clone());
        set.merge(&mut p2, q);
        let a = set.finish(back).expect("finish");
        let b = set.finish(p2).expect("finish");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

#[test]
fn non_contiguous_views_are_accepted() {
    let arr = Array2::from_shape_fn((6, 4), |(r, c)| (r * 4 + c) as f64);
    let t = arr.t();
    let set = ReducerSet::new(
        &[ReduceOp::Sum, ReduceOp::ArgMax],
        ReduceAxis::Axis0,
        DType::F64,
        4,
        6,
    )
    .expect("set");
    let mut p = set.init();
    set.update(&mut p, AnyView::F64(t), 0);
    let out = set.finish(p).expect("finish");
    assert_eq!(f64s(&out[0]), vec![6.0, 22.0, 38.0, 54.0, 70.0, 86.0]);
    assert_eq!(f64s(&out[1]), vec![3.0; 6]);
}

#[test]
fn state_bytes_scale_with_the_axis() {
    let mk = |axis| {
        ReducerSet::new(
            &[ReduceOp::Mean, ReduceOp::Std { ddof: 0 }],
            axis,
            DType::F64,
            1000,
            256,
        )
        .expect("set")
    };
    let all = mk(ReduceAxis::All);
    let axis0 = mk(ReduceAxis::Axis0);
    let axis1 = mk(ReduceAxis::Axis1);
    assert_eq!(all.state_bytes(10), all.state_bytes(1000));
    assert!(axis0.state_bytes(1) > 256 * 8 * 8);
    assert_eq!(axis0.state_bytes(10), axis0.state_bytes(1000));
    assert!(axis1.state_bytes(1000) > axis1.state_bytes(10));
    let f16 = ReducerSet::new(&[ReduceOp::Sum], ReduceAxis::All, DType::F16, 10, 10).expect("set");
    assert!(f16.state_bytes(0) >= 4 * TILE);
}

/// Rough single-thread throughput over a 64 MiB f64 block:
/// `cargo test --release -p outcore-exec -- --ignored throughput --nocapture`.
#[test]
#[ignore = "timing, run by hand in --release"]
fn throughput() {
    // OUTCORE_HOT=1: a 256 KiB array reduced 256 times (in cache: the
    // kernels' compute ceiling).
    let hot = std::env::var_os("OUTCORE_HOT").is_some();
    let row_len: usize = std::env::var("OUTCORE_ROWLEN")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(256);
    let (rows, row_len) = if hot {
        (32_768 / row_len, row_len)
    } else {
        ((1 << 23) / row_len, row_len)
    };
    let reps = if hot { 256 } else { 1 };
    let mut rng = Rng(99);
    let data: Vec<f64> = (0..rows * row_len).map(|_| rng.unit()).collect();
    let arr = f64_2d(rows, row_len, data);
    let bytes = (reps * rows * row_len * 8) as f64;
    for (name, ops, axis) in [
        ("sum all", vec![ReduceOp::Sum], ReduceAxis::All),
        ("sum axis0", vec![ReduceOp::Sum], ReduceAxis::Axis0),
        ("sum axis1", vec![ReduceOp::Sum], ReduceAxis::Axis1),
        (
            "mean+std all",
            vec![ReduceOp::Mean, ReduceOp::Std { ddof: 0 }],
            ReduceAxis::All,
        ),
        (
            "mean+std axis0",
            vec![ReduceOp::Mean, ReduceOp::Std { ddof: 0 }],
            ReduceAxis::Axis0,
        ),
        (
            "mean+std axis1",
            vec![ReduceOp::Mean, ReduceOp::Std { ddof: 0 }],
            ReduceAxis::Axis1,
        ),
        (
            "min+max axis0",
            vec![ReduceOp::Min, ReduceOp::Max],
            ReduceAxis::Axis0,
        ),
        (
            "min+max all",
            vec![ReduceOp::Min, ReduceOp::Max],
            ReduceAxis::All,
        ),
        ("argmax all", vec![ReduceOp::ArgMax], ReduceAxis::All),
        ("argmax axis0", vec![ReduceOp::ArgMax], ReduceAxis::Axis0),
        (
            "nanmean+nanstd axis0",
            vec![ReduceOp::NanMean, ReduceOp::NanStd { ddof: 0 }],
            ReduceAxis::Axis0,
        ),
        (
            "std axis0",
            vec![ReduceOp::Std { ddof: 0 }],
            ReduceAxis::Axis0,
        ),
        ("std all", vec![ReduceOp::Std { ddof: 0 }], ReduceAxis::All),
    ] {
        if std::env::var("OUTCORE_CASE").is_ok_and(|c| !name.contains(c.as_str())) {
            continue;
        }
        let set = ReducerSet::new(&ops, axis, DType::F64, rows as u64, row_len).expect("set");
        let tile = std::env::var("OUTCORE_TILE")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(2048usize)
            .div_ceil(row_len)
            .max(1);
        let mut best = f64::INFINITY;
        let tries = std::env::var("OUTCORE_TRIES")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(5);
        for _ in 0..tries {
            let t0 = std::time::Instant::now();
            for _ in 0..reps {
                let mut p = set.init();
                let mut r = 0;
                while r < rows {
                    set.update(&mut p, view_rows(&arr, r, (r + tile).min(rows)), r as u64);
                    r += tile;
                }
                std::hint::black_box(set.finish(p).expect("finish"));
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!("{name:>22}: {:6.2} GB/s", bytes / best / 1e9);
    }
}
