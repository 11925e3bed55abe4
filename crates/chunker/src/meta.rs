//! What is known about an on-disk array before any data is read.

use std::fmt;
use std::path::Path;

use crate::dtype::{ByteOrder, DType};
use crate::error::{Error, Result};

/// The file format an array was opened from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A NumPy `.npy` file of the given format version (major, minor).
    Npy {
        /// Major format version (1, 2 or 3).
        major: u8,
        /// Minor format version (always 0 today).
        minor: u8,
    },
    /// Raw binary, described by a [`RawSpec`](crate::RawSpec).
    Raw,
    /// Bytes in memory, read in place ([`ArrayFile::from_memory`](crate::ArrayFile::from_memory)).
    Memory,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Npy { major, minor } => write!(f, "npy {major}.{minor}"),
            Format::Raw => f.write_str("raw"),
            Format::Memory => f.write_str("memory"),
        }
    }
}

/// How the elements of a multi-dimensional array are laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major (NumPy's default, `fortran_order: False`): each row is contiguous.
    C,
    /// Column-major (`fortran_order: True`): the first axis varies fastest,
    /// so a row is scattered across the file. Read correctly, by gathering.
    Fortran,
}

/// Shape, dtype and placement of an on-disk array.
///
/// The leading axis is "rows"; the other axes flatten (in C order) into the
/// row length. A 0-d array is one row of length one, a 1-d array of `n` is
/// `n` rows of length one, a `(r, a, b)` array is `r` rows of length `a·b`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArrayMeta {
    /// The full shape, as in the file (empty for a 0-d array).
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: DType,
    /// Byte order of the elements in the file.
    pub byte_order: ByteOrder,
    /// Element layout in the file.
    pub layout: Layout,
    /// The file format.
    pub format: Format,
    /// Byte offset of the first element in the file.
    pub data_offset: u64,
    rows: u64,
    row_len: u64,
    nbytes: u64,
}

impl ArrayMeta {
    /// Builds the metadata, checking the sizes as NumPy and ndarray do:
    /// the byte size of the non-zero dimensions fits in `isize`, wherever
    /// the zeros are.
    ///
    /// # Errors
    ///
    /// [`Error::Overflow`] when a dimension exceeds `i64::MAX`, when the
    /// product of the non-zero dimensions times the item size exceeds
    /// `isize::MAX` (an empty array too: NumPy and ndarray refuse such a
    /// shape, and the answer must not depend on which axis is zero), or
    /// when the data would end past `u64::MAX` after `data_offset`.
    pub fn new(
        path: &Path,
        shape: Vec<u64>,
        dtype: DType,
        byte_order: ByteOrder,
        layout: Layout,
        format: Format,
        data_offset: u64,
    ) -> Result<ArrayMeta> {
        let overflow = || Error::Overflow {
            path: path.to_path_buf(),
            shape: shape.clone(),
            itemsize: dtype.itemsize(),
        };
        // NumPy's dimensions are signed 64-bit (npy_intp); so are ndarray's.
        if shape.iter().any(|&d| d > i64::MAX as u64) {
            return Err(overflow());
        }
        // NumPy's and ndarray's rule for any array: this also bounds every
        // product below, whatever the order of the axes.
        let nonzero_bytes = shape
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(dtype.itemsize() as u64, |acc, &d| acc.checked_mul(d));
        if nonzero_bytes.is_none_or(|b| b > isize::MAX as u64) {
            return Err(overflow());
        }
        let rows = shape.first().copied().unwrap_or(1);
        let row_len = shape
            .iter()
            .skip(1)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(overflow)?;
        let len = rows.checked_mul(row_len).ok_or_else(overflow)?;
        let nbytes = len
            .checked_mul(dtype.itemsize() as u64)
            .ok_or_else(overflow)?;
        // A row must be addressable as one slice (at most isize::MAX
        // bytes), and the data must not run past u64 after its offset.
        let row_bytes = row_len.checked_mul(dtype.itemsize() as u64);
        if row_bytes.is_none_or(|b| b > isize::MAX as u64 || usize::try_from(b).is_err())
            || data_offset.checked_add(nbytes).is_none()
        {
            return Err(overflow());
        }
        Ok(ArrayMeta {
            shape,
            dtype,
            byte_order,
            layout,
            format,
            data_offset,
            rows,
            row_len,
            nbytes,
        })
    }

