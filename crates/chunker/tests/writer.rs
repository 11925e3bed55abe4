//! `ArrayWriter`'s failure modes: nothing half-written ever appears under the
//! final name, no temporary name appears at all (the output is unnamed until
//! finished), existing outputs are replaced only when asked, and mismatched
//! data is refused. (`crates/cli/tests/sigkill.rs` kills a writing process;
//! the named fallback is tested in `src/write.rs`.)

mod common;

use std::path::Path;

use common::dir_entries;
use ndarray::{Array2, array};
use outcore_chunker::{ArrayFile, ArrayWriter, DType, OutputSpec};

fn spec(shape: Vec<u64>) -> OutputSpec {
    OutputSpec::npy(DType::F64, shape).fsync(false)
}

fn rows(start: f64, n: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, 2), |(r, c)| start + (2 * r + c) as f64)
}

fn assert_empty(dir: &Path, when: &str) {
    assert_eq!(dir_entries(dir), Vec::<String>::new(), "left behind {when}");
}

#[test]
fn finishing_with_rows_missing_is_write_mismatch_and_leaves_nothing() {
    for fsync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        let writer = ArrayWriter::create(&path, spec(vec![4, 2]).fsync(fsync)).unwrap();
        writer.write_block(0, rows(0.0, 3).view()).unwrap();
        // The output has no name at all while it is being written.
        assert_empty(dir.path(), "while writing");
        assert!(!path.exists());
        let err = writer.finish().unwrap_err();
        assert_eq!(err.kind(), "write_mismatch", "{err}");
        assert_eq!(err.path(), path);
        assert!(err.to_string().contains("out.npy"), "{err}");
        assert!(err.to_string().contains("3 of 4"), "{err}");
        assert_empty(dir.path(), "after a failed finish");
    }
}

#[test]
fn a_writer_dropped_without_finish_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    let writer = ArrayWriter::create(&path, spec(vec![2, 2])).unwrap();
    writer.write_block(0, rows(0.0, 2).view()).unwrap();
    assert_empty(dir.path(), "while writing");
    drop(writer);
    assert_empty(dir.path(), "by a dropped writer");

    // Also when a writing thread panics while holding the writer.
    let writer = ArrayWriter::create(&path, spec(vec![2, 2])).unwrap();
    let joined = std::thread::spawn(move || {
        writer.write_block(0, rows(0.0, 1).view()).unwrap();
        panic!("a worker fails mid-output");
    })
    .join();
    assert!(joined.is_err());
    assert_empty(dir.path(), "by a writer dropped in a panic");
}

#[test]
fn an_existing_output_is_refused_and_kept_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    std::fs::write(&path, b"precious").unwrap();
    let err = ArrayWriter::create(&path, spec(vec![1, 2])).unwrap_err();
    assert_eq!(err.kind(), "output_exists", "{err}");
    assert_eq!(err.path(), path);
    assert!(err.to_string().contains("out.npy"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    assert_eq!(dir_entries(dir.path()), ["out.npy"]);
}

#[test]
fn an_existing_output_is_replaced_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    std::fs::write(&path, b"stale").unwrap();
    let writer = ArrayWriter::create(&path, spec(vec![3, 2]).overwrite(true)).unwrap();
    // The old file stays in place until the new one is complete.
    assert_eq!(std::fs::read(&path).unwrap(), b"stale");
    writer.write_block(0, rows(10.0, 3).view()).unwrap();
    writer.finish().unwrap();
    assert_eq!(dir_entries(dir.path()), ["out.npy"]);
    let file = ArrayFile::open(&path).unwrap();
    let block = file.read_rows(0..3).unwrap();
    assert_eq!(block.view::<f64>().unwrap(), rows(10.0, 3));
}

/// A file that appears at the path while the output is being written is not
/// clobbered when overwriting is off.
#[test]
fn an_output_appearing_before_finish_is_kept_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    let writer = ArrayWriter::create(&path, spec(vec![1, 2])).unwrap();
    writer.write_block(0, rows(0.0, 1).view()).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    let err = writer.finish().unwrap_err();
    assert_eq!(err.kind(), "output_exists", "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
    assert_eq!(dir_entries(dir.path()), ["out.npy"]);
}

/// `finish` must check that every row was written, not that as many rows
/// were written as the output has: writing rows 0..2 twice leaves rows 2..4
/// unwritten (zeros), and the output must not be finished.
#[test]
fn rows_written_twice_do_not_make_up_for_missing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    let writer = ArrayWriter::create(&path, spec(vec![4, 2])).unwrap();
    writer.write_block(0, rows(0.0, 2).view()).unwrap();
    writer.write_block(0, rows(0.0, 2).view()).unwrap();
    let result = writer.finish();
    let exists = path.exists();
    assert!(
        matches!(&result, Err(e) if e.kind() == "write_mismatch"),
        "finish() after writing rows 0..2 twice and rows 2..4 never returned {result:?} \
         (output created: {exists})"
    );
    assert!(!exists);
}

#[test]
fn mismatched_blocks_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    let writer = ArrayWriter::create(&path, spec(vec![3, 2])).unwrap();
    let kind = |r: outcore_chunker::Result<()>| r.unwrap_err().kind();
    // Wrong element type.
    assert_eq!(
        kind(writer.write_block(0, array![[1.0f32, 2.0]].view())),
        "write_mismatch"
    );
    // Wrong row length.
    assert_eq!(
        kind(writer.write_block(0, array![[1.0, 2.0, 3.0]].view())),
        "write_mismatch"
    );
    // Past the last row.
    assert_eq!(
        kind(writer.write_block(2, rows(0.0, 2).view())),
        "write_mismatch"
    );
    assert_eq!(
        kind(writer.write_block(u64::MAX, rows(0.0, 1).view())),
        "write_mismatch"
    );
    // Bytes that are not whole rows, or run past the end.
    assert_eq!(kind(writer.write_rows(0, &[0u8; 15])), "write_mismatch");
    assert_eq!(kind(writer.write_rows(1, &[0u8; 48])), "write_mismatch");
    // None of those counted: the output is still incomplete...
    writer.write_block(0, rows(0.0, 2).view()).unwrap();
    writer.write_rows(2, &[0u8; 16]).unwrap();
    // ...until now.
    writer.finish().unwrap();
    let file = ArrayFile::open(&path).unwrap();
    let block = file.read_rows(0..3).unwrap();
    assert_eq!(
        block.as_slice::<f64>().unwrap(),
        &[0.0, 1.0, 2.0, 3.0, 0.0, 0.0]
    );
}

#[test]
fn outputs_without_data_finish_without_writes() {
    for shape in [vec![0], vec![0, 5], vec![5, 0], vec![3, 0, 2]] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.npy");
        let writer = ArrayWriter::create(&path, spec(shape.clone())).unwrap();
        writer.finish().unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        let file = ArrayFile::open(&path).unwrap();
        assert_eq!(file.meta().shape, shape);
        assert_eq!(file.meta().nbytes(), 0);
    }
    // A 0-d output has one element, which must be written.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scalar.npy");
    let writer = ArrayWriter::create(&path, spec(vec![])).unwrap();
    assert_eq!(writer.finish().unwrap_err().kind(), "write_mismatch");
    assert_empty(dir.path(), "by an unfinished 0-d output");
}

#[test]
fn an_unwritable_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("out.npy");
    let err = ArrayWriter::create(&path, spec(vec![1, 2])).unwrap_err();
    assert_eq!(err.kind(), "io", "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}
