//! Issue 7: an input truncated or shrunk by another process while it is
//! read ends with an error naming the file — not with SIGBUS.
//!
//! Each scenario that could kill a process runs in a child: this test
//! binary re-executed with only the `subprocess_entry` "test" selected and
//! the scenario named in [`CASE`]. The child writes a 64 MiB `.npy` (8192
//! rows of 1024 `int64`, element `i` holding `i`), reads it in 8 MiB
//! mapped blocks, and has the file truncated *by another process* (the
//! test binary once more, in [`TRUNCATE`] mode) at a chosen moment. The
//! parent asserts that the child exited normally and printed the typed
//! error, naming the path. The child itself asserts the invariant that
//! matters to a run: a block whose [`Block::check`] passes holds the
//! file's true data.
//!
//! `a_foreign_sigbus_still_kills` is the other side: a fault in a mapping
//! the chunker did not make is not swallowed by its handler.
//!
//! `guard_overhead` (ignored: run it with `--ignored --nocapture`) prints
//! what the guard costs per block; `docs/io.md` records the numbers.

#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outcore_chunker::synth::{Distribution, Generator, write_array};
use outcore_chunker::{ArrayFile, Block, DType, Error, OutputSpec, ReadMode};

const MIB: u64 = 1 << 20;
const ROW_LEN: u64 = 1024;
const ROWS: u64 = 8192;
const DATA_BYTES: u64 = ROWS * ROW_LEN * 8;
const BLOCK_BYTES: u64 = 8 * MIB;
const BLOCKS: usize = (DATA_BYTES / BLOCK_BYTES) as usize;

/// Environment variable naming the scenario a child runs.
const CASE: &str = "OUTCORE_SIGBUS_CASE";
/// Environment variable of the directory a child works in (the parent's
/// temporary directory, so it is removed even when the child is killed).
const DIR: &str = "OUTCORE_SIGBUS_DIR";
/// Environment variable `LEN:PATH`: truncate `PATH` to `LEN` bytes and exit.
const TRUNCATE: &str = "OUTCORE_SIGBUS_TRUNCATE";

// ---- the parent's side ----------------------------------------------------

