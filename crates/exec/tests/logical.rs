//! `any`, `all`, `count_nonzero` and `ptp` against NumPy and against an
//! in-memory reference.
//!
//! * NumPy: `tests/fixtures/exec/expected.json` holds, beside the older
//!   reductions' `results`, NumPy's answers for these four ops
//!   (`more_results`) on every input along every axis (all, 0, 1 — axis 1
//!   of a 3-d array over all trailing axes), and on empty inputs
//!   (`empty`). Every answer must match bit for bit — dtype, shape and
//!   values — with every engine configuration `numpy_expected.rs` uses,
//!   computed alone and in one shared pass. ptp of bool is
//!   `Error::Invalid` (NumPy: TypeError), ptp of an empty reduction
//!   `Error::Empty` (NumPy: ValueError "zero-size array").
//! * Reference: random arrays of every dtype (rank 1–3, empty dimensions,
//!   many zeros of both signs, NaN/±inf, integer and float extremes),
//!   block sizes from one row to all rows, 1–4 threads, mmap and pread,
//!   against plain loops.
//!
//! NumPy's semantics (2.x): `np.any`/`np.all` give bool (NaN is true,
//! -0.0 false); `np.count_nonzero` int64, over all elements too; `np.ptp`
//! is `max - min` in the input dtype: integers wrap (int8 [-128, 127] →
//! -1), floats are the correctly rounded difference (float16 too), NaN if
//! any NaN, `inf - inf` = NaN for a group of one infinity. The one value
//! NumPy itself does not pin down is the sign of ptp's zero for a group
//! made of both 0.0 and -0.0 only (its SIMD max/min keep either zero):
//! there either sign is accepted.

mod common;

use std::sync::OnceLock;

use common::{
    Json, Rng, Vals, check_batch, config, dtype_named, engine, fixtures_dir, int_range, read_any,
    round_to, rows_and_len, same_bits, vals_array, write_any,
};
use half::f16;
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::{DType, ReadMode};
use outcore_exec::{AnyArray, Engine, Error, Expr, ReduceAxis, Scalar};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The four ops, as NumPy names them (and `expected.json` records them).
const OPS: [&str; 4] = ["any", "all", "count_nonzero", "ptp"];

/// The op named `op` of `x` along `axis`.
fn new_op(x: &Expr, op: &str, axis: ReduceAxis) -> Expr {
    match op {
        "any" => x.any(axis),
        "all" => x.all(axis),
        "count_nonzero" => x.count_nonzero(axis),
        "ptp" => x.ptp(axis),
        other => panic!("unknown op {other}"),
    }
}

/// The result dtype NumPy gives.
fn result_dtype(op: &str, input: DType) -> DType {
    match op {
        "any" | "all" => DType::Bool,
        "count_nonzero" => DType::I64,
        _ => input,
    }
}

fn axes(rank: usize) -> Vec<ReduceAxis> {
    if rank >= 2 {
        vec![ReduceAxis::All, ReduceAxis::Axis0, ReduceAxis::Axis1]
    } else {
        vec![ReduceAxis::All, ReduceAxis::Axis0]
    }
}

/// The groups of flat (C-order) indices each result value reduces, the
/// length of the reduced axis, and the result shape (axis 1 of an n-d
/// array reduces over all trailing axes).
fn groups(shape: &[usize], axis: ReduceAxis) -> (Vec<Vec<usize>>, usize, Vec<usize>) {
    let (rows, len) = rows_and_len(shape);
    let n = shape.iter().product::<usize>();
    match axis {
        ReduceAxis::All => (vec![(0..n).collect()], n, vec![]),
        ReduceAxis::Axis0 => (
            (0..len)
                .map(|c| (0..rows).map(|r| r * len + c).collect())
                .collect(),
            rows,
            shape.get(1..).map(<[usize]>::to_vec).unwrap_or_default(),
        ),
        ReduceAxis::Axis1 => (
            (0..rows)
                .map(|r| (0..len).map(|c| r * len + c).collect())
                .collect(),
            len,
            vec![rows],
        ),
    }
}

