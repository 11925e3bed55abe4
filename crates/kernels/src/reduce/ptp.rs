//! `np.ptp`: the range `max − min` along an axis, in the input dtype.
//!
//! The minimum and maximum come from the shared min/max state (NaN if any
//! value is NaN); their difference is taken as NumPy takes it: integers
//! wrap (`int8` values −128 and 127 give −1), floats round once to the
//! input's width. Bool input is refused, as NumPy refuses a boolean
//! subtract; an empty reduction is an error, as in NumPy.

use outcore_chunker::DType;

use super::{ReduceAxis, ReduceKind, ReduceOp, ReduceState, ReducerSet};
use crate::cast::buf_to_array;
use crate::error::{Error, Result};
use crate::eval::{Buf, lane_of};
use crate::kernel::{DynKernel, Kernel};
use crate::value::{AnyArray, AnyView};

/// `np.ptp(x, axis)`.
#[derive(Clone, Copy, Debug)]
pub struct Ptp;

impl ReduceKind for Ptp {
    fn name(&self) -> &'static str {
        "ptp"
    }

    fn result_dtype(&self, input: DType) -> Result<DType> {
        if input == DType::Bool {
            return Err(Error::Invalid(
                "ptp of a bool array is not supported (NumPy raises TypeError: numpy boolean \
                 subtract); cast to an integer dtype first"
                    .into(),
            ));
        }
        Ok(input)
    }

    fn kernel(
        &self,
        axis: ReduceAxis,
        input: DType,
        rows: u64,
        row_len: usize,
    ) -> Result<Box<dyn DynKernel>> {
        self.result_dtype(input)?;
        let set = ReducerSet::new(&[ReduceOp::Min, ReduceOp::Max], axis, input, rows, row_len)?;
        Ok(Box::new(PtpKernel { set, input }))
    }
}

/// The range from a min/max [`ReducerSet`].
struct PtpKernel {
    set: ReducerSet,
    input: DType,
}

impl Kernel for PtpKernel {
    type State = ReduceState;

    fn init(&self) -> ReduceState {
        self.set.init()
    }

    fn update(&self, state: &mut ReduceState, block: AnyView<'_>, first_row: u64) {
        self.set.update(state, block, first_row);
    }

    fn merge(&self, into: &mut ReduceState, next: ReduceState) {
        self.set.merge(into, next);
    }

    fn finish(&self, state: ReduceState) -> Result<Vec<AnyArray>> {
        let mut out = self.set.finish(state).map_err(|e| match e {
            Error::Empty { what, .. } => Error::Empty {
                op: "ptp".into(),
                what,
            },
            e => e,
        })?;
        let (Some(max), Some(min)) = (out.pop(), out.pop()) else {
            return Err(Error::Invalid("ptp: min/max state gave no result".into()));
        };
        let lane = lane_of(self.input);
        let range = match (Buf::from_array(&max, lane), Buf::from_array(&min, lane)) {
            (Buf::F64(a), Buf::F64(b)) => Buf::F64(a.iter().zip(&b).map(|(a, b)| a - b).collect()),
            (Buf::I64(a), Buf::I64(b)) => {
                Buf::I64(a.iter().zip(&b).map(|(a, b)| a.wrapping_sub(*b)).collect())
            }
            (Buf::U64(a), Buf::U64(b)) => {
                Buf::U64(a.iter().zip(&b).map(|(a, b)| a.wrapping_sub(*b)).collect())
            }
            _ => {
                return Err(Error::Invalid(
                    "ptp of a bool array is not supported".into(),
                ));
            }
        };
        let shape: Vec<u64> = max.shape().iter().map(|&d| d as u64).collect();
        Ok(vec![buf_to_array(&range, self.input, &shape)?])
    }

    fn state_bytes(&self, rows: u64) -> u64 {
        self.set.state_bytes(rows.min(usize::MAX as u64) as usize) as u64
    }
}