/// Runs scenario `case` in a child process working in `dir`.
fn run_child(case: &str, dir: &Path) -> Output {
    Command::new(std::env::current_exe().expect("the test's own path"))
        .args([
            "subprocess_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE, case)
        .env(DIR, dir)
        .output()
        .expect("the test binary runs again")
}

/// Asserts the child exited by itself with status 0 and printed the
/// truncation error naming its input; returns its stdout.
fn assert_clean_truncation_error(case: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child(case, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        None,
        "{case}: the child was killed by signal {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.signal()
    );
    assert!(
        out.status.success(),
        "{case}: the child failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let path = input_path(dir.path());
    let expected = format!(
        "error truncated: {}: file truncated while being read",
        path.display()
    );
    assert!(
        stdout.contains(&expected),
        "{case}: the child's output lacks {expected:?}\nstdout:\n{stdout}"
    );
    stdout
}

/// Truncation to half the data, after some blocks were mapped (one of them
/// half read): the blocks past the new end fail their check, the ones
/// before it pass with their true data, and a block read afterwards is
/// refused before it is mapped.
#[test]
fn truncated_to_half_while_blocks_are_mapped() {
    assert_clean_truncation_error("half");
}

/// Truncation to the header alone (no data bytes left) while blocks are
/// mapped but not yet read.
#[test]
fn truncated_to_the_header_while_blocks_are_mapped() {
    assert_clean_truncation_error("header");
}

/// The file shrinks by 100 bytes: the lost bytes share a page with
/// surviving ones, so reading them raises no SIGBUS at all (the kernel
/// shows zeros past the end of a partial page) — `check` must still fail.
#[test]
fn shrunk_by_a_few_bytes_within_the_last_page() {
    assert_clean_truncation_error("tail");
}

/// Two threads read blocks over and over while another process truncates
/// the file: the truncation lands while pages are being read.
#[test]
fn truncated_while_threads_read() {
    let stdout = assert_clean_truncation_error("concurrent");
    assert!(stdout.contains("blocks read before the error"), "{stdout}");
}

/// A SIGBUS outside the chunker's windows (the child maps the file itself
/// with memmap2, with the guard installed and a guarded window alive) still
/// kills the process by SIGBUS: the handler passes it on.
#[test]
fn a_foreign_sigbus_still_kills() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("foreign", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("touching the foreign map"),
        "the child did not get as far as the foreign fault\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGBUS),
        "the child should have died by SIGBUS ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

// ---- in-process: no window is ever mapped over a missing byte -------------

/// With `pread`, a truncated file is a typed error, not a panic, for a
/// contiguous read and for a Fortran-order gather alike.
#[test]
fn pread_of_a_truncated_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.npy");
    let spec = OutputSpec::npy(DType::F64, vec![100, 10]).fsync(false);
    write_array(
        &path,
        spec,
        &Generator::new(Distribution::Arange, 0),
        MIB,
        1,
        &|_| {},
    )
    .unwrap();
    let file = ArrayFile::open(&path)
        .unwrap()
        .with_read_mode(ReadMode::Pread);
    let full = file.meta().data_offset + file.meta().nbytes();
    truncate(&path, full - 8 * 10 * 30 - 3);
    let block = file.read_rows(0..50).unwrap();
    block.check().unwrap();
    let err = file.read_rows(50..100).unwrap_err();
    assert_truncated(&err, &path, full, full - 8 * 10 * 30 - 3);

    // Fortran order: one pread per column, the later ones cut short.
    let fpath = dir.path().join("fortran.npy");
    let dict = "{'descr': '<i4', 'fortran_order': True, 'shape': (50, 4), }";
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..200i32).flat_map(|v| v.to_le_bytes()));
    std::fs::write(&fpath, &bytes).unwrap();
    let file = ArrayFile::open(&fpath).unwrap();
    assert_eq!(
        file.read_rows(0..50).unwrap().as_slice::<i32>().unwrap()[1],
        50
    );
    let full = bytes.len() as u64;
    truncate(&fpath, full - 50 * 4);
    let err = file.read_rows(0..50).unwrap_err();
    assert_truncated(&err, &fpath, full, full - 200);
}

/// A file truncated before a block is mapped is refused with the typed
/// error (the length is re-checked before mapping); blocks still wholly
/// inside the file are mapped as usual.
#[test]
fn a_file_truncated_before_mapping_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.npy");
    let spec = OutputSpec::npy(DType::I64, vec![4096, 64]).fsync(false);
    write_array(
        &path,
        spec,
        &Generator::new(Distribution::Arange, 0),
        MIB,
        1,
        &|_| {},
    )
    .unwrap();
    let file = ArrayFile::open(&path).unwrap();
    assert_eq!(file.read_mode(), ReadMode::Mmap);
    let full = file.meta().data_offset + file.meta().nbytes();
    let cut = file.meta().data_offset + 2048 * 64 * 8;
    truncate(&path, cut);
    let before = file.read_rows(0..2048).unwrap();
    assert!(before.is_mapped());
    assert_eq!(count_wrong(&before), 0);
    before.check().unwrap();
    for rows in [2048..2049, 2047..2049, 4000..4096] {
        let err = file.read_rows(rows).unwrap_err();
        assert_truncated(&err, &path, full, cut);
    }
}

fn assert_truncated(err: &Error, path: &Path, expected_len: u64, actual_len: u64) {
    assert_eq!(err.kind(), "truncated", "{err}");
    assert_eq!(err.path(), path);
    match err {
        Error::Truncated {
            expected_len: e,
            actual_len: a,
            ..
        } => assert_eq!((*e, *a), (expected_len, actual_len), "{err}"),
        other => panic!("not Truncated: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: file truncated", path.display())),
        "{text}"
    );
    assert!(text.contains(&expected_len.to_string()), "{text}");
    assert!(text.contains(&actual_len.to_string()), "{text}");
}

// ---- the children's side --------------------------------------------------

/// The entry point of every child process; does nothing in a normal run.
#[test]
fn subprocess_entry() {
    if let Ok(spec) = std::env::var(TRUNCATE) {
        let (len, path) = spec.split_once(':').expect("LEN:PATH");
        truncate(Path::new(path), len.parse().expect("a length"));
        return;
    }
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR).expect("the child's directory"));
    match case.as_str() {
        "half" => child_half(&dir),
        "header" => child_header(&dir),
        "tail" => child_tail(&dir),
        "concurrent" => child_concurrent(&dir),
        "foreign" => child_foreign(&dir),
        other => panic!("unknown case {other}"),
    }
}

