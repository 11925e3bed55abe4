//! The engine against answers computed by NumPy.
//!
//! `tests/fixtures/exec/` holds small inputs written by `np.save` and
//! `expected.json` with NumPy's results for every reduction along every
//! axis, plus the accuracy cases of the design (see
//! `tests/fixtures/make_expected.py`, which regenerates them):
//!
//! * a 10⁷-element float32 sum against `math.fsum` (the data is rebuilt
//!   here from the same formula, not committed);
//! * the standard deviation of data at 1e9 ± 1 against NumPy's two-pass
//!   `np.std`;
//! * a float16 sum past 65504, where NumPy's float16 `np.sum` gives inf
//!   and the engine must give the exact float64 sum.
//!
//! Among the inputs are the numerical extremes of `extremes.rs` (all-NaN
//! columns, sums overflowing to inf, subnormals, ±max, integer min/max,
//! one row, one column).

mod common;

use std::sync::OnceLock;

use common::{Json, close, close_rel, dtype_named, engine, fixtures_dir, same_bits, write_any};
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::{DType, ReadMode};
use outcore_exec::{AnyArray, Engine, Expr, ReduceAxis, ReduceOp, Scalar};

fn expected() -> &'static Json {
    static DOC: OnceLock<Json> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = fixtures_dir().join("exec/expected.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Json::parse(&text).expect("expected.json parses")
    })
}

fn op_of(r: &Json) -> ReduceOp {
    let name = r.get("op").str();
    let ddof = if r.get("ddof").is_null() {
        0
    } else {
        r.get("ddof").u64() as u32
    };
    ReduceOp::parse(name, ddof).unwrap_or_else(|| panic!("unknown op {name}"))
}

fn axis_of(r: &Json) -> ReduceAxis {
    match r.get("axis") {
        Json::Null => ReduceAxis::All,
        a => match a.u64() {
            0 => ReduceAxis::Axis0,
            1 => ReduceAxis::Axis1,
            n => panic!("axis {n}"),
        },
    }
}

/// Relative tolerance for float results; `scale` bounds the size of the
/// terms (so a sum that cancels to ~0 is not held to 1e-12 of itself).
fn float_ok(got: f64, want: f64, op: ReduceOp, scale: f64, n: f64) -> bool {
    let abs = match op {
        ReduceOp::Sum | ReduceOp::NanSum => 1e-13 * scale * n,
        ReduceOp::Mean | ReduceOp::NanMean => 1e-13 * scale,
        ReduceOp::Var { .. } | ReduceOp::NanVar { .. } => 1e-13 * scale * scale,
        ReduceOp::Std { .. } | ReduceOp::NanStd { .. } => {
            // The variance's tolerance carried through the square root.
            let tv = 1e-13 * scale * scale;
            (want * want + tv).sqrt() - (want * want - tv).max(0.0).sqrt()
        }
        _ => 0.0,
    };
    close(got, want, 1e-12 * want.abs() + abs)
}

