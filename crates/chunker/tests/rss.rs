//! Memory release: a block's pages leave the process's resident set when
//! the block is dropped, so reading a file block by block keeps RSS near one
//! block whatever the file's size.
//!
//! Alone in its own test binary (and a single test) so that no other test
//! allocates while RSS is measured.

use outcore_chunker::synth::{Distribution, Generator, write_array};
use outcore_chunker::{ArrayFile, DType, OutputSpec, ReadMode};

const MIB: u64 = 1 << 20;
const FILE_BYTES: u64 = 64 * MIB;
const BLOCK_BYTES: u64 = 8 * MIB;
const ROW_LEN: u64 = 1024;

/// The resident set size in bytes, from `/proc/self/status` (Linux only).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads every block of `file`, touching every byte, and checks RSS after
/// each block is dropped. Returns a checksum of the data.
fn read_all_checking_rss(file: &ArrayFile, expect_mapped: bool) -> u64 {
    let start = rss_bytes().expect("VmRSS");
    let limit = start + 2 * BLOCK_BYTES + 8 * MIB;
    let mut checksum = 0u64;
    let mut peak = 0;
    let plan = file.plan(BLOCK_BYTES);
    assert_eq!(plan.len() as u64, FILE_BYTES / BLOCK_BYTES);
    for rows in plan.iter() {
        let block = file.read_rows(rows.clone()).unwrap();
        assert_eq!(block.nbytes() as u64, BLOCK_BYTES);
        assert_eq!(block.is_mapped(), expect_mapped);
        // Read every 8-byte word: every byte of the block is touched.
        for x in block.as_slice::<f64>().unwrap() {
            checksum = checksum.rotate_left(5) ^ x.to_bits();
        }
        peak = peak.max(rss_bytes().unwrap());
        drop(block);
        let rss = rss_bytes().unwrap();
        assert!(
            rss < limit,
            "{:?}: after dropping rows {rows:?}, RSS is {} MiB, above the start ({} MiB) \
             + 2 blocks + 8 MiB = {} MiB",
            file.read_mode(),
            rss / MIB,
            start / MIB,
            limit / MIB
        );
    }
    // The measurement can see a block: while one was held, RSS grew by
    // about its size (otherwise the check above would prove nothing).
    assert!(
        peak >= start + BLOCK_BYTES / 2,
        "{:?}: RSS peaked at {} MiB from a start of {} MiB while holding {} MiB blocks",
        file.read_mode(),
        peak / MIB,
        start / MIB,
        BLOCK_BYTES / MIB
    );
    checksum
}

#[test]
fn dropped_blocks_leave_the_resident_set() {
    if rss_bytes().is_none() {
        println!("skipping: /proc/self/status has no VmRSS on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.npy");
    let rows = FILE_BYTES / (ROW_LEN * 8);
    let spec = OutputSpec::npy(DType::F64, vec![rows, ROW_LEN]).fsync(false);
    let generator = Generator::new(Distribution::Uniform, 64);
    write_array(&path, spec, &generator, 4 * MIB, 1, &|_| {}).unwrap();

    // Mapped windows: unmapping drops the pages from RSS (they stay in the
    // page cache, which RSS does not count).
    let file = ArrayFile::open(&path)
        .unwrap()
        .with_read_mode(ReadMode::Mmap);
    assert_eq!(file.meta().nbytes(), FILE_BYTES);
    let mapped = read_all_checking_rss(&file, true);

    // Owned copies: freed on drop. The allocator may keep one freed block
    // for reuse, which the bound of two blocks allows.
    let file = file.with_read_mode(ReadMode::Pread);
    let copied = read_all_checking_rss(&file, false);
    assert_eq!(mapped, copied, "both read modes see the same data");
}