fn input_path(dir: &Path) -> PathBuf {
    dir.join("input.npy")
}

/// Writes the 64 MiB input and opens it (memory-mapped reads).
fn make_input(dir: &Path) -> ArrayFile {
    let path = input_path(dir);
    let spec = OutputSpec::npy(DType::I64, vec![ROWS, ROW_LEN]).fsync(false);
    let generator = Generator::new(Distribution::Arange, 0);
    write_array(&path, spec, &generator, 4 * MIB, 1, &|_| {}).unwrap();
    let file = ArrayFile::open(&path).unwrap();
    assert_eq!(file.meta().nbytes(), DATA_BYTES);
    assert_eq!(file.plan(BLOCK_BYTES).len(), BLOCKS);
    file
}

fn read_block(file: &ArrayFile, index: usize) -> Block {
    let rows = file.plan(BLOCK_BYTES).get(index).unwrap();
    let block = file.read_rows(rows).unwrap();
    assert!(block.is_mapped());
    block
}

/// Truncates `path` to `len` bytes.
fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Has another process (this binary, in [`TRUNCATE`] mode) truncate
/// `path` to `len` bytes, and waits for it.
fn truncate_by_another_process(path: &Path, len: u64) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["subprocess_entry", "--exact", "--test-threads=1", "-q"])
        .env_remove(CASE)
        .env(TRUNCATE, format!("{len}:{}", path.display()))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the truncating process failed: {status}");
}

/// Reads every element of `block` (every byte is touched) and counts those
/// that are not the file's (element `i` holds `i`).
fn count_wrong(block: &Block) -> usize {
    count_wrong_in(block, 0..block.rows() * block.row_len())
}

fn count_wrong_in(block: &Block, elems: std::ops::Range<usize>) -> usize {
    let first = block.start_row() as i64 * block.row_len() as i64;
    let data = block.as_slice::<i64>().unwrap();
    let mut wrong = 0;
    for i in elems {
        // A volatile read: the comparison must really load every element.
        // SAFETY: `i` is in bounds of `data`.
        let v = unsafe { std::ptr::read_volatile(data.as_ptr().add(i)) };
        wrong += usize::from(v != first + i as i64);
    }
    wrong
}

/// Reports `block`'s check as the parent expects to read it, and asserts
/// that a block that passes holds the true data.
fn report(index: usize, block: &Block, wrong: usize) -> Result<(), Error> {
    let result = block.check();
    match &result {
        Ok(()) => {
            println!("block {index}: ok");
            assert_eq!(
                wrong, 0,
                "block {index} passed its check with {wrong} wrong elements"
            );
        }
        Err(e) => println!(
            "block {index}: {wrong} elements lost; error {}: {e}",
            e.kind()
        ),
    }
    result
}

fn child_half(dir: &Path) {
    let file = make_input(dir);
    let path = input_path(dir);
    let first = read_block(&file, 0);
    assert_eq!(count_wrong(&first), 0);
    first.check().unwrap();
    // Map the other blocks; read half of block 5 before the truncation.
    let blocks: Vec<Block> = (1..BLOCKS).map(|i| read_block(&file, i)).collect();
    let elems = blocks[4].rows() * blocks[4].row_len();
    assert_eq!(count_wrong_in(&blocks[4], 0..elems / 2), 0);
    let cut = file.meta().data_offset + DATA_BYTES / 2;
    truncate_by_another_process(&path, cut);
    for (i, block) in blocks.iter().enumerate().map(|(i, b)| (i + 1, b)) {
        let wrong = if i == 5 {
            count_wrong_in(block, elems / 2..elems)
        } else {
            count_wrong(block)
        };
        let result = report(i, block, wrong);
        assert_eq!(result.is_ok(), i < BLOCKS / 2, "block {i}");
        if let Err(e) = result {
            assert_eq!(e.kind(), "truncated");
            assert!(matches!(e, Error::Truncated { actual_len, .. } if actual_len == cut));
        }
    }
    // Blocks wholly before the new end still pass; a block read now is
    // refused before it is mapped.
    first.check().unwrap();
    let rows = file.plan(BLOCK_BYTES).get(6).unwrap();
    let err = file.read_rows(rows).unwrap_err();
    println!("block 6 read again: error {}: {err}", err.kind());
    assert_eq!(err.kind(), "truncated");
}

