//! The `.npy` header: parsing with precise errors, and writing bytes
//! identical to NumPy's.
//!
//! The prefix (magic, version, header length) is checked here so that each
//! fault gets its own error with the numbers, and so that a lying header
//! length never drives an allocation. The dict is parsed with `py_literal`
//! (the Python-literal parser npyz itself uses) and the type string with
//! npyz's [`npyz::TypeStr`]. The shape is converted with checked arithmetic
//! before anything multiplies it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::str::FromStr;

use npyz::{Endianness, TypeChar, TypeStr};
use num_traits::{Signed, ToPrimitive};
use py_literal::Value;

use crate::dtype::{ByteOrder, DType};
use crate::error::{Error, Result};
use crate::meta::{ArrayMeta, Format, Layout, shape_repr};

/// The six magic bytes every `.npy` file starts with.
pub(crate) const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// NumPy's default `max_header_size` for `np.load`: longer headers are
/// refused as unsafe to parse.
pub(crate) const MAX_HEADER_LEN: usize = 10_000;

/// Deepest bracket nesting accepted in a header dict (a real header nests
/// 2 deep; the bound keeps the recursive parser far from the stack limit).
const MAX_NESTING: usize = 16;

/// Data alignment NumPy pads headers to.
const ARRAY_ALIGN: usize = 64;

/// Spare header space NumPy reserves so the leading dimension can grow in place.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// Reads and validates the header of the `.npy` file `file` (of `file_len`
/// bytes), returning the array's metadata. Checks that the data size
/// matches the shape exactly.
pub(crate) fn read_meta(path: &Path, file: &File, file_len: u64) -> Result<ArrayMeta> {
    let mut prefix = [0u8; 12];
    let got = read_up_to(path, file, &mut prefix, 0)?;
    // Like NumPy, a file too short for the magic and version is not a .npy file.
    if got < MAGIC.len() + 2 || &prefix[..MAGIC.len()] != MAGIC {
        let n = got.min(MAGIC.len() + 2);
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
            found: if n == 0 {
                "an empty file".to_string()
            } else {
                hex(&prefix[..n])
            },
        });
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                major,
                minor,
            });
        }
    };
    let text_start = 8 + len_bytes;
    if got < text_start {
        return Err(Error::bad_header(
            path,
            format!("file ends after {got} bytes, inside the header length field"),
        ));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([prefix[8], prefix[9]]) as usize
    } else {
        u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize
    };
    let data_offset = text_start as u64 + header_len as u64;
    if data_offset > file_len {
        return Err(Error::bad_header(
            path,
            format!(
                "header length {header_len} at offset {text_start} runs past the end of the \
                 file ({file_len} bytes)"
            ),
        ));
    }
    if header_len > MAX_HEADER_LEN {
        return Err(Error::bad_header(
            path,
            format!(
                "header is {header_len} bytes, more than the {MAX_HEADER_LEN} NumPy reads by default"
            ),
        ));
    }
    let mut raw = vec![0u8; header_len];
    file.read_exact_at(&mut raw, text_start as u64)
        .map_err(|e| Error::io(path, "read header", e))?;
    let text = if utf8 {
        String::from_utf8(raw).map_err(|e| {
            Error::bad_header(
                path,
                format!(
                    "header is not valid UTF-8 at byte {}",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?
    } else {
        // Versions 1 and 2 are latin-1 (NumPy decodes them so); latin-1
        // maps each byte to the code point of the same value.
        raw.iter().map(|&b| b as char).collect()
    };
    let header = parse_dict(path, &text)?;
    let meta = ArrayMeta::new(
        path,
        header.shape,
        header.dtype,
        header.byte_order,
        if header.fortran {
            Layout::Fortran
        } else {
            Layout::C
        },
        Format::Npy { major, minor },
        data_offset,
    )?;
    let actual = file_len - data_offset;
    if actual != meta.nbytes() {
        return Err(Error::SizeMismatch {
            path: path.to_path_buf(),
            shape: meta.shape.clone(),
            dtype: meta.dtype.name(),
            offset: data_offset,
            expected: meta.nbytes(),
            actual,
        });
    }
    Ok(meta)
}

/// Reads as many bytes as are available (up to `buf.len()`) at `offset`.
fn read_up_to(path: &Path, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, "read header", e)),
        }
    }
    Ok(got)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Header {
    dtype: DType,
    byte_order: ByteOrder,
    fortran: bool,
    shape: Vec<u64>,
}

