//! Numerical extremes, in one place: every extreme the engine is held to,
//! and where it is checked against NumPy. All answers come from NumPy
//! (2.4.6) through the fixture generators in `tests/fixtures/`; no Python
//! runs at test time.
//!
//! | extreme | reductions: sum, mean, var, std, min, max, argmin, argmax and the nan-variants, along every axis (`numpy_expected.rs`, `exec/expected.json`) | sort, cumsum, median, quantiles (`spill_numpy.rs`, `spill/`) | standardize, cast, errors |
//! |---|---|---|---|
//! | all-NaN columns | `f64_nan_inf` col 4, `f64_extremes` col 0, `f32_extremes` col 0, `f16_extremes` col 3; `semantics.rs`: `all_nan_columns_in_the_nan_variants`, `nansum_of_all_nan_is_zero_and_nanmean_nan` | `f64_extremes` col 0, `f16_extremes` col 2, `f32_extremes` col 1 | [`standardize_of_extremes_matches_numpy`] |
//! | ±inf | `f64_nan_inf`, `f64_extremes` col 2, `f32_extremes`; `semantics.rs`: `inf_minus_inf_is_nan` | every float input's col 2; `f64_extremes` col 3 (inf − inf in the cumsum); quantiles next to inf are NaN as in NumPy's `_lerp` | [`standardize_of_extremes_matches_numpy`]; [`casts_at_the_edges_match_numpy`] |
//! | float64 sums that overflow to inf (values near 1e308, ±max) | `f64_huge`: [`huge_values_sum_to_inf_as_numpy`] (sums, means, min, max, argmin, argmax), [`variance_that_overflows_is_inf_as_numpy`] (var, std, nanvar, nanstd: inf, NaN over all elements where NumPy's mean is NaN); `semantics.rs`: `variance_overflow_is_inf_and_inf_input_is_nan` | `f64_extremes` cols 1–2: the cumsum overflows, the median's mean of two middle values overflows, a quantile's `b − a` overflows — all as NumPy | [`standardize_of_extremes_matches_numpy`] (`f64_huge`: `(x − inf) / inf` is NaN, `±max / inf` is ±0) |
//! | subnormals | `f64_extremes` col 1, `f32_extremes` col 2, `f16_extremes` col 2 | every float input's col 4 | [`casts_at_the_edges_match_numpy`] (rounding into and below the subnormals of float16 and float32) |
//! | float16 past 65504 | `numpy_expected.rs`: `float16_sum_past_65504_is_exact` — the engine's float16 sum is float64 (documented on `ReduceOp`; NumPy's float16 sum is inf); `f16_extremes`; `semantics.rs`: `min_max_keep_the_input_dtype` (±65504 kept in float16) | `f16_extremes`: the float16 cumsum overflows to inf, the median of 65504s stays finite (float32 mean), a quantile's `b − a` overflows — as NumPy | [`casts_at_the_edges_match_numpy`] (65519.99 → 65504, 65520 → inf) |
//! | float32 ±max | `f32_extremes` col 1 (sums in float64 do not overflow) | `f32_extremes` col 0 (the float32 cumsum overflows, as NumPy) | [`casts_at_the_edges_match_numpy`] |
//! | int64 / uint64 min and max | `i64_extremes`, `u64_1col`, `i64_big`, `u64_big`: exact min, max, argmin, argmax and sums past 2⁶³; `semantics.rs`: `uint64_sum_near_2_pow_64_is_exact` | `i64` and `u64` (min at [3, 0], max at [20, 1] / [17, 4]) | [`casts_at_the_edges_match_numpy`] (to floats: rounding; to narrower integers: wrap) |
//! | integer sums that overflow | — | `spill_props.rs`: `cumsum_int64_overflow_is_an_error` | [`integer_overflow_is_an_error_naming_the_exact_value`] (every axis, nansum, cumsum); `semantics.rs`: `int64_sum_overflow_is_an_error` |
//! | float → integer of NaN, ±inf, out of range | — | — | undefined in NumPy; the engine saturates and maps NaN to 0 (documented on `Expr::cast`): `semantics.rs`: `cast_float64_to_*`, `casts_of_reduced_values_saturate_too` |
//! | one row | `f64_1row` (var with ddof 1 is NaN); `semantics.rs`: `ddof_at_least_n_is_nan` | `f64_1row` | [`standardize_of_extremes_matches_numpy`] (0/0 → NaN) |
//! | one column | `i32_1col`, `u64_1col` | `i32_1col` (1000 × 1) | [`standardize_of_extremes_matches_numpy`] |
//! | a constant column (std 0) | `f64_extremes` col 3 (var 0 exactly) | `f64_extremes` col 4 | [`standardize_of_extremes_matches_numpy`] (0/0 → NaN) |
//! | −0.0 | `f64_extremes` col 4 | every float input's col 0 (sorted and selected with its sign) | [`casts_at_the_edges_match_numpy`] |
//! | empty and 0-d arrays | `semantics.rs`: `empty_rows_0x5`, `zero_d_array`, `min_of_an_empty_array_is_an_error_naming_the_op` | `spill_props.rs` | |
//! | accuracy | `numpy_expected.rs`: a 10⁷-element float32 sum against `math.fsum`, the std of data at 1e9 ± 1 | | |
//!
//! Each case runs with one big block, with one-row blocks on three
//! threads (`pread`), and with one-row blocks on two threads (mapped).
//! The answers here are in `tests/fixtures/extremes/`
//! (`tests/fixtures/make_extremes.py` regenerates them).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{Json, close, dtype_named, engine, fixtures_dir, read_any, same_bits};
use outcore_chunker::{DType, ReadMode};
use outcore_exec::{AnyArray, Engine, Error, Expr, ReduceAxis, ReduceOp, Scalar};

