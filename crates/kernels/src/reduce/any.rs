//! `np.any`: whether any value is nonzero (bool; NaN counts as true, an
//! empty reduction is false).

use outcore_chunker::DType;

use super::count_nonzero::{Answer, Nonzero};
use super::{ReduceAxis, ReduceKind};
use crate::error::Result;
use crate::kernel::DynKernel;

/// `np.any(x, axis)`.
#[derive(Clone, Copy, Debug)]
pub struct Any;

impl ReduceKind for Any {
    fn name(&self) -> &'static str {
        "any"
    }

    fn result_dtype(&self, _input: DType) -> Result<DType> {
        Ok(DType::Bool)
    }

    fn kernel(
        &self,
        axis: ReduceAxis,
        _input: DType,
        rows: u64,
        row_len: usize,
    ) -> Result<Box<dyn DynKernel>> {
        Ok(Box::new(Nonzero::new(axis, rows, row_len, Answer::Any)?))
    }
}
