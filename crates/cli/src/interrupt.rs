//! SIGINT and SIGTERM: the first one stops the run cleanly, a second one
//! kills at once.
//!
//! [`install`] registers, for each of the two signals, three actions that
//! the handler runs in order:
//!
//! 1. record which signal came (for the exit status, 128 + its number);
//! 2. if the run was already asked to stop, do what the signal does by
//!    default (terminate by that signal): a second Ctrl-C never waits;
//! 3. cancel the process's [`CancelToken`], which every engine and `gen`
//!    check between blocks: the command returns `Error::Cancelled`, having
//!    written no output and left no spill file, and `main` prints one
//!    `error: interrupted (SIGINT): ...` line and exits with 130 (SIGINT)
//!    or 143 (SIGTERM).
//!
//! Even the second signal's hard stop leaves nothing behind: outputs are
//! unnamed until they are complete, and spill files are unnamed.
//!
//! Why `signal-hook` (not `ctrlc`): its `flag` actions are one atomic store
//! or load each in the handler itself (async-signal-safe; no thread to
//! wake), it can store into the engine's own cancel flag, and it has the
//! "second signal runs the default action" building block
//! (`register_conditional_default`); `ctrlc` runs a user closure on a
//! thread of its own, needs a feature for SIGTERM, and cannot hand the
//! second signal back to the default action. It is maintained, and used
//! by tokio and crossterm.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use outcore::CancelToken;
use signal_hook::consts::{SIGINT, SIGTERM};

/// The signals that stop a run.
const SIGNALS: [i32; 2] = [SIGINT, SIGTERM];

/// The process's stop request and the signal that made it.
struct State {
    token: CancelToken,
    /// The number of the first signal received (0 until then).
    signal: Arc<AtomicUsize>,
}

static STATE: OnceLock<State> = OnceLock::new();

fn state() -> &'static State {
    STATE.get_or_init(|| State {
        token: CancelToken::new(),
        signal: Arc::new(AtomicUsize::new(0)),
    })
}

/// Installs the handlers (once; later calls do nothing).
///
/// # Errors
///
/// When a handler cannot be registered.
pub(crate) fn install() -> Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let st = state();
    for sig in SIGNALS {
        // The order matters: the default action is armed by the flag that
        // the third action sets, so the first signal only arms it, and the
        // second (which records itself first) terminates the process.
        signal_hook::flag::register_usize(sig, Arc::clone(&st.signal), sig as usize)
            .and_then(|_| signal_hook::flag::register_conditional_default(sig, st.token.flag()))
            .and_then(|_| signal_hook::flag::register(sig, st.token.flag()))
            .with_context(|| format!("cannot install a handler for signal {sig}"))?;
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// The token every run of this process checks (cancelled by the first
/// SIGINT or SIGTERM).
pub(crate) fn token() -> CancelToken {
    state().token.clone()
}

/// The signal that stopped the run, if one came: its number and name.
pub(crate) fn received() -> Option<(i32, &'static str)> {
    match state().signal.load(Ordering::SeqCst) {
        0 => None,
        n if n == SIGINT as usize => Some((SIGINT, "SIGINT")),
        n if n == SIGTERM as usize => Some((SIGTERM, "SIGTERM")),
        n => Some((i32::try_from(n).unwrap_or(0), "signal")),
    }
}

/// Whether `err` (or one of its causes) is a run stopped by the token.
pub(crate) fn is_cancelled(err: &anyhow::Error) -> bool {
    use outcore::chunker::Error as ArrayError;
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<outcore::Error>(),
            Some(
                outcore::Error::Cancelled { .. }
                    | outcore::Error::Array(ArrayError::Cancelled { .. })
            )
        ) || matches!(
            cause.downcast_ref::<ArrayError>(),
            Some(ArrayError::Cancelled { .. })
        )
    })
}
