//! The one place this crate creates memory maps: read-only windows over
//! spill files.
//!
//! Spill files are written with `pwrite` into space allocated up front
//! and only ever *read* through maps, over bytes already written. So a full
//! disk shows up as a write error, never as a SIGBUS on a mapped page, and
//! a window's pages leave the resident set when it is dropped.

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapOptions};

/// Maps `len > 0` bytes of `file` from byte `offset`, read-only.
pub(crate) fn map_read(file: &File, offset: u64, len: usize) -> io::Result<Mmap> {
    debug_assert!(len > 0);
    // SAFETY: spill files are unlinked temporary files that only this
    // process can reach (no other process can truncate or write them); the
    // caller checked that `offset + len` lies within the space allocated
    // for the file, and the map is read-only, so the slice stays valid and
    // unchanged while the window lives (writes by `pwrite` go to regions
    // no live window covers).
    let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
    let _ = map.advise(Advice::Sequential);
    Ok(map)
}
