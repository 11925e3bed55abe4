//! How partial states serialise (`#[serde(with = ...)]` helpers).
//!
//! Floats travel as their bit patterns (`u64`), so states holding NaN or
//! infinity (an identity of `min`, a sum that overflowed) round-trip exactly
//! through every format, JSON included, which has no NaN. `i128` travels as
//! a `(hi, lo)` pair for formats without 128-bit integers.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::num::Num;

/// `Vec<f64>` as bit patterns.
pub(crate) mod f64s {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.to_bits()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }
}

/// `Vec<C>` of a compute type as bit patterns.
pub(crate) mod nums {
    use super::*;

    pub(crate) fn serialize<C: Num, S: Serializer>(v: &[C], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.to_wire()))
    }

    pub(crate) fn deserialize<'de, C: Num, D: Deserializer<'de>>(d: D) -> Result<Vec<C>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(C::from_wire)
            .collect())
    }
}

/// `Vec<i128>` as `(hi, lo)` pairs.
pub(crate) mod i128s {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[i128], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|&x| ((x >> 64) as i64, x as u64)))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i128>, D::Error> {
        Ok(Vec::<(i64, u64)>::deserialize(d)?
            .into_iter()
            .map(|(h, l)| (i128::from(h) << 64) | i128::from(l))
            .collect())
    }
}

/// A [`outcore_chunker::DType`] as its NumPy name.
pub(crate) mod dtype {
    use super::*;
    use outcore_chunker::DType;

    pub(crate) fn serialize<S: Serializer>(v: &DType, s: S) -> Result<S::Ok, S::Error> {
        v.name().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(D::Error::custom)
    }
}
