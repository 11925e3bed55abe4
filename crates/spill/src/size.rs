//! Byte sizes parsed from text: [`parse_size`] (the units and
//! [`format_bytes`](crate::format_bytes) are in `units.rs`).

use crate::error::{Error, Result};
use crate::units::{GIB, KIB, MIB, TIB};

/// Fraction digits beyond this many are ignored; they change the result by
/// far less than a byte.
const MAX_FRACTION_DIGITS: usize = 20;

/// Parses a byte size such as `"64MiB"`, `"1.5GiB"`, `"512M"` or
/// `"1048576"`.
///
/// The text is a non-negative decimal number (optionally with a fraction),
/// optionally followed by a unit, optionally separated by spaces. Units are
/// case-insensitive and **always binary**: `K`, `KB`, `Ki` and `KiB` all
/// mean 1024 bytes, `M`/`MB`/`Mi`/`MiB` mean 1024², and likewise `G` and
/// `T`; `B` or no unit means bytes. (So `512MB` is 512 MiB, not 512 × 10⁶
/// bytes: a memory limit is meant, and memory comes in binary units.)
/// A fractional result is rounded down to a whole byte.
///
/// ```
/// use outcore_spill::{parse_size, GIB, MIB};
///
/// assert_eq!(parse_size("64MiB")?, 64 * MIB);
/// assert_eq!(parse_size("512mb")?, 512 * MIB);
/// assert_eq!(parse_size("1.5 GiB")?, 3 * GIB / 2);
/// assert_eq!(parse_size("1048576")?, MIB);
/// assert!(parse_size("-1G").is_err());
/// # Ok::<(), outcore_spill::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidSize`] or [`Error::UnknownUnit`] if the text is not of
/// that form, [`Error::NegativeSize`] if it is negative, and
/// [`Error::SizeOverflow`] if it is more than `u64::MAX` bytes.
pub fn parse_size(input: &str) -> Result<u64> {
    let text = input.trim();
    let invalid = || Error::InvalidSize {
        input: input.to_owned(),
    };
    if text.starts_with('-') {
        return Err(Error::NegativeSize {
            input: input.to_owned(),
        });
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(invalid());
    }
    let unit = unit.trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => KIB,
        "m" | "mb" | "mi" | "mib" => MIB,
        "g" | "gb" | "gi" | "gib" => GIB,
        "t" | "tb" | "ti" | "tib" => TIB,
        _ => {
            return Err(Error::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    let overflow = || Error::SizeOverflow {
        input: input.to_owned(),
    };
    // Only ASCII digits are left in `int` and `frac`.
    let mut whole: u128 = 0;
    for d in int.bytes() {
        whole = whole * 10 + u128::from(d - b'0');
        if whole > u128::from(u64::MAX) {
            return Err(overflow());
        }
    }
    let frac = &frac[..frac.len().min(MAX_FRACTION_DIGITS)];
    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for d in frac.bytes() {
        numerator = numerator * 10 + u128::from(d - b'0');
        denominator *= 10;
    }
    // whole < 2^64 and multiplier <= 2^40, numerator < 10^20 < 2^67: no
    // overflow in u128.
    let multiplier = u128::from(multiplier);
    let bytes = whole * multiplier + numerator * multiplier / denominator;
    u64::try_from(bytes).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::format_bytes;

    #[test]
    fn format_small_and_exact() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1), "1 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(64 * MIB), "64.0 MiB");
        assert_eq!(format_bytes(GIB), "1.0 GiB");
        assert_eq!(format_bytes(5 * TIB / 2), "2.5 TiB");
    }

    #[test]
    fn format_rounds_and_carries() {
        assert_eq!(format_bytes(1075), "1.0 KiB"); // 1.0498
        assert_eq!(format_bytes(1076), "1.1 KiB"); // 1.0508
        assert_eq!(format_bytes(MIB - 1), "1.0 MiB");
        assert_eq!(format_bytes(GIB - 1), "1.0 GiB");
        assert_eq!(format_bytes(TIB - 1), "1.0 TiB");
        assert_eq!(format_bytes(1023 * MIB), "1023.0 MiB");
        assert_eq!(format_bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn format_then_parse_is_close() {
        // Plain loop in place of a property test: the printed value parses
        // back to within the rounding of one decimal.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x >> (x % 64);
            let text = format_bytes(bytes);
            let back = parse_size(&text).unwrap();
            let unit = match text.rsplit(' ').next().unwrap() {
                "B" => 1,
                "KiB" => KIB,
                "MiB" => MIB,
                "GiB" => GIB,
                _ => TIB,
            };
            assert!(
                back.abs_diff(bytes) <= unit / 20 + 1,
                "{bytes} -> {text} -> {back}"
            );
        }
    }

    #[test]
    fn parse_units() {
        let cases = [
            ("0", 0),
            ("1048576", MIB),
            ("17B", 17),
            ("64MiB", 64 * MIB),
            ("1GiB", GIB),
            ("512M", 512 * MIB),
            ("512MB", 512 * MIB),
            ("512mb", 512 * MIB),
            ("512Mi", 512 * MIB),
            ("2k", 2 * KIB),
            ("2KB", 2 * KIB),
            ("2kib", 2 * KIB),
            ("3g", 3 * GIB),
            ("1T", TIB),
            ("1tib", TIB),
            ("1.5GiB", 3 * GIB / 2),
            (".5K", 512),
            ("2.K", 2 * KIB),
            ("  64 MiB ", 64 * MIB),
            ("0.1KiB", 102), // 102.4, rounded down
            ("1.5", 1),
            ("16777215.99999999999999999999999TiB", u64::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for text in [
            "", " ", "abc", "MiB", ".", "1.2.3", "1..2", "+5", "nan", "1 2",
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(
                matches!(err, Error::InvalidSize { .. } | Error::UnknownUnit { .. }),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
        assert_eq!(
            parse_size("12XB"),
            Err(Error::UnknownUnit {
                input: "12XB".into(),
                unit: "XB".into()
            })
        );
        assert!(matches!(parse_size("1e9"), Err(Error::UnknownUnit { .. })));
        assert!(matches!(
            parse_size("5 MiBs"),
            Err(Error::UnknownUnit { .. })
        ));
    }

    #[test]
    fn parse_rejects_negative_and_overflow() {
        assert_eq!(
            parse_size("-1G"),
            Err(Error::NegativeSize {
                input: "-1G".into()
            })
        );
        assert!(matches!(parse_size(" -0"), Err(Error::NegativeSize { .. })));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        for text in [
            "18446744073709551616",
            "99999999999999999999999999999",
            "16777216TiB",
            "17179869184G",
        ] {
            let err = parse_size(text).unwrap_err();
            assert_eq!(err, Error::SizeOverflow { input: text.into() });
            assert!(err.to_string().contains(text));
        }
    }
}
