//! End-to-end tests of `outcore stats`: the JSON contract for every axis
//! and several dtypes (values checked against values computed here from
//! the data), NaN and infinities, exact integer extremes, `--ops`, `--out`,
//! `--explain`, text output and errors.

mod common;

use std::path::Path;

use common::{all_close, cli, close, fixture, generate, num, nums, read_npy, tempdir, write_npy};
use outcore::{DType, f16};
use serde_json::{Value, json};

/// The keys every `stats --json` object has.
const KEYS: [&str; 20] = [
    "path",
    "shape",
    "dtype",
    "axis",
    "ops",
    "ddof",
    "results",
    "out",
    "files",
    "nan_count",
    "seconds",
    "passes",
    "blocks",
    "bytes_read",
    "bytes_written",
    "bytes_spilled",
    "peak_reserved_bytes",
    "peak_rss_bytes",
    "memory_limit_bytes",
    "threads",
];

/// Runs `stats` with `args` in `dir` and returns its JSON.
fn stats(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["stats"];
    all.extend_from_slice(args);
    all.push("--json");
    cli(dir, &all).json()
}

/// Any array's values as `f64`, with its dtype and shape.
fn read_f64(path: &Path) -> (DType, Vec<u64>, Vec<f64>) {
    let dtype = outcore::ArrayFile::open(path).unwrap().meta().dtype;
    fn conv<T: outcore::Element>(p: &Path, f: impl Fn(T) -> f64) -> (DType, Vec<u64>, Vec<f64>) {
        let (d, s, v) = read_npy::<T>(p);
        (d, s, v.into_iter().map(f).collect())
    }
    match dtype {
        DType::F64 => conv::<f64>(path, |x| x),
        DType::F32 => conv::<f32>(path, f64::from),
        DType::F16 => conv::<f16>(path, f16::to_f64),
        DType::I64 => conv::<i64>(path, |x| x as f64),
        DType::I32 => conv::<i32>(path, f64::from),
        DType::I16 => conv::<i16>(path, f64::from),
        DType::U8 => conv::<u8>(path, f64::from),
        DType::Bool => conv::<bool>(path, |b| f64::from(u8::from(b))),
        other => panic!("read_f64: add {other}"),
    }
}

/// The groups of elements each result reduces, in result order.
fn groups(data: &[f64], rows: usize, axis: &str) -> Vec<Vec<f64>> {
    let cols = data.len().checked_div(rows).unwrap_or(0);
    match axis {
        "all" => vec![data.to_vec()],
        "0" => (0..cols)
            .map(|c| (0..rows).map(|r| data[r * cols + c]).collect())
            .collect(),
        "1" => data.chunks(cols).map(<[f64]>::to_vec).collect(),
        _ => unreachable!(),
    }
}

/// NumPy's `op` over one group, computed plainly in `f64` (two-pass
/// variance; first index on ties).
fn expected(group: &[f64], op: &str, ddof: u32) -> f64 {
    let n = group.len() as f64;
    let sum: f64 = group.iter().sum();
    let mean = sum / n;
    let var = group.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - f64::from(ddof));
    let arg = |better: fn(f64, f64) -> bool| {
        let mut best = 0;
        for (i, &x) in group.iter().enumerate() {
            if better(x, group[best]) {
                best = i;
            }
        }
        best as f64
    };
    match op {
        "sum" => sum,
        "mean" => mean,
        "var" => var,
        "std" => var.sqrt(),
        "min" => group.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => group.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "argmin" => arg(|a, b| a < b),
        "argmax" => arg(|a, b| a > b),
        _ => unreachable!(),
    }
}