/// Whether the values hold both 0.0 and -0.0: the sign of ptp's zero is
/// then NumPy's SIMD loop's choice.
fn both_zeros(vals: impl IntoIterator<Item = f64>) -> bool {
    let (mut pos, mut neg) = (false, false);
    for v in vals {
        if v == 0.0 {
            if v.is_sign_negative() {
                neg = true;
            } else {
                pos = true;
            }
        }
    }
    pos && neg
}

/// Bit-identical scalars (any NaN equal to any NaN); with `sign_free`,
/// 0.0 and -0.0 are equal too.
fn same_value(got: Scalar, want: Scalar, sign_free: bool) -> bool {
    match (got, want) {
        (Scalar::Float(g), Scalar::Float(w)) => {
            (g.is_nan() && w.is_nan())
                || g.to_bits() == w.to_bits()
                || (sign_free && g == 0.0 && w == 0.0)
        }
        _ => got == want,
    }
}

// ---------------------------------------------------------------------------
// Against NumPy (tests/fixtures/exec/expected.json).

fn expected() -> &'static Json {
    static DOC: OnceLock<Json> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = fixtures_dir().join("exec/expected.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Json::parse(&text).expect("expected.json parses")
    })
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

/// NumPy's refusal recorded in `r`, as the engine's error: ptp of bool is
/// `Invalid` whatever the shape (for an empty bool array NumPy's max of
/// nothing fails first, with a ValueError); otherwise a ValueError is
/// `Empty` and a TypeError `Invalid`.
fn error_matches(r: &Json, input: DType, got: &Error) -> bool {
    if r.get("op").str() == "ptp" && input == DType::Bool {
        return matches!(got, Error::Invalid(_));
    }
    match r.get("exception").str() {
        "ValueError" => matches!(got, Error::Empty { .. }),
        "TypeError" => matches!(got, Error::Invalid(_)),
        other => panic!("unknown NumPy exception {other}"),
    }
}

