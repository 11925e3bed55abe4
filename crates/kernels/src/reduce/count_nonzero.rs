//! `np.count_nonzero`: how many values are not zero, as int64. NaN is not
//! zero; `-0.0` is. The counting state here also answers [`any`](super::any)
//! and [`all`](super::all).

use ndarray::ArrayView2;
use outcore_chunker::DType;

use super::{ReduceAxis, ReduceKind};
use crate::error::{Error, Result};
use crate::eval::LaneCast;
use crate::kernel::{DynKernel, Kernel};
use crate::value::{AnyArray, AnyView};

/// `np.count_nonzero(x, axis)`: an int64 count per output.
#[derive(Clone, Copy, Debug)]
pub struct CountNonzero;

impl ReduceKind for CountNonzero {
    fn name(&self) -> &'static str {
        "count_nonzero"
    }

    fn result_dtype(&self, _input: DType) -> Result<DType> {
        Ok(DType::I64)
    }

    fn kernel(
        &self,
        axis: ReduceAxis,
        _input: DType,
        rows: u64,
        row_len: usize,
    ) -> Result<Box<dyn DynKernel>> {
        Ok(Box::new(Nonzero::new(axis, rows, row_len, Answer::Count)?))
    }
}

/// What a [`Nonzero`] kernel answers from its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The counts (int64).
    Count,
    /// Whether any value is nonzero (bool).
    Any,
    /// Whether every value is nonzero (bool).
    All,
}

/// Counts of nonzero values along an axis.
#[derive(Clone, Debug)]
pub(crate) struct Nonzero {
    axis: ReduceAxis,
    rows: u64,
    row_len: usize,
    answer: Answer,
}

/// The counts of a run of rows: one per output (one per row covered
/// along axis 1).
#[derive(Clone, Debug, Default)]
pub(crate) struct Counts {
    counts: Vec<u64>,
    /// Rows covered.
    rows: u64,
    /// The first misuse seen (reported by `finish`).
    error: Option<String>,
}

impl Nonzero {
    pub(crate) fn new(
        axis: ReduceAxis,
        rows: u64,
        row_len: usize,
        answer: Answer,
    ) -> Result<Nonzero> {
        if rows.checked_mul(row_len as u64).is_none() || usize::try_from(rows).is_err() {
            return Err(Error::Invalid(format!(
                "array of {rows} × {row_len} elements is too large"
            )));
        }
        Ok(Nonzero {
            axis,
            rows,
            row_len,
            answer,
        })
    }

    /// Adds the rows of `v` to `counts`.
    fn count<T: LaneCast>(&self, c: &mut Counts, v: ArrayView2<'_, T>) {
        match self.axis {
            ReduceAxis::All => {
                let n: u64 = v.iter().map(|&x| u64::from(x.to_bool())).sum();
                c.counts[0] += n;
            }
            ReduceAxis::Axis0 => {
                for row in v.rows() {
                    for (k, &x) in c.counts.iter_mut().zip(row.iter()) {
                        *k += u64::from(x.to_bool());
                    }
                }
            }
            ReduceAxis::Axis1 => c.counts.extend(
                v.rows()
                    .into_iter()
                    .map(|row| row.iter().map(|&x| u64::from(x.to_bool())).sum::<u64>()),
            ),
        }
    }
}

impl Kernel for Nonzero {
    type State = Counts;

    fn init(&self) -> Counts {
        let outputs = match self.axis {
            ReduceAxis::All => 1,
            ReduceAxis::Axis0 => self.row_len,
            ReduceAxis::Axis1 => 0,
        };
        Counts {
            counts: vec![0; outputs],
            rows: 0,
            error: None,
        }
    }

    fn update(&self, c: &mut Counts, block: AnyView<'_>, _first_row: u64) {
        if c.error.is_some() {
            return;
        }
        if block.ncols() != self.row_len {
            c.error = Some(format!(
                "a count over rows of length {} was given rows of length {}",
                self.row_len,
                block.ncols()
            ));
            return;
        }
        c.rows += block.nrows() as u64;
        match block {
            AnyView::Bool(v) => self.count(c, v),
            AnyView::I8(v) => self.count(c, v),
            AnyView::I16(v) => self.count(c, v),
            AnyView::I32(v) => self.count(c, v),
            AnyView::I64(v) => self.count(c, v),
            AnyView::U8(v) => self.count(c, v),
            AnyView::U16(v) => self.count(c, v),
            AnyView::U32(v) => self.count(c, v),
            AnyView::U64(v) => self.count(c, v),
            AnyView::F16(v) => self.count(c, v),
            AnyView::F32(v) => self.count(c, v),
            AnyView::F64(v) => self.count(c, v),
        }
    }

    fn merge(&self, into: &mut Counts, next: Counts) {
        if into.error.is_none() {
            into.error = next.error;
        }
        into.rows += next.rows;
        match self.axis {
            ReduceAxis::Axis1 => into.counts.extend(next.counts),
            _ => into
                .counts
                .iter_mut()
                .zip(next.counts)
                .for_each(|(a, b)| *a += b),
        }
    }

    fn finish(&self, c: Counts) -> Result<Vec<AnyArray>> {
        if let Some(e) = c.error {
            return Err(Error::Invalid(e));
        }
        // Zero-width rows need no data; the engine may skip them.
        let mut counts = c.counts;
        if self.row_len == 0 && self.axis == ReduceAxis::Axis1 {
            counts.resize(self.rows as usize, 0);
        } else if c.rows != self.rows {
            return Err(Error::Invalid(format!(
                "the count covers {} rows, but the array has {}",
                c.rows, self.rows
            )));
        }
        let (shape, per_output): (Vec<usize>, u64) = match self.axis {
            ReduceAxis::All => (vec![], self.rows * self.row_len as u64),
            ReduceAxis::Axis0 => (vec![self.row_len], self.rows),
            ReduceAxis::Axis1 => (vec![self.rows as usize], self.row_len as u64),
        };
        let bad = |e: ndarray::ShapeError| Error::Invalid(format!("count shape: {e}"));
        let array = match self.answer {
            Answer::Count => AnyArray::from(
                ndarray::ArrayD::from_shape_vec(
                    shape,
                    counts.iter().map(|&k| k as i64).collect::<Vec<i64>>(),
                )
                .map_err(bad)?,
            ),
            Answer::Any | Answer::All => {
                let all = self.answer == Answer::All;
                let v: Vec<bool> = counts
                    .iter()
                    .map(|&k| if all { k == per_output } else { k > 0 })
                    .collect();
                AnyArray::from(ndarray::ArrayD::from_shape_vec(shape, v).map_err(bad)?)
            }
        };
        Ok(vec![array])
    }

    fn state_bytes(&self, rows: u64) -> u64 {
        let fixed = std::mem::size_of::<Counts>() as u64;
        match self.axis {
            ReduceAxis::All => fixed + 8,
            ReduceAxis::Axis0 => fixed + 8 * self.row_len as u64,
            // One count per row, grown by doubling: count the slack.
            ReduceAxis::Axis1 => fixed + 16 * rows,
        }
    }
}