#[test]
fn int64_arange_over_all_elements_gives_closed_forms() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "1000,7", "i64", &["--dist", "arange"]);
    let v = stats(
        dir.path(),
        &[
            "x.npy",
            "--ops",
            "sum,mean,std,var,min,max,argmin,argmax",
            "--memory-limit",
            "64MiB",
            "--threads",
            "3",
        ],
    );
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "{v}");

    let n: i64 = 7000;
    let r = &v["results"];
    // Integer results are exact JSON integers.
    assert_eq!(r["sum"], json!(n * (n - 1) / 2));
    assert!(r["sum"].is_i64(), "{v}");
    assert_eq!(r["min"], json!(0));
    assert_eq!(r["max"], json!(n - 1));
    assert!(r["max"].is_i64(), "{v}");
    assert_eq!(r["argmin"], json!(0));
    assert_eq!(r["argmax"], json!(n - 1));
    let nf = n as f64;
    close(num(&r["mean"]), (nf - 1.0) / 2.0, 1e-15);
    close(num(&r["var"]), (nf * nf - 1.0) / 12.0, 1e-12);
    close(num(&r["std"]), ((nf * nf - 1.0) / 12.0).sqrt(), 1e-12);

    assert_eq!(v["path"], "x.npy");
    assert_eq!(v["shape"], json!([1000, 7]));
    assert_eq!(v["dtype"], "int64");
    assert_eq!(v["axis"], "all");
    assert_eq!(v["ddof"], 0);
    assert_eq!(v["bytes_read"], 7000 * 8);
    assert_eq!(v["bytes_written"], 0);
    assert_eq!(v["memory_limit_bytes"], 64 << 20);
    assert_eq!(v["passes"], 1);
    assert_eq!(v["threads"], 3);
    assert_eq!(v["out"], Value::Null);
    assert_eq!(v["files"], json!({}));
    assert!(num(&v["seconds"]) >= 0.0, "{v}");
    assert!(
        v["peak_rss_bytes"].is_u64() || v["peak_rss_bytes"].is_null(),
        "{v}"
    );
}

#[test]
fn every_axis_and_dtype_matches_values_computed_from_the_data() {
    let dir = tempdir();
    let ops = [
        "sum", "mean", "std", "var", "min", "max", "argmin", "argmax",
    ];
    for (dtype, dist) in [
        ("f64", "normal"),
        ("f32", "uniform"),
        ("f16", "uniform"),
        ("i16", "normal"),
        ("u8", "uniform"),
    ] {
        let name = format!("{dtype}.npy");
        generate(dir.path(), &name, "503,6", dtype, &["--dist", dist]);
        let (_, _, data) = read_f64(&dir.path().join(&name));
        let float = dtype.starts_with('f');
        for axis in ["all", "0", "1"] {
            // A small limit and several threads: many blocks, merged in order.
            let v = stats(
                dir.path(),
                &[
                    &name,
                    "--axis",
                    axis,
                    "--ops",
                    &ops.join(","),
                    "--ddof",
                    "1",
                    "--memory-limit",
                    "256KiB",
                    "--threads",
                    "3",
                ],
            );
            let what = format!("{dtype} axis {axis}");
            assert_eq!(v["axis"], axis, "{what}");
            assert_eq!(v["ops"], json!(ops), "{what}");
            let groups = groups(&data, 503, axis);
            for op in ops {
                let got = &v["results"][op];
                let got: Vec<&Value> = match axis {
                    "all" => vec![got],
                    _ => got.as_array().expect("a list").iter().collect(),
                };
                assert_eq!(got.len(), groups.len(), "{what} {op}");
                for (g, value) in groups.iter().zip(got) {
                    let want = expected(g, op, 1);
                    let integer = match op {
                        "argmin" | "argmax" => true,
                        "sum" | "min" | "max" => !float,
                        _ => false,
                    };
                    if integer {
                        assert!(value.is_i64() || value.is_u64(), "{what} {op}: {value}");
                        assert_eq!(num(value), want, "{what} {op}");
                    } else if matches!(op, "min" | "max") {
                        // The input dtype's value, exactly.
                        assert_eq!(num(value), want, "{what} {op}");
                    } else {
                        close(num(value), want, 1e-9);
                    }
                }
            }
            // Unsigned sums are uint64.
            if dtype == "u8" && axis == "all" {
                assert!(v["results"]["sum"].is_u64(), "{v}");
            }
        }
    }
}

