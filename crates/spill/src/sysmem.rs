//! What the operating system says about memory: available memory for a
//! default limit, and the process's resident set for checking the budget.

use crate::units::{GIB, MIB};

/// The share of available memory that [`default_limit`] takes, as a divisor:
/// 2 means 50%.
const DEFAULT_DIVISOR: u64 = 2;
/// [`default_limit`] when available memory is unknown.
const FALLBACK_LIMIT: u64 = GIB;
/// [`default_limit`] never returns less than this.
const MIN_DEFAULT_LIMIT: u64 = 16 * MIB;

/// Memory the kernel estimates is available for new allocations without
/// swapping, in bytes: `MemAvailable` from `/proc/meminfo`.
///
/// Linux only; `None` on other systems, or if the file cannot be read or
/// parsed.
pub fn available_memory() -> Option<u64> {
    read_kib_field("/proc/meminfo", "MemAvailable")
}

/// A default budget limit: 50% of [`available_memory`], or 1 GiB when that is
/// unknown, and never less than 16 MiB.
///
/// Half leaves room for the rest of the process (code, allocator slack,
/// thread stacks) and for the page cache that file reads go through.
pub fn default_limit() -> u64 {
    limit_for(available_memory())
}

fn limit_for(available: Option<u64>) -> u64 {
    available
        .map_or(FALLBACK_LIMIT, |bytes| bytes / DEFAULT_DIVISOR)
        .max(MIN_DEFAULT_LIMIT)
}

/// Asks the C allocator to give large freed blocks back to the system at
/// once, so that the process's resident set follows the memory it holds.
///
/// glibc's `malloc` serves blocks from 128 KiB up with `mmap` and returns
/// them on `free` — until a freed block raises that threshold (up to
/// 32 MiB); from then on blocks that size come from per-thread heaps, which
/// keep freed memory. A run whose threads allocate and free large buffers
/// in turn (partial states, histograms, sort runs) then shows an RSS above
/// everything it reserved by the freed buffers of each thread: measured
/// 6–20 MiB over a 32 MiB budget for exact quantiles. A fixed threshold of
/// 256 KiB (which turns the adjustment off) and a trim threshold of 1 MiB
/// keep RSS within what is live; the cost is a page fault per 4 KiB of each
/// new large block, small next to reading it.
///
/// The setting is process-wide and made once; engines apply it when they
/// are built (`EngineBuilder::return_freed_memory` turns that off). Returns
/// whether the allocator took it: `false` on systems other than glibc.
pub fn return_freed_memory() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(set_allocator_thresholds)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_allocator_thresholds() -> bool {
    const MMAP_THRESHOLD: libc::c_int = 256 << 10;
    const TRIM_THRESHOLD: libc::c_int = 1 << 20;
    // SAFETY: `mallopt` only reads its two integer arguments and updates
    // glibc's allocator parameters under the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_allocator_thresholds() -> bool {
    false
}

/// Resident memory of the current process, from [`process_memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessMemory {
    /// Resident set size now, in bytes (`VmRSS`).
    pub rss: u64,
    /// Peak resident set size since the process started, in bytes
    /// (`VmHWM`, the "high water mark").
    pub peak_rss: u64,
}

/// The current and peak resident set size of this process, from `VmRSS` and
/// `VmHWM` in `/proc/self/status`.
///
/// Linux only; `None` on other systems, or if the file cannot be read or
/// parsed.
pub fn process_memory() -> Option<ProcessMemory> {
    let status = read("/proc/self/status")?;
    Some(ProcessMemory {
        rss: kib_field(&status, "VmRSS")?,
        peak_rss: kib_field(&status, "VmHWM")?,
    })
}

fn read_kib_field(path: &str, key: &str) -> Option<u64> {
    kib_field(&read(path)?, key)
}

#[cfg(target_os = "linux")]
fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn read(_path: &str) -> Option<String> {
    None
}

/// Finds a line `KEY:   1234 kB` in a `/proc` file and returns it in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let kib: u64 = words.next()?.parse().ok()?;
        match (words.next(), words.next()) {
            (Some("kB"), None) => kib.checked_mul(1024),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       32657612 kB\n\
                           MemFree:         1234567 kB\n\
                           MemAvailable:   20000000 kB\n\
                           Buffers:          123456 kB\n";

    #[test]
    fn parses_kib_fields() {
        assert_eq!(kib_field(MEMINFO, "MemAvailable"), Some(20_000_000 * 1024));
        assert_eq!(kib_field(MEMINFO, "MemTotal"), Some(32_657_612 * 1024));
        assert_eq!(kib_field(MEMINFO, "Mem"), None);
        assert_eq!(kib_field(MEMINFO, "SwapTotal"), None);
        assert_eq!(kib_field("VmHWM:\t  5120 kB\n", "VmHWM"), Some(5120 * 1024));
        assert_eq!(kib_field("VmHWM: 5120\n", "VmHWM"), None);
        assert_eq!(kib_field("VmHWM: 5120 MB\n", "VmHWM"), None);
        assert_eq!(kib_field("VmHWM: x kB\n", "VmHWM"), None);
        assert_eq!(kib_field("VmHWM: 18446744073709551615 kB\n", "VmHWM"), None);
    }

    #[test]
    fn default_limit_is_bounded() {
        assert_eq!(limit_for(None), GIB);
        assert_eq!(limit_for(Some(8 * GIB)), 4 * GIB);
        assert_eq!(limit_for(Some(3)), 16 * MIB);
        assert_eq!(limit_for(Some(0)), 16 * MIB);
        assert!(default_limit() >= 16 * MIB);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_proc_on_linux() {
        assert!(available_memory().is_some_and(|b| b > 0));
        let mem = process_memory().unwrap();
        assert!(mem.rss > 0);
        assert!(mem.peak_rss >= mem.rss);
    }
}
