//! NumPy's semantics, case by case: ties and NaN in argmin/argmax, the
//! nan-variants, infinities, empty and 0-d arrays, integer overflow,
//! dtypes of results, `map_blocks` (including panics), outputs that exist,
//! pass counts, and a memory limit too small to run.

mod common;

use std::path::{Path, PathBuf};

use common::{MODES, engine, read_any, write_any};
use half::f16;
use ndarray::{Array2, ArrayD, IxDyn};
use outcore_chunker::{DType, ReadMode};
use outcore_exec::{AnyArray, Engine, Error, Expr, ReduceAxis, ReduceOp, Scalar};
use tempfile::TempDir;

/// A tempdir holding the inputs of one test.
struct Files {
    dir: TempDir,
    n: usize,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
            n: 0,
        }
    }

    /// Writes `data` with `shape` and returns the path.
    fn put<T: Clone>(&mut self, shape: &[usize], data: Vec<T>) -> PathBuf
    where
        AnyArray: From<ArrayD<T>>,
    {
        self.n += 1;
        let path = self.dir.path().join(format!("in{}.npy", self.n));
        let a = AnyArray::from(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap());
        write_any(&path, &a);
        path
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Engines over the interesting paths: one big block, 1-row blocks with
/// several threads, both read modes.
fn engines() -> Vec<Engine> {
    vec![
        engine(1, 64 << 20, ReadMode::Mmap),
        engine(3, 1, ReadMode::Pread),
        engine(2, 1, MODES[0]),
    ]
}

fn f64s(a: &AnyArray) -> Vec<f64> {
    a.to_f64().iter().copied().collect()
}

fn one(eng: &Engine, e: Expr) -> Scalar {
    let a = eng.compute(e).unwrap();
    assert_eq!(a.shape(), &[] as &[usize], "a 0-d result");
    a.to_scalars()[0]
}

fn same_floats(got: &[f64], want: &[f64]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| (g.is_nan() && w.is_nan()) || g == w)
}

// ---------------------------------------------------------------------------
// argmin / argmax

#[test]
fn argmin_argmax_take_the_first_occurrence() {
    let mut f = Files::new();
    let p = f.put(
        &[3, 3],
        vec![3.0f64, 1.0, 9.0, 1.0, 5.0, 9.0, 2.0, 1.0, 9.0],
    );
    let q = f.put(&[9], vec![4i8, -2, 7, -2, 7, 0, 7, -2, 1]);
    let b = f.put(&[2, 3], vec![false, true, true, true, false, true]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        assert_eq!(one(&eng, x.argmin(None)), Scalar::Int(1));
        assert_eq!(one(&eng, x.argmax(None)), Scalar::Int(2));
        assert_eq!(eng.compute(x.argmin(0)).unwrap().dtype(), DType::I64);
        let y = eng.open(&q).unwrap();
        assert_eq!(one(&eng, y.argmin(None)), Scalar::Int(1));
        assert_eq!(one(&eng, y.argmax(None)), Scalar::Int(2));
        let z = eng.open(&b).unwrap();
        assert_eq!(one(&eng, z.argmax(None)), Scalar::Int(1));
        assert_eq!(one(&eng, z.argmin(None)), Scalar::Int(0));
        let (zmax0, zmin1) = eng.compute((z.argmax(0), z.argmin(1))).unwrap();
        assert_eq!(f64s(&zmax0), vec![1.0, 0.0, 0.0]);
        assert_eq!(f64s(&zmin1), vec![0.0, 1.0]);
    }
}

#[test]
fn argmin_argmax_per_axis_ties() {
    // [[3, 1, 9],
    //  [1, 5, 9],
    //  [2, 1, 9]]
    let mut f = Files::new();
    let p = f.put(
        &[3, 3],
        vec![3.0f64, 1.0, 9.0, 1.0, 5.0, 9.0, 2.0, 1.0, 9.0],
    );
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let (a0, a1, m0, m1) = eng
            .compute((x.argmin(0), x.argmin(1), x.argmax(0), x.argmax(1)))
            .unwrap();
        assert_eq!(f64s(&a0), vec![1.0, 0.0, 0.0], "argmin axis 0");
        assert_eq!(f64s(&a1), vec![1.0, 0.0, 1.0], "argmin axis 1");
        assert_eq!(f64s(&m0), vec![0.0, 1.0, 0.0], "argmax axis 0");
        assert_eq!(f64s(&m1), vec![2.0, 2.0, 2.0], "argmax axis 1");
    }
}

#[test]
fn argmin_argmax_return_the_first_nan() {
    let nan = f64::NAN;
    let mut f = Files::new();
    // [[1,   2,   nan],
    //  [nan, -5,  0  ],
    //  [-9,  nan, nan]]
    let p = f.put(&[3, 3], vec![1.0, 2.0, nan, nan, -5.0, 0.0, -9.0, nan, nan]);
    let h = f.put(
        &[4],
        vec![f16::from_f32(1.0), f16::NAN, f16::from_f32(-3.0), f16::NAN],
    );
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        assert_eq!(one(&eng, x.argmin(None)), Scalar::Int(2));
        assert_eq!(one(&eng, x.argmax(None)), Scalar::Int(2));
        let (a0, a1, m0) = eng
            .compute((x.argmin(0), x.argmin(1), x.argmax(0)))
            .unwrap();
        assert_eq!(f64s(&a0), vec![1.0, 2.0, 0.0]);
        assert_eq!(f64s(&a1), vec![2.0, 0.0, 1.0]);
        assert_eq!(f64s(&m0), vec![1.0, 2.0, 0.0]);
        let y = eng.open(&h).unwrap();
        assert_eq!(one(&eng, y.argmin(None)), Scalar::Int(1));
        assert_eq!(one(&eng, y.argmax(None)), Scalar::Int(1));
    }
}

#[test]
fn argmin_over_all_of_a_3d_array_is_the_flat_index() {
    let mut f = Files::new();
    let mut v: Vec<f32> = (0..24).map(|i| i as f32).collect();
    v[23] = -1.0; // x[1, 2, 3]
    v[6] = 100.0; // x[0, 1, 2]
    let p = f.put(&[2, 3, 4], v);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        assert_eq!(one(&eng, x.argmin(None)), Scalar::Int(23));
        assert_eq!(one(&eng, x.argmax(None)), Scalar::Int(6));
        let (a0, a1) = eng.compute((x.argmin(0), x.argmax(1))).unwrap();
        assert_eq!(a0.shape(), &[3, 4]);
        let mut want = vec![0.0; 12];
        want[11] = 1.0;
        want[6] = 1.0; // 100 at [0, 1, 2] loses to 18 at [1, 1, 2]
        assert_eq!(f64s(&a0), want);
        assert_eq!(f64s(&a1), vec![6.0, 10.0]); // 22 at [1, 2, 2]
    }
}

// ---------------------------------------------------------------------------
// NaN and infinities