#[test]
fn higher_dimensional_axis_0_is_the_trailing_shape_flattened() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "10,3,4", "i32", &["--dist", "arange"]);
    let v = stats(dir.path(), &["x.npy", "--axis", "0", "--ops", "sum,max"]);
    // Column k (flat index in the trailing 3x4 shape) holds k, k+12, ...
    let sums: Vec<i64> = (0..12).map(|k| (0..10).map(|r| r * 12 + k).sum()).collect();
    assert_eq!(v["results"]["sum"], json!(sums));
    let maxes: Vec<i64> = (0..12).map(|k| 9 * 12 + k).collect();
    assert_eq!(v["results"]["max"], json!(maxes));
    let v = stats(dir.path(), &["x.npy", "--axis", "1", "--ops", "min"]);
    let mins: Vec<i64> = (0..10).map(|r| r * 12).collect();
    assert_eq!(v["results"]["min"], json!(mins));
}

#[test]
fn bool_input_counts_and_keeps_bools() {
    let dir = tempdir();
    let path = dir.path().join("b.npy");
    write_npy(&path, &[3, 2], &[true, false, true, true, false, false]);
    let v = stats(dir.path(), &["b.npy", "--ops", "sum,mean,max,min"]);
    assert_eq!(v["results"]["sum"], json!(3));
    close(num(&v["results"]["mean"]), 0.5, 1e-15);
    assert_eq!(v["results"]["max"], json!(true));
    assert_eq!(v["results"]["min"], json!(false));
    let v = stats(dir.path(), &["b.npy", "--axis", "1", "--ops", "sum"]);
    assert_eq!(v["results"]["sum"], json!([1, 2, 0]));
}

#[test]
fn nan_and_infinities_are_strings() {
    let dir = tempdir();
    write_npy(
        &dir.path().join("n.npy"),
        &[2, 2],
        &[1.0f64, f64::NAN, 3.0, 4.0],
    );
    let v = stats(
        dir.path(),
        &[
            "n.npy",
            "--ops",
            "sum,mean,max,std,argmax,nansum,nanmean,nanmax,nanmin",
        ],
    );
    let r = &v["results"];
    for op in ["sum", "mean", "max", "std"] {
        assert_eq!(r[op], "nan", "{op}: {v}");
    }
    // NumPy's argmax points at the first NaN.
    assert_eq!(r["argmax"], json!(1));
    assert_eq!(r["nansum"], json!(8.0));
    close(num(&r["nanmean"]), 8.0 / 3.0, 1e-15);
    assert_eq!(r["nanmax"], json!(4.0));
    assert_eq!(r["nanmin"], json!(1.0));

    let v = stats(dir.path(), &["n.npy", "--axis", "0", "--ops", "sum,nansum"]);
    assert_eq!(v["results"]["sum"], json!([4.0, "nan"]));
    assert_eq!(v["results"]["nansum"], json!([4.0, 4.0]));
    let v = stats(dir.path(), &["n.npy", "--axis", "1", "--ops", "max,nanmax"]);
    assert_eq!(v["results"]["max"], json!(["nan", 4.0]));
    assert_eq!(v["results"]["nanmax"], json!([1.0, 4.0]));

    write_npy(
        &dir.path().join("i.npy"),
        &[4],
        &[f64::INFINITY, 1.0, f64::NEG_INFINITY, 2.0],
    );
    let v = stats(dir.path(), &["i.npy", "--ops", "sum,min,max"]);
    assert_eq!(
        v["results"],
        json!({"sum": "nan", "min": "-inf", "max": "inf"})
    );
    // A 1-d array has one column: axis 0 gives a list of one value.
    let v = stats(dir.path(), &["i.npy", "--axis", "0", "--ops", "sum"]);
    assert_eq!(v["results"]["sum"], json!(["nan"]), "{v}");
    write_npy(&dir.path().join("p.npy"), &[2], &[f64::INFINITY, 1.0]);
    let v = stats(dir.path(), &["p.npy", "--ops", "sum,mean"]);
    assert_eq!(v["results"], json!({"sum": "inf", "mean": "inf"}));

    // Text output says the same.
    let text = cli(dir.path(), &["stats", "i.npy", "--ops", "min,max"])
        .ok()
        .to_string();
    assert!(text.contains("-inf") && text.contains(" inf"), "{text}");
}

