//! Reductions that are kernels ([`outcore_kernels::DynKernel`]) as the
//! planner holds them in an expression: a [`KernelSpec`] builds the kernel
//! once the pass knows the dtype its block views will have. Two kinds: a
//! registered [`ReduceKind`] along an axis ([`AxisKernel`]: `any`, `ptp`,
//! ...), and a user [`Aggregate`](crate::aggregate::Aggregate)
//! (`aggregate.rs`).

use std::sync::Arc;

use outcore_chunker::DType;
use outcore_kernels::{DynKernel, ReduceAxis, ReduceKind};

use crate::error::Result;

/// A kernel reduction in an expression graph.
pub(crate) trait KernelSpec: Send + Sync {
    /// How the node prints, given its argument as text.
    fn describe(&self, arg: &str) -> String;

    /// The kernel over `rows × row_len` block views of dtype `input`.
    fn build(&self, input: DType, rows: u64, row_len: usize) -> Result<Arc<dyn DynKernel>>;

    /// The dtype the kernel's views must have, when it cannot take the
    /// values in their computing lane (a user aggregate over `T`).
    fn view_dtype(&self) -> Option<DType> {
        None
    }

    /// The axis reduced along, when the results are per column (axis 0:
    /// reshaped to the argument's trailing shape), per row or one value.
    fn axis(&self) -> Option<ReduceAxis> {
        None
    }
}

/// A registered [`ReduceKind`] along an axis.
pub(crate) struct AxisKernel {
    pub(crate) kind: &'static dyn ReduceKind,
    pub(crate) axis: ReduceAxis,
}

impl KernelSpec for AxisKernel {
    fn describe(&self, arg: &str) -> String {
        let name = self.kind.name();
        match self.axis {
            ReduceAxis::All => format!("{name}({arg})"),
            ReduceAxis::Axis0 => format!("{name}({arg}, axis=0)"),
            ReduceAxis::Axis1 => format!("{name}({arg}, axis=1)"),
        }
    }

    fn build(&self, input: DType, rows: u64, row_len: usize) -> Result<Arc<dyn DynKernel>> {
        Ok(Arc::from(
            self.kind.kernel(self.axis, input, rows, row_len)?,
        ))
    }

    fn axis(&self) -> Option<ReduceAxis> {
        Some(self.axis)
    }
}