/// Checks every `more_results` answer of the input `entry` with one engine
/// configuration; returns the failures.
fn check_entry(entry: &Json, eng: &Engine) -> Vec<String> {
    let name = entry.get("name").str();
    let path = fixtures_dir().join(entry.get("file").str());
    let dtype = dtype_named(entry.get("dtype").str());
    let shape: Vec<usize> = entry
        .get("shape")
        .arr()
        .iter()
        .map(|d| d.u64() as usize)
        .collect();
    let x = eng.open(&path).expect("open fixture");
    assert_eq!(x.dtype(), dtype, "{name}");
    // The input's values (C order), for the signed-zero rule of ptp.
    let data: Vec<f64> = read_any(&path).to_f64().iter().copied().collect();
    let mut failures = Vec::new();
    let results = entry.get("more_results").arr();
    let exprs: Vec<Expr> = results
        .iter()
        .map(|r| new_op(&x, r.get("op").str(), axis_of(r)))
        .collect();
    // Everything NumPy answers, in one shared pass.
    let answered: Vec<usize> = (0..results.len())
        .filter(|&k| results[k].try_get("error").is_none())
        .collect();
    let batch = eng.compute(
        answered
            .iter()
            .map(|&k| exprs[k].clone())
            .collect::<Vec<_>>(),
    );
    if let Err(e) = &batch {
        failures.push(format!("{name}: the shared pass failed: {e}"));
    }
    for (k, r) in results.iter().enumerate() {
        let (op, axis) = (r.get("op").str(), axis_of(r));
        let what = format!("{name}: {op} axis {axis:?}");
        let single = eng.compute(&exprs[k]);
        if r.try_get("error").is_some() {
            match single {
                Err(e) if error_matches(r, dtype, &e) => {}
                Err(e) => failures.push(format!(
                    "{what}: NumPy raises {} ({}), engine: {e:?}",
                    r.get("exception").str(),
                    r.get("error").str()
                )),
                Ok(v) => failures.push(format!(
                    "{what}: NumPy raises {}, engine gave {v:?}",
                    r.get("exception").str()
                )),
            }
            continue;
        }
        let got = match single {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{what}: error {e}"));
                continue;
            }
        };
        if let Ok(all) = &batch {
            let b = &all[answered.iter().position(|&i| i == k).expect("in the batch")];
            let (sa, sb) = (b.to_scalars(), got.to_scalars());
            if b.dtype() != got.dtype()
                || b.shape() != got.shape()
                || sa.len() != sb.len()
                || sa.iter().zip(&sb).any(|(p, q)| !same_bits(*p, *q))
            {
                failures.push(format!("{what}: shared pass {b:?} != alone {got:?}"));
            }
        }
        let want_dtype = dtype_named(r.get("dtype").str());
        if exprs[k].dtype() != want_dtype {
            failures.push(format!(
                "{what}: expression dtype {} != NumPy's {want_dtype}",
                exprs[k].dtype()
            ));
        }
        if got.dtype() != want_dtype {
            failures.push(format!(
                "{what}: dtype {} != NumPy's {want_dtype}",
                got.dtype()
            ));
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
        let want = r.get("values").arr();
        let got = got.to_scalars();
        if got.len() != want.len() {
            failures.push(format!(
                "{what}: {} values, NumPy has {}",
                got.len(),
                want.len()
            ));
            continue;
        }
        let (idx, _, _) = groups(&shape, axis);
        for (i, (g, w)) in got.into_iter().zip(want).enumerate() {
            let ok = match (g, w) {
                (Scalar::Bool(b), Json::Bool(wb)) => b == *wb,
                (Scalar::Int(v), Json::Num(_)) => i128::from(v) == w.i128(),
                (Scalar::UInt(v), Json::Num(_)) => i128::from(v) == w.i128(),
                (Scalar::Float(v), Json::Str(_)) => {
                    let sign_free = both_zeros(idx[i].iter().map(|&j| data[j]));
                    same_value(Scalar::Float(v), Scalar::Float(w.f64()), sign_free)
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

fn check_all_entries(eng: &Engine) {
    let doc = expected();
    let mut failures = Vec::new();
    let mut checked = 0;
    for key in ["inputs", "empty"] {
        for entry in doc.get(key).arr() {
            failures.extend(check_entry(entry, eng));
            checked += 1;
        }
    }
    assert!(checked >= 17 + 5, "only {checked} inputs");
    assert!(
        failures.is_empty(),
        "{} mismatches with NumPy:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn any_all_count_nonzero_ptp_match_numpy_one_block() {
    check_all_entries(&engine(2, 64 << 20, ReadMode::Mmap));
}

#[test]
fn any_all_count_nonzero_ptp_match_numpy_one_row_blocks() {
    check_all_entries(&engine(3, 1, ReadMode::Pread));
}

#[test]
fn any_all_count_nonzero_ptp_match_numpy_small_blocks() {
    check_all_entries(&engine(1, 100, ReadMode::Mmap));
}

/// The fixture has every op along every axis of every input, the error
/// cases the tests above rely on, and the NumPy facts they pin.
#[test]
fn fixture_covers_every_new_op_and_axis() {
    let doc = expected();
    let mut bool_ptp = 0;
    let mut empty_ptp = 0;
    for key in ["inputs", "empty"] {
        for entry in doc.get(key).arr() {
            let name = entry.get("name").str();
            let rank = entry.get("shape").arr().len();
            let results = entry.get("more_results").arr();
            let want: Vec<(&str, ReduceAxis)> = OPS
                .iter()
                .flat_map(|&op| axes(rank).into_iter().map(move |a| (op, a)))
                .collect();
            let have: Vec<(&str, ReduceAxis)> = results
                .iter()
                .map(|r| (r.get("op").str(), axis_of(r)))
                .collect();
            assert_eq!(have, want, "{name}");
            let dtype = dtype_named(entry.get("dtype").str());
            for r in results {
                let op = r.get("op").str();
                if r.try_get("error").is_some() {
                    assert_eq!(op, "ptp", "{name}: only ptp is refused");
                    if dtype == DType::Bool {
                        bool_ptp += 1;
                    } else {
                        assert_eq!(r.get("exception").str(), "ValueError", "{name}");
                        empty_ptp += 1;
                    }
                } else {
                    // count_nonzero is int64 over all elements as well.
                    assert_eq!(
                        dtype_named(r.get("dtype").str()),
                        result_dtype(op, dtype),
                        "{name}: {op}"
                    );
                }
            }
        }
    }
    assert_eq!(bool_ptp, 6, "ptp of both bool inputs along every axis");
    assert!(empty_ptp >= 6, "{empty_ptp} empty ptp cases");
}

/// NumPy's examples, with every way of naming the axis: int8 [-128, 127]
/// → ptp -1, a float16 ptp past 65504 is inf, a group of one infinity
/// gives NaN, NaN counts as nonzero and -0.0 as zero.
#[test]
fn numpy_examples_with_every_axis_form() {
    let dir = tempfile::tempdir().unwrap();
    let eng = engine(2, 1, ReadMode::Mmap);

    let i = dir.path().join("i8.npy");
    write_any(
        &i,
        &AnyArray::from(
            ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![-128i8, 3, 127, 1, 0, 5]).unwrap(),
        ),
    );
    let x = eng.open(&i).unwrap();
    let (p_all, p0, p1, c_all) = eng
        .compute((
            x.ptp(None),
            x.ptp(0),
            x.ptp(1),
            x.count_nonzero(ReduceAxis::All),
        ))
        .unwrap();
    assert_eq!(p_all.dtype(), DType::I8);
    assert_eq!(p_all.shape(), &[] as &[usize]);
    assert_eq!(p_all.to_scalars(), vec![Scalar::Int(-1)]);
    assert_eq!(p0.to_scalars(), vec![Scalar::Int(-1), Scalar::Int(4)]);
    // 3 - (-128) = 131 wraps to -125.
    assert_eq!(
        p1.to_scalars(),
        vec![Scalar::Int(-125), Scalar::Int(126), Scalar::Int(5)]
    );
    assert_eq!(c_all.dtype(), DType::I64);
    assert_eq!(c_all.to_scalars(), vec![Scalar::Int(5)]);

    let h = dir.path().join("f16.npy");
    let hv = [65504.0, 1.5, -65504.0, 0.5].map(f16::from_f64).to_vec();
    write_any(
        &h,
        &AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[2, 2]), hv).unwrap()),
    );
    let x = eng.open(&h).unwrap();
    let (p0, p1) = eng.compute((x.ptp(0usize), x.ptp(1i32))).unwrap();
    assert_eq!(p0.dtype(), DType::F16);
    assert_eq!(
        p0.to_scalars(),
        vec![Scalar::Float(f64::INFINITY), Scalar::Float(1.0)]
    );
    // 65502.5 and 65504.5 both round to float16 65504.
    assert_eq!(
        p1.to_scalars(),
        vec![Scalar::Float(65504.0), Scalar::Float(65504.0)]
    );

    let f = dir.path().join("f64.npy");
    let nan = f64::NAN;
    let fv = vec![
        -0.0,
        nan,
        1.5,
        f64::INFINITY,
        -0.0,
        2.0,
        -1.0,
        f64::INFINITY,
    ];
    write_any(
        &f,
        &AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[2, 4]), fv).unwrap()),
    );
    let x = eng.open(&f).unwrap();
    let (any0, all0, cnt0, p0) = eng
        .compute((x.any(0), x.all(0), x.count_nonzero(0), x.ptp(0)))
        .unwrap();
    assert_eq!(any0.dtype(), DType::Bool);
    assert_eq!(
        any0.to_scalars(),
        [false, true, true, true].map(Scalar::Bool).to_vec()
    );
    assert_eq!(
        all0.to_scalars(),
        [false, true, true, true].map(Scalar::Bool).to_vec()
    );
    assert_eq!(cnt0.to_scalars(), [0, 2, 2, 2].map(Scalar::Int).to_vec());
    let p0 = p0.to_scalars();
    // -0.0 - -0.0 is +0.0; NaN; 1.5 - -1.0; inf - inf is NaN.
    assert!(same_value(p0[0], Scalar::Float(0.0), false), "{p0:?}");
    assert!(same_value(p0[1], Scalar::Float(nan), false), "{p0:?}");
    assert_eq!(p0[2], Scalar::Float(2.5));
    assert!(same_value(p0[3], Scalar::Float(nan), false), "{p0:?}");
    let (any_all, all_all) = eng.compute((x.any(None), x.all(None))).unwrap();
    assert_eq!(any_all.to_scalars(), vec![Scalar::Bool(true)]);
    assert_eq!(all_all.to_scalars(), vec![Scalar::Bool(false)]);
}