#[test]
fn integer_extremes_are_exact_json_integers() {
    let dir = tempdir();
    write_npy(&dir.path().join("u.npy"), &[3], &[u64::MAX, 0, 1 << 63]);
    let run = cli(
        dir.path(),
        &["stats", "u.npy", "--ops", "min,max,argmax", "--json"],
    );
    assert!(run.stdout.contains("18446744073709551615"), "{run:?}");
    let v = run.json();
    assert_eq!(v["results"]["max"].as_u64(), Some(u64::MAX));
    assert_eq!(v["results"]["min"].as_u64(), Some(0));
    assert_eq!(v["results"]["argmax"], json!(0));
    // The exact sum does not fit uint64: an error, not a wrapped value.
    let line = cli(dir.path(), &["stats", "u.npy", "--ops", "sum"])
        .error(1)
        .to_string();
    assert!(
        line.contains("u.npy") && line.contains("overflow"),
        "{line}"
    );

    // A uint64 sum above 2^63, exactly.
    write_npy(&dir.path().join("s.npy"), &[2], &[1u64 << 63, 1 << 62]);
    let v = stats(dir.path(), &["s.npy", "--ops", "sum"]);
    assert_eq!(v["results"]["sum"].as_u64(), Some(3 << 62));

    write_npy(&dir.path().join("i.npy"), &[3], &[i64::MIN, i64::MAX, -1]);
    let v = stats(dir.path(), &["i.npy", "--ops", "min,max,sum"]);
    assert_eq!(v["results"]["min"].as_i64(), Some(i64::MIN));
    assert_eq!(v["results"]["max"].as_i64(), Some(i64::MAX));
    // Accumulated exactly, whatever the order.
    assert_eq!(v["results"]["sum"], json!(-2));
}

#[test]
fn ops_are_parsed_and_results_keyed_as_given() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "100,3", "f64", &[]);
    let (_, _, data) = read_f64(&dir.path().join("x.npy"));

    // Default ops.
    let v = stats(dir.path(), &["x.npy"]);
    assert_eq!(v["ops"], json!(["sum", "mean", "std", "min", "max"]));
    let mut keys: Vec<&str> = v["results"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["max", "mean", "min", "std", "sum"]);

    // Case and spaces as given, duplicates kept in `ops` but computed once.
    let v = stats(dir.path(), &["x.npy", "--ops", "Sum, MEAN,sum,sum"]);
    assert_eq!(v["ops"], json!(["Sum", "MEAN", "sum", "sum"]));
    let r = v["results"].as_object().unwrap();
    assert_eq!(r.len(), 3, "{v}");
    assert_eq!(r["Sum"], r["sum"]);
    close(num(&r["MEAN"]), expected(&data, "mean", 0), 1e-12);

    // Repeated --ops add up.
    let v = stats(dir.path(), &["x.npy", "--ops", "min", "--ops", "nanmax"]);
    assert_eq!(v["ops"], json!(["min", "nanmax"]));

    // --ddof applies to var and std.
    let v = stats(dir.path(), &["x.npy", "--ops", "var,std", "--ddof", "1"]);
    assert_eq!(v["ddof"], 1);
    close(num(&v["results"]["var"]), expected(&data, "var", 1), 1e-12);
    close(num(&v["results"]["std"]), expected(&data, "std", 1), 1e-12);

    let line = cli(dir.path(), &["stats", "x.npy", "--ops", "sum,mode"])
        .error(2)
        .to_string();
    assert!(line.contains("unknown op 'mode'"), "{line}");
    for valid in ["sum", "argmax", "nanstd", "median", "quantile:Q"] {
        assert!(line.contains(valid), "{line}");
    }
    let line = cli(dir.path(), &["stats", "x.npy", "--ops", ""])
        .error(2)
        .to_string();
    assert!(line.contains("empty op"), "{line}");
}

