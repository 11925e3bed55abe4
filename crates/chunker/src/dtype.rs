//! Element types: the runtime [`DType`] enum, byte order, and the sealed
//! [`Element`] trait that bridges them to Rust types.

use std::fmt;
use std::str::FromStr;

use half::f16;

/// The element types outcore reads and writes.
///
/// These are NumPy's fixed-size numeric types. Complex, structured, object,
/// string and datetime dtypes are refused when a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// `bool` (`|b1`): one byte, 0 or 1.
    Bool,
    /// `int8` (`|i1`).
    I8,
    /// `int16` (`<i2`).
    I16,
    /// `int32` (`<i4`).
    I32,
    /// `int64` (`<i8`).
    I64,
    /// `uint8` (`|u1`).
    U8,
    /// `uint16` (`<u2`).
    U16,
    /// `uint32` (`<u4`).
    U32,
    /// `uint64` (`<u8`).
    U64,
    /// `float16` (`<f2`), IEEE half precision ([`half::f16`]).
    F16,
    /// `float32` (`<f4`).
    F32,
    /// `float64` (`<f8`).
    F64,
}

impl DType {
    /// Every supported dtype, in a fixed order.
    pub const ALL: [DType; 12] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F16,
        DType::F32,
        DType::F64,
    ];

    /// Size of one element in bytes.
    pub const fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// NumPy's name for the dtype (`"float64"`, `"uint8"`, `"bool"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// The short name used on the command line (`"f64"`, `"u8"`, `"bool"`, ...).
    pub const fn short_name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    /// NumPy's kind character: `b`, `i`, `u` or `f`.
    pub const fn kind(self) -> char {
        match self {
            DType::Bool => 'b',
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => 'i',
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => 'u',
            DType::F16 | DType::F32 | DType::F64 => 'f',
        }
    }

    /// True for `float16`, `float32` and `float64`.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::F32 | DType::F64)
    }

    /// True for the signed integer types.
    pub const fn is_signed_int(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64)
    }

    /// True for the unsigned integer types.
    pub const fn is_unsigned_int(self) -> bool {
        matches!(self, DType::U8 | DType::U16 | DType::U32 | DType::U64)
    }

    /// The NumPy type string (`descr`) for this dtype in the given byte order,
    /// e.g. `"<f8"`, `">i2"`, `"|u1"`. One-byte types always use `|`.
    pub fn descr(self, order: ByteOrder) -> String {
        let prefix = if self.itemsize() == 1 {
            '|'
        } else {
            match order {
                ByteOrder::Little => '<',
                ByteOrder::Big => '>',
            }
        };
        format!("{prefix}{}{}", self.kind(), self.itemsize())
    }

    /// The dtype for a NumPy kind character and item size, if supported.
    pub fn from_kind_and_size(kind: char, size: usize) -> Option<DType> {
        Some(match (kind, size) {
            ('b', 1) => DType::Bool,
            ('i', 1) => DType::I8,
            ('i', 2) => DType::I16,
            ('i', 4) => DType::I32,
            ('i', 8) => DType::I64,
            ('u', 1) => DType::U8,
            ('u', 2) => DType::U16,
            ('u', 4) => DType::U32,
            ('u', 8) => DType::U64,
            ('f', 2) => DType::F16,
            ('f', 4) => DType::F32,
            ('f', 8) => DType::F64,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error returned when a dtype name cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDTypeError {
    input: String,
}

impl fmt::Display for ParseDTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown dtype '{}' (expected one of bool, i8, i16, i32, i64, u8, u16, u32, u64, \
             f16, f32, f64, their NumPy names such as float64, or a type string such as <f8)",
            self.input
        )
    }
}

impl std::error::Error for ParseDTypeError {}

impl FromStr for DType {
    type Err = ParseDTypeError;