fn child_header(dir: &Path) {
    let file = make_input(dir);
    let path = input_path(dir);
    let first = read_block(&file, 0);
    assert_eq!(count_wrong(&first), 0);
    first.check().unwrap();
    let blocks: Vec<Block> = (1..BLOCKS).map(|i| read_block(&file, i)).collect();
    truncate_by_another_process(&path, file.meta().data_offset);
    for (i, block) in blocks.iter().enumerate().map(|(i, b)| (i + 1, b)) {
        let wrong = count_wrong(block);
        assert_eq!(
            wrong,
            block.rows() * block.row_len(),
            "all of block {i} is lost"
        );
        let err = report(i, block, wrong).unwrap_err();
        assert!(matches!(err, Error::Truncated { actual_len, .. }
            if actual_len == file.meta().data_offset));
    }
    // Block 0 was read before the truncation, but its check made now
    // reports the shorter file too.
    assert_eq!(report(0, &first, 0).unwrap_err().kind(), "truncated");
}

fn child_tail(dir: &Path) {
    let file = make_input(dir);
    let path = input_path(dir);
    let blocks: Vec<Block> = (0..BLOCKS).map(|i| read_block(&file, i)).collect();
    let full = file.meta().data_offset + DATA_BYTES;
    truncate_by_another_process(&path, full - 100);
    for (i, block) in blocks.iter().enumerate() {
        let wrong = count_wrong(block);
        let result = report(i, block, wrong);
        assert_eq!(result.is_ok(), i + 1 < BLOCKS, "block {i}");
    }
    // The last 12.5 elements read as zeros (no fault: same page as data);
    // the half element lost is the high half of a small number, zero anyway.
    let last = &blocks[BLOCKS - 1];
    let n = last.rows() * last.row_len();
    assert_eq!(count_wrong_in(last, n - 12..n), 12);
    assert_eq!(count_wrong_in(last, 0..n - 12), 0);
}

fn child_concurrent(dir: &Path) {
    let file = make_input(dir);
    let path = input_path(dir);
    let cut = file.meta().data_offset + DATA_BYTES / 2;
    let started = AtomicBool::new(false);
    let blocks_read = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let first_error = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (file, started, blocks_read) = (&file, &started, &blocks_read);
                s.spawn(move || -> Option<(Error, &str)> {
                    // Thread t reads blocks t, t + 2, ... of the second
                    // half (the part that is cut), round and round.
                    let plan = file.plan(BLOCK_BYTES);
                    let mut i = BLOCKS / 2 + t;
                    while Instant::now() < deadline {
                        let block = match file.read_rows(plan.get(i).unwrap()) {
                            Ok(block) => block,
                            Err(e) => return Some((e, "refused at read")),
                        };
                        let wrong = count_wrong(&block);
                        started.store(true, Ordering::Relaxed);
                        if let Err(e) = block.check() {
                            return Some((e, "reported by check"));
                        }
                        assert_eq!(wrong, 0, "block {i} passed its check with wrong data");
                        blocks_read.fetch_add(1, Ordering::Relaxed);
                        i = if i + 2 < BLOCKS {
                            i + 2
                        } else {
                            BLOCKS / 2 + t
                        };
                    }
                    None
                })
            })
            .collect();
        while !started.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::yield_now();
        }
        truncate_by_another_process(&path, cut);
        let errors: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        errors.into_iter().flatten().next()
    });
    let (err, when) = first_error.expect("a reader saw the truncation within 5 s");
    println!(
        "{} blocks read before the error ({when}); error {}: {err}",
        blocks_read.load(Ordering::Relaxed),
        err.kind()
    );
}