/// ptp of bool is refused (`Error::Invalid`, NumPy's TypeError) along
/// every axis, computed alone or next to other ops; any/all/count_nonzero
/// of bool are fine.
#[test]
fn ptp_of_bool_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.npy");
    write_any(
        &path,
        &AnyArray::from(
            ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![true, false, true, false, true, true])
                .unwrap(),
        ),
    );
    let eng = engine(2, 64 << 20, ReadMode::Mmap);
    let x = eng.open(&path).unwrap();
    for axis in axes(2) {
        let err = eng.compute(&x.ptp(axis)).expect_err("ptp of bool");
        assert!(matches!(err, Error::Invalid(_)), "{axis:?}: {err:?}");
        let err = eng
            .compute(vec![x.any(axis), x.ptp(axis)])
            .expect_err("ptp of bool in a batch");
        assert!(matches!(err, Error::Invalid(_)), "{axis:?}: {err:?}");
    }
    let (any1, all1, cnt1) = eng
        .compute((x.any(1), x.all(1), x.count_nonzero(1)))
        .unwrap();
    assert_eq!(any1.to_scalars(), [true; 3].map(Scalar::Bool).to_vec());
    assert_eq!(
        all1.to_scalars(),
        [false, false, true].map(Scalar::Bool).to_vec()
    );
    assert_eq!(cnt1.to_scalars(), [1, 1, 2].map(Scalar::Int).to_vec());
}

