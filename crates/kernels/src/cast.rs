//! Conversions between byte buffers, lane registers and typed arrays:
//! the casts of results (NumPy's `astype`), reshapes, and zeroed
//! stand-ins used while a plan is sized.

use ndarray::{ArrayD, ArrayView2, IxDyn};
use outcore_chunker::{DType, with_dtype};

use crate::error::{Error, Result};
use crate::eval::{Buf, Lane, LaneCast, lane_of, store_bytes};
use crate::value::{AnyArray, AnyView};

/// An array of `dtype` and `shape` of zeros whose pages are never written
/// (see [`zeroed_like`]).
pub fn zeroed(dtype: DType, shape: &[usize]) -> AnyArray {
    let n: usize = shape.iter().product();
    with_dtype!(dtype, T => {
        let v: Vec<T> = bytemuck::zeroed_vec(n);
        ArrayD::from_shape_vec(IxDyn(shape), v)
            .map(AnyArray::from)
            .unwrap_or_else(|_| AnyArray::scalar(0.0f64))
    })
}

/// Builds an array of `dtype` and `shape` from native-order bytes.
///
/// # Errors
///
/// [`Error::Invalid`] when the byte count does not match the shape.
pub fn bytes_to_array(bytes: &[u8], dtype: DType, shape: &[u64]) -> Result<AnyArray> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let bad = |e: ndarray::ShapeError| Error::Invalid(format!("internal: result shape: {e}"));
    Ok(match dtype {
        DType::Bool => {
            let v: Vec<bool> = bytes.iter().map(|&b| b != 0).collect();
            AnyArray::from(ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(bad)?)
        }
        DType::I8 => pod_array::<i8>(bytes, &shape)?,
        DType::I16 => pod_array::<i16>(bytes, &shape)?,
        DType::I32 => pod_array::<i32>(bytes, &shape)?,
        DType::I64 => pod_array::<i64>(bytes, &shape)?,
        DType::U8 => pod_array::<u8>(bytes, &shape)?,
        DType::U16 => pod_array::<u16>(bytes, &shape)?,
        DType::U32 => pod_array::<u32>(bytes, &shape)?,
        DType::U64 => pod_array::<u64>(bytes, &shape)?,
        DType::F16 => pod_array::<half::f16>(bytes, &shape)?,
        DType::F32 => pod_array::<f32>(bytes, &shape)?,
        DType::F64 => pod_array::<f64>(bytes, &shape)?,
    })
}

fn pod_array<T: bytemuck::Pod>(bytes: &[u8], shape: &[usize]) -> Result<AnyArray>
where
    AnyArray: From<ArrayD<T>>,
{
    let v: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .map(AnyArray::from)
        .map_err(|e| Error::Invalid(format!("internal: result shape: {e}")))
}

/// Converts a lane buffer into an array of `dtype` and `shape` (NumPy
/// `astype` rules from the lane).
///
/// # Errors
///
/// [`Error::Invalid`] when the buffer is shorter than the shape.
pub fn buf_to_array(buf: &Buf, dtype: DType, shape: &[u64]) -> Result<AnyArray> {
    let n: usize = shape.iter().map(|&d| d as usize).product();
    let mut bytes = vec![0u64; (n * dtype.itemsize()).div_ceil(8)];
    let view: &mut [u8] = bytemuck::cast_slice_mut(&mut bytes);
    store_bytes(buf, n, dtype, &mut view[..n * dtype.itemsize()]);
    bytes_to_array(&view[..n * dtype.itemsize()], dtype, shape)
}

/// Casts an array to another dtype (exact where the values fit).
pub fn cast_array(a: &AnyArray, dtype: DType) -> AnyArray {
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let buf = Buf::from_array(a, lane_of(a.dtype()));
    buf_to_array(&buf, dtype, &shape).expect("same element count")
}

/// `a` with the same elements in `shape` (C order).
///
/// # Errors
///
/// [`Error::Invalid`] when the element counts differ.
pub fn reshape(a: AnyArray, shape: &[u64]) -> Result<AnyArray> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if a.shape() == shape.as_slice() {
        return Ok(a);
    }
    macro_rules! r {
        ($($var:ident),*) => {
            match a {
                $(AnyArray::$var(x) => AnyArray::$var(
                    x.into_shape_with_order(IxDyn(&shape))
                        .map_err(|e| Error::Invalid(format!("internal: reshape: {e}")))?,
                ),)*
            }
        };
    }
    Ok(r!(
        Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, F32, F64
    ))
}