#[test]
fn out_writes_numpy_files_matching_the_json() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "20,3,4", "f32", &["--dist", "normal"]);
    for (axis, shape) in [("all", vec![]), ("0", vec![3, 4]), ("1", vec![20])] {
        let out = format!("res/axis{axis}");
        let v = stats(
            dir.path(),
            &[
                "x.npy",
                "--axis",
                axis,
                "--ops",
                "sum,min,argmax",
                "--out",
                &out,
            ],
        );
        assert_eq!(v["out"], json!(out));
        for (op, dtype) in [
            ("sum", DType::F64),
            ("min", DType::F32),
            ("argmax", DType::I64),
        ] {
            let file = dir.path().join(&out).join(format!("{op}.npy"));
            assert_eq!(v["files"][op], json!(format!("{out}/{op}.npy")));
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(&bytes[..6], b"\x93NUMPY", "{op}");
            let (d, s, values) = read_f64(&file);
            assert_eq!((d, &s), (dtype, &shape), "{op} axis {axis}");
            let json_values = match axis {
                "all" => vec![num(&v["results"][op])],
                _ => nums(&v["results"][op]),
            };
            assert_eq!(values, json_values, "{op} axis {axis}");
        }
    }
    // Running again replaces the files.
    let v = stats(
        dir.path(),
        &["x.npy", "--ops", "sum", "--out", "res/axisall"],
    );
    assert_eq!(v["files"]["sum"], "res/axisall/sum.npy");

    // NaN survives the round trip.
    write_npy(&dir.path().join("n.npy"), &[2], &[f64::NAN, 1.0]);
    stats(dir.path(), &["n.npy", "--ops", "sum", "--out", "nan"]);
    let (_, _, values) = read_f64(&dir.path().join("nan/sum.npy"));
    assert!(values[0].is_nan());

    // Text output names the files.
    let text = cli(
        dir.path(),
        &[
            "stats", "x.npy", "--axis", "1", "--ops", "max", "--out", "t",
        ],
    )
    .ok()
    .to_string();
    assert!(text.contains("max.npy"), "{text}");
    assert!(dir.path().join("t/max.npy").exists());
}

#[test]
fn explain_prints_the_plan_without_running() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "1000,8", "f64", &[]);
    let text = cli(
        dir.path(),
        &["stats", "x.npy", "--explain", "--out", "never"],
    )
    .ok()
    .to_string();
    assert!(text.starts_with("plan: 1 pass"), "{text}");
    assert!(text.contains("reduce"), "{text}");
    assert!(!dir.path().join("never").exists());

    let v = stats(
        dir.path(),
        &[
            "x.npy",
            "--explain",
            "--memory-limit",
            "1MiB",
            "--threads",
            "2",
        ],
    );
    let passes = v["passes"].as_array().expect("a list of passes");
    assert_eq!(passes.len(), 1, "{v}");
    let p = &passes[0];
    assert_eq!(p["bytes_read"], 64_000);
    assert_eq!(p["bytes_written"], 0);
    assert_eq!(p["rows"], 1000);
    assert!(p["block_rows"].as_u64().unwrap() >= 1, "{v}");
    assert!(p["blocks_in_flight"].as_u64().unwrap() >= 1, "{v}");
    assert!(p["peak_bytes"].as_u64().unwrap() <= 1 << 20, "{v}");
    assert_eq!(v["memory_limit_bytes"], 1 << 20);
    assert_eq!(v["threads"], 2);
    assert_eq!(v["path"], "x.npy");
    assert!(v.get("results").is_none(), "{v}");
}

#[test]
fn text_output_is_a_table_of_ops() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "100,20", "i32", &["--dist", "arange"]);
    let text = cli(dir.path(), &["stats", "x.npy"]).ok().to_string();
    let sum_line = text.lines().find(|l| l.starts_with("sum ")).expect(&text);
    assert!(sum_line.ends_with(" 1999000"), "{text}");
    for op in ["mean", "std", "min", "max"] {
        assert!(text.lines().any(|l| l.starts_with(op)), "{op}: {text}");
    }
    assert!(text.contains("(100, 20) int32"), "{text}");

    let text = cli(
        dir.path(),
        &["stats", "x.npy", "--axis", "0", "--ops", "min"],
    )
    .ok()
    .to_string();
    assert!(
        text.contains("min  [0, 1, 2, 3, 4, ...] (20 values)"),
        "{text}"
    );
    assert!(text.contains("--json or --out"), "{text}");
}