#[test]
fn all_nan_columns_in_the_nan_variants() {
    let nan = f64::NAN;
    let mut f = Files::new();
    // Column 1 is all NaN; column 2 has one NaN.
    let p = f.put(&[3, 3], vec![1.0, nan, 4.0, 2.0, nan, nan, 6.0, nan, 5.0]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let got = eng
            .compute(vec![
                x.nansum(0),
                x.nanmean(0),
                x.nanmin(0),
                x.nanmax(0),
                x.nanvar(0, 0),
                x.nanstd(0, 1),
                x.sum(0),
                x.min(0),
            ])
            .unwrap();
        let want: [&[f64]; 8] = [
            &[9.0, 0.0, 9.0],
            &[3.0, nan, 4.5],
            &[1.0, nan, 4.0],
            &[6.0, nan, 5.0],
            &[14.0 / 3.0, nan, 0.25],
            &[7f64.sqrt(), nan, 0.5f64.sqrt()],
            &[9.0, nan, nan],
            &[1.0, nan, nan],
        ];
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            let g = f64s(g);
            let ok = g.len() == w.len()
                && g.iter()
                    .zip(w)
                    .all(|(a, b)| (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-15 * b.abs());
            assert!(ok, "output {k}: {g:?} != {w:?}");
        }
    }
}

#[test]
fn nansum_of_all_nan_is_zero_and_nanmean_nan() {
    let mut f = Files::new();
    let p = f.put(&[5], vec![f64::NAN; 5]);
    let q = f.put(&[2, 3], vec![f32::NAN; 6]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        assert_eq!(one(&eng, x.nansum(None)), Scalar::Float(0.0));
        assert!(matches!(one(&eng, x.nanmean(None)), Scalar::Float(v) if v.is_nan()));
        assert!(matches!(one(&eng, x.nanmax(None)), Scalar::Float(v) if v.is_nan()));
        assert!(matches!(one(&eng, x.nanstd(None, 0)), Scalar::Float(v) if v.is_nan()));
        let y = eng.open(&q).unwrap();
        let (s0, s1, m1) = eng
            .compute((y.nansum(0), y.nansum(1), y.nanmin(1)))
            .unwrap();
        assert_eq!(f64s(&s0), vec![0.0; 3]);
        assert_eq!(f64s(&s1), vec![0.0; 2]);
        assert_eq!(m1.dtype(), DType::F32);
        assert!(f64s(&m1).iter().all(|v| v.is_nan()));
    }
}

#[test]
fn inf_minus_inf_is_nan() {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let mut f = Files::new();
    let p = f.put(&[2, 3], vec![inf, -inf, 1.0, inf, 2.0, -inf]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let d = (&x - &x).sum(1);
        let (diff, sum0, sum1, mean, var1) = eng
            .compute((&x - &x, x.sum(0), x.sum(1), x.mean(None), d))
            .unwrap();
        assert!(same_floats(&f64s(&diff), &[nan, nan, 0.0, nan, 0.0, nan]));
        // [[inf, -inf, 1], [inf, 2, -inf]]
        assert!(same_floats(&f64s(&sum0), &[inf, -inf, -inf]));
        assert!(same_floats(&f64s(&sum1), &[nan, nan]));
        assert!(f64s(&mean)[0].is_nan());
        assert!(same_floats(&f64s(&var1), &[nan, nan]));
        let out = f.path().join(format!("diff{}.npy", eng.threads()));
        eng.write_npy(&(&x - &x), &out).unwrap();
        assert!(same_floats(
            &f64s(&read_any(&out)),
            &[nan, nan, 0.0, nan, 0.0, nan]
        ));
        // One infinity only: the sum and mean are that infinity, var NaN.
        let y = eng.open(f.put(&[3], vec![1.0, inf, 2.0])).unwrap();
        let (s, m, v, mx) = eng
            .compute((y.sum(None), y.mean(None), y.var(None, 0), y.max(None)))
            .unwrap();
        assert_eq!(f64s(&s), vec![inf]);
        assert_eq!(f64s(&m), vec![inf]);
        assert!(f64s(&v)[0].is_nan(), "var of [1, inf, 2] is NaN in NumPy");
        assert_eq!(f64s(&mx), vec![inf]);
    }
}