// ---------------------------------------------------------------------------
// Against an in-memory reference.

#[derive(Clone, Debug)]
struct Case {
    dtype: DType,
    shape: Vec<usize>,
    vals: Vals,
    threads: usize,
    block_rows: usize,
    mode: ReadMode,
    /// Reduce `where(isnan(x), x, x)` (same values and dtype, computed by
    /// the fused evaluator) instead of the file itself.
    derived: bool,
}

impl Case {
    fn array(&self) -> AnyArray {
        vals_array(self.dtype, &self.shape, &self.vals)
    }

    fn block_bytes(&self) -> u64 {
        let (_, len) = rows_and_len(&self.shape);
        // 0 means "1 byte" (1-row blocks); otherwise whole rows.
        ((self.block_rows * len * self.dtype.itemsize()) as u64).max(1)
    }
}

/// The largest finite value, the smallest subnormal and the smallest
/// normal of a float dtype.
fn float_edges(d: DType) -> [f64; 3] {
    match d {
        DType::F16 => [65504.0, 2f64.powi(-24), 2f64.powi(-14)],
        DType::F32 => [
            f64::from(f32::MAX),
            f64::from(f32::from_bits(1)),
            f64::from(f32::MIN_POSITIVE),
        ],
        _ => [f64::MAX, f64::from_bits(1), f64::MIN_POSITIVE],
    }
}

