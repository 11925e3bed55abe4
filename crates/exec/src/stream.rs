//! The streaming pipeline: a reader stage feeds a bounded channel, rayon
//! workers compute, and the calling thread merges results in block order.
//!
//! Back-pressure comes from slots: a fixed set of memory reservations,
//! one per block in flight. The reader takes a slot before reading a
//! block; the slot travels with the block to a worker and with its result
//! to the merger, which returns it after merging. So at most `slots`
//! blocks exist at once, whatever the relative speed of reading, computing
//! and merging, and the results waiting to be merged in order are bounded
//! too. A failure anywhere stops the reader and is reported once.
//!
//! Cancellation is checked between blocks: by the reader before it reads
//! a block and by a worker before it computes one (one relaxed load each).
//! A cancelled run stops as a failure does — the reader reads nothing
//! more, blocks in flight are dropped with their slots — and reports
//! [`Error::Cancelled`] with the blocks merged so far.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{bounded, unbounded};
use outcore_chunker::CancelToken;
use rayon::ThreadPool;

use crate::error::{Error, Result};

/// Runs `n` blocks through read → work → merge.
///
/// `slots` (at least one) are handed out to blocks in flight; `work`
/// returns each block's slot with its result, and the merger hands it back
/// to the reader after merging. `read` runs on a dedicated reader thread, `work` on
/// the pool's threads, `merge` on the calling thread in block order.
///
/// Once `cancel` is cancelled, no block is read or computed any more and
/// the run returns [`Error::Cancelled`] naming `stage` (what a block is
/// part of, e.g. `"blocks of a pass"`).
#[allow(clippy::too_many_arguments)] // each is one stage's part; a struct would only rename them
pub(crate) fn run<S, B, P>(
    pool: &ThreadPool,
    cancel: &CancelToken,
    stage: &'static str,
    n: usize,
    slots: Vec<S>,
    read: impl Fn(usize, S) -> Result<B> + Send + Sync,
    work: impl Fn(usize, B) -> Result<(P, S)> + Send + Sync,
    mut merge: impl FnMut(usize, P) -> Result<()>,
) -> Result<()>
where
    S: Send,
    B: Send,
    P: Send,
{
    if n == 0 {
        return Ok(());
    }
    let window = slots.len().max(1);
    let (slot_tx, slot_rx) = bounded::<S>(window);
    for s in slots {
        slot_tx.send(s).expect("the slot channel holds every slot");
    }
    let (block_tx, block_rx) = bounded::<(usize, B)>(window);
    let (done_tx, done_rx) = unbounded::<(usize, Result<(P, S)>)>();
    let stop = AtomicBool::new(false);
    let workers = pool.current_num_threads().max(1);
    // The merger fills in how many blocks were merged.
    let cancelled = || Error::Cancelled {
        stage,
        done: 0,
        total: n as u64,
    };

    std::thread::scope(|scope| {
        // Reader stage.
        let reader_done = done_tx.clone();
        let (read, stop) = (&read, &stop);
        scope.spawn(move || {
            for i in 0..n {
                let Ok(slot) = slot_rx.recv() else { break };
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if cancel.is_cancelled() {
                    let _ = reader_done.send((i, Err(cancelled())));
                    break;
                }
                match read(i, slot) {
                    Ok(block) => {
                        if block_tx.send((i, block)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = reader_done.send((i, Err(e)));
                        break;
                    }
                }
            }
            // Dropping block_tx lets the workers finish.
        });

        let mut result = Ok(());
        pool.in_place_scope(|s| {
            for _ in 0..workers {
                let (rx, tx, work) = (block_rx.clone(), done_tx.clone(), &work);
                s.spawn(move |_| {
                    while let Ok((i, block)) = rx.recv() {
                        if stop.load(Ordering::Relaxed) {
                            continue; // drain: drop the block and its slot
                        }
                        if cancel.is_cancelled() {
                            // Reported (not just dropped) so that the
                            // merger stops waiting for this block.
                            if tx.send((i, Err(cancelled()))).is_err() {
                                break;
                            }
                            continue;
                        }
                        let out = catch_unwind(AssertUnwindSafe(|| work(i, block)))
                            .unwrap_or_else(|p| Err(Error::Panic(panic_message(&p))));
                        if tx.send((i, out)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            drop(block_rx);

            // Merger: in block order.
            let mut pending = BTreeMap::new();
            let mut next = 0;
            while next < n {
                let Ok((i, out)) = done_rx.recv() else {
                    result = Err(Error::Invalid(
                        "internal: the pipeline stopped before every block was merged".into(),
                    ));
                    break;
                };
                match out {
                    Ok(p) => {
                        pending.insert(i, p);
                    }
                    Err(Error::Cancelled { stage, total, .. }) => {
                        result = Err(Error::Cancelled {
                            stage,
                            done: next as u64,
                            total,
                        });
                        break;
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                while let Some(p) = pending.remove(&next) {
                    let (p, slot) = p;
                    if let Err(e) = merge(next, p) {
                        result = Err(e);
                        break;
                    }
                    next += 1;
                    // The reader may have stopped already; a refused slot is fine.
                    let _ = slot_tx.send(slot);
                }
                if result.is_err() {
                    break;
                }
            }
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            // Closing the slot channel stops a reader waiting for a slot.
            drop(slot_tx);
            // Let workers drain: receive (and drop) what they still send.
            while done_rx.recv().is_ok() {}
        });
        result
    })
}

/// The message of a caught panic.
pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs user code, turning a panic into [`Error::Panic`].
pub(crate) fn catch_user<R>(f: impl FnOnce() -> R) -> Result<R> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Error::Panic(panic_message(&p)))
}
