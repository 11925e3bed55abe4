//! The one place this crate creates memory maps, and the guard that keeps
//! a truncated input from killing the process.
//!
//! A map covers one block's bytes and lives exactly as long as the
//! [`Block`](crate::Block) that owns it: dropping the block unmaps the
//! window, so its pages leave the process's resident set (the data stays in
//! the kernel's page cache, which RSS does not count). Nothing here ever
//! maps a whole file.
//!
//! # The SIGBUS guard
//!
//! Reading a mapped page that lies past the end of the file raises SIGBUS,
//! whose default action kills the process. A file can shrink under a
//! mapping (another process truncates it), so every window is *guarded*:
//!
//! * a process-wide SIGBUS handler (`on_sigbus`) is installed once, the
//!   first time a window is mapped, remembering the handler it replaces;
//! * each window is entered in a fixed, lock-free registry of address
//!   ranges when it is mapped, and removed before it is unmapped;
//! * when a fault hits a registered window, the handler maps anonymous
//!   zero pages over the window from the faulting page to its end, sets the
//!   window's `faulted` flag and returns: the faulting load is retried and
//!   reads zeros, and [`Block::check`](crate::Block::check) later turns the
//!   flag into an error naming the file;
//! * a fault anywhere else is passed on to the previous handler (by default:
//!   the process dies by SIGBUS, as it would without us).
//!
//! The handler allocates nothing and takes no lock: it reads atomics and
//! makes two system calls (`mmap`, and `sigaction` only when it gives up).
//! When the registry is full (more than `SLOTS` windows alive at once) or
//! the handler could not be installed, `map_window` maps nothing and the
//! caller falls back to `pread`: no window is ever left unguarded.

use std::fs::File;
use std::io;
use std::sync::Arc;

use memmap2::{Advice, Mmap, MmapOptions};

/// A read-only window mapped over part of a file, entered in the SIGBUS
/// guard's registry for as long as it lives.
#[derive(Debug)]
pub(crate) struct Window {
    /// Registry slot; cleared in `Drop` *before* `map` is unmapped.
    slot: usize,
    /// The mapping. Dropped (unmapped) after `Drop::drop` has run.
    map: Mmap,
    /// The file mapped, to re-read its length.
    file: Arc<File>,
    /// The file offset one past the window's last byte.
    end: u64,
}

impl Window {
    /// The window's bytes (zeros where a fault was repaired).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// True when reading the window raised SIGBUS (some of its bytes read
    /// as zeros instead of the file's data).
    pub(crate) fn faulted(&self) -> bool {
        guard::faulted(self.slot)
    }

    /// The file offset one past the window's last byte.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// The mapped file's current length.
    pub(crate) fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // Leave the registry while the pages are still mapped: once
        // unmapped, the addresses may be reused by any other mapping, whose
        // faults must not be mistaken for this window's.
        guard::unregister(self.slot);
    }
}