/// Values for `n` elements of `dtype`: zeros (of both signs for floats)
/// at rate `zeros` (for bool: false), NaN/±inf at rate `special`, the
/// dtype's extremes (integer min/max; float ±max and ±subnormals) when
/// `extremes`, otherwise small values or values from the full range.
fn gen_vals(
    dtype: DType,
    n: usize,
    rng: &mut Rng,
    zeros: f64,
    special: f64,
    extremes: bool,
) -> Vals {
    if dtype.is_float() {
        let edges = float_edges(dtype);
        let v = (0..n)
            .map(|_| {
                if rng.chance(zeros) {
                    if rng.chance(0.5) { 0.0 } else { -0.0 }
                } else if rng.chance(special) {
                    [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.below(3) as usize]
                } else if extremes && rng.chance(0.25) {
                    let e = edges[rng.below(3) as usize];
                    if rng.chance(0.5) { e } else { -e }
                } else if rng.chance(0.5) {
                    rng.range(-400, 400) as f64 / 4.0
                } else {
                    round_to(dtype, (rng.unit() - 0.5) * 2000.0)
                }
            })
            .collect();
        return Vals::Float(v);
    }
    let (lo, hi) = int_range(dtype);
    let v = (0..n)
        .map(|_| {
            if dtype == DType::Bool {
                return i128::from(!rng.chance(zeros));
            }
            if rng.chance(zeros) {
                0
            } else if extremes && rng.chance(0.3) {
                if rng.chance(0.5) { lo } else { hi }
            } else if rng.chance(0.3) {
                let span = (hi - lo) as u128;
                let r =
                    ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) % (span + 1);
                lo + r as i128
            } else {
                i128::from(rng.range(-9, 9)).clamp(lo, hi)
            }
        })
        .collect();
    Vals::Int(v)
}

fn case_strategy(dtypes: &'static [DType], max_rows: usize) -> impl Strategy<Value = Case> {
    (
        0..dtypes.len(),
        1usize..=3,
        0..=max_rows,
        0usize..=6,
        0usize..=4,
        any::<u64>(),
        (0usize..5, 0usize..4, any::<bool>()),
        (1usize..=4, 0usize..=41, any::<bool>(), any::<bool>()),
    )
        .prop_map(
            move |(
                d,
                rank,
                rows,
                d1,
                d2,
                seed,
                (z, sp, extremes),
                (threads, block_rows, pread, derived),
            )| {
                let dtype = dtypes[d];
                // Mostly non-empty trailing dims; rows may be 0.
                let d1 = if d1 == 0 && seed % 5 != 0 { 3 } else { d1 };
                let d2 = if d2 == 0 && seed % 7 != 0 { 2 } else { d2 };
                let shape = match rank {
                    1 => vec![rows],
                    2 => vec![rows, d1],
                    _ => vec![rows, d1, d2],
                };
                let n = shape.iter().product();
                let zeros = [0.0, 0.1, 0.5, 0.9, 1.0][z];
                let special = [0.0, 0.05, 0.3, 1.0][sp];
                let mut rng = Rng(seed);
                let vals = gen_vals(dtype, n, &mut rng, zeros, special, extremes);
                Case {
                    dtype,
                    shape,
                    vals,
                    threads,
                    block_rows,
                    mode: if pread {
                        ReadMode::Pread
                    } else {
                        ReadMode::Mmap
                    },
                    derived,
                }
            },
        )
}