#[test]
fn raw_input_is_described_on_the_command_line() {
    let dir = tempdir();
    generate(
        dir.path(),
        "x.bin",
        "10,3",
        "i32",
        &["--raw", "--dist", "arange", "--byte-order", "big"],
    );
    let v = stats(
        dir.path(),
        &[
            "x.bin", "--raw", "--dtype", ">i4", "--shape", "10,3", "--ops", "sum,max",
        ],
    );
    assert_eq!(v["results"], json!({"sum": 435, "max": 29}));
    assert_eq!(v["shape"], json!([10, 3]));
}

#[test]
fn runtime_errors_exit_1_with_one_line_naming_the_problem() {
    let dir = tempdir();
    let line = cli(dir.path(), &["stats", "missing.npy"])
        .error(1)
        .to_string();
    assert!(line.contains("missing.npy"), "{line}");

    let bad = fixture("bad_magic_first_byte.npy");
    let run = cli(
        dir.path(),
        &[std::ffi::OsStr::new("stats"), bad.as_os_str()],
    );
    let line = run.error(1);
    assert!(
        line.contains("bad_magic_first_byte.npy") && line.contains("magic"),
        "{line}"
    );

    generate(dir.path(), "v.npy", "5", "f64", &[]);
    let line = cli(dir.path(), &["stats", "v.npy", "--axis", "1"])
        .error(1)
        .to_string();
    assert!(
        line.contains("v.npy") && line.contains("--axis 1"),
        "{line}"
    );
    generate(dir.path(), "s.npy", "", "f64", &[]);
    let line = cli(dir.path(), &["stats", "s.npy", "--axis", "0"])
        .error(1)
        .to_string();
    assert!(
        line.contains("s.npy") && line.contains("shape ()"),
        "{line}"
    );
    // A 0-d array reduces over all of its one element.
    let v = stats(dir.path(), &["s.npy", "--ops", "min,max"]);
    assert_eq!(v["results"]["min"], v["results"]["max"]);

    generate(dir.path(), "e.npy", "0,3", "f64", &[]);
    let line = cli(dir.path(), &["stats", "e.npy", "--ops", "min"])
        .error(1)
        .to_string();
    assert!(line.contains("e.npy") && line.contains("empty"), "{line}");
    let v = stats(dir.path(), &["e.npy", "--ops", "sum,mean"]);
    assert_eq!(v["results"], json!({"sum": 0.0, "mean": "nan"}));

    // One row of 100000 float64 does not fit in 1 byte, nor in 512 KiB.
    generate(dir.path(), "w.npy", "2,100000", "f64", &[]);
    for limit in ["1", "512KiB"] {
        for extra in [&[][..], &["--explain"][..]] {
            let mut args = vec!["stats", "w.npy", "--memory-limit", limit];
            args.extend_from_slice(extra);
            let line = cli(dir.path(), &args).error(1).to_string();
            assert!(line.contains("w.npy"), "{line}");
            assert!(line.contains("memory limit"), "{line}");
            assert!(line.contains("smallest limit"), "{line}");
        }
    }

    // --out naming a file.
    std::fs::write(dir.path().join("afile"), b"x").unwrap();
    let line = cli(dir.path(), &["stats", "v.npy", "--out", "afile"])
        .error(1)
        .to_string();
    assert!(line.contains("afile"), "{line}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "10,2", "f64", &[]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["stats", "x.npy", "--memory-limit", "lots"],
            "--memory-limit",
        ),
        (&["stats", "x.npy", "--memory-limit", "0"], "--memory-limit"),
        (&["stats", "x.npy", "--memory-limit=-1G"], "--memory-limit"),
        (&["stats", "x.npy", "--axis", "2"], "--axis"),
        (&["stats", "x.npy", "--threads", "0"], "--threads"),
        (&["stats", "x.npy", "--ddof=-1"], "--ddof"),
        (&["stats", "x.npy", "--ops", "mode"], "mode"),
        (&["stats"], "PATH"),
    ];
    for (args, needle) in cases {
        let line = cli(dir.path(), args).error(2).to_string();
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

#[test]
fn values_do_not_depend_on_thread_count() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "2000,5", "f32", &["--dist", "normal"]);
    let (_, _, data) = read_f64(&dir.path().join("x.npy"));
    let want: Vec<f64> = groups(&data, 2000, "0")
        .iter()
        .map(|g| expected(g, "std", 0))
        .collect();
    let args = ["x.npy", "--ops", "sum,mean,std,nansum", "--axis", "0"];
    let run = |threads: &str, limit: &str| {
        let extra = ["--threads", threads, "--memory-limit", limit];
        stats(dir.path(), &[&args[..], &extra[..]].concat())
    };
    // Partials merge in block order: the same bits for any thread count
    // while the block size stays the same ...
    let one = run("1", "1GiB");
    for threads in ["2", "3", "4"] {
        assert_eq!(one["results"], run(threads, "1GiB")["results"], "{threads}");
    }
    all_close(&nums(&one["results"]["std"]), &want, 1e-12);
    // ... and close to it when a small limit makes blocks smaller (their
    // size then depends on the limit and the thread count).
    for (threads, limit) in [("1", "64KiB"), ("4", "64KiB"), ("3", "100KiB")] {
        let v = run(threads, limit);
        all_close(&nums(&v["results"]["std"]), &want, 1e-12);
        all_close(
            &nums(&v["results"]["sum"]),
            &nums(&one["results"]["sum"]),
            1e-12,
        );
    }
}