    /// Parses short names (`f64`, `i8` = int8), NumPy names (`float64`,
    /// `double`) and NumPy type strings with a byte-order prefix (`<f8`,
    /// `>i8` = int64, `|b1`; the byte order is dropped, see [`parse_descr`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.starts_with(['<', '>', '|', '=']) {
            return parse_descr(trimmed).map(|(d, _)| d);
        }
        let lower = trimmed.to_ascii_lowercase();
        let dtype = match lower.as_str() {
            "bool" | "b1" | "?" => DType::Bool,
            "i8" | "int8" | "i1" | "byte" => DType::I8,
            "i16" | "int16" | "i2" | "short" => DType::I16,
            "i32" | "int32" | "i4" | "intc" => DType::I32,
            "i64" | "int64" | "longlong" => DType::I64,
            "u8" | "uint8" | "u1" | "ubyte" => DType::U8,
            "u16" | "uint16" | "u2" | "ushort" => DType::U16,
            "u32" | "uint32" | "u4" | "uintc" => DType::U32,
            "u64" | "uint64" | "ulonglong" => DType::U64,
            "f16" | "float16" | "f2" | "half" => DType::F16,
            "f32" | "float32" | "f4" | "single" => DType::F32,
            "f64" | "float64" | "f8" | "double" | "float" => DType::F64,
            _ => {
                return Err(ParseDTypeError {
                    input: s.to_string(),
                });
            }
        };
        Ok(dtype)
    }
}

/// Parses a NumPy type string such as `"<f8"`, `">i2"` or `"|u1"` into a
/// dtype and byte order (`=` and `|` mean native).
///
/// Note that in a type string `i8` means int64 (8 bytes), unlike
/// [`DType::from_str`], where `i8` is the short name of int8.
///
/// # Errors
///
/// Returns [`ParseDTypeError`] when the string is not a supported numeric
/// type string.
pub fn parse_descr(s: &str) -> Result<(DType, ByteOrder), ParseDTypeError> {
    let err = || ParseDTypeError {
        input: s.to_string(),
    };
    let mut chars = s.chars();
    let (order, rest) = match chars.next() {
        Some('<') => (ByteOrder::Little, chars.as_str()),
        Some('>') => (ByteOrder::Big, chars.as_str()),
        Some('|') | Some('=') => (ByteOrder::NATIVE, chars.as_str()),
        _ => (ByteOrder::NATIVE, s),
    };
    let mut rest_chars = rest.chars();
    let kind = rest_chars.next().ok_or_else(err)?;
    let size: usize = rest_chars.as_str().parse().map_err(|_| err())?;
    let dtype = DType::from_kind_and_size(kind, size).ok_or_else(err)?;
    Ok((dtype, order))
}

/// Byte order of the elements in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Least significant byte first (`<`); x86-64 and aarch64.
    Little,
    /// Most significant byte first (`>`).
    Big,
}

impl ByteOrder {
    /// The byte order of the machine running this code.
    #[cfg(target_endian = "little")]
    pub const NATIVE: ByteOrder = ByteOrder::Little;
    /// The byte order of the machine running this code.
    #[cfg(target_endian = "big")]
    pub const NATIVE: ByteOrder = ByteOrder::Big;

    /// True when this is the machine's byte order.
    pub fn is_native(self) -> bool {
        self == ByteOrder::NATIVE
    }

