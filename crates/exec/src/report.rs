//! What a run did and used: [`RunReport`].

use std::time::{Duration, Instant};

use outcore_spill::Consumer;

/// What a run did and used.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RunReport {
    /// Wall time.
    pub elapsed: Duration,
    /// Streaming passes run.
    pub passes: usize,
    /// Blocks processed, over all passes.
    pub blocks: u64,
    /// Input bytes read.
    pub bytes_read: u64,
    /// Output bytes written.
    pub bytes_written: u64,
    /// Bytes spilled to temporary files.
    pub bytes_spilled: u64,
    /// The memory limit in bytes.
    pub memory_limit: u64,
    /// Largest reservation of each consumer during the run, in bytes.
    pub reserved_by_consumer: Vec<(Consumer, u64)>,
    /// Largest total reservation during the run, in bytes.
    pub peak_reserved: u64,
    /// The process's peak resident set (VmHWM) after the run; Linux only.
    pub peak_rss: Option<u64>,
    /// The process's resident set (VmRSS) after the run; Linux only.
    pub rss: Option<u64>,
}

impl RunReport {
    /// A report for a run under `memory_limit`.
    pub(crate) fn new(memory_limit: u64) -> RunReport {
        RunReport {
            memory_limit,
            ..RunReport::default()
        }
    }

    /// Records the wall time since `start` and the process's memory.
    pub(crate) fn finish(&mut self, start: Instant) {
        self.elapsed = start.elapsed();
        if let Some(m) = outcore_spill::process_memory() {
            self.peak_rss = Some(m.peak_rss);
            self.rss = Some(m.rss);
        }
    }

    /// Records reservations held at once (the largest of each consumer,
    /// and of their total, are kept).
    pub(crate) fn note_reservations(&mut self, parts: &[(Consumer, u64)]) {
        let total: u64 = parts.iter().map(|p| p.1).sum();
        self.peak_reserved = self.peak_reserved.max(total);
        for &(c, b) in parts {
            match self.reserved_by_consumer.iter_mut().find(|x| x.0 == c) {
                Some(x) => x.1 = x.1.max(b),
                None => self.reserved_by_consumer.push((c, b)),
            }
        }
    }
}