/// Maps `len` bytes of `file` starting at byte `offset`, read-only, and
/// enters the window in the SIGBUS guard's registry.
///
/// `len` must be non-zero. The offset need not be page-aligned: memmap2
/// aligns the mapping down and adjusts the returned slice.
///
/// Returns `Ok(None)` when the window cannot be guarded (the registry is
/// full, or the handler could not be installed): the caller must then read
/// the bytes another way.
pub(crate) fn map_window(file: &Arc<File>, offset: u64, len: usize) -> io::Result<Option<Window>> {
    debug_assert!(len > 0);
    if !guard::install() {
        return Ok(None);
    }
    let end = offset
        .checked_add(len as u64)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the map is read-only and private to this process. The files
    // outcore maps are its inputs, opened read-only, and the caller checked
    // that `offset + len` lies within the file's length just before this
    // call. The remaining hazard — another process truncating the file
    // while the window is mapped — is what the guard handles: the window
    // is registered below, before any of its bytes can be read, and a read
    // past the new end of the file then yields zeros and a flag instead of
    // SIGBUS. (Another process rewriting the file in place changes the
    // bytes under the `&[u8]` handed out; no read method can prevent that,
    // and the values read are still valid bit patterns for every dtype
    // except `bool`, whose bytes `Block::as_slice` checks.)
    let map = unsafe { MmapOptions::new().offset(offset).len(len).map(&**file)? };
    let addr = map.as_ptr() as usize;
    let page = guard::page_size();
    // memmap2 maps from the page boundary below the offset.
    let start = addr - (offset % page as u64) as usize;
    let Some(slot) = guard::register(start, addr + len) else {
        return Ok(None);
    };
    // Blocks are read front to back once: ask for aggressive read-ahead.
    // Then fault the whole window in now (Linux 5.14+), on the thread that
    // maps it — the engine's reader stage — so that the workers find the
    // pages mapped and, for a file not in the page cache, the disk reads
    // overlap their work on earlier blocks: 32 GiB from disk (larger than
    // RAM) took 62 s instead of 71 s (`dd`: 52 s), a cached 1 GiB colsum
    // ~8% less. The window's bytes are reserved in the budget either way.
    // Advice is a hint; failing to give it (an older kernel, or a file
    // truncated meanwhile, which the guard handles on reading) changes
    // nothing but speed.
    let _ = map.advise(Advice::Sequential);
    #[cfg(target_os = "linux")]
    let _ = map.advise(Advice::PopulateRead);
    Ok(Some(Window {
        slot,
        map,
        file: Arc::clone(file),
        end,
    }))
}

/// How many windows may be alive at once. The engine holds a few per
/// source; past this many, blocks are read with `pread` instead.
pub(crate) const SLOTS: usize = 1024;

#[cfg(target_os = "linux")]
mod guard {
    use std::ptr;
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

    use super::SLOTS;

    /// One registered window. The low two bits of `state` say whether the
    /// slot is [`FREE`], being [`WRITING`] or [`ACTIVE`]; the bits above
    /// count how often the slot was released, so a reader can tell that
    /// the range it read belongs to the same registration (a seqlock).
    #[repr(align(64))]
    struct Slot {
        state: AtomicUsize,
        /// First byte of the mapping (page-aligned).
        start: AtomicUsize,
        /// One past the window's last byte.
        end: AtomicUsize,
        /// Set by the handler when it repaired a fault in the window.
        faulted: AtomicBool,
    }

    const FREE: usize = 0;
    const WRITING: usize = 1;
    const ACTIVE: usize = 2;
    const MASK: usize = 3;

    impl Slot {
        const fn new() -> Slot {
            Slot {
                state: AtomicUsize::new(FREE),
                start: AtomicUsize::new(0),
                end: AtomicUsize::new(0),
                faulted: AtomicBool::new(false),
            }
        }
    }

    /// The registry of live windows: a fixed array, so the signal handler
    /// can search it without allocating or locking.
    static REGISTRY: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
    /// One past the highest slot ever used: the handler searches no further.
    static USED: AtomicUsize = AtomicUsize::new(0);
    /// The system page size, read before the handler is installed
    /// (`sysconf` is not async-signal-safe).
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    /// The SIGBUS disposition found when ours was installed.
    static PREV_ACTION: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
    static PREV_FLAGS: AtomicUsize = AtomicUsize::new(0);
    static INSTALLED: AtomicBool = AtomicBool::new(false);

    pub(super) fn page_size() -> usize {
        PAGE.load(Ordering::Relaxed)
    }