fn parse_dict(path: &Path, text: &str) -> Result<Header> {
    let bad = |reason: String| Error::bad_header(path, reason);
    let trimmed = text.trim_end_matches(['\n', ' ', '\0', '\t', '\r']);
    let depth = max_nesting(trimmed);
    if depth > MAX_NESTING {
        return Err(bad(format!(
            "header nests brackets {depth} deep (at most {MAX_NESTING} accepted)"
        )));
    }
    let value = Value::from_str(trimmed).map_err(|e| {
        bad(format!(
            "not a Python literal: {}",
            one_line(&e.to_string())
        ))
    })?;
    let Value::Dict(items) = value else {
        return Err(bad(format!(
            "expected a dict, found {}",
            value_kind(&value)
        )));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in items {
        let Value::String(key) = key else {
            return Err(bad(format!("dict key {key} is not a string")));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => {
                return Err(bad(format!(
                    "unexpected key '{key}' (expected exactly 'descr', 'fortran_order', 'shape')"
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(bad(format!("key '{key}' appears twice")));
        }
    }
    let missing = |k: &str| bad(format!("missing key '{k}'"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran = match fortran.ok_or_else(|| missing("fortran_order"))? {
        Value::Boolean(b) => b,
        other => {
            return Err(bad(format!(
                "'fortran_order' must be True or False, found {other}"
            )));
        }
    };
    let shape = parse_shape(path, &shape.ok_or_else(|| missing("shape"))?)?;
    let (dtype, byte_order) = parse_dtype(path, &descr)?;
    Ok(Header {
        dtype,
        byte_order,
        fortran,
        shape,
    })
}

fn max_nesting(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Complex(_) => "a complex number",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Set(_) => "a set",
        Value::Boolean(_) => "a bool",
        Value::None => "None",
    }
}

fn parse_shape(path: &Path, value: &Value) -> Result<Vec<u64>> {
    let Value::Tuple(dims) = value else {
        return Err(Error::bad_header(
            path,
            format!(
                "'shape' must be a tuple of integers, found {}",
                value_kind(value)
            ),
        ));
    };
    let mut shape = Vec::with_capacity(dims.len());
    for dim in dims {
        let Value::Integer(n) = dim else {
            return Err(Error::bad_header(
                path,
                format!("'shape' holds {} ({dim}), not an integer", value_kind(dim)),
            ));
        };
        if n.is_negative() {
            return Err(Error::bad_header(
                path,
                format!("'shape' has a negative dimension {n}"),
            ));
        }
        match n.to_u64() {
            Some(n) => shape.push(n),
            None => {
                return Err(Error::Overflow {
                    path: path.to_path_buf(),
                    shape: vec![u64::MAX],
                    itemsize: 0,
                });
            }
        }
    }
    Ok(shape)
}

fn parse_dtype(path: &Path, descr: &Value) -> Result<(DType, ByteOrder)> {
    let type_str = match descr {
        Value::String(s) => s,
        Value::List(_) => {
            return Err(Error::UnsupportedDType {
                path: path.to_path_buf(),
                dtype: descr.to_string(),
                reason: "structured (record) dtypes are not supported; \
                         save each field as its own array"
                    .to_string(),
            });
        }
        other => {
            return Err(Error::bad_header(
                path,
                format!("'descr' must be a type string, found {}", value_kind(other)),
            ));
        }
    };
    let parsed = TypeStr::from_str(type_str).map_err(|e| {
        Error::bad_header(
            path,
            format!("'descr' {type_str:?} is not a NumPy type string: {e}"),
        )
    })?;
    let unsupported = |what: &str| Error::UnsupportedDType {
        path: path.to_path_buf(),
        dtype: format!("'{type_str}'"),
        reason: format!(
            "{what} arrays are not supported (supported: bool, int8-64, uint8-64, \
             float16, float32, float64)"
        ),
    };
    let kind = match parsed.type_char() {
        TypeChar::Bool => 'b',
        TypeChar::Int => 'i',
        TypeChar::Uint => 'u',
        TypeChar::Float => 'f',
        TypeChar::Complex => return Err(unsupported("complex")),
        TypeChar::TimeDelta => return Err(unsupported("timedelta64")),
        TypeChar::DateTime => return Err(unsupported("datetime64")),
        TypeChar::ByteStr => return Err(unsupported("byte-string")),
        TypeChar::UnicodeStr => return Err(unsupported("unicode-string")),
        TypeChar::Object => {
            return Err(unsupported("object (pickled; never unpickled by outcore)"));
        }
        TypeChar::RawData => return Err(unsupported("void (raw bytes)")),
        _ => return Err(unsupported("this kind of")),
    };
    let size = usize::try_from(parsed.size_field()).unwrap_or(usize::MAX);
    let dtype = DType::from_kind_and_size(kind, size)
        .ok_or_else(|| unsupported(&format!("{}-byte '{kind}'", parsed.size_field())))?;
    let byte_order = match parsed.endianness() {
        Endianness::Little => ByteOrder::Little,
        Endianness::Big => ByteOrder::Big,
        Endianness::Irrelevant => ByteOrder::NATIVE,
    };
    Ok((dtype, byte_order))
}

/// The bytes NumPy's `np.save` writes before the data of an array of this
/// dtype, byte order and shape (C order): magic, version, length, the
/// header dict, NumPy's spare space for growth, and padding to a multiple
/// of 64 bytes. Version 1.0 unless the header needs more than 65535 bytes.
pub(crate) fn header_bytes(dtype: DType, byte_order: ByteOrder, shape: &[u64]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(byte_order),
        shape_repr(shape)
    );
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    let hlen = dict.len() + 1;
    // NumPy pads with a full 64 bytes when already aligned; keep its bytes.
    let padded = |len_bytes: usize| {
        hlen + ARRAY_ALIGN - ((MAGIC.len() + 2 + len_bytes + hlen) % ARRAY_ALIGN)
    };
    let (version, len_bytes) = if padded(2) <= u16::MAX as usize {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let total = padded(len_bytes);
    let padlen = total - hlen;
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + len_bytes + total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if len_bytes == 2 {
        out.extend_from_slice(&(total as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(total as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padlen));
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_numpy_bytes() {
        // np.save(f, np.arange(12.).reshape(3, 4)) with NumPy 2.x.
        let h = header_bytes(DType::F64, ByteOrder::Little, &[3, 4]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }"));
        assert!(text.ends_with(" \n"));
        let h0 = header_bytes(DType::I64, ByteOrder::Little, &[]);
        assert!(
            std::str::from_utf8(&h0[10..])
                .unwrap()
                .contains("'shape': (), }")
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(max_nesting(&deep), 100);
        let err = parse_dict(Path::new("x"), &deep).err().unwrap();
        assert_eq!(err.kind(), "bad_header");
    }

    #[test]
    fn dict_errors_are_precise() {
        let p = Path::new("x.npy");
        let kind = |t: &str| parse_dict(p, t).err().map(|e| e.kind());
        assert_eq!(
            kind("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"),
            None
        );
        assert_eq!(
            kind("{'descr': '<f8', 'fortran_order': False}"),
            Some("bad_header")
        );
        assert_eq!(
            kind("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}"),
            Some("bad_header")
        );
        assert_eq!(
            kind("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}"),
            Some("bad_header")
        );
        assert_eq!(
            kind("{'descr': '<c16', 'fortran_order': False, 'shape': (2,)}"),
            Some("unsupported_dtype")
        );
        assert_eq!(
            kind("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,)}"),
            Some("unsupported_dtype")
        );
        assert_eq!(
            kind("{'descr': '<f8', 'fortran_order': False, 'shape': (2**70,)}"),
            Some("bad_header")
        );
        assert_eq!(
            kind("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000000000000000,)}"),
            Some("overflow")
        );
    }
}
