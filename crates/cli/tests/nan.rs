//! NaN in the input, as a new user meets it: the nan-variants of the
//! quantiles (`--ops nanmedian,nanquantile:Q`), quantiles along axis 1,
//! `standardize --skipna`, and the note on stderr when a result is NaN
//! because the input holds NaN (never in `--json` output, which carries
//! `nan_count` instead).

mod common;

use common::{cli, nums, read_npy, tempdir, write_npy};

/// A 6 × 3 float64 array: column 0 has a NaN, column 1 none, column 2 is
/// all NaN.
fn write_input(dir: &std::path::Path) {
    let nan = f64::NAN;
    #[rustfmt::skip]
    let data = [
        1.0, 10.0, nan,
        nan, 20.0, nan,
        3.0, 30.0, nan,
        4.0, 40.0, nan,
        5.0, 50.0, nan,
        6.0, 60.0, nan,
    ];
    write_npy(&dir.join("x.npy"), &[6, 3], &data);
}

#[test]
fn stats_says_once_which_results_are_nan_because_of_nan() {
    let dir = tempdir();
    write_input(dir.path());
    let run = cli(
        dir.path(),
        &[
            "stats",
            "x.npy",
            "--axis",
            "0",
            "--ops",
            "mean,nanmean,median,sum",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    let notes: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(notes.len(), 1, "{run:#?}");
    let note = notes[0];
    assert!(note.starts_with("note: 2 of 3 columns"), "{note}");
    assert!(note.contains("because the input holds NaN"), "{note}");
    assert!(note.contains("(7 of 18 elements)"), "{note}");
    assert!(note.contains("--ops nanmean,nanmedian,nansum"), "{note}");
    // Quantiles alone count the NaN only once a result is NaN.
    let run = cli(dir.path(), &["stats", "x.npy", "--ops", "median"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stderr
            .starts_with("note: median are NaN because the input holds NaN")
            && run.stderr.contains("--ops nanmedian"),
        "{run:#?}"
    );
    // The nan-variants alone: no note.
    let out = cli(
        dir.path(),
        &[
            "stats",
            "x.npy",
            "--ops",
            "nanmean,nanmedian,nanquantile:0.5",
        ],
    );
    out.ok();
    // An input without NaN: no note either.
    write_npy(&dir.path().join("y.npy"), &[2, 2], &[1.0f64, 2.0, 3.0, 4.0]);
    cli(dir.path(), &["stats", "y.npy"]).ok();
}

#[test]
fn json_has_nan_count_and_no_note() {
    let dir = tempdir();
    write_input(dir.path());
    let v = cli(dir.path(), &["stats", "x.npy", "--json"]).json();
    assert_eq!(v["nan_count"], 7, "{v}");
    write_npy(&dir.path().join("i.npy"), &[2], &[1i32, 2]);
    let v = cli(dir.path(), &["stats", "i.npy", "--json"]).json();
    assert_eq!(v["nan_count"], 0, "{v}");
}

#[test]
fn nanmedian_and_nanquantile_ops_equal_numpy() {
    let dir = tempdir();
    write_input(dir.path());
    let v = cli(
        dir.path(),
        &[
            "stats",
            "x.npy",
            "--axis",
            "0",
            "--ops",
            "nanmedian,nanquantile:0.5,nanquantile:0.25,median",
            "--json",
        ],
    )
    .json();
    let r = &v["results"];
    // np.nanmedian(x, axis=0) = [4, 35, nan] (with a RuntimeWarning).
    let m = nums(&r["nanmedian"]);
    assert_eq!(&m[..2], &[4.0, 35.0]);
    assert!(m[2].is_nan());
    assert_eq!(nums(&r["nanquantile:0.5"])[..2], [4.0, 35.0]);
    // np.nanquantile(x, 0.25, axis=0) = [3, 22.5, nan].
    assert_eq!(nums(&r["nanquantile:0.25"])[..2], [3.0, 22.5]);
    let m = nums(&r["median"]);
    assert!(m[0].is_nan() && m[1] == 35.0 && m[2].is_nan());
    // Along axis 1: np.nanmedian(x, axis=1) = [5.5, 20, 16.5, 22, 27.5, 33].
    let v = cli(
        dir.path(),
        &[
            "stats",
            "x.npy",
            "--axis",
            "1",
            "--ops",
            "nanmedian,median",
            "--json",
        ],
    )
    .json();
    assert_eq!(
        nums(&v["results"]["nanmedian"]),
        [5.5, 20.0, 16.5, 22.0, 27.5, 33.0]
    );
    assert!(nums(&v["results"]["median"]).iter().all(|m| m.is_nan()));
    // --out writes a nanquantile along axis 1.
    let v = cli(
        dir.path(),
        &[
            "stats",
            "x.npy",
            "--axis",
            "1",
            "--ops",
            "nanquantile:1",
            "--out",
            "res",
            "--json",
        ],
    )
    .json();
    let file = v["files"]["nanquantile:1"].as_str().unwrap().to_string();
    let (_, shape, vals) = read_npy::<f64>(&dir.path().join(file));
    assert_eq!(shape, [6]);
    assert_eq!(vals, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
}

#[test]
fn standardize_without_skipna_says_why_columns_are_nan() {
    let dir = tempdir();
    write_input(dir.path());
    let run = cli(dir.path(), &["standardize", "x.npy", "z.npy"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let notes: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(notes.len(), 1, "{run:#?}");
    assert!(
        notes[0].starts_with("note: 2 of 3 columns of z.npy are NaN"),
        "{run:#?}"
    );
    assert!(notes[0].contains("--skipna"), "{run:#?}");
    // --json: no note, one object.
    let v = cli(dir.path(), &["standardize", "x.npy", "z2.npy", "--json"]).json();
    assert_eq!(v["skipna"], false);
    // A constant column is NaN (0/0) but not because of NaN: no note.
    write_npy(
        &dir.path().join("c.npy"),
        &[3, 2],
        &[1.0f64, 5.0, 2.0, 5.0, 3.0, 5.0],
    );
    cli(dir.path(), &["standardize", "c.npy", "cz.npy"]).ok();
}

#[test]
fn standardize_skipna_keeps_only_the_nan_nan() {
    let dir = tempdir();
    write_input(dir.path());
    let v = cli(
        dir.path(),
        &["standardize", "x.npy", "z.npy", "--skipna", "--json"],
    )
    .json();
    assert_eq!(v["skipna"], true);
    let (_, shape, z) = read_npy::<f64>(&dir.path().join("z.npy"));
    assert_eq!(shape, [6, 3]);
    // Column 0: (x - nanmean) / nanstd of [1, 3, 4, 5, 6], NaN kept.
    let col0 = [1.0f64, 3.0, 4.0, 5.0, 6.0];
    let mean = col0.iter().sum::<f64>() / 5.0;
    let std = (col0.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 5.0).sqrt();
    assert!(((z[0] - (1.0 - mean) / std).abs()) < 1e-12, "{z:?}");
    assert!(z[3].is_nan());
    assert!(((z[6] - (3.0 - mean) / std).abs()) < 1e-12, "{z:?}");
    // Column 1 has no NaN: as without --skipna.
    assert!(z.iter().skip(1).step_by(3).all(|v| v.is_finite()), "{z:?}");
    // Column 2 is all NaN: still NaN.
    assert!(z.iter().skip(2).step_by(3).all(|v| v.is_nan()), "{z:?}");
    // Text output and no note: nothing is NaN because of NaN.
    let run = cli(dir.path(), &["standardize", "x.npy", "z3.npy", "--skipna"]);
    run.ok();
}
