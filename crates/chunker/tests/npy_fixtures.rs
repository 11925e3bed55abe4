//! Every NumPy-written fixture of `tests/fixtures/manifest.json`, read through
//! every path: both read modes, every block size, `.npy` and raw opening.

mod common;

use std::collections::BTreeSet;

use common::{Expect, Fixture, OkFixture, check_all, compare, fixture, manifest, read_values};
use outcore_chunker::{
    ArrayFile, ArrayMeta, ByteOrder, Format, Layout, RawSpec, ReadMode, with_dtype,
};

const MODES: [ReadMode; 2] = [ReadMode::Mmap, ReadMode::Pread];

fn ok_fixtures() -> impl Iterator<Item = (String, (&'static Fixture, &'static OkFixture))> {
    manifest()
        .iter()
        .filter_map(|f| f.ok().map(|ok| (f.file.clone(), (f, ok))))
}

fn open(fx: &Fixture, mode: ReadMode) -> Result<ArrayFile, String> {
    ArrayFile::open(&fx.path)
        .map(|f| f.with_read_mode(mode))
        .map_err(|e| format!("open failed: {e} (kind {})", e.kind()))
}

fn check_meta(ok: &OkFixture, meta: &ArrayMeta, format: Format) -> Result<(), String> {
    let layout = if ok.fortran_order {
        Layout::Fortran
    } else {
        Layout::C
    };
    let rows = ok.shape.first().copied().unwrap_or(1);
    let row_len: u64 = ok.shape.iter().skip(1).product();
    let checks = [
        (
            "shape",
            format!("{:?}", meta.shape),
            format!("{:?}", ok.shape),
        ),
        ("dtype", format!("{}", meta.dtype), format!("{}", ok.dtype)),
        (
            "byte order",
            format!("{}", meta.byte_order),
            // "none" (`|`): any order will do.
            format!("{}", ok.byte_order.unwrap_or(meta.byte_order)),
        ),
        (
            "layout",
            format!("{:?}", meta.layout),
            format!("{layout:?}"),
        ),
        (
            "format",
            format!("{:?}", meta.format),
            format!("{format:?}"),
        ),
        (
            "data offset",
            meta.data_offset.to_string(),
            ok.data_offset.to_string(),
        ),
        ("rows", meta.rows().to_string(), rows.to_string()),
        ("row_len", meta.row_len().to_string(), row_len.to_string()),
        (
            "nbytes",
            meta.nbytes().to_string(),
            (ok.values.len() * ok.dtype.itemsize()).to_string(),
        ),
    ];
    for (what, got, want) in checks {
        if got != want {
            return Err(format!("{what} is {got}, expected {want}"));
        }
    }
    Ok(())
}

/// Reads `file` in every block size from one row to all rows and compares
/// with the manifest values.
fn check_every_block_size(file: &ArrayFile, ok: &OkFixture) -> Result<(), String> {
    let rows = file.meta().rows();
    for k in 1..=rows.max(1) {
        let got = read_values(file, k).map_err(|e| format!("block size {k}: {e}"))?;
        compare(&got, &ok.values).map_err(|e| format!("block size {k}: {e}"))?;
    }
    Ok(())
}