/// What the engine must return.
#[derive(Clone, Debug)]
enum Want {
    /// Per value: the scalar and whether the sign of a zero is free.
    Values {
        dtype: DType,
        shape: Vec<usize>,
        vals: Vec<(Scalar, bool)>,
    },
    /// `Error::Invalid` (ptp of bool).
    Invalid,
    /// `Error::Empty` (ptp with nothing to reduce).
    Empty,
}

/// max - min of integers in the dtype, wrapping as NumPy's does.
fn int_ptp(xs: &[i128], dtype: DType) -> Scalar {
    let d = xs.iter().max().expect("non-empty") - xs.iter().min().expect("non-empty");
    match dtype {
        DType::I8 => Scalar::Int((d as i8).into()),
        DType::I16 => Scalar::Int((d as i16).into()),
        DType::I32 => Scalar::Int((d as i32).into()),
        DType::I64 => Scalar::Int(d as i64),
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
            Scalar::UInt(u64::try_from(d).expect("fits"))
        }
        other => unreachable!("not an integer dtype: {other}"),
    }
}

/// max - min of floats (already of the dtype), rounded to the dtype once:
/// NaN if any NaN, `inf - inf` NaN. The float64 difference rounded to
/// float16/float32 is the correctly rounded one.
fn float_ptp(xs: &[f64], dtype: DType) -> (Scalar, bool) {
    if xs.iter().any(|x| x.is_nan()) {
        return (Scalar::Float(f64::NAN), false);
    }
    let mx = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mn = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let d = round_to(dtype, mx - mn);
    (Scalar::Float(d), both_zeros(xs.iter().copied()))
}

/// The reference result of every op along every axis.
fn reference(case: &Case) -> Vec<(&'static str, ReduceAxis, Want)> {
    let mut out = Vec::new();
    for axis in axes(case.shape.len()) {
        let (groups, reduced, shape) = groups(&case.shape, axis);
        for op in OPS {
            let want = if op == "ptp" && case.dtype == DType::Bool {
                Want::Invalid
            } else if op == "ptp" && reduced == 0 {
                Want::Empty
            } else {
                let vals = groups
                    .iter()
                    .map(|g| match &case.vals {
                        Vals::Int(all) => {
                            let xs: Vec<i128> = g.iter().map(|&i| all[i]).collect();
                            let nz = xs.iter().filter(|&&x| x != 0).count();
                            match op {
                                "any" => (Scalar::Bool(nz > 0), false),
                                "all" => (Scalar::Bool(nz == xs.len()), false),
                                "count_nonzero" => (Scalar::Int(nz as i64), false),
                                _ => (int_ptp(&xs, case.dtype), false),
                            }
                        }
                        Vals::Float(all) => {
                            let xs: Vec<f64> = g.iter().map(|&i| all[i]).collect();
                            // NaN != 0.0 (true); -0.0 == 0.0 (false).
                            let nz = xs.iter().filter(|&&x| x != 0.0).count();
                            match op {
                                "any" => (Scalar::Bool(nz > 0), false),
                                "all" => (Scalar::Bool(nz == xs.len()), false),
                                "count_nonzero" => (Scalar::Int(nz as i64), false),
                                _ => float_ptp(&xs, case.dtype),
                            }
                        }
                    })
                    .collect();
                Want::Values {
                    dtype: result_dtype(op, case.dtype),
                    shape: shape.clone(),
                    vals,
                }
            };
            out.push((op, axis, want));
        }
    }
    out
}

fn check_value(what: &str, got: &AnyArray, want: &Want) -> Result<(), String> {
    let Want::Values { dtype, shape, vals } = want else {
        return Err(format!("{what}: expected an error, got {got:?}"));
    };
    if got.dtype() != *dtype {
        return Err(format!("{what}: dtype {} != expected {dtype}", got.dtype()));
    }
    if got.shape() != shape.as_slice() {
        return Err(format!(
            "{what}: shape {:?} != expected {shape:?}",
            got.shape()
        ));
    }
    let got = got.to_scalars();
    if got.len() != vals.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            vals.len()
        ));
    }
    for (k, (g, (w, sign_free))) in got.into_iter().zip(vals).enumerate() {
        if !same_value(g, *w, *sign_free) {
            return Err(format!("{what}: value {k}: got {g:?}, expected {w:?}"));
        }
    }
    Ok(())
}

