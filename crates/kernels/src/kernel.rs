//! The contract every reduction follows: [`Kernel`] (typed states) and
//! [`DynKernel`] (the same, type-erased, which is what the engine holds).
//!
//! A kernel reduces the row blocks of a `rows × row_len` array: `init`
//! gives the state of no rows, `update` adds a run of rows, `merge` adds
//! the state of the rows right after, in block order, and `finish` turns
//! the state of all rows into results of any shape — one value, one per
//! column, one per row, or a matrix or a vector of counts. Because states
//! merge in block order, results do not depend on how many threads (or
//! machines) computed the blocks.

use std::any::Any;

use crate::error::{Error, Result};
use crate::value::{AnyArray, AnyView};

/// A reduction over row blocks, with mergeable partial states.
///
/// The engine calls `init` once per block, `update` with the block's rows
/// (one or more calls, in increasing contiguous row order; `first_row` is
/// the global index of the view's first row), `merge` to add the state of
/// the next block, and `finish` once on the merged state of all rows.
/// `update` and `merge` cannot fail: a kernel records a problem in its
/// state and reports it from `finish`.
pub trait Kernel: Send + Sync + 'static {
    /// The partial state of a run of rows.
    type State: Send + 'static;

    /// The state of no rows.
    fn init(&self) -> Self::State;

    /// Adds the rows `first_row .. first_row + block.nrows()`.
    fn update(&self, state: &mut Self::State, block: AnyView<'_>, first_row: u64);

    /// Adds `next`, the state of the rows right after those of `into`.
    fn merge(&self, into: &mut Self::State, next: Self::State);

    /// The results, from the state of all rows.
    ///
    /// # Errors
    ///
    /// Whatever the kernel defines ([`Error::Empty`], [`Error::Invalid`]
    /// for a misused state, ...).
    fn finish(&self, state: Self::State) -> Result<Vec<AnyArray>>;

    /// Bytes one state occupies when it covers `rows` rows (the memory
    /// budget counts this for every block in flight and for the merged
    /// state of the whole array).
    fn state_bytes(&self, rows: u64) -> u64;
}

/// A type-erased kernel state.
pub type State = Box<dyn Any + Send>;

/// A [`Kernel`] with its state type erased, so kernels of different kinds
/// (built-in reductions, user aggregates, histograms, ...) sit side by
/// side in one pass. Every [`Kernel`] is one.
pub trait DynKernel: Send + Sync {
    /// As [`Kernel::init`].
    fn init(&self) -> State;
    /// As [`Kernel::update`].
    fn update(&self, state: &mut State, block: AnyView<'_>, first_row: u64);
    /// As [`Kernel::merge`].
    fn merge(&self, into: &mut State, next: State);
    /// As [`Kernel::finish`].
    ///
    /// # Errors
    ///
    /// As [`Kernel::finish`]; [`Error::Invalid`] for a state made by
    /// another kernel.
    fn finish(&self, state: State) -> Result<Vec<AnyArray>>;
    /// As [`Kernel::state_bytes`].
    fn state_bytes(&self, rows: u64) -> u64;
}

impl<K: Kernel> DynKernel for K {
    fn init(&self) -> State {
        Box::new(Kernel::init(self))
    }

    fn update(&self, state: &mut State, block: AnyView<'_>, first_row: u64) {
        // States come from this kernel's `init` (the engine never mixes
        // them); a foreign one is left alone and reported by `finish`.
        if let Some(s) = state.downcast_mut::<K::State>() {
            Kernel::update(self, s, block, first_row);
        }
    }

    fn merge(&self, into: &mut State, next: State) {
        if let (Some(a), Ok(b)) = (into.downcast_mut::<K::State>(), next.downcast::<K::State>()) {
            Kernel::merge(self, a, *b);
        }
    }

    fn finish(&self, state: State) -> Result<Vec<AnyArray>> {
        let state = state
            .downcast::<K::State>()
            .map_err(|_| Error::Invalid("a kernel was given another kernel's state".into()))?;
        Kernel::finish(self, *state)
    }

    fn state_bytes(&self, rows: u64) -> u64 {
        Kernel::state_bytes(self, rows)
    }
}
