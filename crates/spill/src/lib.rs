//! The memory budget of outcore — a process-wide limit on the bytes the
//! engine holds for data, with RAII reservations and back-pressure — and
//! its spill files, where intermediates go when they do not fit.
//!
//! Every buffer the engine keeps — read buffers and mapped windows, kernel
//! scratch, partial states, write buffers — is reserved against one
//! [`MemoryBudget`] before it is allocated, and given back when its
//! [`Reservation`] is dropped. A reader that would exceed the budget waits
//! until bytes are released ([`MemoryBudget::reserve`]); code that must not
//! wait asks with [`MemoryBudget::try_reserve`] and gets an error naming the
//! numbers and the largest consumers.
//!
//! # Brief overview
//!
//! * [`MemoryBudget`] is the limit and its accounting: a cheap, clonable,
//!   `Send + Sync` handle that several engines may share.
//! * [`Reservation`] holds bytes for one [`Consumer`] until dropped; it can
//!   grow, shrink, and [`split`](Reservation::split) so part of it travels
//!   with a block.
//! * [`BudgetUsage`] is a snapshot of current and peak bytes, in total and per
//!   [`Consumer`].
//! * [`parse_size`] and [`format_bytes`] read and print sizes such as
//!   `"1.5 GiB"`; [`default_limit`], [`available_memory`] and
//!   [`process_memory`] ask the operating system (Linux) about memory.
//! * [`SpillSpace`] (a directory and a disk quota) makes [`SpillFile`]s:
//!   unnamed, fully allocated temporary files, written with `pwrite` and
//!   read back through mapped [`SpillWindow`]s; nothing is left on disk
//!   after the process ends, however it ends.
//! * [`Error`] is the one error of the crate, with the numbers and the
//!   directory: a reservation refused not now
//!   ([`Exhausted`](Error::Exhausted)) or never
//!   ([`TooLarge`](Error::TooLarge)), a spill file's quota, disk or I/O
//!   failure, or a size that does not parse.
//!
//! # Example
//!
//! ```
//! use outcore_spill::{Consumer, Error, MemoryBudget, parse_size};
//!
//! let budget = MemoryBudget::new(parse_size("64MiB")?);
//!
//! // A reader reserves a 48 MiB buffer and hands 16 MiB of it to a block.
//! let mut buffer = budget.try_reserve(Consumer::Reader, 48 << 20)?;
//! let block = buffer.split(16 << 20);
//! let state = budget.try_reserve(Consumer::State, 12 << 20)?;
//!
//! // 60 MiB are reserved: 8 more do not fit, and nothing changes.
//! let err = budget.try_reserve(Consumer::Reader, 8 << 20).unwrap_err();
//! assert!(matches!(err, Error::Exhausted { .. }));
//! assert_eq!(
//!     err.to_string(),
//!     "memory budget exhausted: reader requested 8.0 MiB but 60.0 MiB of 64.0 MiB \
//!      is reserved (largest consumers: reader 48.0 MiB, state 12.0 MiB)",
//! );
//!
//! // Dropping the block gives its bytes back.
//! drop(block);
//! let scratch = budget.try_reserve(Consumer::Kernel, 8 << 20)?;
//!
//! let usage = budget.usage();
//! assert_eq!(usage.reserved, 52 << 20);
//! assert_eq!(usage.consumer(Consumer::Reader).peak, 48 << 20);
//! drop((buffer, state, scratch));
//! assert_eq!(budget.reserved(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub use crate::budget::{BudgetUsage, ConsumerUsage, MemoryBudget, Reservation};
pub use crate::consumer::Consumer;
pub use crate::error::{Error, Result};
pub use crate::file::{SpillFile, SpillSpace, SpillWindow};
pub use crate::size::parse_size;
pub use crate::sysmem::{
    ProcessMemory, available_memory, default_limit, process_memory, return_freed_memory,
};
pub use crate::units::{GIB, KIB, MIB, TIB, format_bytes};

mod budget;
mod consumer;
mod error;
mod file;
mod map;
mod size;
mod sysmem;
mod units;