fn run_case(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("x.npy");
    write_any(&path, &case.array());
    let bb = if case.block_rows == 0 {
        1
    } else {
        case.block_bytes()
    };
    let eng = engine(case.threads, bb, case.mode);
    let src = eng.open(&path).map_err(|e| e.to_string())?;
    let x = if case.derived {
        src.isnan().select(&src, &src)
    } else {
        src
    };
    let mut batch: Vec<(String, Expr, Want)> = Vec::new();
    for (op, axis, want) in reference(case) {
        let what = format!("{op} axis={axis:?}");
        let expr = new_op(&x, op, axis);
        match want {
            Want::Invalid => match eng.compute(&expr) {
                Err(Error::Invalid(_)) => {}
                other => return Err(format!("{what}: expected Error::Invalid, got {other:?}")),
            },
            Want::Empty => match eng.compute(&expr) {
                Err(Error::Empty { .. }) => {}
                other => return Err(format!("{what}: expected Error::Empty, got {other:?}")),
            },
            Want::Values { dtype, .. } => {
                if expr.dtype() != dtype {
                    return Err(format!(
                        "{what}: expression dtype {} != expected {dtype}",
                        expr.dtype()
                    ));
                }
                batch.push((what, expr, want));
            }
        }
    }
    // Everything that must succeed, in one shared pass.
    check_batch(&eng, &batch, check_value)
}

const ALL_DTYPES: &[DType] = &DType::ALL;

proptest! {
    #![proptest_config(config(64))]

    /// any/all/count_nonzero/ptp × axis × dtype against the reference,
    /// through every block size, thread count and read mode.
    #[test]
    fn any_all_count_nonzero_ptp_match_reference(case in case_strategy(ALL_DTYPES, 40)) {
        run_case(&case).map_err(|e| TestCaseError::fail(format!(
            "{e}\n  input {} {:?}, threads {}, block_rows {}, {:?}, derived {}",
            case.dtype, case.shape, case.threads, case.block_rows, case.mode, case.derived
        )))?;
    }
}

/// A fixed case per dtype (zeros of both signs, NaN/±inf, extremes)
/// through several block sizes, thread counts and both read modes.
#[test]
fn any_all_count_nonzero_ptp_every_dtype_every_path() {
    for (k, dtype) in DType::ALL.into_iter().enumerate() {
        let mut rng = Rng(k as u64 + 11);
        let shape = vec![7, 3, 2];
        let mut vals = gen_vals(dtype, 42, &mut rng, 0.3, 0.1, true);
        // One all-zero row (any false), one row without zeros (all true).
        match &mut vals {
            Vals::Int(v) => {
                v[..6].fill(0);
                for x in &mut v[6..12] {
                    if *x == 0 {
                        *x = 1;
                    }
                }
            }
            Vals::Float(v) => {
                v[..6].copy_from_slice(&[0.0, -0.0, -0.0, 0.0, -0.0, -0.0]);
                for x in &mut v[6..12] {
                    if *x == 0.0 {
                        *x = 1.0;
                    }
                }
            }
        }
        for threads in [1, 3] {
            for block_rows in [0, 2, 7] {
                for mode in common::MODES {
                    let case = Case {
                        dtype,
                        shape: shape.clone(),
                        vals: vals.clone(),
                        threads,
                        block_rows,
                        mode,
                        derived: block_rows == 2,
                    };
                    if let Err(e) = run_case(&case) {
                        panic!("{dtype} threads {threads} block_rows {block_rows} {mode:?}: {e}");
                    }
                }
            }
        }
    }
}