/// Checks every NumPy result of input `name` with one engine
/// configuration; returns the failures.
fn check_input(name: &str, eng: &Engine) -> Vec<String> {
    let doc = expected();
    let entry = doc
        .get("inputs")
        .arr()
        .iter()
        .find(|e| e.get("name").str() == name)
        .unwrap_or_else(|| panic!("no input {name}"));
    let path = fixtures_dir().join(entry.get("file").str());
    let x = eng.open(&path).expect("open fixture");
    assert_eq!(x.dtype(), dtype_named(entry.get("dtype").str()));
    let shape: Vec<u64> = entry.get("shape").arr().iter().map(Json::u64).collect();
    assert_eq!(x.shape(), shape);
    let scale = entry.get("finite_absmax").f64();
    let mut failures = Vec::new();
    let results = entry.get("results").arr();
    let exprs: Vec<Expr> = results
        .iter()
        .map(|r| x.reduce(op_of(r), axis_of(r)))
        .collect();
    // Every result in one shared pass, then each alone (a different plan).
    let batch = eng.compute(exprs.clone());
    for (k, r) in results.iter().enumerate() {
        let (op, axis) = (op_of(r), axis_of(r));
        let what = format!(
            "{name}: {op}{} axis {axis:?}",
            match op.ddof() {
                Some(d) => format!("(ddof={d})"),
                None => String::new(),
            }
        );
        let single = eng.compute(&exprs[k]);
        let got = match (&batch, single) {
            (Ok(all), Ok(one)) => {
                let (a, b) = (all[k].to_scalars(), one.to_scalars());
                if all[k].dtype() != one.dtype()
                    || a.len() != b.len()
                    || a.iter().zip(&b).any(|(x, y)| !same_bits(*x, *y))
                {
                    failures.push(format!("{what}: batch {:?} != alone {one:?}", all[k]));
                }
                one
            }
            (_, Err(e)) => {
                failures.push(format!("{what}: error {e}"));
                continue;
            }
            (Err(e), Ok(one)) => {
                failures.push(format!("{what}: batch failed: {e}"));
                one
            }
        };
        if let Some(err) = r.try_get("error") {
            failures.push(format!(
                "{what}: NumPy raises ({}), engine gave {got:?}",
                err.str()
            ));
            continue;
        }
        let dtype = dtype_named(r.get("dtype").str());
        if got.dtype() != dtype {
            failures.push(format!("{what}: dtype {} != NumPy's {dtype}", got.dtype()));
        }
        let want_shape: Vec<usize> = r
            .get("shape")
            .arr()
            .iter()
            .map(|d| d.u64() as usize)
            .collect();
        if got.shape() != want_shape.as_slice() {
            failures.push(format!(
                "{what}: shape {:?} != NumPy's {want_shape:?}",
                got.shape()
            ));
            continue;
        }
        let n = match axis {
            ReduceAxis::All => shape.iter().product::<u64>(),
            ReduceAxis::Axis0 => shape[0],
            ReduceAxis::Axis1 => shape[1..].iter().product(),
        } as f64;
        for (i, (g, w)) in got
            .to_scalars()
            .into_iter()
            .zip(r.get("values").arr())
            .enumerate()
        {
            let ok = match (g, w) {
                (Scalar::Bool(b), Json::Bool(wb)) => b == *wb,
                (Scalar::Int(v), Json::Num(_)) => i128::from(v) == w.i128(),
                (Scalar::UInt(v), Json::Num(_)) => i128::from(v) == w.i128(),
                (Scalar::Float(v), Json::Str(_)) => {
                    let wf = w.f64();
                    if matches!(
                        op,
                        ReduceOp::Min | ReduceOp::Max | ReduceOp::NanMin | ReduceOp::NanMax
                    ) {
                        (v.is_nan() && wf.is_nan()) || v == wf
                    } else {
                        float_ok(v, wf, op, scale, n)
                    }
                }
                _ => false,
            };
            if !ok {
                failures.push(format!("{what}: value {i}: engine {g:?}, NumPy {w:?}"));
            }
        }
    }
    failures
}

const INPUTS: [&str; 16] = [
    "f64_nan_inf",
    "f32",
    "f16",
    "i16",
    "u8",
    "bool",
    "f64_3d",
    "i64_big",
    "u64_big",
    // The numerical extremes (indexed in extremes.rs).
    "f64_extremes",
    "f32_extremes",
    "f16_extremes",
    "i64_extremes",
    "u64_1col",
    "f64_1row",
    "i32_1col",
];

