//! The runtime context: what a run needs to execute its steps — the memory
//! budget, the thread pool, the spill space, the cancel token and the
//! sizing settings. The pass loop and every operator take a [`Runtime`]
//! rather than the engine.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outcore_chunker::CancelToken;
use outcore_spill::{Consumer, MemoryBudget, Reservation, SpillSpace};
use rayon::ThreadPool;

use crate::error::{Error, Result};
use crate::ops::kind::QuantileMethod;
use crate::progress::Progress;

/// What a run executes with (shared by the clones of an engine).
#[derive(Clone, Debug)]
pub(crate) struct Runtime {
    pub(crate) budget: MemoryBudget,
    pub(crate) pool: Arc<ThreadPool>,
    pub(crate) spill: SpillSpace,
    pub(crate) cancel: CancelToken,
    /// Target bytes of input per block.
    pub(crate) block_bytes: u64,
    pub(crate) quantile_method: QuantileMethod,
    /// Show a progress bar on a terminal.
    pub(crate) progress: bool,
    /// Where the run's progress is told, for a watcher on another thread.
    pub(crate) watch: Option<Arc<Progress>>,
}

/// The progress of one step: a bar on a terminal (when asked for) and the
/// watcher's counters (when there is one).
pub(crate) struct Tick {
    bar: Option<ProgressBar>,
    watch: Option<Arc<Progress>>,
}

impl Tick {
    /// `bytes` more are done.
    pub(crate) fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        if let Some(w) = &self.watch {
            w.add(bytes);
        }
    }

    /// The step is over: the bar is cleared (also on error, so that an
    /// interrupted run's error line stands alone).
    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The memory of a pass (or an operator's streaming stage), by consumer:
/// what is held for the whole of it, and what each block in flight holds.
#[derive(Clone, Debug)]
pub(crate) struct Sizing {
    pub(crate) block_rows: u64,
    pub(crate) slots: usize,
    /// Bytes reserved for the whole pass, by consumer.
    pub(crate) fixed: Vec<(Consumer, u64)>,
    /// Bytes of one slot, by consumer.
    pub(crate) slot: Vec<(Consumer, u64)>,
    pub(crate) block_bytes: u64,
    /// The smallest limit this pass can run with.
    pub(crate) minimum: u64,
}

impl Sizing {
    /// Bytes of the whole pass.
    pub(crate) fn total(&self) -> u64 {
        let f: u64 = self.fixed.iter().map(|p| p.1).sum();
        let s: u64 = self.slot.iter().map(|p| p.1).sum();
        f + s * self.slots as u64
    }

    /// Bytes of the whole pass, by consumer.
    pub(crate) fn by_consumer(&self) -> Vec<(Consumer, u64)> {
        let mut out: Vec<(Consumer, u64)> = Vec::new();
        let mut add = |c: Consumer, b: u64| match out.iter_mut().find(|x| x.0 == c) {
            Some(x) => x.1 += b,
            None => out.push((c, b)),
        };
        for &(c, b) in &self.fixed {
            add(c, b);
        }
        for &(c, b) in &self.slot {
            add(c, b * self.slots as u64);
        }
        out.retain(|x| x.1 > 0);
        out
    }
}

/// The reservations of a pass: those held for all of it, and one set per
/// block in flight.
pub(crate) type Reserved = (Vec<Reservation>, Vec<Vec<Reservation>>);

impl Runtime {
    /// The memory budget.
    pub(crate) fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Where spill files go.
    pub(crate) fn spill(&self) -> &SpillSpace {
        &self.spill
    }

    /// The worker pool.
    pub(crate) fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// Worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Target bytes of input per block.
    pub(crate) fn block_bytes(&self) -> u64 {
        self.block_bytes
    }

    /// How quantiles are found.
    pub(crate) fn quantile_method(&self) -> QuantileMethod {
        self.quantile_method
    }

    /// The token that stops runs.
    pub(crate) fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// [`Error::Cancelled`] if the token is cancelled: `done` of `total`
    /// units of `stage` were complete.
    pub(crate) fn check_cancel(&self, stage: &'static str, done: u64, total: u64) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled { stage, done, total });
        }
        Ok(())
    }

    /// Reserves a pass's memory: everything at once, or nothing while
    /// waiting (so engines sharing a budget never deadlock holding parts).
    pub(crate) fn reserve(&self, sizing: &Sizing) -> Result<Reserved> {
        loop {
            match self.try_reserve_all(sizing) {
                Ok(r) => return Ok(r),
                Err(outcore_spill::Error::Exhausted { .. }) => {
                    // Wait until the whole amount is free, then try again.
                    let total = sizing.total();
                    drop(self.budget.reserve(Consumer::Other, total)?);
                    // Cancelled while waiting for engines sharing the budget.
                    self.check_cancel(
                        "reservations (while waiting for engines sharing the budget)",
                        0,
                        1,
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn try_reserve_all(
        &self,
        sizing: &Sizing,
    ) -> std::result::Result<Reserved, outcore_spill::Error> {
        let mut fixed = Vec::new();
        for &(c, b) in &sizing.fixed {
            fixed.push(self.budget.try_reserve(c, b)?);
        }
        let mut slots = Vec::new();
        for _ in 0..sizing.slots {
            let mut slot = Vec::new();
            for &(c, b) in &sizing.slot {
                slot.push(self.budget.try_reserve(c, b)?);
            }
            slots.push(slot);
        }
        Ok((fixed, slots))
    }

    /// The progress of a step `step` over `total` bytes: told to the
    /// watcher, and drawn as a bar when asked for and stderr is a terminal.
    pub(crate) fn progress(&self, step: &str, total: u64) -> Tick {
        if let Some(w) = &self.watch {
            w.start(step, total);
        }
        Tick {
            bar: self.progress_bar(total),
            watch: self.watch.clone(),
        }
    }

    /// An operator's step `step` over `total` bytes begins: told to the
    /// watcher only (operators draw no bar of their own); they report
    /// what they do with [`Runtime::advance`].
    pub(crate) fn start_step(&self, step: &str, total: u64) {
        if let Some(w) = &self.watch {
            w.start(step, total);
        }
    }

    /// `bytes` more of the current operator step are done.
    pub(crate) fn advance(&self, bytes: u64) {
        if let Some(w) = &self.watch {
            w.add(bytes);
        }
    }

    fn progress_bar(&self, total: u64) -> Option<ProgressBar> {
        use std::io::IsTerminal;
        if !self.progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    }

    /// A runtime for the operators' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(
        limit: u64,
        threads: usize,
        spill_dir: Option<&std::path::Path>,
        cancel: CancelToken,
    ) -> Runtime {
        Runtime {
            budget: MemoryBudget::new(limit),
            pool: Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a test pool"),
            ),
            spill: spill_dir.map_or_else(SpillSpace::system, SpillSpace::new),
            cancel,
            block_bytes: 8 << 20,
            quantile_method: QuantileMethod::Auto,
            progress: false,
            watch: None,
        }
    }
}