    /// Installs the handler once per process; true when it is in place.
    pub(super) fn install() -> bool {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = if page > 0 { page as usize } else { 4096 };
            PAGE.store(page, Ordering::Relaxed);
            // SAFETY: both sigaction calls pass valid pointers to
            // initialised `sigaction` values (or null for "no new action").
            // The previous disposition is recorded before ours is
            // installed, so the handler always sees it.
            unsafe {
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, ptr::null(), &mut prev) != 0 {
                    return;
                }
                PREV_ACTION.store(prev.sa_sigaction, Ordering::Relaxed);
                PREV_FLAGS.store(prev.sa_flags as usize, Ordering::Relaxed);
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_sigbus as *const () as usize;
                // SA_ONSTACK: run on the thread's alternate stack when it
                // has one (std gives its threads one), like std's handler.
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(libc::SIGBUS, &action, ptr::null_mut()) != 0 {
                    return;
                }
            }
            INSTALLED.store(true, Ordering::Release);
        });
        INSTALLED.load(Ordering::Acquire)
    }

    /// Enters `start..end` in the registry; `None` when it is full.
    pub(super) fn register(start: usize, end: usize) -> Option<usize> {
        for (i, slot) in REGISTRY.iter().enumerate() {
            let s = slot.state.load(Ordering::Relaxed);
            if s & MASK != FREE {
                continue;
            }
            if slot
                .state
                .compare_exchange(s, s | WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            slot.start.store(start, Ordering::Relaxed);
            slot.end.store(end, Ordering::Relaxed);
            slot.faulted.store(false, Ordering::Relaxed);
            USED.fetch_max(i + 1, Ordering::Relaxed);
            // Publishes the range (and USED) to the handler.
            slot.state.store(s | ACTIVE, Ordering::Release);
            return Some(i);
        }
        None
    }

    /// Removes slot `i` from the registry (its owner's call).
    pub(super) fn unregister(i: usize) {
        let slot = &REGISTRY[i];
        let s = slot.state.load(Ordering::Relaxed);
        debug_assert_eq!(s & MASK, ACTIVE);
        // A new generation, free.
        slot.state
            .store((s & !MASK).wrapping_add(4), Ordering::Release);
    }

    pub(super) fn faulted(i: usize) -> bool {
        REGISTRY[i].faulted.load(Ordering::Acquire)
    }

    /// The registered window containing `addr`: its slot and end.
    fn find(addr: usize) -> Option<(usize, usize)> {
        let used = USED.load(Ordering::Acquire).min(SLOTS);
        for (i, slot) in REGISTRY[..used].iter().enumerate() {
            let s1 = slot.state.load(Ordering::Acquire);
            if s1 & MASK != ACTIVE {
                continue;
            }
            let start = slot.start.load(Ordering::Relaxed);
            let end = slot.end.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if slot.state.load(Ordering::Relaxed) != s1 {
                continue; // released or reused while being read
            }
            if (start..end).contains(&addr) {
                return Some((i, end));
            }
        }
        None
    }

    /// The SIGBUS handler: repairs faults in registered windows, passes
    /// every other one to the handler it replaced.
    ///
    /// Async-signal-safe: it reads atomics, stores one flag and calls
    /// `mmap`, `sigaction` and `raise` (all plain system calls); errno is
    /// preserved.
    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: errno is thread-local; the pointer is valid for the
        // thread's life. It is restored so the interrupted code is unaware.
        let errno = unsafe { *libc::__errno_location() };
        // SAFETY: the kernel passes a valid siginfo_t (SA_SIGINFO); a
        // chained caller passes what it was given. si_addr is meaningful
        // for kernel-generated faults (si_code > 0), the only ones read.
        let fault = unsafe {
            match info.as_ref() {
                Some(i) if i.si_code > 0 => Some(i.si_addr() as usize),
                _ => None,
            }
        };
        if let Some(addr) = fault
            && let Some((slot, end)) = find(addr)
        {
            let page = page_size();
            let from = addr & !(page - 1);
            let to = end.div_ceil(page) * page;
            // SAFETY: `from..to` lies inside the window's own mapping
            // (registered windows are mapped, page-aligned at their start,
            // and the mapping extends to the page boundary after `end`), and
            // the window cannot be unmapped meanwhile: a thread is reading
            // it, so its `Block` is alive. MAP_FIXED replaces exactly those
            // pages with private zero pages, read-only like the file's.
            let zeroed = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    to - from,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeroed != libc::MAP_FAILED {
                REGISTRY[slot].faulted.store(true, Ordering::Release);
                // SAFETY: as above.
                unsafe { *libc::__errno_location() = errno };
                return; // the faulting load is retried and reads zeros
            }
        }
        // SAFETY: forwards the signal as the kernel would have delivered it
        // to the previous disposition.
        unsafe { chain(sig, info, ctx) };
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }

    /// Hands a fault that is not ours to the disposition we replaced.
    ///
    /// # Safety
    ///
    /// Called only from the signal handler, with the arguments it got.
    unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let prev = PREV_ACTION.load(Ordering::Relaxed);
        let flags = PREV_FLAGS.load(Ordering::Relaxed) as libc::c_int;
        if prev == libc::SIG_DFL || prev == libc::SIG_IGN {
            // Restore the default action. On return a fault re-executes
            // its instruction and the kernel kills the process by SIGBUS,
            // as if no handler had been installed. (SIGBUS from a fault
            // cannot be ignored, so SIG_IGN is treated as the default.) A
            // SIGBUS sent by kill() is not repeated: raise it again; it is
            // blocked until this handler returns.
            // SAFETY: a zeroed sigaction with SIG_DFL is a valid action.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &action, ptr::null_mut());
                if info.as_ref().is_none_or(|i| i.si_code <= 0) {
                    libc::raise(sig);
                }
            }
        } else if flags & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed with SA_SIGINFO,
            // so it has this signature.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(prev) };
            handler(sig, info, ctx);
        } else {
            // SAFETY: the previous handler was installed without
            // SA_SIGINFO, so it takes the signal number only.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev) };
            handler(sig);
        }
    }

    #[cfg(test)]
    pub(super) fn slots_in_use() -> usize {
        REGISTRY
            .iter()
            .filter(|s| s.state.load(Ordering::Relaxed) & MASK != FREE)
            .count()
    }

    #[cfg(test)]
    pub(super) fn lookup(addr: usize) -> Option<usize> {
        find(addr).map(|(slot, _)| slot)
    }
}

