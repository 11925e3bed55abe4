//! The chunker's error type: every variant names the file and the numbers.

use std::io;
use std::path::{Path, PathBuf};

/// A `Result` whose error defaults to the chunker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong opening, reading or writing an on-disk array.
///
/// Every variant carries the path involved; [`Error::kind`] gives a stable
/// short name for each variant (useful in tests and JSON output).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error. Its message includes the
    /// operating system's (so it is not repeated as a `source()`).
    #[error("{path}: {action}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What was being done (`"open"`, `"read"`, `"write"`, ...).
        action: &'static str,
        /// The underlying error.
        error: io::Error,
    },
    /// The file does not start with the `.npy` magic string `\x93NUMPY`.
    #[error(
        "{path}: not a .npy file: expected magic bytes 93 4E 55 4D 50 59 (\"\\x93NUMPY\"), found {found}"
    )]
    BadMagic {
        /// The file involved.
        path: PathBuf,
        /// The bytes found instead, as hex (fewer than 6 if the file is shorter).
        found: String,
    },
    /// The `.npy` format version is not 1.0, 2.0 or 3.0.
    #[error("{path}: unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")]
    UnsupportedVersion {
        /// The file involved.
        path: PathBuf,
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The `.npy` header is malformed: not a dict, wrong keys, bad values,
    /// longer than the file, not valid text.
    #[error("{path}: malformed .npy header: {reason}")]
    BadHeader {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, with the offending values.
        reason: String,
    },
    /// The array's dtype is valid NumPy but not a type outcore computes on.
    #[error("{path}: unsupported dtype {dtype}: {reason}")]
    UnsupportedDType {
        /// The file involved.
        path: PathBuf,
        /// The dtype as written in the file (e.g. `'<c16'`).
        dtype: String,
        /// Why, and what is supported.
        reason: String,
    },
    /// The shape's element count or byte size does not fit in 64 bits.
    #[error("{path}: shape {shape:?} with {itemsize}-byte elements overflows 64-bit sizes")]
    Overflow {
        /// The file involved.
        path: PathBuf,
        /// The shape that overflows.
        shape: Vec<u64>,
        /// Bytes per element.
        itemsize: usize,
    },
    /// The file holds a different number of data bytes than the shape needs.
    #[error("{path}: {} data bytes expected for shape {shape:?} of {dtype} at offset {offset}, but the file holds {actual} ({})",
        .expected, if .actual < .expected { "truncated" } else { "trailing bytes" })]
    SizeMismatch {
        /// The file involved.
        path: PathBuf,
        /// The array's shape.
        shape: Vec<u64>,
        /// The array's dtype name.
        dtype: &'static str,
        /// Where the data starts.
        offset: u64,
        /// Bytes the shape needs.
        expected: u64,
        /// Bytes present after the offset.
        actual: u64,
    },
    /// The file became shorter than its array after it was opened: another
    /// process truncated or shrank it while it was being read. Rows
    /// `start_row..end_row` could not be read (or read as zeros through a
    /// mapped window, see [`Block::check`](crate::Block::check)).
    #[error(
        "{path}: file truncated while being read: the array needs {expected_len} bytes, \
         the file now holds {actual_len}; rows {start_row}..{end_row} could not be read"
    )]
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// The length the array needs: its data offset plus its data
        /// bytes (for `.npy` and raw files, the length when opened).
        expected_len: u64,
        /// The file's length now.
        actual_len: u64,
        /// First row of the block that could not be read.
        start_row: u64,
        /// One past the last row of that block.
        end_row: u64,
    },
    /// A raw array's byte offset is past the end of the file.
    #[error("{path}: data offset {offset} is past the end of the file ({len} bytes)")]
    OffsetPastEnd {
        /// The file involved.
        path: PathBuf,
        /// The requested offset.
        offset: u64,
        /// The file's length.
        len: u64,
    },
    /// A `bool` element holds a byte other than 0 or 1.
    #[error(
        "{path}: invalid bool value in rows {start_row}..{end_row}: bool elements must be 0 or 1"
    )]
    InvalidBool {
        /// The file involved.
        path: PathBuf,
        /// First row of the block.
        start_row: u64,
        /// One past the last row of the block.
        end_row: u64,
    },
    /// A row range outside the array was requested.
    #[error("{path}: rows {start}..{end} requested from an array of {rows} rows")]
    RowsOutOfRange {
        /// The file involved.
        path: PathBuf,
        /// First requested row.
        start: u64,
        /// One past the last requested row.
        end: u64,
        /// Rows in the array.
        rows: u64,
    },
    /// A block was viewed as a different element type than it holds.
    #[error("{path}: block holds {actual} elements, viewed as {requested}")]
    TypeMismatch {
        /// The file involved.
        path: PathBuf,
        /// The dtype requested.
        requested: &'static str,
        /// The dtype the block holds.
        actual: &'static str,
    },
    /// Data handed to a writer does not match the output's shape or dtype.
    #[error("{path}: {reason}")]
    WriteMismatch {
        /// The output file involved.
        path: PathBuf,
        /// What does not match, with the numbers.
        reason: String,
    },
    /// The output already exists and overwriting was not allowed.
    #[error("{path}: output already exists (allow overwriting to replace it)")]
    OutputExists {
        /// The output file.
        path: PathBuf,
    },
    /// The output's filesystem has no room for it: full (`ENOSPC`), over a
    /// disk quota (`EDQUOT`), or past the process's file-size limit
    /// (`EFBIG`, `RLIMIT_FSIZE`). Nothing is left under the output's name.
    #[error(
        "{path}: no space for the output ({needed} bytes): cannot {action}: {error} \
         (free space on its filesystem, or write the output elsewhere)"
    )]
    NoSpace {
        /// The output file.
        path: PathBuf,
        /// Bytes the whole output needs (header and data).
        needed: u64,
        /// What was being done (`"allocate"`, `"write"`, `"sync"`, ...).
        action: &'static str,
        /// What the operating system said.
        error: io::Error,
    },
    /// The output is one of the inputs (the same path, or another name of
    /// the same file: a hard link or symlink), refused before anything runs.
    #[error("{path}: the output is the input {input} (write to another file)")]
    OutputIsInput {
        /// The output file.
        path: PathBuf,
        /// The input it is.
        input: PathBuf,
    },
    /// Writing the output was cancelled through a
    /// [`CancelToken`](crate::CancelToken) before it was complete; the
    /// output was not created (nor left anywhere under its name).
    #[error("{path}: cancelled after {done} of {total} blocks; the output was not created")]
    Cancelled {
        /// The output file.
        path: PathBuf,
        /// Blocks complete when the run stopped.
        done: u64,
        /// Blocks in the whole run.
        total: u64,
    },
    /// A raw-array description is invalid (e.g. an empty shape list where
    /// one is required).
    #[error("{path}: invalid raw array description: {reason}")]
    BadRawSpec {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// A stable short name for the variant: `"io"`, `"bad_magic"`,
    /// `"unsupported_version"`, `"bad_header"`, `"unsupported_dtype"`,
    /// `"overflow"`, `"size_mismatch"`, `"truncated"`, `"offset_past_end"`, `"invalid_bool"`,
    /// `"rows_out_of_range"`, `"type_mismatch"`, `"write_mismatch"`,
    /// `"output_exists"`, `"no_space"`, `"output_is_input"`,
    /// `"bad_raw_spec"` or `"cancelled"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::BadMagic { .. } => "bad_magic",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::BadHeader { .. } => "bad_header",
            Error::UnsupportedDType { .. } => "unsupported_dtype",
            Error::Overflow { .. } => "overflow",
            Error::SizeMismatch { .. } => "size_mismatch",
            Error::Truncated { .. } => "truncated",
            Error::OffsetPastEnd { .. } => "offset_past_end",
            Error::InvalidBool { .. } => "invalid_bool",
            Error::RowsOutOfRange { .. } => "rows_out_of_range",
            Error::TypeMismatch { .. } => "type_mismatch",
            Error::WriteMismatch { .. } => "write_mismatch",
            Error::OutputExists { .. } => "output_exists",
            Error::NoSpace { .. } => "no_space",
            Error::OutputIsInput { .. } => "output_is_input",
            Error::BadRawSpec { .. } => "bad_raw_spec",
            Error::Cancelled { .. } => "cancelled",
        }
    }

    /// The path of the file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::BadMagic { path, .. }
            | Error::UnsupportedVersion { path, .. }
            | Error::BadHeader { path, .. }
            | Error::UnsupportedDType { path, .. }
            | Error::Overflow { path, .. }
            | Error::SizeMismatch { path, .. }
            | Error::Truncated { path, .. }
            | Error::OffsetPastEnd { path, .. }
            | Error::InvalidBool { path, .. }
            | Error::RowsOutOfRange { path, .. }
            | Error::TypeMismatch { path, .. }
            | Error::WriteMismatch { path, .. }
            | Error::OutputExists { path }
            | Error::NoSpace { path, .. }
            | Error::OutputIsInput { path, .. }
            | Error::BadRawSpec { path, .. }
            | Error::Cancelled { path, .. } => path,
        }
    }

    pub(crate) fn io(path: &Path, action: &'static str, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            action,
            error: source,
        }
    }

    pub(crate) fn bad_header(path: &Path, reason: impl Into<String>) -> Error {
        Error::BadHeader {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
