//! The kinds of the out-of-core operators and their result dtypes: what
//! expressions need to know of an operator before anything runs. A leaf
//! module: it imports nothing of the engine.

use outcore_chunker::DType;

/// A quantile to compute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quantile {
    /// `np.median`: the middle value, or the mean of the two middle values.
    Median,
    /// `np.quantile(x, q)` with linear interpolation, `0 <= q <= 1`.
    Linear(f64),
    /// `np.nanmedian`: the median of the values that are not NaN (NaN
    /// where all are).
    NanMedian,
    /// `np.nanquantile(x, q)` with linear interpolation, `0 <= q <= 1`:
    /// the quantile of the values that are not NaN (NaN where all are).
    NanLinear(f64),
}

impl Quantile {
    /// True for the nan-variants, which skip NaN values.
    pub fn skips_nan(self) -> bool {
        matches!(self, Quantile::NanMedian | Quantile::NanLinear(_))
    }

    /// The same quantile over the values it reads: [`Quantile::Median`]
    /// or [`Quantile::Linear`].
    pub fn base(self) -> Quantile {
        match self {
            Quantile::NanMedian => Quantile::Median,
            Quantile::NanLinear(q) => Quantile::Linear(q),
            q => q,
        }
    }

    /// NumPy's name of the function: `median`, `quantile`, `nanmedian`
    /// or `nanquantile`.
    pub fn name(self) -> &'static str {
        match self {
            Quantile::Median => "median",
            Quantile::Linear(_) => "quantile",
            Quantile::NanMedian => "nanmedian",
            Quantile::NanLinear(_) => "nanquantile",
        }
    }
}

/// How quantiles are found (see [`crate::EngineBuilder::quantile_method`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantileMethod {
    /// Radix selection, unless its worst case (an interval per column and
    /// rank) cannot fit the budget; then the external sort.
    #[default]
    Auto,
    /// Always radix selection ([`Error::LimitTooSmall`](crate::Error::LimitTooSmall) before anything is
    /// read if its worst case cannot fit).
    Select,
    /// Always the external sort.
    Sort,
}

/// The result dtype of a quantile or median of `dtype`, as NumPy.
pub(crate) fn quantile_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::F32 | DType::F64 => dtype,
        _ => DType::F64,
    }
}

/// NumPy's result dtype of `np.cumsum` for an input dtype.
pub(crate) fn cumsum_dtype(dtype: DType) -> DType {
    match dtype {
        DType::Bool | DType::I8 | DType::I16 | DType::I32 | DType::I64 => DType::I64,
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => DType::U64,
        d => d,
    }
}

/// Operators over a whole streamed array whose result is another array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ArrayOp {
    /// `np.sort(x, axis=0)`.
    Sort,
    /// `np.cumsum(x, axis=0)`.
    Cumsum,
    /// The same values, materialized in a spill file.
    Persist,
}