    /// `"little"` or `"big"`.
    pub const fn name(self) -> &'static str {
        match self {
            ByteOrder::Little => "little",
            ByteOrder::Big => "big",
        }
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ByteOrder {
    type Err = String;

    /// Accepts `little`/`le`/`<`, `big`/`be`/`>` and `native`/`=`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "little" | "le" | "<" => Ok(ByteOrder::Little),
            "big" | "be" | ">" => Ok(ByteOrder::Big),
            "native" | "=" => Ok(ByteOrder::NATIVE),
            _ => Err(format!(
                "unknown byte order '{s}' (expected little, big or native)"
            )),
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that stores one element of a [`DType`].
///
/// Implemented for `bool`, `i8`..`i64`, `u8`..`u64`, [`half::f16`], `f32`
/// and `f64`; sealed, so the mapping between `DATA_TYPE` and the Rust type
/// cannot be broken from outside.
///
/// Reinterpreting file bytes as `&[Self]` is sound because every
/// implementor except `bool` is plain old data (any bit pattern is a valid
/// value, no padding), which `bytemuck::Pod` proves at compile time; `bool`
/// is reinterpreted only through `bytemuck`'s checked casts, which reject
/// any byte other than 0 or 1. Blocks are byte-swapped to native order and
/// copied to aligned memory before they are viewed.
pub trait Element:
    sealed::Sealed
    + bytemuck::CheckedBitPattern
    + bytemuck::NoUninit
    + Copy
    + Send
    + Sync
    + PartialEq
    + fmt::Debug
    + 'static
{
    /// The runtime dtype this type stores.
    const DATA_TYPE: DType;

    /// The value with its bytes reversed (for non-native byte order).
    fn swap_bytes(self) -> Self;
}

macro_rules! impl_int_element {
    ($($t:ty => $d:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DATA_TYPE: DType = DType::$d;
            #[inline]
            fn swap_bytes(self) -> Self {
                <$t>::swap_bytes(self)
            }
        }
    )*};
}

impl_int_element!(i8 => I8, i16 => I16, i32 => I32, i64 => I64,
                  u8 => U8, u16 => U16, u32 => U32, u64 => U64);

impl sealed::Sealed for bool {}
impl Element for bool {
    const DATA_TYPE: DType = DType::Bool;
    #[inline]
    fn swap_bytes(self) -> Self {
        self
    }
}

impl sealed::Sealed for f16 {}
impl Element for f16 {
    const DATA_TYPE: DType = DType::F16;
    #[inline]
    fn swap_bytes(self) -> Self {
        f16::from_bits(self.to_bits().swap_bytes())
    }
}

impl sealed::Sealed for f32 {}
impl Element for f32 {
    const DATA_TYPE: DType = DType::F32;
    #[inline]
    fn swap_bytes(self) -> Self {
        f32::from_bits(self.to_bits().swap_bytes())
    }
}

impl sealed::Sealed for f64 {}
impl Element for f64 {
    const DATA_TYPE: DType = DType::F64;
    #[inline]
    fn swap_bytes(self) -> Self {
        f64::from_bits(self.to_bits().swap_bytes())
    }
}

/// Runs an expression with a type alias bound to the Rust type of a runtime
/// [`DType`].
///
/// ```
/// use outcore_chunker::{with_dtype, DType};
///
/// fn size_of_dtype(d: DType) -> usize {
///     with_dtype!(d, T => std::mem::size_of::<T>())
/// }
/// assert_eq!(size_of_dtype(DType::F16), 2);
/// ```
#[macro_export]
macro_rules! with_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            $crate::DType::Bool => {
                type $t = bool;
                $body
            }
            $crate::DType::I8 => {
                type $t = i8;
                $body
            }
            $crate::DType::I16 => {
                type $t = i16;
                $body
            }
            $crate::DType::I32 => {
                type $t = i32;
                $body
            }
            $crate::DType::I64 => {
                type $t = i64;
                $body
            }
            $crate::DType::U8 => {
                type $t = u8;
                $body
            }
            $crate::DType::U16 => {
                type $t = u16;
                $body
            }
            $crate::DType::U32 => {
                type $t = u32;
                $body
            }
            $crate::DType::U64 => {
                type $t = u64;
                $body
            }
            $crate::DType::F16 => {
                type $t = $crate::f16;
                $body
            }
            $crate::DType::F32 => {
                type $t = f32;
                $body
            }
            $crate::DType::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descr_round_trips() {
        for d in DType::ALL {
            for o in [ByteOrder::Little, ByteOrder::Big] {
                let s = d.descr(o);
                let (d2, o2) = parse_descr(&s).unwrap();
                assert_eq!(d2, d);
                if d.itemsize() > 1 {
                    assert_eq!(o2, o);
                }
            }
        }
        assert_eq!(DType::F64.descr(ByteOrder::Little), "<f8");
        assert_eq!(DType::U8.descr(ByteOrder::Big), "|u1");
        assert!(parse_descr("<c16").is_err());
        assert!(parse_descr("").is_err());
        assert!(parse_descr("<f").is_err());
    }

    #[test]
    fn names_parse() {
        for d in DType::ALL {
            assert_eq!(d.short_name().parse::<DType>().unwrap(), d);
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert_eq!("f8".parse::<DType>().unwrap(), DType::F64);
        assert_eq!("<i2".parse::<DType>().unwrap(), DType::I16);
        assert_eq!("<i8".parse::<DType>().unwrap(), DType::I64);
        assert_eq!("i8".parse::<DType>().unwrap(), DType::I8);
        assert!("complex128".parse::<DType>().is_err());
    }

    #[test]
    fn swap_bytes_is_an_involution() {
        assert_eq!(1.5f64.swap_bytes().swap_bytes(), 1.5);
        assert_eq!(f16::from_f32(2.0).swap_bytes().to_bits(), 0x0040);
        assert_eq!(0x0102u16.swap_bytes(), 0x0201);
    }
}