/// An array of `a`'s dtype and shape whose pages are never written: a
/// zeroed allocation takes no resident memory until touched, so a stand-in
/// for a row of millions of values costs nothing while a plan is sized.
pub fn zeroed_like(a: &AnyArray) -> AnyArray {
    with_dtype!(a.dtype(), T => {
        let v: Vec<T> = bytemuck::zeroed_vec(a.len());
        ArrayD::from_shape_vec(IxDyn(a.shape()), v)
            .map(AnyArray::from)
            .unwrap_or_else(|_| AnyArray::scalar(0.0f64))
    })
}

/// Converts a lane buffer to another lane.
pub fn convert_buf(b: &Buf, lane: Lane) -> Buf {
    macro_rules! conv {
        ($v:expr) => {
            match lane {
                Lane::F64 => Buf::F64($v.iter().map(|x| x.to_f64()).collect()),
                Lane::I64 => Buf::I64($v.iter().map(|x| x.to_i64()).collect()),
                Lane::U64 => Buf::U64($v.iter().map(|x| x.to_u64()).collect()),
                Lane::Bool => Buf::Bool($v.iter().map(|x| x.to_bool()).collect()),
            }
        };
    }
    match b {
        Buf::F64(v) => conv!(v),
        Buf::I64(v) => conv!(v),
        Buf::U64(v) => conv!(v),
        Buf::Bool(v) => conv!(v),
    }
}

/// `b` with `n` values: a single value repeated, else unchanged.
pub fn expand(b: &Buf, n: usize) -> Buf {
    match b {
        Buf::F64(v) if v.len() == 1 => Buf::F64(vec![v[0]; n]),
        Buf::I64(v) if v.len() == 1 => Buf::I64(vec![v[0]; n]),
        Buf::U64(v) if v.len() == 1 => Buf::U64(vec![v[0]; n]),
        Buf::Bool(v) if v.len() == 1 => Buf::Bool(vec![v[0]; n]),
        other => other.clone(),
    }
}

/// The first `n` values of `b`.
pub fn truncate(b: &Buf, n: usize) -> Buf {
    match b {
        Buf::F64(v) => Buf::F64(v[..n].to_vec()),
        Buf::I64(v) => Buf::I64(v[..n].to_vec()),
        Buf::U64(v) => Buf::U64(v[..n].to_vec()),
        Buf::Bool(v) => Buf::Bool(v[..n].to_vec()),
    }
}

/// Native-order bytes of `rows × cols` values of `dtype` as a view.
///
/// # Errors
///
/// [`Error::Invalid`] when the byte count or alignment does not fit the
/// dtype, or a bool byte is neither 0 nor 1.
pub fn bytes_view(bytes: &[u8], dtype: DType, rows: usize, cols: usize) -> Result<AnyView<'_>> {
    let bad = |what: String| Error::Invalid(format!("internal: a {dtype} view of bytes: {what}"));
    macro_rules! pod {
        ($t:ty) => {{
            let v: &[$t] = bytemuck::try_cast_slice(bytes).map_err(|e| bad(e.to_string()))?;
            AnyView::from(ArrayView2::from_shape((rows, cols), v).map_err(|e| bad(e.to_string()))?)
        }};
    }
    Ok(match dtype {
        DType::Bool => {
            let v: &[bool] =
                bytemuck::checked::try_cast_slice(bytes).map_err(|e| bad(e.to_string()))?;
            AnyView::from(ArrayView2::from_shape((rows, cols), v).map_err(|e| bad(e.to_string()))?)
        }
        DType::I8 => pod!(i8),
        DType::I16 => pod!(i16),
        DType::I32 => pod!(i32),
        DType::I64 => pod!(i64),
        DType::U8 => pod!(u8),
        DType::U16 => pod!(u16),
        DType::U32 => pod!(u32),
        DType::U64 => pod!(u64),
        DType::F16 => pod!(half::f16),
        DType::F32 => pod!(f32),
        DType::F64 => pod!(f64),
    })
}