/// `--ops any,all,count_nonzero,ptp`: NumPy's `np.any`, `np.all`,
/// `np.count_nonzero` and `np.ptp` (the values below are NumPy 2.4's for
/// the same data). Booleans are JSON true/false, counts JSON integers
/// (int64, over all elements too), ptp keeps the input's kind: integers
/// exact and wrapped as NumPy's max - min (int8 [-128, 127] gives -1),
/// floats as numbers, NaN and infinities as strings. NaN counts as
/// nonzero, -0.0 as zero; ptp of bool and ptp of nothing are errors.
#[test]
fn any_all_count_nonzero_ptp_as_json() {
    let dir = tempdir();
    let ops = "any,all,count_nonzero,ptp";
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    #[rustfmt::skip]
    let x = [
        -0.0, nan, 1.5, 2.5,
        -0.0, 2.0, -1.0, -4.0,
        -0.0, 0.0, inf, 7.0,
        -0.0, 3.0, 0.25, 1.0,
    ];
    write_npy(&dir.path().join("x.npy"), &[4, 4], &x);
    let v = stats(dir.path(), &["x.npy", "--ops", ops, "--axis", "0"]);
    assert_eq!(v["ops"], json!(["any", "all", "count_nonzero", "ptp"]));
    assert_eq!(v["axis"], json!("0"));
    let r = &v["results"];
    assert_eq!(r["any"], json!([false, true, true, true]), "{v}");
    assert_eq!(r["all"], json!([false, false, true, true]), "{v}");
    assert_eq!(r["count_nonzero"], json!([0, 3, 4, 4]), "{v}");
    let counts = r["count_nonzero"].as_array().unwrap();
    assert!(counts.iter().all(Value::is_i64), "{v}");
    // Floats stay floats (11.0, not 11); -0.0 - -0.0 is +0.0.
    assert_eq!(r["ptp"], json!([0.0, "nan", "inf", 11.0]), "{v}");
    assert!(r["ptp"][3].is_f64(), "{v}");
    assert!(r["ptp"][0].as_f64().unwrap().is_sign_positive(), "{v}");

    let v = stats(dir.path(), &["x.npy", "--ops", ops]);
    assert_eq!(
        v["results"],
        json!({"any": true, "all": false, "count_nonzero": 11, "ptp": "nan"})
    );
    assert!(v["results"]["count_nonzero"].is_i64(), "{v}");
    let v = stats(dir.path(), &["x.npy", "--ops", ops, "--axis", "1"]);
    assert_eq!(
        v["results"],
        json!({
            "any": [true, true, true, true],
            "all": [false, false, false, false],
            "count_nonzero": [3, 3, 2, 3],
            "ptp": ["nan", 6.0, "inf", 3.0],
        })
    );

    // int8: ptp wraps; 3 - (-128) = 131 is -125.
    write_npy(
        &dir.path().join("i.npy"),
        &[3, 2],
        &[-128i8, 3, 127, 1, 0, 5],
    );
    let v = stats(dir.path(), &["i.npy", "--ops", ops, "--axis", "0"]);
    assert_eq!(
        v["results"],
        json!({
            "any": [true, true],
            "all": [false, true],
            "count_nonzero": [2, 3],
            "ptp": [-1, 4],
        })
    );
    assert!(v["results"]["ptp"][0].is_i64(), "{v}");
    let v = stats(dir.path(), &["i.npy", "--ops", "ptp,count_nonzero"]);
    assert_eq!(v["results"], json!({"ptp": -1, "count_nonzero": 5}));
    let v = stats(dir.path(), &["i.npy", "--ops", "ptp", "--axis", "1"]);
    assert_eq!(v["results"]["ptp"], json!([-125, 126, 5]));

    // uint64: exact past 2^63. A 1-d array's axis 0 is a list of one value.
    write_npy(&dir.path().join("u.npy"), &[3], &[0u64, u64::MAX, 7]);
    let v = stats(dir.path(), &["u.npy", "--ops", ops, "--axis", "0"]);
    assert_eq!(v["results"]["ptp"][0].as_u64(), Some(u64::MAX), "{v}");
    assert_eq!(v["results"]["count_nonzero"], json!([2]));
    assert_eq!(v["results"]["all"], json!([false]));

    // float16: 65504 - (-65504) overflows float16 to inf, as NumPy's
    // float16 subtraction does; 65502.5 rounds to 65504.
    let h = [65504.0, 1.5, -65504.0, 0.5].map(f16::from_f64);
    write_npy(&dir.path().join("h.npy"), &[2, 2], &h);
    let v = stats(dir.path(), &["h.npy", "--ops", "ptp", "--axis", "0"]);
    assert_eq!(v["dtype"], json!("float16"));
    assert_eq!(v["results"]["ptp"], json!(["inf", 1.0]));
    let v = stats(dir.path(), &["h.npy", "--ops", "ptp", "--axis", "1"]);
    assert_eq!(v["results"]["ptp"], json!([65504.0, 65504.0]));

    // bool: any/all/count_nonzero are fine, ptp is refused (NumPy raises
    // TypeError for the bool subtract).
    write_npy(
        &dir.path().join("b.npy"),
        &[3, 2],
        &[true, false, true, false, true, true],
    );
    let v = stats(
        dir.path(),
        &["b.npy", "--ops", "any,all,count_nonzero", "--axis", "0"],
    );
    assert_eq!(
        v["results"],
        json!({"any": [true, true], "all": [true, false], "count_nonzero": [3, 1]})
    );
    let line = cli(dir.path(), &["stats", "b.npy", "--ops", "ptp"])
        .error(1)
        .to_string();
    assert!(line.contains("b.npy") && line.contains("bool"), "{line}");

    // Nothing to reduce: any is false, all true, count_nonzero 0; ptp is
    // NumPy's "zero-size array" error.
    generate(dir.path(), "e.npy", "0,3", "f64", &[]);
    let v = stats(
        dir.path(),
        &["e.npy", "--ops", "any,all,count_nonzero", "--axis", "0"],
    );
    assert_eq!(
        v["results"],
        json!({
            "any": [false, false, false],
            "all": [true, true, true],
            "count_nonzero": [0, 0, 0],
        })
    );
    let v = stats(dir.path(), &["e.npy", "--ops", "any,all,count_nonzero"]);
    assert_eq!(
        v["results"],
        json!({"any": false, "all": true, "count_nonzero": 0})
    );
    for axis in ["all", "0"] {
        let line = cli(
            dir.path(),
            &["stats", "e.npy", "--ops", "ptp", "--axis", axis],
        )
        .error(1)
        .to_string();
        assert!(line.contains("e.npy") && line.contains("empty"), "{line}");
    }
}
