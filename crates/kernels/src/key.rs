//! Order-preserving integer keys: the sort order of NumPy (NaN last) as
//! plain `u64` comparisons, for sorting, merging and radix selection.

use half::f16;
use outcore_chunker::Element;

use crate::value::DynElement;

/// An element with an order-preserving, invertible `u64` key.
///
/// `a` sorts before `b` in NumPy's order (`np.sort`: ascending, `-0.0`
/// before `0.0` here, every NaN after `+inf`) exactly when
/// `a.key() < b.key()`. Distinct non-NaN values have distinct keys and
/// [`SortKey::from_key`] inverts [`SortKey::key`] for them; a NaN's key
/// ignores its sign bit, so all NaNs sort last.
pub trait SortKey: Element + DynElement {
    /// The key.
    fn key(self) -> u64;
    /// The value with this key.
    fn from_key(key: u64) -> Self;
    /// True for NaN.
    fn is_nan(self) -> bool;
}

macro_rules! signed_key {
    ($($t:ty => $u:ty),*) => {$(
        impl SortKey for $t {
            #[inline]
            fn key(self) -> u64 {
                ((self as $u) ^ (1 << (<$u>::BITS - 1))) as u64
            }
            #[inline]
            fn from_key(key: u64) -> Self {
                ((key as $u) ^ (1 << (<$u>::BITS - 1))) as $t
            }
            #[inline]
            fn is_nan(self) -> bool {
                false
            }
        }
    )*};
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl SortKey for $t {
            #[inline]
            fn key(self) -> u64 {
                self as u64
            }
            #[inline]
            fn from_key(key: u64) -> Self {
                key as $t
            }
            #[inline]
            fn is_nan(self) -> bool {
                false
            }
        }
    )*};
}

signed_key!(i8 => u8, i16 => u16, i32 => u32, i64 => u64);
unsigned_key!(u8, u16, u32, u64);

impl SortKey for bool {
    #[inline]
    fn key(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn from_key(key: u64) -> Self {
        key != 0
    }
    #[inline]
    fn is_nan(self) -> bool {
        false
    }
}

macro_rules! float_key {
    ($($t:ty => $u:ty, $to_bits:expr, $from_bits:expr, $nan:expr);*) => {$(
        impl SortKey for $t {
            #[inline]
            fn key(self) -> u64 {
                let sign: $u = 1 << (<$u>::BITS - 1);
                let mut bits: $u = $to_bits(self);
                if $nan(self) {
                    bits &= !sign;
                }
                (if bits & sign != 0 { !bits } else { bits | sign }) as u64
            }
            #[inline]
            fn from_key(key: u64) -> Self {
                let sign: $u = 1 << (<$u>::BITS - 1);
                let k = key as $u;
                $from_bits(if k & sign != 0 { k & !sign } else { !k })
            }
            #[inline]
            fn is_nan(self) -> bool {
                $nan(self)
            }
        }
    )*};
}

float_key!(
    f64 => u64, f64::to_bits, f64::from_bits, f64::is_nan;
    f32 => u32, f32::to_bits, f32::from_bits, f32::is_nan;
    f16 => u16, f16::to_bits, f16::from_bits, f16::is_nan
);

/// Sorts `v` in NumPy's order (NaN last).
pub fn sort<T: SortKey>(v: &mut [T]) {
    v.sort_unstable_by_key(|x| x.key());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: SortKey>(sorted: &[T]) {
        for w in sorted.windows(2) {
            assert!(w[0].key() < w[1].key(), "{:?} < {:?}", w[0], w[1]);
        }
        for &x in sorted {
            if !x.is_nan() {
                assert_eq!(T::from_key(x.key()).key(), x.key());
                assert_eq!(T::from_key(x.key()), x);
            }
        }
    }

    #[test]
    fn keys_preserve_numpy_order() {
        check(&[i8::MIN, -1, 0, 1, i8::MAX]);
        check(&[i64::MIN, -5, 0, 7, i64::MAX]);
        check(&[0u64, 1, u64::MAX]);
        check(&[false, true]);
        check(&[
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -f64::MIN_POSITIVE / 4.0,
            -0.0,
            0.0,
            f64::MIN_POSITIVE / 4.0,
            1.0,
            f64::INFINITY,
            f64::NAN,
        ]);
        check(&[
            f32::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-40,
            3.0,
            f32::INFINITY,
        ]);
        check(&[
            f16::NEG_INFINITY,
            f16::from_f32(-65504.0),
            f16::from_f32(-0.0),
            f16::from_f32(0.0),
            f16::from_f32(6e-8),
            f16::INFINITY,
            f16::NAN,
        ]);
        // Negative NaNs sort last too.
        assert!((-f64::NAN).key() > f64::INFINITY.key());
        assert!((-f32::NAN).key() > f32::INFINITY.key());
    }

    #[test]
    fn sort_puts_nan_last() {
        let mut v = vec![3.0, f64::NAN, -1.0, -f64::NAN, f64::NEG_INFINITY, 2.0];
        sort(&mut v);
        assert_eq!(&v[..4], &[f64::NEG_INFINITY, -1.0, 2.0, 3.0]);
        assert!(v[4].is_nan() && v[5].is_nan());
    }
}
