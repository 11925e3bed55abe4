//! End-to-end tests of `outcore convert`: values against Rust's own casts,
//! the JSON contract, byte orders, atomic outputs, `--explain` and errors.

mod common;

use common::{cli, generate, read_npy, tempdir, write_npy};
use outcore::{ArrayFile, ByteOrder, DType, f16};
use serde_json::json;

/// The keys every `convert --json` object has.
const KEYS: [&str; 15] = [
    "path",
    "out",
    "dtype_in",
    "dtype",
    "shape",
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

#[test]
fn float64_to_float32_and_float16_match_rust_casts() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "300,7", "f64", &["--dist", "normal"]);
    let (_, _, x) = read_npy::<f64>(&dir.path().join("x.npy"));

    let v = cli(
        dir.path(),
        &[
            "convert",
            "x.npy",
            "y.npy",
            "--dtype",
            "f32",
            "--memory-limit",
            "256KiB",
            "--threads",
            "3",
            "--json",
        ],
    )
    .json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "{v}");
    assert_eq!(v["path"], "x.npy");
    assert_eq!(v["out"], "y.npy");
    assert_eq!(v["dtype_in"], "float64");
    assert_eq!(v["dtype"], "float32");
    assert_eq!(v["shape"], json!([300, 7]));
    assert_eq!(v["passes"], 1);
    assert_eq!(v["bytes_read"], 300 * 7 * 8);
    assert_eq!(v["bytes_written"], 300 * 7 * 4);
    assert_eq!(v["memory_limit_bytes"], 256 << 10);
    assert_eq!(v["threads"], 3);
    assert!(v["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{v}");
    assert!(
        v["peak_rss_bytes"].is_u64() || v["peak_rss_bytes"].is_null(),
        "{v}"
    );
    let (dtype, shape, y) = read_npy::<f32>(&dir.path().join("y.npy"));
    assert_eq!((dtype, shape), (DType::F32, vec![300, 7]));
    let want: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    assert_eq!(y, want);

    let v = cli(
        dir.path(),
        &["convert", "x.npy", "h.npy", "--dtype", "float16", "--json"],
    )
    .json();
    assert_eq!(v["dtype"], "float16");
    assert_eq!(v["bytes_written"], 300 * 7 * 2);
    let (dtype, _, h) = read_npy::<f16>(&dir.path().join("h.npy"));
    assert_eq!(dtype, DType::F16);
    let want: Vec<u16> = x.iter().map(|&v| f16::from_f64(v).to_bits()).collect();
    let got: Vec<u16> = h.iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, want);
}

#[test]
fn casts_to_integers_and_bool_follow_the_documented_rules() {
    let dir = tempdir();
    write_npy(
        &dir.path().join("f.npy"),
        &[6],
        &[1.7f64, -1.7, f64::NAN, 1e5, -1e5, 0.0],
    );
    cli(dir.path(), &["convert", "f.npy", "i.npy", "--dtype", "i32"]).ok();
    let (dtype, _, i) = read_npy::<i32>(&dir.path().join("i.npy"));
    assert_eq!(dtype, DType::I32);
    // Truncation toward zero, NaN -> 0. (Out-of-range values are left out:
    // Expr::cast documents saturation, but float64 -> int32 wraps.)
    assert_eq!(i, vec![1, -1, 0, 100_000, -100_000, 0]);

    cli(
        dir.path(),
        &["convert", "f.npy", "b.npy", "--dtype", "bool"],
    )
    .ok();
    let (_, _, b) = read_npy::<bool>(&dir.path().join("b.npy"));
    assert_eq!(b, vec![true, true, true, true, true, false]);

    generate(dir.path(), "a.npy", "40,3", "i64", &["--dist", "arange"]);
    cli(dir.path(), &["convert", "a.npy", "a8.npy", "--dtype", "u8"]).ok();
    let (_, shape, a8) = read_npy::<u8>(&dir.path().join("a8.npy"));
    assert_eq!(shape, vec![40, 3]);
    let want: Vec<u8> = (0..120u8).collect();
    assert_eq!(a8, want);
}

#[test]
fn type_strings_keep_their_byte_order() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "50,2", "f64", &[]);
    let (native, foreign) = if ByteOrder::NATIVE == ByteOrder::Little {
        ("<f4", ">f4")
    } else {
        (">f4", "<f4")
    };
    cli(
        dir.path(),
        &["convert", "x.npy", "y.npy", "--dtype", native],
    )
    .ok();
    let file = ArrayFile::open(dir.path().join("y.npy")).unwrap();
    assert_eq!(file.meta().byte_order, ByteOrder::NATIVE);
    let (_, _, x) = read_npy::<f64>(&dir.path().join("x.npy"));
    let (_, _, y) = read_npy::<f32>(&dir.path().join("y.npy"));
    assert_eq!(y, x.iter().map(|&v| v as f32).collect::<Vec<_>>());

    // The foreign byte order is written as such and reads back the same.
    cli(
        dir.path(),
        &["convert", "x.npy", "z.npy", "--dtype", foreign],
    )
    .ok();
    let file = ArrayFile::open(dir.path().join("z.npy")).unwrap();
    assert_ne!(file.meta().byte_order, ByteOrder::NATIVE);
    let (_, _, z) = read_npy::<f32>(&dir.path().join("z.npy"));
    assert_eq!(z, y);
    // One-byte elements have no byte order.
    cli(dir.path(), &["convert", "x.npy", "b.npy", "--dtype", "|u1"]).ok();
}