/// Without a guard (other systems), nothing is mapped: blocks are read with
/// `pread`.
#[cfg(not(target_os = "linux"))]
mod guard {
    pub(super) fn install() -> bool {
        false
    }
    pub(super) fn page_size() -> usize {
        4096
    }
    pub(super) fn register(_start: usize, _end: usize) -> Option<usize> {
        None
    }
    pub(super) fn unregister(_i: usize) {}
    pub(super) fn faulted(_i: usize) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// `a_full_registry_maps_nothing` takes every slot for a moment.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn windows_register_while_alive() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        std::fs::write(&path, vec![7u8; 3 * 4096 + 5]).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let window = map_window(&file, 100, 2 * 4096).unwrap().unwrap();
        let addr = window.bytes().as_ptr() as usize;
        assert_eq!(guard::lookup(addr), Some(window.slot));
        assert_eq!(guard::lookup(addr + 2 * 4096 - 1), Some(window.slot));
        assert_eq!(guard::lookup(addr + 2 * 4096), None);
        assert!(window.bytes().iter().all(|&b| b == 7));
        assert!(!window.faulted());
        assert_eq!(window.end(), 100 + 2 * 4096);
        drop(window);
        assert_eq!(guard::lookup(addr), None);
    }

    /// Timing, not correctness: `cargo test --release -p outcore-chunker
    /// --lib -- --ignored --nocapture guard_costs`.
    #[test]
    #[ignore]
    fn guard_costs() {
        assert!(guard::install());
        let n = 1_000_000u32;
        let t = std::time::Instant::now();
        for i in 0..n as usize {
            let slot = guard::register(i << 12, (i + 1) << 12).unwrap();
            std::hint::black_box(guard::faulted(slot));
            guard::unregister(slot);
        }
        let pair = t.elapsed() / n;
        let file = File::open(std::env::current_exe().unwrap()).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..n / 10 {
            std::hint::black_box(file.metadata().unwrap().len());
        }
        let stat = t.elapsed() / (n / 10);
        println!("register + check flag + unregister: {pair:.2?}; fstat: {stat:.2?}");
    }

    #[test]
    fn a_full_registry_maps_nothing() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // Fill every free slot with ranges nobody reads.
        assert!(guard::install());
        let mut taken = Vec::new();
        while let Some(i) = guard::register(usize::MAX - 2, usize::MAX - 1) {
            taken.push(i);
        }
        assert_eq!(guard::slots_in_use(), SLOTS);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        std::fs::write(&path, [1u8; 64]).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        assert!(map_window(&file, 0, 64).unwrap().is_none());
        for i in taken {
            guard::unregister(i);
        }
    }
}