    /// Number of rows (the leading dimension; 1 for a 0-d array).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Elements per row (the product of the trailing dimensions; 1 for 0-d
    /// and 1-d arrays).
    pub fn row_len(&self) -> usize {
        // Checked in `new`: row_len * itemsize fits in usize.
        self.row_len as usize
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_len() * self.dtype.itemsize()
    }

    /// Total number of elements.
    pub fn len(&self) -> u64 {
        self.rows * self.row_len
    }

    /// True when the array holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of data (what loading the whole array takes in memory).
    pub fn nbytes(&self) -> u64 {
        self.nbytes
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The shape formatted as NumPy prints it: `()`, `(7,)`, `(4, 3)`.
    pub fn shape_string(&self) -> String {
        shape_repr(&self.shape)
    }
}

/// Python's `repr` of a shape tuple: `()`, `(7,)`, `(4, 3)`.
pub(crate) fn shape_repr(shape: &[u64]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(u64::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(shape: &[u64]) -> Result<ArrayMeta> {
        ArrayMeta::new(
            Path::new("x.npy"),
            shape.to_vec(),
            DType::F64,
            ByteOrder::Little,
            Layout::C,
            Format::Raw,
            0,
        )
    }

    #[test]
    fn rows_and_row_len_follow_the_leading_axis() {
        let m = meta(&[]).unwrap();
        assert_eq!((m.rows(), m.row_len(), m.nbytes()), (1, 1, 8));
        let m = meta(&[7]).unwrap();
        assert_eq!((m.rows(), m.row_len()), (7, 1));
        let m = meta(&[2, 3, 4]).unwrap();
        assert_eq!((m.rows(), m.row_len(), m.row_bytes()), (2, 12, 96));
        let m = meta(&[0, 5]).unwrap();
        assert_eq!((m.rows(), m.row_len(), m.nbytes()), (0, 5, 0));
        assert!(m.is_empty());
    }

    #[test]
    fn overflow_is_an_error() {
        let e = meta(&[1 << 40, 1 << 40]).unwrap_err();
        assert_eq!(e.kind(), "overflow");
        let e = meta(&[1 << 61]).unwrap_err();
        assert_eq!(e.kind(), "overflow");
        // Zero rows make the product small even with huge trailing dims,
        // but the row itself must still be addressable.
        let e = meta(&[0, u64::MAX]).unwrap_err();
        assert_eq!(e.kind(), "overflow");
        // An empty array is refused when its non-zero dimensions' bytes
        // overflow, whichever axis is zero (found by fuzz/raw_open).
        for shape in [
            [1 << 40, 1 << 40, 0],
            [1 << 40, 0, 1 << 40],
            [0, 1 << 40, 1 << 40],
        ] {
            assert_eq!(meta(&shape).unwrap_err().kind(), "overflow", "{shape:?}");
        }
        for shape in [
            [1 << 20, 1 << 20, 0],
            [1 << 20, 0, 1 << 20],
            [0, 1 << 20, 1 << 20],
        ] {
            assert_eq!(meta(&shape).unwrap().nbytes(), 0, "{shape:?}");
        }
    }

    #[test]
    fn shape_repr_matches_python() {
        assert_eq!(shape_repr(&[]), "()");
        assert_eq!(shape_repr(&[3]), "(3,)");
        assert_eq!(shape_repr(&[3, 4]), "(3, 4)");
    }
}
