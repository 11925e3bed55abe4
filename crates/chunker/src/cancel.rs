//! Cooperative cancellation: a flag shared by whoever wants a run stopped
//! and the loops that run it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A request to stop a running computation, shared by clones.
///
/// Any clone may call [`CancelToken::cancel`] (from any thread, or from a
/// signal handler through [`CancelToken::flag`]); the loops that read,
/// compute, merge and write blocks check it between blocks and stop with
/// a "cancelled" error. Nothing half-done is kept: an output being written
/// is abandoned (no file appears under its name), spill files are released
/// (they are unnamed) and memory reservations are returned to the budget.
///
/// A token stays cancelled: a run started with a cancelled token stops
/// before its first block. Use a new token for the next run.
///
/// Checking costs one relaxed atomic load, so loops check once per block
/// (or per merge window), never per element: a cancelled run stops within
/// about one block's work per thread.
///
/// ```
/// use outcore_chunker::CancelToken;
///
/// let token = CancelToken::new();
/// let for_the_handler = token.clone();
/// assert!(!token.is_cancelled());
/// for_the_handler.cancel();
/// assert!(token.is_cancelled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token not (yet) cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every run holding a clone of this token to stop. Idempotent;
    /// never blocks.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called on any clone (or the
    /// shared flag was set).
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        // A stop request publishes no data: relaxed is enough, and the
        // load is as cheap as a plain one.
        self.flag.load(Ordering::Relaxed)
    }

    /// The shared flag itself: setting it to `true` (with any ordering)
    /// cancels. Meant for code that can only store to an atomic, such as a
    /// signal handler (`signal_hook::flag::register(SIGINT, token.flag())`
    /// is async-signal-safe: the handler does one atomic store).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = CancelToken::new();
        let b = a.clone();
        let flag = a.flag();
        assert!(!b.is_cancelled());
        flag.store(true, Ordering::SeqCst);
        assert!(a.is_cancelled() && b.is_cancelled());
        // Another token is independent.
        assert!(!CancelToken::new().is_cancelled());
    }
}
