//! [`Consumer`]: what a reservation holds memory for. A leaf module.

use std::fmt;

/// What a [`Reservation`](crate::Reservation) holds memory for.
///
/// Every reservation is tagged by one consumer, so that [`BudgetUsage`](crate::BudgetUsage) and
/// [`Error::Exhausted`](crate::Error::Exhausted) can say where the memory went. `Display` prints
/// the lowercase name (`reader`, `kernel`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Consumer {
    /// Read buffers and mapped windows of input files.
    Reader,
    /// Scratch space of kernels (elementwise chains, temporaries).
    Kernel,
    /// Partial states of reductions.
    State,
    /// Write buffers of output files.
    Writer,
    /// Memory used while writing or reading spilled intermediates.
    Spill,
    /// Anything else.
    Other,
}

/// Number of [`Consumer`] variants; the length of the per-consumer tables.
pub(crate) const CONSUMERS: usize = 6;

impl Consumer {
    /// Every consumer, in declaration order.
    pub const ALL: &'static [Consumer] = &[
        Consumer::Reader,
        Consumer::Kernel,
        Consumer::State,
        Consumer::Writer,
        Consumer::Spill,
        Consumer::Other,
    ];

    /// The lowercase name, as printed by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consumer::Reader => "reader",
            Consumer::Kernel => "kernel",
            Consumer::State => "state",
            Consumer::Writer => "writer",
            Consumer::Spill => "spill",
            Consumer::Other => "other",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