fn check_all_inputs(eng: &Engine) {
    let failures: Vec<String> = INPUTS.iter().flat_map(|n| check_input(n, eng)).collect();
    assert!(
        failures.is_empty(),
        "{} mismatches with NumPy:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_reduction_matches_numpy_one_block() {
    check_all_inputs(&engine(2, 64 << 20, ReadMode::Mmap));
}

#[test]
fn every_reduction_matches_numpy_one_row_blocks() {
    check_all_inputs(&engine(3, 1, ReadMode::Pread));
}

#[test]
fn every_reduction_matches_numpy_small_blocks() {
    // A few rows per block, single thread.
    check_all_inputs(&engine(1, 100, ReadMode::Mmap));
}

#[test]
fn fixture_files_cover_every_op_and_axis() {
    let doc = expected();
    assert!(!doc.get("numpy_version").str().is_empty());
    for entry in doc.get("inputs").arr() {
        let results = entry.get("results").arr();
        let rank = entry.get("shape").arr().len();
        let axes = if rank >= 2 { 3 } else { 2 };
        assert_eq!(results.len(), 18 * axes, "{}", entry.get("name").str());
    }
}

// ---------------------------------------------------------------------------
// Named accuracy cases.

/// x[i] = float32(((i * 2654435761) mod 2³²) / 2³²), as in make_expected.py.
fn golden_f32(i: u64) -> f32 {
    let v = (i * 2_654_435_761) % (1u64 << 32);
    (v as f64 / 4_294_967_296.0) as f32
}

#[test]
fn float32_sum_of_ten_million_matches_fsum() {
    let case = expected().get("named").get("f32_sum_1e7");
    let n = case.get("n").u64();
    // The formula is the same as NumPy's: check the first values.
    for (i, w) in case.get("first").arr().iter().enumerate() {
        assert_eq!(f64::from(golden_f32(i as u64)), w.f64(), "x[{i}]");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let data: Vec<f32> = (0..n).map(golden_f32).collect();
    write_any(
        &path,
        &AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[n as usize]), data).unwrap()),
    );
    let eng = engine(2, 8 << 20, ReadMode::Mmap);
    let x = eng.open(&path).unwrap();
    let (sum, mean) = eng.compute((x.sum(None), x.mean(None))).unwrap();
    let (sum, mean) = (sum.as_f64_scalar().unwrap(), mean.as_f64_scalar().unwrap());
    let fsum = case.get("fsum").f64();
    let abs_sum = case.get("abs_sum").f64();
    let numpy_f32 = case.get("numpy_f32_sum").f64();
    assert!(
        (sum - fsum).abs() < 1e-13 * abs_sum,
        "engine sum {sum} vs fsum {fsum}: error {:e} (bound {:e}; NumPy's float32 sum {numpy_f32} is off by {:e})",
        (sum - fsum).abs(),
        1e-13 * abs_sum,
        (numpy_f32 - fsum).abs()
    );
    assert!(close_rel(mean, fsum / n as f64, 1e-13), "mean {mean}");
}

fn var_1e9_values(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1e9 + ((i % 3) as f64 - 1.0)).collect()
}

#[test]
fn std_of_data_at_1e9_matches_numpy_two_pass() {
    let case = expected().get("named").get("var_1e9");
    let one = case.get("one_d");
    let n = one.get("n").u64() as usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let v = var_1e9_values(n);
    write_any(
        &path,
        &AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap()),
    );
    // Many small blocks, several threads: the Chan merge is exercised.
    for (threads, block) in [(1, 8 << 20), (3, 4096), (2, 800)] {
        let eng = engine(threads, block, ReadMode::Mmap);
        let x = eng.open(&path).unwrap();
        let got = eng
            .compute(vec![
                x.mean(None),
                x.var(None, 0),
                x.std(None, 0),
                x.var(None, 1),
                x.std(None, 1),
            ])
            .unwrap();
        let g: Vec<f64> = got.iter().map(|a| a.as_f64_scalar().unwrap()).collect();
        let ctx = format!("threads {threads}, block_bytes {block}");
        assert!(
            close_rel(g[0], one.get("mean").f64(), 1e-15),
            "{ctx}: mean {}",
            g[0]
        );
        for (k, key) in [
            (1, "var_ddof0"),
            (2, "std_ddof0"),
            (3, "var_ddof1"),
            (4, "std_ddof1"),
        ] {
            let want = one.get(key).f64();
            assert!(
                close_rel(g[k], want, 1e-9),
                "{ctx}: {key}: engine {} vs NumPy {want} (relative error {:e})",
                g[k],
                (g[k] - want).abs() / want
            );
        }
        let exact = one.get("exact_std_ddof0").f64();
        assert!(
            close_rel(g[2], exact, 1e-9),
            "{ctx}: std {} vs exact {exact}",
            g[2]
        );
    }

    // Along axis 0 of a (20001, 4) layout of the same formula.
    let two = case.get("two_d");
    let shape: Vec<usize> = two
        .get("shape")
        .arr()
        .iter()
        .map(|d| d.u64() as usize)
        .collect();
    let path2 = dir.path().join("y.npy");
    let v = var_1e9_values(shape[0] * shape[1]);
    write_any(
        &path2,
        &AnyArray::from(ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap()),
    );
    let eng = engine(3, 1000, ReadMode::Pread);
    let y = eng.open(&path2).unwrap();
    let (std0, var1, mean0) = eng.compute((y.std(0, 0), y.var(0, 1), y.mean(0))).unwrap();
    for (got, key, rel) in [
        (std0, "std_axis0_ddof0", 1e-9),
        (var1, "var_axis0_ddof1", 1e-9),
        (mean0, "mean_axis0", 1e-15),
    ] {
        let want: Vec<f64> = two.get(key).arr().iter().map(Json::f64).collect();
        let got = got.to_f64().into_raw_vec_and_offset().0;
        assert_eq!(got.len(), want.len(), "{key}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                close_rel(*g, *w, rel),
                "{key}: engine {got:?} vs NumPy {want:?}"
            );
        }
    }
}

