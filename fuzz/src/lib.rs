//! Shared by the fuzz targets in `fuzz_targets/`: an in-memory file the
//! library opens by path, and the checks run on every array that opens.
//!
//! The checks are oracles, not just "did not panic": every block read is
//! compared with the elements computed here straight from the file's bytes
//! (byte swapping and Fortran gathering included), the metadata must
//! account for every byte of the file, and each error must be of the kind
//! the API documents. See `README.md`.

use std::fs::File;
use std::ops::Range;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use outcore_chunker::{ArrayFile, ArrayMeta, Block, DType, Layout, with_dtype};

/// The largest file a target writes: keeps every input's memory small
/// (the runs use `-rss_limit_mb=512` to catch an allocation sized from a
/// header instead of from the file).
pub const MAX_FILE: u64 = 1 << 20;

/// A file in memory (`memfd_create`), opened by the library through its
/// `/proc/self/fd/N` path like any other file: it maps, and faults when it
/// is truncated under a map, as a file on disk does, and nothing is left
/// on disk by a run.
#[derive(Debug)]
pub struct MemFile {
    file: File,
    path: PathBuf,
}

impl MemFile {
    fn new() -> MemFile {
        // SAFETY: the name is a NUL-terminated C string and the flags are
        // valid; the result is checked before it is used.
        let fd = unsafe { libc::memfd_create(c"outcore-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just created, is open, and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        MemFile {
            file,
            path: PathBuf::from(format!("/proc/self/fd/{fd}")),
        }
    }

    /// The path the library opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `bytes`.
    pub fn set(&self, bytes: &[u8]) {
        self.file.set_len(0).expect("truncate the memfd");
        self.file.write_all_at(bytes, 0).expect("write the memfd");
    }

    /// Cuts the file to `len` bytes (under any maps of it).
    pub fn truncate(&self, len: u64) {
        self.file.set_len(len).expect("truncate the memfd");
    }

    /// A new handle on the file, for [`ArrayFile::from_file`].
    pub fn reopen(&self) -> File {
        File::open(&self.path).expect("reopen the memfd")
    }
}

/// The process's one in-memory file (each libFuzzer worker is a process).
pub fn mem_file() -> &'static MemFile {
    static FILE: OnceLock<MemFile> = OnceLock::new();
    FILE.get_or_init(MemFile::new)
}

/// Product of `dims` in 128 bits, `None` if even that overflows.
pub fn product(dims: &[u64]) -> Option<u128> {
    dims.iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(u128::from(d)))
}

/// Panics unless `meta` accounts for the file: the sizes agree with the
/// shape, and the data ends exactly at `file_len` (`exact`) or within it.
pub fn check_meta(meta: &ArrayMeta, file_len: u64, exact: bool) {
    let isz = meta.dtype.itemsize() as u128;
    let elements = product(&meta.shape).expect("an opened shape's product fits");
    assert_eq!(elements, u128::from(meta.len()), "{meta:?}");
    assert_eq!(elements * isz, u128::from(meta.nbytes()), "{meta:?}");
    assert_eq!(
        meta.rows(),
        meta.shape.first().copied().unwrap_or(1),
        "{meta:?}"
    );
    assert_eq!(
        u128::from(meta.rows()) * meta.row_bytes() as u128,
        u128::from(meta.nbytes()),
        "{meta:?}"
    );
    let end = u128::from(meta.data_offset) + u128::from(meta.nbytes());
    if exact {
        assert_eq!(end, u128::from(file_len), "{meta:?}");
    } else {
        assert!(end <= u128::from(file_len), "{meta:?} in {file_len} bytes");
    }
}

/// What `read_rows(rows)` must return, computed from the file's bytes
/// without the library: the rows' elements in C order and native byte
/// order (a Fortran-ordered file gathered element by element).
pub fn expected_rows(meta: &ArrayMeta, bytes: &[u8], rows: Range<u64>) -> Vec<u8> {
    let isz = meta.dtype.itemsize();
    let row_len = meta.row_len() as u64;
    let mut out = Vec::new();
    if row_len == 0 || rows.is_empty() {
        return out;
    }
    let data = &bytes[usize::try_from(meta.data_offset).expect("offset within the file")..];
    let fortran = meta.layout == Layout::Fortran && meta.ndim() > 1;
    let trailing = meta.shape.get(1..).unwrap_or(&[]);
    let mut index = vec![0u64; trailing.len()];
    for r in rows {
        for c in 0..row_len {
            let element = if fortran {
                // The trailing multi-index of C position `c` (last axis
                // fastest), then its Fortran position (first axis fastest).
                let mut rest = c;
                for (i, &d) in index.iter_mut().zip(trailing).rev() {
                    *i = rest % d;
                    rest /= d;
                }
                let (mut f, mut stride) = (0u64, 1u64);
                for (&i, &d) in index.iter().zip(trailing) {
                    f += i * stride;
                    stride *= d;
                }
                r + meta.rows() * f
            } else {
                r * row_len + c
            };
            let at = element as usize * isz;
            let bytes = &data[at..at + isz];
            if meta.byte_order.is_native() {
                out.extend_from_slice(bytes);
            } else {
                out.extend(bytes.iter().rev());
            }
        }
    }
    out
}

