//! Byte units and [`format_bytes`]. A leaf module.

/// One kibibyte, 1024 bytes.
pub const KIB: u64 = 1 << 10;
/// One mebibyte, 1024 KiB.
pub const MIB: u64 = 1 << 20;
/// One gibibyte, 1024 MiB.
pub const GIB: u64 = 1 << 30;
/// One tebibyte, 1024 GiB.
pub const TIB: u64 = 1 << 40;

/// Units of [`format_bytes`], from the smallest.
const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// Formats a byte count in binary units with one decimal: `"0 B"`,
/// `"1023 B"`, `"1.5 KiB"`, `"64.0 MiB"`, `"2.0 TiB"`.
///
/// The unit is the largest of B, KiB, MiB, GiB and TiB that keeps the number
/// at least 1; the value is rounded to the nearest tenth (so 1023.99 KiB
/// prints as `"1.0 MiB"`). Plain bytes have no decimal.
///
/// ```
/// use outcore_spill::format_bytes;
///
/// assert_eq!(format_bytes(512), "512 B");
/// assert_eq!(format_bytes(8 << 20), "8.0 MiB");
/// assert_eq!(format_bytes(3 << 29), "1.5 GiB");
/// ```
pub fn format_bytes(bytes: u64) -> String {
    if bytes < KIB {
        return format!("{bytes} B");
    }
    let mut exp = 1;
    while exp + 1 < UNITS.len() && bytes >= 1 << (10 * (exp + 1)) {
        exp += 1;
    }
    let tenths = |exp: usize| {
        let unit = 1u128 << (10 * exp);
        (u128::from(bytes) * 10 + unit / 2) / unit
    };
    let mut t = tenths(exp);
    if t >= 10 * 1024 && exp + 1 < UNITS.len() {
        // Rounding carried into the next unit: 1023.96 KiB is 1.0 MiB.
        exp += 1;
        t = tenths(exp);
    }
    format!("{}.{} {}", t / 10, t % 10, UNITS[exp])
}