fn engines() -> Vec<Engine> {
    vec![
        engine(1, 64 << 20, ReadMode::Mmap),
        engine(3, 1, ReadMode::Pread),
        engine(2, 1, ReadMode::Mmap),
    ]
}

fn extremes_dir() -> PathBuf {
    fixtures_dir().join("extremes")
}

/// The fixture files of `extremes/` whose names end with `suffix`, sorted.
fn files_ending(suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(extremes_dir())
        .expect("tests/fixtures/extremes exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Writes `expr` with `engine` and reads the output back.
fn written(engine: &Engine, expr: &Expr, dir: &Path, name: &str) -> AnyArray {
    let out = dir.join(name);
    engine
        .write_npy(expr, &out)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = read_any(&out);
    std::fs::remove_file(&out).unwrap();
    got
}

/// `(x - x.mean(0)) / x.std(0)` of every extreme input of `exec/`, written
/// and collected, against NumPy's on the float64 upcast (the engine's
/// means and standard deviations are float64 for every input). NaN where
/// NumPy has NaN (a constant column is 0/0, a column with NaN or inf is
/// NaN throughout), infinities exactly, finite values to 1e-12.
#[test]
fn standardize_of_extremes_matches_numpy() {
    let names = files_ending(".standardize.npy");
    assert!(names.len() >= 7, "{names:?}");
    assert!(
        names.contains(&"f64_huge.standardize.npy".into()),
        "{names:?}"
    );
    for file in &names {
        check_standardize(file.trim_end_matches(".standardize.npy"));
    }
}

/// Standardizes `exec/<input>.npy` with every engine, written and
/// collected, against `extremes/<input>.standardize.npy`.
fn check_standardize(input: &str) {
    let want = read_any(&extremes_dir().join(format!("{input}.standardize.npy")));
    let dir = tempfile::tempdir().unwrap();
    for (k, eng) in engines().iter().enumerate() {
        let x = eng
            .open(fixtures_dir().join("exec").join(format!("{input}.npy")))
            .unwrap();
        let z = (&x - &x.mean(0)) / &x.std(0, 0);
        let collected = eng.compute(&z).unwrap_or_else(|e| panic!("{input}: {e}"));
        let got = written(eng, &z, dir.path(), "z.npy");
        for (how, got) in [("written", &got), ("collected", &collected)] {
            let what = format!("{input} ({how}, engine {k})");
            assert_eq!(got.dtype(), DType::F64, "{what}");
            assert_eq!(got.shape(), want.shape(), "{what}");
            for (i, (g, w)) in got.scalars().zip(want.scalars()).enumerate() {
                let (Scalar::Float(g), Scalar::Float(w)) = (g, w) else {
                    panic!("{what}: not floats");
                };
                assert!(
                    close(g, w, 1e-12 * w.abs().max(1.0)),
                    "{what}: element {i}: engine {g:e}, NumPy {w:e}"
                );
            }
        }
    }
}

/// NumPy's answers for `exec/f64_huge.npy` (values near 1e308 and ±max),
/// from `exec/expected.json`: the variance family (`var`, `std`,
/// `nanvar`, `nanstd`) when `variance`, every other op otherwise.
/// Returns the mismatches.
fn check_huge(variance: bool) -> Vec<String> {
    let path = fixtures_dir().join("exec/expected.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc = Json::parse(&text).unwrap();
    let entry = doc
        .get("inputs")
        .arr()
        .iter()
        .find(|e| e.get("name").str() == "f64_huge")
        .expect("f64_huge in exec/expected.json");
    let mut failures = Vec::new();
    for eng in engines() {
        let x = eng.open(fixtures_dir().join("exec/f64_huge.npy")).unwrap();
        for r in entry.get("results").arr() {
            let ddof = if r.get("ddof").is_null() {
                0
            } else {
                r.get("ddof").u64() as u32
            };
            let op = ReduceOp::parse(r.get("op").str(), ddof).unwrap();
            if op.ddof().is_some() != variance {
                continue;
            }
            let axis = match r.get("axis") {
                Json::Null => ReduceAxis::All,
                a if a.u64() == 0 => ReduceAxis::Axis0,
                _ => ReduceAxis::Axis1,
            };
            let got = eng.compute(x.reduce(op, axis)).unwrap();
            for (i, (g, w)) in got.scalars().zip(r.get("values").arr()).enumerate() {
                let ok = match g {
                    Scalar::Float(g) => {
                        let w = w.f64();
                        close(g, w, 1e-12 * w.abs())
                    }
                    Scalar::Int(g) => i128::from(g) == w.i128(),
                    other => panic!("{other:?}"),
                };
                if !ok {
                    failures.push(format!(
                        "{op} along {axis:?}[{i}]: engine {g:?}, NumPy {w:?}"
                    ));
                }
            }
        }
    }
    failures
}

/// Values near 1e308 and ±max: sums that overflow are ±inf, as in NumPy
/// (the compensated sum does not turn them into NaN); means, minima,
/// maxima and their indexes match.
#[test]
fn huge_values_sum_to_inf_as_numpy() {
    let failures = check_huge(false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A variance past float64's range is inf in NumPy (the deviations or
/// their squares overflow), not the NaN that the shifted, Chan-merged
/// moments' `inf − inf` would give; over all elements of `f64_huge` it is
/// NaN, since NumPy's mean is (its pairwise sum meets `+inf` and `-inf`).
/// Standardize of these columns is in [`standardize_of_extremes_matches_numpy`].
#[test]
fn variance_that_overflows_is_inf_as_numpy() {
    let failures = check_huge(true);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `x.astype(d)` at the edges of every dtype, bit for bit (any NaN equal
/// to any NaN; -0.0 and 0.0 told apart): float64 to float16 and float32
/// (overflow to ±inf at the rounding boundary, subnormals, underflow to
/// zero), to bool (NaN is true, -0.0 false); int64 and uint64 extremes
/// to floats (rounded to nearest even) and to narrower or other-signed
/// integers (wrapping).
#[test]
fn casts_at_the_edges_match_numpy() {
    let inputs = files_ending(".npy")
        .into_iter()
        .filter(|n| n.starts_with("cast_") && n.matches('.').count() == 1)
        .collect::<Vec<_>>();
    assert_eq!(inputs.len(), 3, "{inputs:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for input in &inputs {
        let stem = input.trim_end_matches(".npy");
        let answers: Vec<String> = files_ending(".npy")
            .into_iter()
            .filter(|n| n.starts_with(&format!("{stem}.")) && n != input)
            .collect();
        assert!(!answers.is_empty(), "{stem}: no answers");
        for answer in &answers {
            let to = answer
                .trim_start_matches(&format!("{stem}."))
                .trim_end_matches(".npy");
            let dtype = dtype_named(to);
            let want = read_any(&extremes_dir().join(answer));
            for (k, eng) in engines().iter().enumerate() {
                let x = eng.open(extremes_dir().join(input)).unwrap();
                let cast = x.cast(dtype);
                let collected = eng.compute(&cast).unwrap();
                let got = written(eng, &cast, dir.path(), "c.npy");
                for (how, got) in [("written", &got), ("collected", &collected)] {
                    let what = format!("{stem} as {to} ({how}, engine {k})");
                    assert_eq!(got.dtype(), dtype, "{what}");
                    assert_eq!(got.shape(), want.shape(), "{what}");
                    let source = read_any(&extremes_dir().join(input));
                    for (i, ((g, w), s)) in got
                        .scalars()
                        .zip(want.scalars())
                        .zip(source.scalars())
                        .enumerate()
                    {
                        assert!(
                            same_bits(g, w),
                            "{what}: element {i} ({s:?}): engine {g:?}, NumPy {w:?}"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 18 * 3, "only {checked} casts checked");
}

fn overflow_doc() -> &'static Json {
    static DOC: OnceLock<Json> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = extremes_dir().join("overflow.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Json::parse(&text).expect("overflow.json parses")
    })
}

fn exact_scalar(v: &Json, dtype: DType) -> Scalar {
    match dtype {
        DType::I64 => Scalar::Int(i64::try_from(v.i128()).expect("fits")),
        DType::U64 => Scalar::UInt(u64::try_from(v.i128()).expect("fits")),
        other => panic!("not an integer sum: {other}"),
    }
}

/// Integer sums that do not fit int64/uint64, where NumPy wraps silently:
/// along every axis `sum` and `nansum` return the exact sums when they
/// all fit and `Error::IntegerOverflow` naming an exact value (one
/// NumPy did not give) when one does not; a cumsum that overflows is the
/// same error and leaves no output; the float64 mean is NumPy's.
#[test]
fn integer_overflow_is_an_error_naming_the_exact_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut refused = 0;
    for entry in overflow_doc().get("inputs").arr() {
        let name = entry.get("name").str();
        let dtype = dtype_named(entry.get("dtype").str());
        let path = fixtures_dir().join(entry.get("file").str());
        for eng in engines() {
            let x = eng.open(&path).unwrap();
            for sums in entry.get("sums").arr() {
                let axis = match &sums.get("axis") {
                    Json::Null => ReduceAxis::All,
                    a if a.u64() == 0 => ReduceAxis::Axis0,
                    _ => ReduceAxis::Axis1,
                };
                let exact = sums.get("exact").arr();
                for (op, expr) in [("sum", x.sum(axis)), ("nansum", x.nansum(axis))] {
                    let what = format!("{name}: {op} along {axis:?}");
                    let result = eng.compute(&expr);
                    if matches!(sums.get("fits"), Json::Bool(true)) {
                        let got = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                        let want: Vec<Scalar> =
                            exact.iter().map(|v| exact_scalar(v, dtype)).collect();
                        assert_eq!(got.to_scalars(), want, "{what}");
                        continue;
                    }
                    let err = result.expect_err(&what);
                    let msg = err.to_string();
                    assert!(
                        matches!(err, Error::IntegerOverflow { .. }),
                        "{what}: {msg}"
                    );
                    assert!(msg.contains(dtype.name()), "{what}: {msg}");
                    let (lo, hi) = match dtype {
                        DType::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
                        _ => (0, i128::from(u64::MAX)),
                    };
                    let named = exact
                        .iter()
                        .map(Json::i128)
                        .filter(|v| *v < lo || *v > hi)
                        .any(|v| msg.contains(&v.to_string()));
                    assert!(named, "{what}: no exact overflowing sum named in: {msg}");
                    refused += 1;
                }
            }
            // The cumsum overflows too: an error, and no output.
            assert!(matches!(entry.get("cumsum0_fits"), Json::Bool(false)));
            let out = dir.path().join("cumsum.npy");
            let err = eng.write_npy(&x.cumsum(), &out).expect_err(name);
            assert!(
                matches!(err, Error::IntegerOverflow { .. }),
                "{name}: cumsum: {err}"
            );
            assert!(!out.exists(), "{name}: cumsum output left behind");
            // Means are float64 and do not overflow.
            let (mean0, mean) = eng.compute((x.mean(0), x.mean(None))).unwrap();
            let want0: Vec<f64> = entry.get("mean0").arr().iter().map(Json::f64).collect();
            for (g, w) in mean0.to_f64().iter().zip(&want0) {
                assert!(close(*g, *w, 1e-15 * w.abs()), "{name}: mean0 {g} vs {w}");
            }
            let (g, w) = (mean.as_f64_scalar().unwrap(), entry.get("mean").f64());
            assert!(close(g, w, 1e-15 * w.abs()), "{name}: mean {g} vs {w}");
        }
    }
    assert!(refused >= 3 * 2 * 4, "only {refused} overflows refused");
}