/// Variances past float64's range follow NumPy's
/// `mean(abs(x - x.mean())**2)`: finite values whose sum, deviations or
/// squares overflow give inf; a ±inf among them gives NaN (so does a NaN,
/// except in the nan-variants) wherever it comes — in the first row (the
/// shift), at the end of a group of rows, after the column has already
/// overflowed; over all elements, along rows of one run and of several.
/// Each expectation is NumPy's by that formula (the sums involved never
/// meet `+inf` and `-inf`, so no summation order can change them).
#[test]
fn variance_overflow_is_inf_and_inf_input_is_nan() {
    let (inf, nan, max) = (f64::INFINITY, f64::NAN, f64::MAX);
    let alt = |r: usize, v: f64| if r.is_multiple_of(2) { v } else { -v };
    // 70 x 7: c0 ±max; c1 ±max with +inf at row 60; c2 0..70 with inf at
    // row 0; c3 ±1e308 with NaN at row 10; c4 0..70; c5 0..70 with -inf at
    // row 31; c6 1e308 throughout (its sum overflows, so NumPy's mean is inf).
    let mut a = Vec::new();
    for r in 0..70 {
        let x = r as f64;
        a.extend([
            alt(r, max),
            if r == 60 { inf } else { alt(r, max) },
            if r == 0 { inf } else { x },
            if r == 10 { nan } else { alt(r, 1e308) },
            x,
            if r == 31 { -inf } else { x },
            1e308,
        ]);
    }
    // 2500 x 4 in [1e308, 1.5e308]: every sum overflows to +inf.
    let b: Vec<f64> = (0..10_000)
        .map(|i| 1e308 + (i % 7) as f64 * 0.07e308)
        .collect();
    // 3 x 5000 (rows longer than one run): 1e308 throughout; 0..5000 with
    // -inf at 4500; zeros but ±1.5e154 at 100 and 4200 (squares overflow).
    let mut c = vec![1e308; 5000];
    c.extend((0..5000).map(|j| if j == 4500 { -inf } else { j as f64 }));
    c.extend((0..5000).map(|j| match j {
        100 => 1.5e154,
        4200 => -1.5e154,
        _ => 0.0,
    }));
    let mut f = Files::new();
    let (pa, pb, pc) = (
        f.put(&[70, 7], a),
        f.put(&[2500, 4], b),
        f.put(&[3, 5000], c),
    );
    // (var, nanvar) of c4, 0..70, by ddof: (70² − 1) / 12 · 70 / (70 − ddof).
    let c4 = |ddof: u32| 4899.0 / 12.0 * 70.0 / f64::from(70 - ddof);
    let mut row_a = vec![inf; 70];
    for r in [0, 10, 31, 60] {
        row_a[r] = nan;
    }
    let mut nanrow_a = row_a.clone();
    nanrow_a[10] = inf;
    let mut col_c = vec![inf; 5000];
    col_c[4500] = nan;
    for eng in engines() {
        let (xa, xb, xc) = (
            eng.open(&pa).unwrap(),
            eng.open(&pb).unwrap(),
            eng.open(&pc).unwrap(),
        );
        for ddof in [0, 1] {
            // (input, its expression, axis, NumPy's var, NumPy's nanvar)
            type Case<'a> = (&'a str, &'a Expr, ReduceAxis, Vec<f64>, Vec<f64>);
            #[rustfmt::skip]
            let cases: Vec<Case<'_>> = vec![
                ("a", &xa, ReduceAxis::Axis0,
                 vec![inf, nan, nan, nan, c4(ddof), nan, inf],
                 vec![inf, nan, nan, inf, c4(ddof), nan, inf]),
                ("a", &xa, ReduceAxis::Axis1, row_a.clone(), nanrow_a.clone()),
                ("a", &xa, ReduceAxis::All, vec![nan], vec![nan]),
                ("b", &xb, ReduceAxis::Axis0, vec![inf; 4], vec![inf; 4]),
                ("b", &xb, ReduceAxis::Axis1, vec![inf; 2500], vec![inf; 2500]),
                ("b", &xb, ReduceAxis::All, vec![inf], vec![inf]),
                ("c", &xc, ReduceAxis::Axis0, col_c.clone(), col_c.clone()),
                ("c", &xc, ReduceAxis::Axis1, vec![inf, nan, inf], vec![inf, nan, inf]),
                ("c", &xc, ReduceAxis::All, vec![nan], vec![nan]),
            ];
            for (name, x, axis, var, nanvar) in cases {
                for (op, want) in [
                    (ReduceOp::Var { ddof }, var.clone()),
                    (ReduceOp::NanVar { ddof }, nanvar.clone()),
                    (
                        ReduceOp::Std { ddof },
                        var.iter().map(|v| v.sqrt()).collect(),
                    ),
                    (
                        ReduceOp::NanStd { ddof },
                        nanvar.iter().map(|v| v.sqrt()).collect(),
                    ),
                ] {
                    let got = f64s(&eng.compute(x.reduce(op, axis)).unwrap());
                    let ok = got.len() == want.len()
                        && got.iter().zip(&want).all(|(&g, &w)| {
                            if w.is_finite() {
                                (g - w).abs() <= 1e-12 * w
                            } else {
                                g.is_nan() && w.is_nan() || g == w
                            }
                        });
                    assert!(
                        ok,
                        "{name}: {op} along {axis:?} ({} threads): got {got:?}, NumPy {want:?}",
                        eng.threads()
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Empty and 0-d arrays

#[test]
fn min_of_an_empty_array_is_an_error_naming_the_op() {
    let mut f = Files::new();
    let p = f.put(&[0], Vec::<f64>::new());
    let q = f.put(&[0, 5], Vec::<i32>::new());
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        for op in [
            ReduceOp::Min,
            ReduceOp::Max,
            ReduceOp::ArgMin,
            ReduceOp::ArgMax,
            ReduceOp::NanMin,
            ReduceOp::NanMax,
        ] {
            for axis in [ReduceAxis::All, ReduceAxis::Axis0] {
                let err = eng.compute(x.reduce(op, axis)).unwrap_err();
                assert!(
                    matches!(&err, Error::Empty { op: name, .. } if name == op.name()),
                    "{op} {axis:?}: {err:?}"
                );
                let msg = err.to_string();
                assert!(
                    msg.starts_with(&format!("{} of an empty", op.name())),
                    "{msg}"
                );
            }
        }
        let y = eng.open(&q).unwrap();
        let err = eng.compute(y.min(0)).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        assert!(err.to_string().contains("min"), "{err}");
        // Along axis 1 of (0, 5) there are no results and nothing to refuse.
        let r = eng.compute(y.min(1)).unwrap();
        assert_eq!(r.shape(), &[0]);
        assert_eq!(r.dtype(), DType::I32);
        // The other reductions of empty input: sum 0, mean NaN.
        assert_eq!(one(&eng, x.sum(None)), Scalar::Float(0.0));
        assert_eq!(one(&eng, x.nansum(None)), Scalar::Float(0.0));
        assert!(matches!(one(&eng, x.mean(None)), Scalar::Float(v) if v.is_nan()));
        assert!(matches!(one(&eng, x.var(None, 0)), Scalar::Float(v) if v.is_nan()));
        assert_eq!(one(&eng, y.sum(None)), Scalar::Int(0));
    }
}

#[test]
fn empty_rows_0x5() {
    let mut f = Files::new();
    let p = f.put(&[0, 5], Vec::<f64>::new());
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let (s0, s1, m0, n0) = eng
            .compute((x.sum(0), x.sum(1), x.mean(0), x.nansum(0)))
            .unwrap();
        assert_eq!(s0.shape(), &[5]);
        assert_eq!(s0.dtype(), DType::F64);
        assert_eq!(f64s(&s0), vec![0.0; 5]);
        assert_eq!(s1.shape(), &[0]);
        assert!(f64s(&m0).iter().all(|v| v.is_nan()) && m0.shape() == [5]);
        assert_eq!(f64s(&n0), vec![0.0; 5]);
        assert!(eng.compute(x.argmax(0)).is_err());
        let a1 = eng.compute(x.argmax(1)).unwrap();
        assert_eq!(a1.shape(), &[0]);
        // (5, 0): the mirror image.
        let y = eng.open(f.put(&[5, 0], Vec::<u16>::new())).unwrap();
        let (s0, s1) = eng.compute((y.sum(0), y.sum(1))).unwrap();
        assert_eq!(s0.shape(), &[0]);
        assert_eq!(s1.dtype(), DType::U64);
        assert_eq!(s1.to_scalars(), vec![Scalar::UInt(0); 5]);
        assert!(matches!(eng.compute(y.max(1)), Err(Error::Empty { .. })));
        assert_eq!(eng.compute(y.max(0)).unwrap().shape(), &[0]);
        // Elementwise over empty rows writes an empty array.
        let out = f.path().join(format!("e{}.npy", eng.threads()));
        eng.write_npy(&(&x * 2.0), &out).unwrap();
        assert_eq!(read_any(&out).shape(), &[0, 5]);
    }
}

#[test]
fn zero_d_array() {
    let mut f = Files::new();
    let p = f.put(&[], vec![-2.25f64]);
    let q = f.put(&[], vec![7u8]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        assert_eq!(x.shape(), Vec::<u64>::new());
        let got = eng
            .compute(vec![
                x.sum(None),
                x.mean(None),
                x.min(None),
                x.argmax(None),
                x.std(None, 0),
            ])
            .unwrap();
        for g in &got {
            assert_eq!(g.shape(), &[] as &[usize]);
        }
        assert_eq!(
            got.iter().map(|g| f64s(g)[0]).collect::<Vec<_>>(),
            vec![-2.25, -2.25, -2.25, 0.0, 0.0]
        );
        // No axis 0 or 1 on a 0-d array (NumPy: AxisError).
        assert!(eng.compute(x.sum(0)).is_err());
        assert!(eng.compute(x.sum(1)).is_err());
        let out = f.path().join(format!("z{}.npy", eng.threads()));
        eng.write_npy(&(&x * 2.0), &out).unwrap();
        let back = read_any(&out);
        assert_eq!(back.shape(), &[] as &[usize]);
        assert_eq!(f64s(&back), vec![-4.5]);
        let y = eng.open(&q).unwrap();
        assert_eq!(one(&eng, y.sum(None)), Scalar::UInt(7));
        assert_eq!(one(&eng, y.max(None)), Scalar::UInt(7));
    }
}

#[test]
fn axis_1_of_a_1d_array_is_an_error() {
    let mut f = Files::new();
    let p = f.put(&[4], vec![1.0f64, 2.0, 3.0, 4.0]);
    let eng = engine(1, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    assert!(x.sum(1).check().is_err());
    assert!(eng.compute(x.mean(1)).is_err());
    // Axis 0 of a 1-d array reduces everything, to a 0-d result.
    let s = eng.compute(x.sum(0)).unwrap();
    assert_eq!(s.shape(), &[] as &[usize]);
    assert_eq!(f64s(&s), vec![10.0]);
}

// ---------------------------------------------------------------------------
// Integer and bool sums

#[test]
fn int64_sum_overflow_is_an_error() {
    let mut f = Files::new();
    let p = f.put(&[2], vec![i64::MAX, 1]);
    let q = f.put(&[3, 1], vec![i64::MIN, -1, 0]);
    let u = f.put(&[2], vec![u64::MAX, 1]);
    // Intermediate sums past i64::MAX are fine when the total fits.
    let ok = f.put(&[4], vec![i64::MAX, 1, -1, 0]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let err = eng.compute(x.sum(None)).unwrap_err();
        assert!(matches!(err, Error::IntegerOverflow { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("int64") && msg.contains("9223372036854775808"),
            "{msg}"
        );
        assert!(matches!(
            eng.compute(x.nansum(0)),
            Err(Error::IntegerOverflow { .. })
        ));
        let y = eng.open(&q).unwrap();
        assert!(matches!(
            eng.compute(y.sum(0)),
            Err(Error::IntegerOverflow { .. })
        ));
        // Along axis 1 each row alone fits.
        assert_eq!(
            eng.compute(y.sum(1)).unwrap().to_scalars(),
            vec![Scalar::Int(i64::MIN), Scalar::Int(-1), Scalar::Int(0)]
        );
        let z = eng.open(&u).unwrap();
        let err = eng.compute(z.sum(None)).unwrap_err();
        assert!(err.to_string().contains("uint64"), "{err}");
        let w = eng.open(&ok).unwrap();
        assert_eq!(one(&eng, w.sum(None)), Scalar::Int(i64::MAX));
        // The mean of values whose sum overflows is still fine (float64).
        let m = one(&eng, x.mean(None));
        assert_eq!(m, Scalar::Float(i64::MAX as f64 / 2.0 + 0.5));
    }
}

#[test]
fn uint64_sum_near_2_pow_64_is_exact() {
    let mut f = Files::new();
    let p = f.put(&[3], vec![u64::MAX - 10, 5, 5]);
    let q = f.put(&[2, 2], vec![1u64 << 63, 3, (1u64 << 63) - 1, 4]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let s = eng.compute(x.sum(None)).unwrap();
        assert_eq!(s.dtype(), DType::U64);
        assert_eq!(s.to_scalars(), vec![Scalar::UInt(u64::MAX)]);
        assert_eq!(one(&eng, x.max(None)), Scalar::UInt(u64::MAX - 10));
        let y = eng.open(&q).unwrap();
        assert_eq!(
            eng.compute(y.sum(0)).unwrap().to_scalars(),
            vec![Scalar::UInt(u64::MAX), Scalar::UInt(7)]
        );
    }
}

#[test]
fn bool_sum_is_a_count_and_mean_a_fraction() {
    let mut f = Files::new();
    let v = vec![true, false, true, true, false, true, false, false];
    let p = f.put(&[4, 2], v);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let (s, s0, s1, m, m0) = eng
            .compute((x.sum(None), x.sum(0), x.sum(1), x.mean(None), x.mean(0)))
            .unwrap();
        assert_eq!(s.dtype(), DType::I64);
        assert_eq!(s.to_scalars(), vec![Scalar::Int(4)]);
        // [[T, F], [T, T], [F, T], [F, F]]
        assert_eq!(s0.to_scalars(), vec![Scalar::Int(2), Scalar::Int(2)]);
        assert_eq!(
            s1.to_scalars(),
            vec![
                Scalar::Int(1),
                Scalar::Int(2),
                Scalar::Int(1),
                Scalar::Int(0)
            ]
        );
        assert_eq!(m.dtype(), DType::F64);
        assert_eq!(f64s(&m), vec![0.5]);
        assert_eq!(f64s(&m0), vec![0.5, 0.5]);
        // The count of a comparison: a common idiom.
        assert_eq!(one(&eng, x.cast(DType::I8).gt(0).sum(None)), Scalar::Int(4));
    }
}

#[test]
fn min_max_keep_the_input_dtype() {
    let mut f = Files::new();
    let h = f.put(
        &[2, 2],
        vec![
            f16::from_f32(1.5),
            f16::from_f32(-65504.0),
            f16::from_f32(65504.0),
            f16::from_f32(0.25),
        ],
    );
    let i = f.put(&[3], vec![-128i8, 127, 0]);
    let b = f.put(&[2, 2], vec![false, true, false, false]);
    for eng in engines() {
        let x = eng.open(&h).unwrap();
        let (mn, mx, mx0, nmn) = eng
            .compute((x.min(None), x.max(None), x.max(0), x.nanmin(1)))
            .unwrap();
        assert_eq!(mn, AnyArray::scalar(f16::from_f32(-65504.0)));
        assert_eq!(mx, AnyArray::scalar(f16::from_f32(65504.0)));
        assert_eq!(mx0.dtype(), DType::F16);
        assert_eq!(f64s(&mx0), vec![65504.0, 0.25]);
        assert_eq!(nmn.dtype(), DType::F16);
        let y = eng.open(&i).unwrap();
        let (mn, mx) = eng.compute((y.min(None), y.max(None))).unwrap();
        assert_eq!(mn, AnyArray::scalar(-128i8));
        assert_eq!(mx, AnyArray::scalar(127i8));
        let z = eng.open(&b).unwrap();
        let (mn, mx, mx1) = eng.compute((z.min(None), z.max(None), z.max(1))).unwrap();
        assert_eq!(mn, AnyArray::scalar(false));
        assert_eq!(mx, AnyArray::scalar(true));
        assert_eq!(
            mx1.to_scalars(),
            vec![Scalar::Bool(true), Scalar::Bool(false)]
        );
        // The sums of those widen: float64, int64.
        let (hs, ys) = eng.compute((x.sum(None), y.sum(None))).unwrap();
        assert_eq!(hs.dtype(), DType::F64);
        assert_eq!(ys.to_scalars(), vec![Scalar::Int(-1)]);
    }
}

#[test]
fn ddof_at_least_n_is_nan() {
    let mut f = Files::new();
    let p = f.put(&[2, 2], vec![1.0f64, 5.0, 2.0, 5.0]);
    let q = f.put(&[2], vec![3i32, 8]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let got = eng
            .compute(vec![
                x.var(None, 4),
                x.std(None, 5),
                x.var(0, 2),
                x.std(0, 1),
                x.nanvar(1, 2),
                x.nanstd(None, 4),
            ])
            .unwrap();
        assert!(f64s(&got[0])[0].is_nan());
        assert!(f64s(&got[1])[0].is_nan());
        assert!(f64s(&got[2]).iter().all(|v| v.is_nan()), "{:?}", got[2]);
        assert_eq!(f64s(&got[3]), vec![0.5f64.sqrt(), 0.0]);
        assert!(f64s(&got[4]).iter().all(|v| v.is_nan()));
        assert!(f64s(&got[5])[0].is_nan());
        let y = eng.open(&q).unwrap();
        assert!(matches!(one(&eng, y.var(None, 2)), Scalar::Float(v) if v.is_nan()));
        assert_eq!(one(&eng, y.var(None, 1)), Scalar::Float(12.5));
    }
}

// ---------------------------------------------------------------------------
// Elementwise dtypes (NEP 50) and casts

#[test]
fn elementwise_dtypes_follow_nep50() {
    let mut f = Files::new();
    let x32 = f.put(&[3], vec![1.5f32, -2.0, 3.0]);
    let i8p = f.put(&[3], vec![127i8, -128, 5]);
    let u8p = f.put(&[3], vec![255u8, 0, 7]);
    let bp = f.put(&[3], vec![true, false, true]);
    let eng = engine(2, 1, ReadMode::Mmap);
    let x = eng.open(&x32).unwrap();
    let i = eng.open(&i8p).unwrap();
    let u = eng.open(&u8p).unwrap();
    let b = eng.open(&bp).unwrap();
    let cases: Vec<(Expr, DType)> = vec![
        (&x * 2.0, DType::F32),
        (&x + 1, DType::F32),
        (&i + 1, DType::I8),
        (&i * 2.5, DType::F64),
        (&i / 2, DType::F64),
        (&u + &i, DType::I16),
        (&b + 1, DType::I64),
        (&b * 1.5, DType::F64),
        (i.sqrt(), DType::F16),
        (u.cast(DType::U16).sqrt(), DType::F32),
        (&x + &i, DType::F32),
        (&x + &u.cast(DType::I32), DType::F64),
        (x.gt(0), DType::Bool),
        (x.clip(-1.0, 2.0), DType::F32),
        (i.clip(0, 10), DType::I8),
    ];
    for (e, d) in &cases {
        assert_eq!(e.dtype(), *d, "{e}");
        let got = eng.compute(e).unwrap();
        assert_eq!(got.dtype(), *d, "{e}");
    }
    // Integer arithmetic wraps as NumPy's does.
    assert_eq!(
        eng.compute(&i + 1).unwrap().to_scalars(),
        vec![Scalar::Int(-128), Scalar::Int(-127), Scalar::Int(6)]
    );
    assert_eq!(
        eng.compute(&u + &i).unwrap().to_scalars(),
        vec![Scalar::Int(382), Scalar::Int(-128), Scalar::Int(12)]
    );
    // float32 rounding after each op: 1.5f32 * 0.1 rounds to float32.
    let r = eng.compute(&x * 0.1).unwrap();
    assert_eq!(
        r,
        AnyArray::from(
            ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.5f32 * 0.1f32, -0.2f32, 3.0f32 * 0.1f32])
                .unwrap()
        )
    );
    // Sum of the bools through a cast and an int literal.
    assert_eq!(one(&eng, (&b + 1).sum(None)), Scalar::Int(5));
}

// Expr::cast documents: float → int truncates toward zero and saturates,
// NaN → 0; float64 → float16 overflows to ±inf; → bool is x != 0 (NaN →
// true). (NumPy leaves out-of-range float → int undefined; the engine
// promises saturation.)
const CAST_INPUT: [f64; 6] = [f64::NAN, 1e10, -1e10, 2.9, -2.9, 1e30];

fn cast_input(f: &mut Files, dtype: DType) -> AnyArray {
    let p = f.put(&[6], CAST_INPUT.to_vec());
    let eng = engine(1, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    eng.compute(x.cast(dtype)).unwrap()
}

#[test]
fn cast_float64_to_int64_saturates_and_nan_is_zero() {
    let got = cast_input(&mut Files::new(), DType::I64);
    assert_eq!(
        got.to_scalars(),
        [0, 10_000_000_000, -10_000_000_000, 2, -2, i64::MAX].map(Scalar::Int)
    );
}

#[test]
fn cast_float64_to_int32_saturates() {
    let got = cast_input(&mut Files::new(), DType::I32);
    assert_eq!(
        got.to_scalars(),
        [0, i32::MAX, i32::MIN, 2, -2, i32::MAX].map(|v| Scalar::Int(v.into())),
        "float64 → int32 must saturate, as documented on Expr::cast"
    );
}

#[test]
fn cast_float64_to_uint8_saturates() {
    let got = cast_input(&mut Files::new(), DType::U8);
    assert_eq!(
        got.to_scalars(),
        [0u64, 255, 0, 2, 0, 255].map(Scalar::UInt),
        "float64 → uint8 must saturate, as documented on Expr::cast"
    );
}

#[test]
fn cast_float64_to_float16_and_bool() {
    let mut f = Files::new();
    let h = f64s(&cast_input(&mut f, DType::F16));
    assert!(h[0].is_nan() && h[1] == f64::INFINITY && h[2] == f64::NEG_INFINITY);
    assert_eq!(h[3], f16::from_f64(2.9).to_f64());
    let b = cast_input(&mut f, DType::Bool);
    assert_eq!(b.to_scalars(), [true; 6].map(Scalar::Bool));
}

/// The same rule for reduced values: a cast of a reduction result, alone
/// or broadcast into a streamed expression (scalar, per-column and per-row
/// operands take other kernel paths than whole tiles).
#[test]
fn casts_of_reduced_values_saturate_too() {
    let mut f = Files::new();
    let p = f.put(&[2, 2], vec![1e10f64, -1e10, 5.0, -5.0]);
    let z = f.put(&[2, 2], vec![0i32; 4]);
    let eng = engine(1, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let zero = eng.open(&z).unwrap();
    let max = i64::from(i32::MAX);
    let min = i64::from(i32::MIN);
    let (all, col, row) = eng
        .compute((
            x.max(None).cast(DType::I32),
            x.sum(0).cast(DType::I32),
            x.min(1).cast(DType::I32),
        ))
        .unwrap();
    assert_eq!(
        all.to_scalars(),
        vec![Scalar::Int(max)],
        "max(x).astype(int32)"
    );
    assert_eq!(
        col.to_scalars(),
        vec![Scalar::Int(max), Scalar::Int(min)],
        "sum(x, 0).astype(int32)"
    );
    assert_eq!(
        row.to_scalars(),
        vec![Scalar::Int(min), Scalar::Int(-5)],
        "min(x, 1).astype(int32)"
    );
    let (b_all, b_col, b_row) = eng
        .compute((
            &zero + &x.max(None).cast(DType::I32),
            &zero + &x.sum(0).cast(DType::I32),
            &zero + &x.min(1).cast(DType::I32),
        ))
        .unwrap();
    assert_eq!(
        b_all.to_scalars(),
        vec![Scalar::Int(max); 4],
        "zero + max(x).astype(int32)"
    );
    assert_eq!(
        b_col.to_scalars(),
        [max, min, max, min].map(Scalar::Int),
        "zero + sum(x, 0).astype(int32)"
    );
    assert_eq!(
        b_row.to_scalars(),
        [min, min, -5, -5].map(Scalar::Int),
        "zero + min(x, 1).astype(int32)"
    );
}

// ---------------------------------------------------------------------------
// map_blocks

#[test]
fn map_blocks_doubling_and_changing_the_row_length() {
    let mut f = Files::new();
    let data: Vec<f64> = (0..40).map(|i| i as f64 * 0.5 - 3.0).collect();
    let p = f.put(&[10, 4], data.clone());
    let ip = f.put(&[10, 4], (0..40).collect::<Vec<i32>>());
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let doubled = x.map_blocks::<f64, f64, _>(4, |b| b.mapv(|v| v * 2.0));
        let got = eng.compute(&doubled).unwrap();
        assert_eq!(got.shape(), &[10, 4]);
        assert_eq!(f64s(&got), data.iter().map(|v| v * 2.0).collect::<Vec<_>>());
        // Row sums and row maxima: a new row length of 2.
        let stats = x.map_blocks::<f64, f64, _>(2, |b| {
            Array2::from_shape_fn((b.nrows(), 2), |(r, c)| {
                let row = b.row(r);
                if c == 0 {
                    row.sum()
                } else {
                    row.fold(f64::MIN, |a, &v| a.max(v))
                }
            })
        });
        assert_eq!(stats.shape(), vec![10, 2]);
        let got = eng.compute(&stats).unwrap();
        let want: Vec<f64> = data
            .chunks(4)
            .flat_map(|r| [r.iter().sum(), r.iter().copied().fold(f64::MIN, f64::max)])
            .collect();
        assert_eq!(f64s(&got), want);
        // Composed: reduce and write the mapped values.
        let total = eng.compute(stats.sum(0)).unwrap();
        assert_eq!(f64s(&total)[0], data.iter().sum::<f64>());
        let out = f.path().join(format!("m{}.npy", eng.threads()));
        eng.write_npy(&(&doubled + 1.0), &out).unwrap();
        assert_eq!(
            f64s(&read_any(&out)),
            data.iter().map(|v| v * 2.0 + 1.0).collect::<Vec<_>>()
        );
        // The input is cast to the closure's dtype; the output dtype is U.
        let ix = eng.open(&ip).unwrap();
        let neg = ix.map_blocks::<f64, f32, _>(4, |b| b.mapv(|v| -v as f32));
        let got = eng.compute(&neg).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        assert_eq!(
            f64s(&got),
            (0..40).map(|v| -f64::from(v)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_panicking_map_blocks_is_an_error_and_leaves_no_file() {
    let mut f = Files::new();
    let p = f.put(&[50, 3], vec![1.0f64; 150]);
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let bad = x.map_blocks::<f64, f64, _>(3, |b| {
            if b.nrows() > 0 {
                panic!("deliberate failure in a user closure");
            }
            b.to_owned()
        });
        let err = eng.compute(bad.sum(None)).unwrap_err();
        assert!(
            matches!(&err, Error::Panic(m) if m.contains("deliberate failure")),
            "{err:?}"
        );
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("out.npy");
        let err = eng.write_npy(&(&bad * 2.0), &out).unwrap_err();
        assert!(matches!(err, Error::Panic(_)), "{err:?}");
        let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
        // A wrong block shape is an error too, not a panic.
        let wrong = x.map_blocks::<f64, f64, _>(3, |b| b.slice(ndarray::s![.., ..2]).to_owned());
        assert!(matches!(eng.compute(&wrong), Err(Error::Shape(_))));
        let err = eng.write_npy(&wrong, &out).unwrap_err();
        assert!(matches!(err, Error::Shape(_)), "{err:?}");
        assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
        // The engine still works afterwards.
        assert_eq!(one(&eng, x.sum(None)), Scalar::Float(150.0));
    }
}

// ---------------------------------------------------------------------------
// Outputs, plans and the budget

/// An output that cannot be created is an error before any of the run's
/// work: the engine creates it (allocating its whole size) before the
/// first pass or operator, so standardize does not read its input for the
/// statistics first, a sort of a computed array does not compute and
/// spill it, a write that needs a median does not compute the median.
/// The blocks a `map_blocks` sees are counted; the same writes into a
/// directory that exists do read them.
#[test]
fn an_output_that_cannot_be_created_fails_before_any_block_is_read() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let mut f = Files::new();
    let p = f.put(&[200, 3], (0..600).map(f64::from).collect::<Vec<f64>>());
    let missing = f.path().join("no-such-dir").join("out.npy");
    for eng in engines() {
        let x = eng.open(&p).unwrap();
        let blocks = Arc::new(AtomicUsize::new(0));
        let counter = blocks.clone();
        let y = x.map_blocks::<f64, f64, _>(3, move |b| {
            counter.fetch_add(1, SeqCst);
            b.to_owned()
        });
        let cases = [
            ("standardize", (&y - &y.mean(0)) / &y.std(0, 0)),
            ("sort", (&y * 2.0).sort()),
            ("minus the median", &y - &y.median(0)),
        ];
        for (what, e) in cases {
            let err = eng.write_npy(&e, &missing).unwrap_err();
            assert!(
                matches!(
                    &err,
                    Error::Array(outcore_chunker::Error::Io { path, .. })
                        if path.ends_with("no-such-dir")
                ),
                "{what}: {err:?}"
            );
            assert_eq!(
                blocks.load(SeqCst),
                0,
                "{what}: blocks read before the error"
            );
            let out = f.path().join("out.npy");
            eng.write_npy(&e, &out).unwrap();
            assert!(blocks.swap(0, SeqCst) > 0, "{what}: no block counted");
            std::fs::remove_file(&out).unwrap();
        }
    }
}

#[test]
fn writing_to_an_existing_path_is_an_error() {
    let mut f = Files::new();
    let p = f.put(&[4], vec![1.0f64, 2.0, 3.0, 4.0]);
    let eng = engine(2, 1, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let out = f.path().join("out.npy");
    std::fs::write(&out, b"precious").unwrap();
    let err = eng.write_npy(&(&x * 2.0), &out).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Array(outcore_chunker::Error::OutputExists { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("out.npy"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // Writing onto the input itself is refused the same way.
    assert!(eng.write_npy(&(&x * 2.0), &p).is_err());
    assert_eq!(f64s(&read_any(&p)), vec![1.0, 2.0, 3.0, 4.0]);
    // With overwrite on, it is replaced.
    let eng2 = Engine::builder()
        .memory_limit(16 << 20)
        .overwrite(true)
        .fsync(false)
        .build()
        .unwrap();
    eng2.write_npy(&(&x * 2.0), &out).unwrap();
    assert_eq!(f64s(&read_any(&out)), vec![2.0, 4.0, 6.0, 8.0]);
}

#[test]
fn explain_counts_passes() {
    let mut f = Files::new();
    let p = f.put(&[100, 4], vec![1.0f64; 400]);
    let eng = engine(2, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let z = (&x - &x.mean(0)) / &x.std(0, 0);
    let plan = eng.explain(&z).unwrap();
    assert_eq!(
        plan.passes.len(),
        2,
        "standardize: a stats pass and a write pass\n{plan}"
    );
    let plan = eng.explain((x.mean(0), x.std(0, 0))).unwrap();
    assert_eq!(plan.passes.len(), 1, "mean and std share one pass\n{plan}");
    let plan = eng
        .explain((
            x.mean(0),
            x.std(0, 0),
            x.min(1),
            x.argmax(None),
            x.nansum(0),
        ))
        .unwrap();
    assert_eq!(
        plan.passes.len(),
        1,
        "independent reductions share one pass\n{plan}"
    );
    // The run agrees with the plan.
    let out = f.path().join("z.npy");
    let report = eng.write_npy(&z, &out).unwrap();
    assert_eq!(report.passes, 2);
    let (_, report) = eng.compute_with_report((x.mean(0), x.std(0, 0))).unwrap();
    assert_eq!(report.passes, 1);
}

#[test]
fn a_limit_too_small_is_refused_with_the_numbers() {
    let mut f = Files::new();
    let p = f.put(&[10, 1000], vec![0.5f64; 10_000]);
    let tiny = Engine::builder()
        .memory_limit(1000)
        .threads(1)
        .build()
        .unwrap();
    let x = tiny.open(&p).unwrap();
    let err = tiny.compute(x.sum(0)).unwrap_err();
    let Error::LimitTooSmall {
        limit,
        row_bytes,
        minimum,
        ..
    } = err
    else {
        panic!("expected LimitTooSmall, got {err:?}");
    };
    assert_eq!(limit, 1000);
    assert!(
        row_bytes >= 8000,
        "one row of 1000 float64 is 8000 bytes: {row_bytes}"
    );
    assert!(minimum > limit && minimum >= row_bytes);
    let msg = err.to_string();
    for n in [limit, row_bytes, minimum] {
        let text = outcore_spill::format_bytes(n);
        assert!(msg.contains(&text), "{msg:?} lacks {text:?}");
    }
    // The same refusal before running: explain.
    assert!(matches!(
        tiny.explain(x.sum(0)),
        Err(Error::LimitTooSmall { .. })
    ));
    // "the smallest limit that works" does work.
    let enough = Engine::builder()
        .memory_limit(minimum)
        .threads(1)
        .build()
        .unwrap();
    let x = enough.open(&p).unwrap();
    let s = enough.compute(x.sum(0)).unwrap();
    assert_eq!(f64s(&s), vec![5.0; 1000]);
}

#[test]
fn mismatched_shapes_are_errors_not_panics() {
    let mut f = Files::new();
    let a = f.put(&[4, 3], vec![1.0f64; 12]);
    let b = f.put(&[5, 3], vec![1.0f64; 15]);
    let eng = engine(1, 1 << 20, ReadMode::Mmap);
    let (x, y) = (eng.open(&a).unwrap(), eng.open(&b).unwrap());
    assert!((&x + &y).check().is_err());
    assert!(eng.compute(&x + &y).is_err());
    // A per-row value does not broadcast over the wrong number of rows.
    assert!(eng.compute(&x - &y.mean(1)).is_err());
    // Reducing an already reduced value is refused.
    assert!(eng.compute(x.sum(0).sum(None)).is_err());
    // Bool arithmetic and a non-bool condition are refused.
    assert!(eng.compute(-&x.gt(0)).is_err());
    assert!(eng.compute(x.select(1.0, 2.0)).is_err());
}

#[test]
fn the_same_expression_twice() {
    let mut f = Files::new();
    let p = f.put(&[3], vec![1i16, 2, 3]);
    let eng = engine(2, 1, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let s = x.sum(None);
    let (a, b, c) = eng.compute((&s, &s, &(&x * 2))).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_scalars(), vec![Scalar::Int(6)]);
    assert_eq!(c.to_scalars(), [2, 4, 6].map(Scalar::Int));
}

/// Regression: broadcasting a per-column or per-row reduction over rows of
/// length 0 (shape (R, 0) or (R, 3, 0)) must give an empty result, as in
/// NumPy, not a panic inside the kernel (`chunks_exact(0)` in
/// `eval::apply2`).
#[test]
fn broadcast_over_zero_length_rows() {
    let mut f = Files::new();
    let p = f.put(&[2, 0], Vec::<f64>::new());
    let q = f.put(&[1, 3, 0], Vec::<f32>::new());
    let eng = engine(1, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let got = eng.compute(&x - &x.mean(0));
    assert!(got.is_ok(), "x - x.mean(0) on shape (2, 0): {got:?}");
    assert_eq!(got.unwrap().shape(), &[2, 0]);
    let got = eng.compute(&x - &x.mean(1));
    assert!(got.is_ok(), "x - x.mean(1) on shape (2, 0): {got:?}");
    let y = eng.open(&q).unwrap();
    let z = (&y - &y.mean(0)) / &y.std(0, 0);
    let out = f.path().join("z.npy");
    let got = eng.write_npy(&z, &out);
    assert!(got.is_ok(), "standardize on shape (1, 3, 0): {got:?}");
    assert_eq!(read_any(&out).shape(), &[1, 3, 0]);
}

/// The "smallest limit that works" named by `LimitTooSmall` does work, for
/// reductions along every axis, a two-pass standardize written to disk,
/// a `map_blocks` and a collected elementwise result.
#[test]
fn the_minimum_limit_named_in_the_error_works() {
    let mut f = Files::new();
    let p = f.put(
        &[300, 64],
        (0..300 * 64).map(|i| (i % 97) as f64).collect::<Vec<_>>(),
    );
    type Build = fn(&Expr) -> Expr;
    let cases: [(&str, Build, bool); 7] = [
        ("sum(all)", |x| x.sum(None), false),
        ("mean(0)", |x| x.mean(0), false),
        ("std(1)", |x| x.std(1, 0), false),
        ("argmax(1)", |x| x.argmax(1), false),
        ("standardize", |x| (x - &x.mean(0)) / &x.std(0, 0), true),
        (
            "map_blocks",
            |x| {
                x.map_blocks::<f64, f64, _>(2, |b| b.slice(ndarray::s![.., ..2]).to_owned())
                    .sum(0)
            },
            false,
        ),
        ("x * 2 collected", |x| x * 2.0, false),
    ];
    let mut failures = Vec::new();
    for (name, build, write) in cases {
        let tiny = Engine::builder()
            .memory_limit(64)
            .threads(2)
            .fsync(false)
            .build()
            .unwrap();
        let x = tiny.open(&p).unwrap();
        let e = build(&x);
        let err = if write {
            tiny.write_npy(&e, f.path().join(format!("{name}-tiny.npy")))
                .unwrap_err()
        } else {
            tiny.compute(&e).unwrap_err()
        };
        let Error::LimitTooSmall { minimum, .. } = err else {
            panic!("{name}: expected LimitTooSmall, got {err:?}");
        };
        let eng = Engine::builder()
            .memory_limit(minimum)
            .threads(2)
            .fsync(false)
            .build()
            .unwrap();
        let x = eng.open(&p).unwrap();
        let e = build(&x);
        let r = if write {
            eng.write_npy(&e, f.path().join(format!("{name}.npy")))
                .map(|_| ())
        } else {
            eng.compute(&e).map(|_| ())
        };
        if let Err(e) = r {
            failures.push(format!(
                "{name}: the error named {minimum} bytes as enough, but: {e:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Arrays with different numbers of rows in one call (separate passes),
/// and a per-column reduction of one broadcast over another.
#[test]
fn arrays_of_different_lengths_together() {
    let mut f = Files::new();
    let a = f.put(&[10, 3], (0..30).map(f64::from).collect::<Vec<_>>());
    let b = f.put(
        &[7, 3],
        (0..21).map(|v| f64::from(v) * 2.0).collect::<Vec<_>>(),
    );
    for eng in engines() {
        let (x, y) = (eng.open(&a).unwrap(), eng.open(&b).unwrap());
        let (sx, sy, d) = eng
            .compute((x.sum(None), y.sum(0), (&x - &y.mean(0)).sum(0)))
            .unwrap();
        assert_eq!(f64s(&sx), vec![435.0]);
        assert_eq!(f64s(&sy), vec![126.0, 140.0, 154.0]);
        // x columns sum to 135, 145, 155; y's means are 18, 20, 22.
        assert_eq!(f64s(&d), vec![135.0 - 180.0, 145.0 - 200.0, 155.0 - 220.0]);
    }
}

/// Regression: an elementwise pass over rows of length 0 (shape (5, 0))
/// holds no bytes per row and no reduction state; sizing its blocks must
/// not divide by zero (`Engine::size`, `avail / slot_bytes(block_rows)`),
/// and the result is an empty (5, 0) array, as in NumPy.
#[test]
fn elementwise_over_zero_length_rows() {
    let mut f = Files::new();
    let p = f.put(&[5, 0], Vec::<f64>::new());
    let eng = engine(2, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eng.compute(&x * 2.0)));
    let got = got.unwrap_or_else(|_| panic!("compute(x * 2.0) on shape (5, 0) panicked"));
    assert_eq!(got.unwrap().shape(), &[5, 0]);
    let out = f.path().join("y.npy");
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eng.write_npy(&(&x * 2.0), &out)
    }));
    got.unwrap_or_else(|_| panic!("write_npy(x * 2.0) on shape (5, 0) panicked"))
        .unwrap();
    assert_eq!(read_any(&out).shape(), &[5, 0]);
}

/// NEP 50: a Python float with a float32 array is a float32 scalar, so
/// `0.1 * x_f32` multiplies by float32(0.1) = 0.10000000149011612 in
/// float32; it is not float32(x * 0.1 in float64). NumPy 2.4:
/// `0.1 * np.float32(14.506690979003906)` = 1.4506691694259644 (f32), where
/// rounding the float64 product gives 1.4506690502166748.
#[test]
fn weak_float_literals_are_float32_with_float32_arrays() {
    let mut f = Files::new();
    let p = f.put(&[3], vec![14.506_691_f32, 1.5, 0.1]);
    assert_eq!(14.506_691_f32 as f64, 14.506690979003906);
    let eng = engine(1, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let want = [14.506_691_f32 * 0.1_f32, 1.5 * 0.1_f32, 0.1 * 0.1_f32];
    assert_eq!(f64::from(want[0]), 1.4506691694259644);
    for (name, e) in [("x * 0.1", &x * 0.1), ("0.1 * x", 0.1 * &x)] {
        let got = eng.compute(&e).unwrap();
        assert_eq!(got.dtype(), DType::F32, "{name}");
        assert_eq!(
            got,
            AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[3]), want.to_vec()).unwrap()),
            "{name}"
        );
    }
}

/// The same for comparisons: `np.float32(0.1) == 0.1` is True in NumPy 2
/// (the literal is float32(0.1) too).
#[test]
fn weak_float_literals_compare_as_float32_with_float32_arrays() {
    let mut f = Files::new();
    let p = f.put(&[3], vec![14.506_691_f32, 1.5, 0.1]);
    let eng = engine(1, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let eq = eng.compute(x.eq(0.1)).unwrap();
    assert_eq!(eq.to_scalars(), [false, false, true].map(Scalar::Bool));
    let eq = eng.compute(Expr::constant(0.1).eq(&x)).unwrap();
    assert_eq!(eq.to_scalars(), [false, false, true].map(Scalar::Bool));
}

/// One expression in a tuple computes like any other set, and results
/// come out typed without a copy (issue 19: `compute((e,))` did not
/// compile; `AnyArray` offered only `to_f64` or a match).
#[test]
fn one_element_tuples_and_typed_results() {
    let mut f = Files::new();
    let p = f.put(&[4, 2], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let eng = engine(2, 1 << 20, ReadMode::Mmap);
    let x = eng.open(&p).unwrap();
    let (max,) = eng.compute((x.max(0),)).unwrap();
    let view = max.view::<f32>().expect("float32 maxima");
    assert_eq!(view.as_slice().unwrap(), &[7.0, 8.0]);
    assert!(max.view::<f64>().is_none());
    let max = max.into_typed::<f64>().unwrap_err();
    assert_eq!(
        max.into_typed::<f32>().unwrap().into_raw_vec_and_offset().0,
        vec![7.0, 8.0]
    );
    let (n,) = eng.compute((&x.count_nonzero(None),)).unwrap();
    assert_eq!(
        n.into_typed::<i64>().unwrap().into_raw_vec_and_offset().0,
        vec![8]
    );
}