#[test]
fn float16_sum_past_65504_is_exact() {
    let case = expected().get("named").get("f16_60000");
    // NumPy's own float16 accumulation overflows.
    assert!(case.get("numpy_f16_sum").f64().is_infinite());
    let path = fixtures_dir().join(case.get("file").str());
    for (threads, block) in [(1, 64 << 20), (2, 1), (3, 200)] {
        let eng = engine(threads, block, ReadMode::Mmap);
        let x = eng.open(&path).unwrap();
        assert_eq!(x.dtype(), DType::F16);
        let (sum, sum0, mean, max) = eng
            .compute((x.sum(None), x.sum(0), x.mean(None), x.max(None)))
            .unwrap();
        assert_eq!(sum.dtype(), DType::F64);
        assert_eq!(sum.as_f64_scalar().unwrap(), case.get("sum").f64());
        let want0: Vec<f64> = case.get("sum_axis0").arr().iter().map(Json::f64).collect();
        assert_eq!(sum0.to_f64().into_raw_vec_and_offset().0, want0);
        assert_eq!(mean.as_f64_scalar().unwrap(), case.get("mean").f64());
        assert_eq!(max.dtype(), DType::F16);
        assert_eq!(max.as_f64_scalar().unwrap(), 60000.0);
    }
}

#[test]
fn int64_sums_near_the_limit_are_exact() {
    // The i64_big and u64_big fixtures are checked with every op above;
    // here, the point of them: exact values past 2^53 and past 2^63.
    let eng = engine(2, 1, ReadMode::Mmap);
    let u = eng.open(fixtures_dir().join("exec/u64_big.npy")).unwrap();
    let s = eng.compute(u.sum(None)).unwrap();
    assert_eq!(s.dtype(), DType::U64);
    let want = (1u64 << 62) + 1 + 1 + (1 << 63) + 2 + (1 << 60) + 3 + 17 + (1 << 60) + 5;
    assert_eq!(s.to_scalars(), vec![Scalar::UInt(want)]);
    let i = eng.open(fixtures_dir().join("exec/i64_big.npy")).unwrap();
    let s = eng.compute(i.sum(0)).unwrap();
    assert_eq!(
        s.to_scalars(),
        vec![
            // 2^62 + (2^62 - 1) - 5 - (2^62 + 3) + 3: past i64::MAX on the way.
            Scalar::Int((1 << 62) - 6),
            Scalar::Int(-(1 << 62) + 17),
            Scalar::Int((1 << 61) + (1 << 61) - (1 << 61) + (1 << 60) + 12345),
        ]
    );
}
