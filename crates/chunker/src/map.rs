//! The one place this crate creates memory maps.
//!
//! A map covers one block's bytes and lives exactly as long as the
//! [`Block`](crate::Block) that owns it: dropping the block unmaps the
//! window, so its pages leave the process's resident set (the data stays in
//! the kernel's page cache, which RSS does not count). Nothing here ever
//! maps a whole file.

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapOptions};

/// Maps `len` bytes of `file` starting at byte `offset`, read-only.
///
/// `len` must be non-zero. The offset need not be page-aligned: memmap2
/// aligns the mapping down and adjusts the returned slice.
pub(crate) fn map_window(file: &File, offset: u64, len: usize) -> io::Result<Mmap> {
    debug_assert!(len > 0);
    // SAFETY: the map is read-only and private to this process. The files
    // outcore maps are its inputs, opened read-only; the documented hazard
    // is another process truncating or rewriting the file while the window
    // is mapped, which memory-maps cannot prevent. The caller checked that
    // `offset + len` lies within the file's length when it was opened.
    let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
    // Blocks are read front to back once: ask for aggressive read-ahead.
    // Advice is a hint; failing to give it changes nothing but speed.
    let _ = map.advise(Advice::Sequential);
    Ok(map)
}