fn child_foreign(dir: &Path) {
    // No core file for the death this child is meant to die.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct passed; failing is harmless.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    let file = make_input(dir);
    let path = input_path(dir);
    // A guarded window is alive (and the handler installed)...
    let guarded = read_block(&file, 0);
    assert_eq!(count_wrong(&guarded), 0);
    // ...while the child maps the file itself, outside the chunker.
    let raw = std::fs::File::open(&path).unwrap();
    // SAFETY: the file is truncated under this map on purpose: touching
    // it must kill the child by SIGBUS, which is what the parent checks.
    let map = unsafe { memmap2::Mmap::map(&raw).unwrap() };
    truncate_by_another_process(&path, file.meta().data_offset);
    println!("touching the foreign map");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let mut sum = 0u64;
    for page in map.chunks(4096).skip(16) {
        // SAFETY: in bounds; volatile so the load is not optimised away.
        sum += u64::from(unsafe { std::ptr::read_volatile(page.as_ptr()) });
    }
    println!("survived a foreign SIGBUS (sum {sum}): the handler swallowed it");
}

// ---- what the guard costs -------------------------------------------------

/// Prints the cost of a guarded window against a bare memmap2 window of
/// the same 8 MiB, with and without reading the bytes. Ignored by default
/// (timing, not correctness): `cargo test --release -p outcore-chunker
/// --test sigbus -- --ignored --nocapture guard_overhead`.
#[test]
#[ignore]
fn guard_overhead() {
    let dir = tempfile::tempdir().unwrap();
    let file = make_input(dir.path());
    let raw = std::fs::File::open(input_path(dir.path())).unwrap();
    let plan = file.plan(BLOCK_BYTES);
    let offset_of = |i: usize| file.meta().data_offset + i as u64 * BLOCK_BYTES;
    let bare = |i: usize| {
        // SAFETY: nothing truncates the file during this test.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset_of(i))
                .len(BLOCK_BYTES as usize)
                .map(&raw)
                .unwrap()
        };
        let _ = map.advise(memmap2::Advice::Sequential);
        map
    };
    let sum = |bytes: &[u8]| -> i64 {
        bytemuck_i64(bytes)
            .iter()
            .copied()
            .fold(0i64, i64::wrapping_add)
    };
    // Warm the page cache.
    for i in 0..BLOCKS {
        std::hint::black_box(sum(&bare(i)));
    }
    let best_of = |f: &dyn Fn() -> i64| {
        (0..7)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    const ROUNDS: usize = 500;
    let map_only_guarded = best_of(&|| {
        let mut n = 0;
        for r in 0..ROUNDS {
            let block = file.read_rows(plan.get(r % BLOCKS).unwrap()).unwrap();
            block.check().unwrap();
            n += block.nbytes() as i64;
        }
        n
    }) / ROUNDS as u32;
    let map_only_bare = best_of(&|| {
        let mut n = 0;
        for r in 0..ROUNDS {
            n += bare(r % BLOCKS).len() as i64;
        }
        n
    }) / ROUNDS as u32;
    let read_guarded = best_of(&|| {
        let mut s = 0;
        for i in 0..BLOCKS {
            let block = file.read_rows(plan.get(i).unwrap()).unwrap();
            s += sum(block.as_bytes());
            block.check().unwrap();
        }
        s
    }) / BLOCKS as u32;
    let read_bare = best_of(&|| (0..BLOCKS).map(|i| sum(&bare(i))).sum()) / BLOCKS as u32;
    let gbps = |d: Duration| BLOCK_BYTES as f64 / d.as_secs_f64() / 1e9;
    println!("per 8 MiB block (best of 7):");
    println!(
        "  map + unmap, no read:  guarded {:>8.2?}  bare {:>8.2?}  (+{:.2?})",
        map_only_guarded,
        map_only_bare,
        map_only_guarded.saturating_sub(map_only_bare)
    );
    println!(
        "  map + sum every byte:  guarded {:>8.2?} ({:.2} GB/s)  bare {:>8.2?} ({:.2} GB/s)",
        read_guarded,
        gbps(read_guarded),
        read_bare,
        gbps(read_bare)
    );
}

fn bytemuck_i64(bytes: &[u8]) -> &[i64] {
    assert!(bytes.len().is_multiple_of(8) && (bytes.as_ptr() as usize).is_multiple_of(8));
    // SAFETY: aligned, a whole number of elements, any bit pattern is an i64.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 8) }
}
