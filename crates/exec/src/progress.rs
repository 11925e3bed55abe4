//! How far a run has come, readable from another thread while it runs:
//! the step, and bytes done of the step's total. The CLI's progress bar
//! and the Python package's draw from it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The progress of an engine's runs, shared with whoever watches them
/// ([`Engine::with_progress`](crate::Engine::with_progress)). Cheap to
/// update (atomic adds per block) and to read from any thread.
///
/// ```
/// use std::sync::Arc;
/// use outcore_exec::{Engine, Progress};
///
/// let progress = Arc::new(Progress::default());
/// let engine = Engine::builder().memory_limit(16 << 20).build()?.with_progress(progress.clone());
/// // ... run on another thread, and meanwhile:
/// let now = progress.snapshot();
/// assert_eq!((now.done, now.total), (0, 0));
/// # Ok::<(), outcore_exec::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    steps: AtomicU64,
    step: Mutex<String>,
}

/// What a [`Progress`] says at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// What the run is doing (`pass 1 of 2`, ...); empty before it starts.
    pub step: String,
    /// Steps started so far in this run.
    pub steps: u64,
    /// Bytes of the current step done.
    pub done: u64,
    /// Bytes the current step reads in all (0 when not known).
    pub total: u64,
}

impl Progress {
    /// What the run is doing now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let step = self.step.lock().map(|s| s.clone()).unwrap_or_default();
        ProgressSnapshot {
            step,
            steps: self.steps.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }

    /// A new step of `total` bytes begins.
    pub(crate) fn start(&self, step: &str, total: u64) {
        if let Ok(mut s) = self.step.lock() {
            step.clone_into(&mut s);
        }
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes` more of the current step are done.
    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}
