//! Reductions that are kernels of their own ([`ReduceKind`]), and the
//! registry of them ([`kinds`]), which the engine's `reduce_kind`, the CLI's
//! `--ops` and the Python front look names up in.
//!
//! Adding one is one file beside this one (a unit struct implementing
//! [`ReduceKind`] and its [`Kernel`](crate::Kernel)) plus its line in
//! [`KINDS`].

use outcore_chunker::DType;

use super::ReduceAxis;
use super::{all, any, count_nonzero, ptp};
use crate::error::Result;
use crate::kernel::DynKernel;

/// A reduction along an axis that is its own kernel: NumPy's name, its
/// result dtype, and a kernel for an input of a given dtype and shape.
///
/// The kernel's `finish` gives one array: shape `[]` for
/// [`ReduceAxis::All`], `[row_len]` for [`ReduceAxis::Axis0`], `[rows]`
/// for [`ReduceAxis::Axis1`], of dtype `result_dtype(input)`.
pub trait ReduceKind: Send + Sync + 'static {
    /// NumPy's name (`"any"`, `"count_nonzero"`, ...).
    fn name(&self) -> &'static str;

    /// The dtype NumPy gives the result for an input of dtype `input`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a dtype NumPy refuses
    /// (e.g. `ptp` of bool).
    fn result_dtype(&self, input: DType) -> Result<DType>;

    /// A kernel reducing a `rows × row_len` array of `input` along `axis`.
    ///
    /// # Errors
    ///
    /// As [`ReduceKind::result_dtype`], and
    /// [`Error::Invalid`](crate::Error::Invalid) when `rows × row_len`
    /// overflows.
    fn kernel(
        &self,
        axis: ReduceAxis,
        input: DType,
        rows: u64,
        row_len: usize,
    ) -> Result<Box<dyn DynKernel>>;
}

/// Every registered kind, in the order `--ops` lists them.
static KINDS: [&dyn ReduceKind; 4] = [
    &any::Any,
    &all::All,
    &count_nonzero::CountNonzero,
    &ptp::Ptp,
];

/// Every registered [`ReduceKind`].
pub fn kinds() -> &'static [&'static dyn ReduceKind] {
    &KINDS
}

/// The registered kind called `name` (ASCII case ignored).
pub fn kind_named(name: &str) -> Option<&'static dyn ReduceKind> {
    let name = name.trim();
    KINDS
        .iter()
        .copied()
        .find(|k| k.name().eq_ignore_ascii_case(name))
}
