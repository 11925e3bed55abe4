//! Dynamically typed arrays: computed results ([`AnyArray`]) and block
//! views handed to kernels ([`AnyView`]).

use half::f16;
use ndarray::{ArrayD, ArrayView2, ArrayViewD, IxDyn};
use outcore_chunker::DType;

macro_rules! any_enums {
    ($($var:ident => $t:ty),* $(,)?) => {
        /// An owned n-dimensional array of any supported dtype: what a
        /// computation returns (a 0-d array for a reduction over all
        /// elements, 1-d along an axis, 2-d for a materialised expression).
        #[derive(Clone, Debug, PartialEq)]
        #[allow(missing_docs)] // one variant per dtype, named after it
        pub enum AnyArray {
            $($var(ArrayD<$t>),)*
        }

        /// A borrowed `rows × row_len` view of any supported dtype: the
        /// unit of data reductions consume.
        #[derive(Clone, Copy, Debug)]
        #[allow(missing_docs)] // one variant per dtype, named after it
        pub enum AnyView<'a> {
            $($var(ArrayView2<'a, $t>),)*
        }

        impl AnyArray {
            /// The element type.
            pub fn dtype(&self) -> DType {
                match self {
                    $(AnyArray::$var(_) => <$t as outcore_chunker::Element>::DATA_TYPE,)*
                }
            }

            /// The shape.
            pub fn shape(&self) -> &[usize] {
                match self {
                    $(AnyArray::$var(a) => a.shape(),)*
                }
            }

            /// Number of elements.
            pub fn len(&self) -> usize {
                self.shape().iter().product()
            }

            /// True when the array holds no elements.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The values converted to `f64` (exact for every dtype except
            /// 64-bit integers beyond 2⁵³, which round as NumPy's `astype`).
            pub fn to_f64(&self) -> ArrayD<f64> {
                match self {
                    $(AnyArray::$var(a) => a.mapv(|v| ToF64::to_f64(v)),)*
                }
            }

            /// The values as JSON-friendly scalars, flat in C order.
            pub fn to_scalars(&self) -> Vec<Scalar> {
                self.scalars().collect()
            }

            /// The values as JSON-friendly scalars, flat in C order, one at
            /// a time (nothing is allocated for the whole array).
            pub fn scalars(&self) -> Box<dyn Iterator<Item = Scalar> + '_> {
                match self {
                    $(AnyArray::$var(a) => Box::new(a.iter().map(|&v| ToScalar::to_scalar(v))),)*
                }
            }
        }

        impl<'a> AnyView<'a> {
            /// The element type.
            pub fn dtype(&self) -> DType {
                match self {
                    $(AnyView::$var(_) => <$t as outcore_chunker::Element>::DATA_TYPE,)*
                }
            }

            /// Rows in the view.
            pub fn nrows(&self) -> usize {
                match self {
                    $(AnyView::$var(a) => a.nrows(),)*
                }
            }

            /// Elements per row.
            pub fn ncols(&self) -> usize {
                match self {
                    $(AnyView::$var(a) => a.ncols(),)*
                }
            }
        }

        $(
            impl DynElement for $t {
                fn from_view(v: AnyView<'_>) -> Option<ArrayView2<'_, $t>> {
                    match v {
                        AnyView::$var(a) => Some(a),
                        _ => None,
                    }
                }

                fn into_any(a: ArrayD<$t>) -> AnyArray {
                    AnyArray::$var(a)
                }

                fn from_any(a: AnyArray) -> Result<ArrayD<$t>, AnyArray> {
                    match a {
                        AnyArray::$var(a) => Ok(a),
                        other => Err(other),
                    }
                }

                fn view_any(a: &AnyArray) -> Option<ArrayViewD<'_, $t>> {
                    match a {
                        AnyArray::$var(a) => Some(a.view()),
                        _ => None,
                    }
                }
            }

            impl From<ArrayD<$t>> for AnyArray {
                fn from(a: ArrayD<$t>) -> AnyArray {
                    AnyArray::$var(a)
                }
            }

            impl<'a> From<ArrayView2<'a, $t>> for AnyView<'a> {
                fn from(a: ArrayView2<'a, $t>) -> AnyView<'a> {
                    AnyView::$var(a)
                }
            }
        )*
    };
}

/// An element type that can move in and out of the dynamically typed
/// [`AnyView`] and [`AnyArray`]: every [`Element`](outcore_chunker::Element).
pub trait DynElement: outcore_chunker::Element {
    /// The typed view inside `v`, if `v` holds this type.
    fn from_view(v: AnyView<'_>) -> Option<ArrayView2<'_, Self>>;
    /// Wraps a typed array.
    fn into_any(a: ArrayD<Self>) -> AnyArray;
    /// The typed array inside `a`, or `a` back when it holds another type.
    ///
    /// # Errors
    ///
    /// `a` itself, when its dtype is not this type's.
    fn from_any(a: AnyArray) -> Result<ArrayD<Self>, AnyArray>;
    /// A typed view of `a`, if `a` holds this type.
    fn view_any(a: &AnyArray) -> Option<ArrayViewD<'_, Self>>;
}

impl AnyArray {
    /// The values as `ArrayD<T>`, without a copy, when the dtype is `T`'s.
    ///
    /// ```
    /// use outcore_kernels::AnyArray;
    ///
    /// let a = AnyArray::from(ndarray::arr1(&[1.5f32, 2.5]).into_dyn());
    /// let a = a.into_typed::<f64>().unwrap_err(); // float32, not float64
    /// let x = a.into_typed::<f32>().unwrap();
    /// assert_eq!(x.as_slice().unwrap(), &[1.5, 2.5]);
    /// ```
    ///
    /// # Errors
    ///
    /// The array itself, unchanged, when its dtype is another.
    pub fn into_typed<T: DynElement>(self) -> Result<ArrayD<T>, AnyArray> {
        T::from_any(self)
    }