#[test]
fn manifest_lists_every_fixture_file() {
    let dir = common::fixtures_dir().join("npy");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|e| format!("npy/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".npy"))
        .collect();
    let listed: BTreeSet<String> = manifest().iter().map(|f| f.file.clone()).collect();
    assert_eq!(listed.len(), manifest().len(), "duplicate manifest entries");
    assert_eq!(
        on_disk.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fixture files missing from the manifest"
    );
    assert_eq!(
        listed.difference(&on_disk).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "manifest entries without a file"
    );
    // Every dtype is covered, and every error kind.
    for d in outcore_chunker::DType::ALL {
        assert!(
            ok_fixtures().any(|(_, (_, ok))| ok.dtype == d),
            "no fixture of {d}"
        );
    }
    let kinds: BTreeSet<&str> = manifest()
        .iter()
        .filter_map(|f| match &f.expect {
            Expect::Error { kind, .. } => Some(kind.as_str()),
            Expect::Ok(_) => None,
        })
        .collect();
    for kind in [
        "bad_magic",
        "unsupported_version",
        "bad_header",
        "unsupported_dtype",
        "overflow",
        "size_mismatch",
    ] {
        assert!(kinds.contains(kind), "no fixture expects {kind}");
    }
}

#[test]
fn ok_fixtures_have_the_manifest_metadata() {
    check_all(ok_fixtures(), |(fx, ok)| {
        let file = open(fx, ReadMode::default())?;
        let (major, minor) = ok.version;
        check_meta(ok, file.meta(), Format::Npy { major, minor })?;
        if file.path() != fx.path {
            return Err(format!("path() is {}", file.path().display()));
        }
        Ok(())
    });
}

#[test]
fn ok_fixtures_read_exactly_in_every_block_size_and_mode() {
    check_all(ok_fixtures(), |(fx, ok)| {
        for mode in MODES {
            let file = open(fx, mode)?;
            if file.read_mode() != mode {
                return Err(format!("read_mode() is {:?}", file.read_mode()));
            }
            check_every_block_size(&file, ok).map_err(|e| format!("{mode:?}: {e}"))?;
        }
        Ok(())
    });
}

#[test]
fn ok_fixtures_read_all_rows_in_one_block() {
    check_all(ok_fixtures(), |(fx, ok)| {
        for mode in MODES {
            let file = open(fx, mode)?;
            let rows = file.meta().rows();
            let block = file
                .read_rows(0..rows)
                .map_err(|e| format!("{mode:?}: read_rows(0..{rows}): {e}"))?;
            common::check_block(&block, &(0..rows), file.meta())?;
            let got = common::block_values(&block)?;
            compare(&got, &ok.values).map_err(|e| format!("{mode:?}: {e}"))?;
        }
        Ok(())
    });
}

#[test]
fn ok_fixtures_read_the_same_when_opened_raw() {
    // Fortran-order files too: raw with the Fortran layout.
    check_all(ok_fixtures(), |(fx, ok)| {
        let spec = RawSpec {
            dtype: ok.dtype,
            byte_order: ok.byte_order.unwrap_or(ByteOrder::NATIVE),
            shape: Some(ok.shape.clone()),
            offset: ok.data_offset,
            layout: if ok.fortran_order {
                outcore_chunker::Layout::Fortran
            } else {
                outcore_chunker::Layout::C
            },
        };
        for mode in MODES {
            let file = ArrayFile::open_raw(&fx.path, &spec)
                .map_err(|e| format!("open_raw({spec:?}) failed: {e}"))?
                .with_read_mode(mode);
            check_meta(ok, file.meta(), Format::Raw).map_err(|e| format!("raw: {e}"))?;
            check_every_block_size(&file, ok).map_err(|e| format!("raw {mode:?}: {e}"))?;
        }
        Ok(())
    });
}

#[test]
fn error_fixtures_fail_with_the_manifest_kind() {
    let errors = manifest().iter().filter_map(|f| match &f.expect {
        Expect::Error { kind, note } => Some((f.file.clone(), (f, kind, note))),
        Expect::Ok(_) => None,
    });
    check_all(errors, |(fx, kind, note)| {
        let err = match ArrayFile::open(&fx.path) {
            Ok(file) => {
                return Err(format!(
                    "opened ({note}) as {:?}, expected a {kind} error",
                    file.meta()
                ));
            }
            Err(e) => e,
        };
        if err.kind() != kind.as_str() {
            return Err(format!(
                "({note}) failed with kind {}, expected {kind}: {err}",
                err.kind()
            ));
        }
        if err.path() != fx.path {
            return Err(format!("error path() is {}", err.path().display()));
        }
        let message = err.to_string();
        if !message.contains(fx.name()) {
            return Err(format!("message does not name the file: {message}"));
        }
        Ok(())
    });
}

/// The Fortran-ordered 3-d fixture gathers into C order in every block size
/// (also covered by the all-fixture test above; spelled out for clarity).
#[test]
fn fortran_3d_fixture_reads_in_c_order_in_every_block_size() {
    let fx = fixture("float64_le_v1_fortran_2x3x4.npy");
    let ok = fx.ok().expect("an ok fixture");
    assert!(ok.fortran_order);
    assert_eq!(ok.shape, [2, 3, 4]);
    // np.asfortranarray((np.arange(24) - 11.5).reshape(2, 3, 4)): the logical
    // (C-order) values are still arange, whatever the file order.
    let want: Vec<f64> = (0..24).map(|i| f64::from(i) - 11.5).collect();
    for mode in MODES {
        let file = ArrayFile::open(&fx.path).unwrap().with_read_mode(mode);
        assert_eq!(file.meta().layout, Layout::Fortran);
        assert_eq!((file.meta().rows(), file.meta().row_len()), (2, 12));
        for k in 1..=2 {
            let mut got = Vec::new();
            for rows in outcore_chunker::BlockPlan::new(2, k).iter() {
                let block = file.read_rows(rows.clone()).unwrap();
                assert!(!block.is_mapped(), "a Fortran block must be gathered");
                let view = block.view::<f64>().unwrap();
                assert_eq!(view.dim(), ((rows.end - rows.start) as usize, 12));
                got.extend(view.iter().copied());
            }
            assert_eq!(got, want, "{mode:?}, block size {k}");
        }
        // Element [1, 2, 3] is row 1, column 2·4 + 3 of the row view.
        let block = file.read_rows(1..2).unwrap();
        assert_eq!(block.view::<f64>().unwrap()[[0, 11]], 23.0 - 11.5);
    }
}

/// The big-endian Fortran int16 fixture needs both a gather and a swap.
#[test]
fn fortran_big_endian_fixture_reads_in_c_order() {
    let fx = fixture("int16_be_v1_fortran_3x5.npy");
    let ok = fx.ok().expect("an ok fixture");
    assert_eq!(
        (ok.fortran_order, ok.byte_order),
        (true, Some(ByteOrder::Big))
    );
    let file = ArrayFile::open(&fx.path).unwrap();
    for k in 1..=3 {
        let got = read_values(&file, k).unwrap();
        compare(&got, &ok.values).unwrap();
    }
    let block = file.read_rows(0..3).unwrap();
    let view = block.view::<i16>().unwrap();
    assert_eq!((view[[0, 0]], view[[2, 4]]), (-32768, 32767));
}

/// Cutting a valid fixture short anywhere is an error of the kind its
/// position calls for: inside the magic string or version, `bad_magic`;
/// inside the header, `bad_header`; inside the data, `size_mismatch`.
#[test]
fn truncated_fixtures_fail_with_the_kind_of_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.npy");
    check_all(ok_fixtures(), |(fx, ok)| {
        let bytes = std::fs::read(&fx.path).map_err(|e| e.to_string())?;
        // Every length through the length field, then a sample across the
        // header and data, and both sides of each boundary.
        let off = ok.data_offset as usize;
        let mut cuts: BTreeSet<usize> = (0..=16).chain((17..bytes.len()).step_by(7)).collect();
        cuts.extend([off - 1, off, off + 1, bytes.len() - 1]);
        for len in cuts.into_iter().filter(|&l| l < bytes.len()) {
            std::fs::write(&path, &bytes[..len]).map_err(|e| e.to_string())?;
            let want = if len < 8 {
                "bad_magic"
            } else if (len as u64) < ok.data_offset {
                "bad_header"
            } else {
                "size_mismatch"
            };
            match ArrayFile::open(&path) {
                Ok(_) => return Err(format!("cut to {len} bytes: opened")),
                Err(e) if e.kind() != want => {
                    return Err(format!(
                        "cut to {len} bytes: kind {}, expected {want}: {e}",
                        e.kind()
                    ));
                }
                Err(_) => {}
            }
        }
        Ok(())
    });
}