/// Panics unless `block` holds exactly rows `rows` of the array in `bytes`.
pub fn check_block(block: &Block, meta: &ArrayMeta, bytes: &[u8], rows: &Range<u64>) {
    assert_eq!(block.start_row(), rows.start);
    assert_eq!(block.rows() as u64, rows.end - rows.start);
    assert_eq!(block.row_range(), rows.clone());
    assert_eq!(block.row_len(), meta.row_len());
    assert_eq!(block.dtype(), meta.dtype);
    let expected = expected_rows(meta, bytes, rows.clone());
    assert_eq!(block.nbytes(), expected.len(), "rows {rows:?} of {meta:?}");
    assert!(
        block.as_bytes() == expected.as_slice(),
        "rows {rows:?} of {meta:?} ({}) differ from the file's",
        if block.is_mapped() {
            "mapped"
        } else {
            "copied"
        }
    );
    if let Err(e) = block.check() {
        panic!("check of rows {rows:?} of an untouched file: {e}");
    }
    check_views(block, meta.dtype);
}

/// The typed views succeed (a `bool` block exactly when every byte is 0 or
/// 1), have the block's shape, and refuse another element type.
pub fn check_views(block: &Block, dtype: DType) {
    let valid_bool = block.as_bytes().iter().all(|&b| b <= 1);
    with_dtype!(dtype, T => {
        match block.view::<T>() {
            Ok(view) => {
                assert!(dtype != DType::Bool || valid_bool);
                assert_eq!(view.dim(), (block.rows(), block.row_len()));
                let slice = block.as_slice::<T>().expect("as_slice after view");
                assert_eq!(slice.len(), block.rows() * block.row_len());
            }
            Err(e) => {
                assert_eq!(e.kind(), "invalid_bool", "{e}");
                assert!(dtype == DType::Bool && !valid_bool, "{e}");
            }
        }
    });
    let wrong = if dtype == DType::U8 {
        block.as_slice::<i8>().map(|_| ())
    } else {
        block.as_slice::<u8>().map(|_| ())
    };
    assert_eq!(wrong.map_err(|e| e.kind()), Err("type_mismatch"));
}

/// Panics unless `error` names `path` and formats.
pub fn check_error(error: &outcore_chunker::Error, path: &Path) {
    assert_eq!(error.path(), path, "{error}");
    let text = error.to_string();
    assert!(!text.is_empty());
    let _ = error.kind();
}

/// The row ranges a target reads: the first two and last two blocks of a
/// plan of `block_bytes`-byte blocks, and all the rows at once.
pub fn ranges(file: &ArrayFile, block_bytes: u64) -> Vec<Range<u64>> {
    let plan = file.plan(block_bytes);
    let n = plan.len();
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for i in [0, 1, n.saturating_sub(2), n.saturating_sub(1)] {
        if let Some(r) = plan.get(i)
            && !ranges.contains(&r)
        {
            ranges.push(r);
        }
    }
    ranges.push(0..file.meta().rows());
    ranges
}

/// Reads blocks of `file` (opened over `bytes`, the file's whole content)
/// and checks each against the file's bytes: the ranges of [`ranges`]
/// (reusing each block's buffer for the next), then `extra` ranges
/// (refused exactly when out of range), then ranges past the end.
pub fn exercise(file: &ArrayFile, bytes: &[u8], block_bytes: u64, extra: &[(u64, u64)]) {
    let meta = file.meta();
    let mut buffer = None;
    for rows in ranges(file, block_bytes) {
        let block = file
            .read_rows_into(rows.clone(), buffer.take())
            .unwrap_or_else(|e| panic!("rows {rows:?} of {meta:?}: {e}"));
        check_block(&block, meta, bytes, &rows);
        buffer = block.into_buffer();
    }
    let rows_total = meta.rows();
    for &(start, end) in extra {
        let result = file.read_rows(start..end);
        if start <= end && end <= rows_total {
            let block = result.unwrap_or_else(|e| panic!("rows {start}..{end} of {meta:?}: {e}"));
            check_block(&block, meta, bytes, &(start..end));
        } else {
            let e = result.expect_err("rows out of range were read");
            assert_eq!(e.kind(), "rows_out_of_range", "{e}");
            check_error(&e, file.path());
        }
    }
    if let Some(past) = rows_total.checked_add(1) {
        let e = file
            .read_rows(rows_total..past)
            .expect_err("a row past the end");
        assert_eq!(e.kind(), "rows_out_of_range", "{e}");
    }
    let backwards = Range { start: 1, end: 0 };
    let e = file.read_rows(backwards).expect_err("a backwards range");
    assert_eq!(e.kind(), "rows_out_of_range", "{e}");
}