    /// A view of the values as `T`, when the dtype is `T`'s.
    pub fn view<T: DynElement>(&self) -> Option<ArrayViewD<'_, T>> {
        T::view_any(self)
    }
}

any_enums! {
    Bool => bool,
    I8 => i8,
    I16 => i16,
    I32 => i32,
    I64 => i64,
    U8 => u8,
    U16 => u16,
    U32 => u32,
    U64 => u64,
    F16 => f16,
    F32 => f32,
    F64 => f64,
}

/// A typed buffer that a streamed result is collected into, block by
/// block, and that becomes an [`AnyArray`] without another copy.
#[derive(Debug)]
pub struct Collector(AnyVec);

macro_rules! any_vec {
    ($($var:ident => $t:ty),*) => {
        #[derive(Debug)]
        enum AnyVec {
            Bool(Vec<bool>),
            $($var(Vec<$t>),)*
        }

        impl Collector {
            /// An empty collector of `dtype` with room for `n` elements.
            pub fn with_capacity(dtype: DType, n: usize) -> Collector {
                Collector(match dtype {
                    DType::Bool => AnyVec::Bool(Vec::with_capacity(n)),
                    $(<$t as outcore_chunker::Element>::DATA_TYPE => AnyVec::$var(Vec::with_capacity(n)),)*
                })
            }

            /// Appends elements given as native-order bytes of the dtype.
            pub fn extend_from_bytes(&mut self, bytes: &[u8]) {
                match &mut self.0 {
                    AnyVec::Bool(v) => v.extend(bytes.iter().map(|&b| b != 0)),
                    $(AnyVec::$var(v) => v.extend(
                        bytes.chunks_exact(std::mem::size_of::<$t>())
                            .map(|c| bytemuck::pod_read_unaligned::<$t>(c)),
                    ),)*
                }
            }

            /// Appends another collector's elements (of the same dtype).
            pub fn append(&mut self, other: Collector) {
                match (&mut self.0, other.0) {
                    (AnyVec::Bool(a), AnyVec::Bool(b)) => a.extend(b),
                    $((AnyVec::$var(a), AnyVec::$var(b)) => a.extend(b),)*
                    _ => debug_assert!(false, "collectors of one store share a dtype"),
                }
            }

            /// The collected elements as an array of `shape`.
            pub fn into_array(self, shape: &[usize]) -> Result<AnyArray, ndarray::ShapeError> {
                Ok(match self.0 {
                    AnyVec::Bool(v) => AnyArray::Bool(ArrayD::from_shape_vec(IxDyn(shape), v)?),
                    $(AnyVec::$var(v) => AnyArray::$var(ArrayD::from_shape_vec(IxDyn(shape), v)?),)*
                })
            }
        }
    };
}

any_vec!(I8 => i8, I16 => i16, I32 => i32, I64 => i64, U8 => u8, U16 => u16, U32 => u32,
         U64 => u64, F16 => f16, F32 => f32, F64 => f64);

impl AnyArray {
    /// A 0-d array holding one value.
    pub fn scalar<T: Clone>(v: T) -> AnyArray
    where
        AnyArray: From<ArrayD<T>>,
    {
        AnyArray::from(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// The single value of a 0-d (or one-element) array as `f64`.
    pub fn as_f64_scalar(&self) -> Option<f64> {
        (self.len() == 1).then(|| self.to_f64().iter().next().copied().unwrap_or(f64::NAN))
    }
}

/// One value of a result, as JSON output wants it: integers stay exact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// A signed integer (exact).
    Int(i64),
    /// An unsigned integer (exact).
    UInt(u64),
    /// A floating-point value (may be NaN or infinite).
    Float(f64),
}

trait ToF64: Copy {
    fn to_f64(self) -> f64;
}

trait ToScalar: Copy {
    fn to_scalar(self) -> Scalar;
}

macro_rules! to_f64_as {
    ($($t:ty => $s:ident as $w:ty),*) => {$(
        impl ToF64 for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
        impl ToScalar for $t {
            #[inline]
            fn to_scalar(self) -> Scalar {
                Scalar::$s(self as $w)
            }
        }
    )*};
}

to_f64_as!(i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int as i64,
           u8 => UInt as u64, u16 => UInt as u64, u32 => UInt as u64, u64 => UInt as u64,
           f32 => Float as f64, f64 => Float as f64);

impl ToF64 for bool {
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
}

impl ToScalar for bool {
    fn to_scalar(self) -> Scalar {
        Scalar::Bool(self)
    }
}

impl ToF64 for f16 {
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
}

impl ToScalar for f16 {
    fn to_scalar(self) -> Scalar {
        Scalar::Float(f16::to_f64(self))
    }
}