/// Reading past the last row, or a reversed range, is an error naming the
/// file; an empty range inside the array is an empty block.
#[test]
fn out_of_range_rows_are_an_error() {
    let fx = fixture("float64_le_v1_2x3x4.npy");
    for mode in MODES {
        let file = ArrayFile::open(&fx.path).unwrap().with_read_mode(mode);
        for rows in [0..3, 2..3, 3..3, 5..9] {
            let err = file.read_rows(rows.clone()).unwrap_err();
            assert_eq!(err.kind(), "rows_out_of_range", "{rows:?}");
            assert_eq!(err.path(), fx.path);
        }
        #[allow(clippy::reversed_empty_ranges)] // the point of the test
        let reversed = 2..1;
        assert_eq!(
            file.read_rows(reversed).unwrap_err().kind(),
            "rows_out_of_range"
        );
        for r in 0..=2 {
            let block = file.read_rows(r..r).unwrap();
            assert_eq!((block.rows(), block.start_row()), (0, r));
            assert_eq!(block.view::<f64>().unwrap().dim(), (0, 12));
        }
    }
}

/// Viewing a block as the wrong element type is an error, not a reinterpretation.
#[test]
fn blocks_refuse_the_wrong_element_type() {
    check_all(ok_fixtures(), |(fx, ok)| {
        let file = open(fx, ReadMode::Mmap)?;
        let block = file
            .read_rows(0..file.meta().rows())
            .map_err(|e| e.to_string())?;
        for other in outcore_chunker::DType::ALL {
            if other == ok.dtype {
                continue;
            }
            let kind = with_dtype!(other, T => block.as_slice::<T>().map(|_| ()))
                .err()
                .map(|e| e.kind());
            if kind != Some("type_mismatch") {
                return Err(format!("as_slice::<{other}> gave {kind:?}"));
            }
        }
        Ok(())
    });
}