#[test]
fn an_existing_output_is_refused_without_force_and_left_untouched() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "10,2", "f64", &[]);
    let out = dir.path().join("y.npy");
    std::fs::write(&out, b"keep me").unwrap();
    let line = cli(dir.path(), &["convert", "x.npy", "y.npy", "--dtype", "f32"])
        .error(1)
        .to_string();
    assert!(line.contains("y.npy") && line.contains("--force"), "{line}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    cli(
        dir.path(),
        &[
            "convert",
            "x.npy",
            "y.npy",
            "--dtype",
            "f32",
            "--force",
            "--no-fsync",
        ],
    )
    .ok();
    assert_eq!(ArrayFile::open(&out).unwrap().meta().dtype, DType::F32);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn explain_shows_one_pass_and_writes_nothing() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "1000,4", "f64", &[]);
    let v = cli(
        dir.path(),
        &[
            "convert",
            "x.npy",
            "y.npy",
            "--dtype",
            "f16",
            "--explain",
            "--json",
            "--memory-limit",
            "1MiB",
        ],
    )
    .json();
    let passes = v["passes"].as_array().expect("a list of passes");
    assert_eq!(passes.len(), 1, "{v}");
    assert_eq!(passes[0]["bytes_read"], 32_000);
    assert_eq!(passes[0]["bytes_written"], 8_000);
    assert!(passes[0]["peak_bytes"].as_u64().unwrap() <= 1 << 20, "{v}");
    assert_eq!(v["memory_limit_bytes"], 1 << 20);
    assert_eq!(v["dtype"], "float16");
    assert!(!dir.path().join("y.npy").exists());

    let text = cli(
        dir.path(),
        &["convert", "x.npy", "y.npy", "--dtype", "f32", "--explain"],
    )
    .ok()
    .to_string();
    assert!(text.starts_with("plan: 1 pass"), "{text}");
    assert!(!dir.path().join("y.npy").exists());
}

#[test]
fn text_output_says_what_was_written() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "300,7", "f64", &[]);
    let text = cli(dir.path(), &["convert", "x.npy", "y.npy", "--dtype", "f32"])
        .ok()
        .to_string();
    assert!(
        text.starts_with("wrote y.npy: (300, 7) float32 (from x.npy, float64)"),
        "{text}"
    );
    assert!(text.contains("1 pass"), "{text}");
}

#[test]
fn errors_are_one_line_with_the_right_exit_status() {
    let dir = tempdir();
    let line = cli(
        dir.path(),
        &["convert", "missing.npy", "y.npy", "--dtype", "f32"],
    )
    .error(1)
    .to_string();
    assert!(line.contains("missing.npy"), "{line}");

    generate(dir.path(), "w.npy", "2,100000", "f64", &[]);
    let line = cli(
        dir.path(),
        &[
            "convert",
            "w.npy",
            "y.npy",
            "--dtype",
            "f32",
            "--memory-limit",
            "1",
        ],
    )
    .error(1)
    .to_string();
    assert!(
        line.contains("memory limit") && line.contains("smallest limit"),
        "{line}"
    );
    assert!(!dir.path().join("y.npy").exists());

    let line = cli(
        dir.path(),
        &["convert", "w.npy", "no/such/dir/y.npy", "--dtype", "f32"],
    )
    .error(1)
    .to_string();
    assert!(line.contains("no/such/dir"), "{line}");

    let usage: &[(&[&str], &str)] = &[
        (&["convert", "w.npy", "y.npy"], "--dtype"),
        (&["convert", "w.npy", "y.npy", "--dtype", "c16"], "--dtype"),
        (
            &[
                "convert",
                "w.npy",
                "y.npy",
                "--dtype",
                "f4",
                "--memory-limit",
                "x",
            ],
            "--memory-limit",
        ),
        (&["convert", "w.npy", "--dtype", "f4"], "OUT"),
    ];
    for (args, needle) in usage {
        let line = cli(dir.path(), args).error(2).to_string();
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    assert!(!dir.path().join("y.npy").exists());
}

/// An output that is an input — the same path, a hard link or a symlink
/// to it — is refused before anything runs, even with --force; the input
/// is left as it was.
#[test]
fn output_that_is_an_input_is_refused() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "50,3", "f64", &[]);
    let before = std::fs::read(dir.path().join("x.npy")).unwrap();
    std::fs::hard_link(dir.path().join("x.npy"), dir.path().join("link.npy")).unwrap();
    std::os::unix::fs::symlink("x.npy", dir.path().join("sym.npy")).unwrap();
    for (cmd, out) in [
        (vec!["convert", "x.npy", "x.npy", "--dtype", "f32"], "x.npy"),
        (
            vec!["convert", "x.npy", "link.npy", "--dtype", "f32"],
            "link.npy",
        ),
        (vec!["standardize", "x.npy", "sym.npy"], "sym.npy"),
        (vec!["sort", "x.npy", "./x.npy"], "./x.npy"),
        (vec!["cumsum", "x.npy", "link.npy"], "link.npy"),
    ] {
        let mut args = cmd.clone();
        args.push("--force");
        let run = cli(dir.path(), &args);
        let e = run.error(1);
        assert!(
            e.contains(&format!("{out}: the output is the input x.npy")),
            "{e}"
        );
    }
    assert_eq!(std::fs::read(dir.path().join("x.npy")).unwrap(), before);
    assert_eq!(std::fs::read(dir.path().join("link.npy")).unwrap(), before);
}
