//! Cumulative sums along axis 0, as `np.cumsum(x, axis=0)`.
//!
//! NumPy adds strictly in row order in the result dtype, so float results
//! depend on that order (float16 stops growing at 2048, float32 at 2²⁴).
//! To give NumPy's answers bit for bit, the sum is carried the same way:
//! blocks are read and converted to the result dtype in parallel, then
//! scanned in block order with a running row of per-column totals (the
//! carry), which is a vectorisable add of a row per row, and written.
//! A block-totals-then-prefix scheme would parallelise the adds too, but
//! would round floats differently from NumPy; the scan runs at several
//! GB/s and the write of the output dominates (see `docs/spill.md`).
//!
//! Result dtypes as NumPy: bool and signed integers → int64, unsigned →
//! uint64, floats keep their type. An integer total that leaves the
//! result type is an error (NumPy wraps silently), as for `sum`.

use half::f16;
use outcore_chunker::{ArrayFile, DType, Element};
use outcore_spill::Consumer;

use super::{RowSink, reserve_slots, stream_file, too_small};
use crate::error::{Error, Result};
use crate::report::RunReport;
use crate::runtime::Runtime;

/// An accumulator type of `np.cumsum`.
trait Acc: Element + bytemuck::Pod + Default {
    /// `self + x`, or `None` when an integer result overflows.
    fn add(self, x: Self) -> Option<Self>;
    /// The value as text, for the overflow error.
    fn describe(self, x: Self) -> String;
}

impl Acc for i64 {
    #[inline]
    fn add(self, x: i64) -> Option<i64> {
        self.checked_add(x)
    }
    fn describe(self, x: i64) -> String {
        (i128::from(self) + i128::from(x)).to_string()
    }
}

impl Acc for u64 {
    #[inline]
    fn add(self, x: u64) -> Option<u64> {
        self.checked_add(x)
    }
    fn describe(self, x: u64) -> String {
        (u128::from(self) + u128::from(x)).to_string()
    }
}

macro_rules! float_acc {
    ($($t:ty),*) => {$(
        impl Acc for $t {
            #[inline]
            fn add(self, x: $t) -> Option<$t> {
                Some(self + x)
            }
            fn describe(self, x: $t) -> String {
                (self + x).to_string()
            }
        }
    )*};
}
float_acc!(f16, f32, f64);

/// Converts an input element to the accumulator type (exact).
trait Widen<A> {
    fn widen(self) -> A;
}

macro_rules! widen {
    ($a:ty: $($t:ty),*) => {$(
        impl Widen<$a> for $t {
            #[inline]
            fn widen(self) -> $a {
                <$a>::from(self)
            }
        }
    )*};
}
widen!(i64: i8, i16, i32, i64);
widen!(u64: u8, u16, u32, u64);
impl Widen<i64> for bool {
    #[inline]
    fn widen(self) -> i64 {
        i64::from(self)
    }
}
impl Widen<f16> for f16 {
    #[inline]
    fn widen(self) -> f16 {
        self
    }
}
impl Widen<f32> for f32 {
    #[inline]
    fn widen(self) -> f32 {
        self
    }
}
impl Widen<f64> for f64 {
    #[inline]
    fn widen(self) -> f64 {
        self
    }
}

/// Writes the cumulative sum of `src` along axis 0 to `sink`.
pub(crate) fn cumsum_into(
    rt: &Runtime,
    src: &ArrayFile,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    macro_rules! go {
        ($t:ty => $a:ty) => {
            run::<$t, $a>(rt, src, sink, report)
        };
    }
    match src.meta().dtype {
        DType::Bool => go!(bool => i64),
        DType::I8 => go!(i8 => i64),
        DType::I16 => go!(i16 => i64),
        DType::I32 => go!(i32 => i64),
        DType::I64 => go!(i64 => i64),
        DType::U8 => go!(u8 => u64),
        DType::U16 => go!(u16 => u64),
        DType::U32 => go!(u32 => u64),
        DType::U64 => go!(u64 => u64),
        DType::F16 => go!(f16 => f16),
        DType::F32 => go!(f32 => f32),
        DType::F64 => go!(f64 => f64),
    }
}

fn run<T: Element + Widen<A>, A: Acc>(
    rt: &Runtime,
    src: &ArrayFile,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    let meta = src.meta();
    let (rows, row_len) = (meta.rows(), meta.row_len());
    if rows == 0 || row_len == 0 {
        return Ok(());
    }
    let in_row = (row_len * std::mem::size_of::<T>()) as u64;
    let out_row = (row_len * std::mem::size_of::<A>()) as u64;
    let limit = rt.budget().limit();
    let carry_bytes = out_row;
    let per_row = in_row + out_row;
    let threads = rt.threads().max(1);
    let mut slots = 2 * threads;
    let avail = limit.saturating_sub(carry_bytes);
    let fit = |slots: usize| avail / (slots as u64 * per_row);
    let mut block_rows = fit(slots);
    if block_rows == 0 {
        slots = 1;
        block_rows = fit(1);
    }
    if block_rows == 0 {
        return Err(too_small(
            rt,
            per_row,
            per_row + carry_bytes,
            "cumsum: one row read, one row of sums, and the running totals",
        ));
    }
    let block_rows = block_rows.min((rt.block_bytes() / in_row).max(1)).min(rows);
    let (_fixed, slot_res) = reserve_slots(
        rt,
        &[(Consumer::State, carry_bytes)],
        &[
            (Consumer::Reader, block_rows * in_row),
            (Consumer::Writer, block_rows * out_row),
        ],
        slots,
    )?;
    report.note_reservations(&[
        (Consumer::State, carry_bytes),
        (Consumer::Reader, block_rows * in_row * slots as u64),
        (Consumer::Writer, block_rows * out_row * slots as u64),
    ]);
    let mut carry: Vec<A> = vec![A::default(); row_len];
    let mut blocks = 0;
    let read = stream_file(
        rt,
        "blocks of a cumsum",
        src,
        block_rows,
        slot_res,
        |_rows, block| {
            let data = block.as_slice::<T>()?;
            Ok(data.iter().map(|&x| x.widen()).collect::<Vec<A>>())
        },
        |rows, mut out: Vec<A>| {
            for (r, row) in out.chunks_exact_mut(row_len).enumerate() {
                if rows.start == 0 && r == 0 {
                    // NumPy's accumulate starts from the first row itself
                    // (not 0 + it: -0.0 stays -0.0).
                    carry.copy_from_slice(row);
                    continue;
                }
                for (c, (x, acc)) in row.iter_mut().zip(carry.iter_mut()).enumerate() {
                    match acc.add(*x) {
                        Some(s) => {
                            *acc = s;
                            *x = s;
                        }
                        None => {
                            return Err(Error::IntegerOverflow {
                                op: format!("cumsum (row {}, column {c})", rows.start + r as u64),
                                dtype: A::DATA_TYPE.name(),
                                value: acc.describe(*x),
                            });
                        }
                    }
                }
            }
            sink.write(
                rows.start,
                out_row as usize,
                bytemuck::cast_slice_mut(&mut out),
            )?;
            blocks += 1;
            Ok(())
        },
    )?;
    report.bytes_read += read;
    report.bytes_written += rows * out_row;
    report.blocks += blocks;
    report.passes += 1;
    Ok(())
}
