//! The memory budget, seen from outside: each engine command, run as its
//! own process on a 64 MiB input with `--memory-limit 16MiB`, reports a
//! peak resident set (`peak_rss_bytes`, the process's VmHWM) under the
//! limit plus 16 MiB of fixed overhead (the binary, thread stacks, the
//! allocator).

mod common;

use std::path::Path;

use common::{cli, generate, tempdir};
use serde_json::Value;

const LIMIT: u64 = 16 << 20;
const OVERHEAD: u64 = 16 << 20;

/// Writes a 64 MiB float64 array (2^20 rows of 8) as `x.npy`.
fn big_input(dir: &Path) {
    generate(dir, "x.npy", "1048576,8", "f64", &["--no-fsync"]);
    let len = std::fs::metadata(dir.join("x.npy")).unwrap().len();
    assert_eq!(len, 128 + (64 << 20));
}

/// Checks the reported peak RSS (where the platform reports one).
fn check_peak(v: &Value) {
    assert_eq!(v["memory_limit_bytes"], LIMIT);
    assert_eq!(v["bytes_read"].as_u64().unwrap() % (64 << 20), 0, "{v}");
    match v["peak_rss_bytes"].as_u64() {
        Some(peak) => assert!(
            peak < LIMIT + OVERHEAD,
            "peak RSS {peak} bytes is over the {LIMIT}-byte limit + {OVERHEAD}: {v}"
        ),
        None => assert!(v["peak_rss_bytes"].is_null(), "{v}"),
    }
}

#[test]
fn stats_peak_rss_stays_under_the_limit() {
    let dir = tempdir();
    big_input(dir.path());
    let v = cli(
        dir.path(),
        &["stats", "x.npy", "--memory-limit", "16MiB", "--json"],
    )
    .json();
    check_peak(&v);
}

#[test]
fn convert_peak_rss_stays_under_the_limit() {
    let dir = tempdir();
    big_input(dir.path());
    let v = cli(
        dir.path(),
        &[
            "convert",
            "x.npy",
            "y.npy",
            "--dtype",
            "f32",
            "--memory-limit",
            "16MiB",
            "--no-fsync",
            "--json",
        ],
    )
    .json();
    check_peak(&v);
}

#[test]
fn standardize_peak_rss_stays_under_the_limit() {
    let dir = tempdir();
    big_input(dir.path());
    let v = cli(
        dir.path(),
        &[
            "standardize",
            "x.npy",
            "z.npy",
            "--memory-limit",
            "16MiB",
            "--no-fsync",
            "--json",
        ],
    )
    .json();
    assert_eq!(v["passes"], 2);
    check_peak(&v);
}
