//! `np.all`: whether every value is nonzero (bool; NaN counts as true, an
//! empty reduction is true).

use outcore_chunker::DType;

use super::count_nonzero::{Answer, Nonzero};
use super::{ReduceAxis, ReduceKind};
use crate::error::Result;
use crate::kernel::DynKernel;

/// `np.all(x, axis)`.
#[derive(Clone, Copy, Debug)]
pub struct All;

impl ReduceKind for All {
    fn name(&self) -> &'static str {
        "all"
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
        Ok(Box::new(Nonzero::new(axis, rows, row_len, Answer::All)?))
    }
}
