//! External merge sort along axis 0: every column sorted independently,
//! as `np.sort(x, axis=0)` (NaN last).
//!
//! 1. **Runs.** Blocks of rows are read in parallel; each worker turns its
//!    block column-major and sorts every column, then writes the block to
//!    a spill file at the block's own byte offset. A run is one block:
//!    for each column, a sorted segment.
//! 2. **Merge levels.** Groups of up to `fan_in` consecutive runs are
//!    merged column by column (a loser tree over one cursor per run; each cursor
//!    reads its segment through a mapped window) into one longer run at
//!    the same place of a second spill file. Levels repeat, ping-ponging
//!    between two files, until one run is left: every column sorted, in
//!    column-major order.
//! 3. **Rows.** The column-major result is turned back into row-major
//!    blocks (one mapped window per column slice) and written to the
//!    output or to a spill file.
//!
//! Memory: each phase sizes its blocks, windows and fan-in from the whole
//! budget and reserves it before starting. I/O: the input is read once;
//! runs, every merge level and the final rows each write the data once
//! (spill writes go to the page cache and reach the disk only when memory
//! is short); `docs/spill.md` has the arithmetic.

use std::sync::atomic::{AtomicU64, Ordering};

use outcore_chunker::ArrayFile;
use outcore_spill::{Consumer, SpillFile, SpillWindow};
use rayon::prelude::*;

use super::key::{self, SortKey};
use super::{PAGE, RowSink, reserve_slots, stream_file, too_small};
use crate::engine::{Engine, RunReport};
use crate::error::{Error, Result};

/// The most runs merged at once.
const FAN_IN_MAX: u64 = 128;
/// Merge windows are at least this large when the budget allows.
const WINDOW_MIN: u64 = 64 << 10;
/// ... and at most this large.
const WINDOW_MAX: u64 = 1 << 20;

/// Sorted data, column-major: column `j`'s `n` values are elements
/// `j * n .. (j + 1) * n` of `file`.
pub(crate) struct SortedColumns {
    pub(crate) file: SpillFile,
    pub(crate) n: u64,
    pub(crate) itemsize: usize,
}

impl SortedColumns {
    /// The value of rank `rank` (0-based) in column `col`.
    pub(crate) fn get<T: SortKey>(&self, col: usize, rank: u64) -> Result<T> {
        let at = (col as u64 * self.n + rank) * self.itemsize as u64;
        let w = self.file.map(at, self.itemsize)?;
        read::<T>(&w, 0, self.itemsize)
    }
}

/// A run: for each of `cols` columns a sorted segment of `len` values;
/// column `j`'s segment starts at element `offset + j * len`.
#[derive(Clone, Copy, Debug)]
struct Run {
    offset: u64,
    len: u64,
}

/// How a sort runs under the budget.
#[derive(Clone, Debug)]
pub(crate) struct SortPlan {
    /// Rows per run.
    pub(crate) run_rows: u64,
    /// Blocks in flight while making runs.
    pub(crate) slots: usize,
    /// Number of runs.
    pub(crate) runs: u64,
    /// Runs merged at once.
    pub(crate) fan_in: u64,
    /// Bytes of one merge window.
    pub(crate) window_bytes: u64,
    /// Merges running at once.
    pub(crate) merge_tasks: usize,
    /// Merge levels.
    pub(crate) levels: u32,
    /// Rows per block when writing rows back.
    pub(crate) out_rows: u64,
    /// Row blocks written at once.
    pub(crate) out_tasks: usize,
}

/// Plans the sort of a `rows × row_len` array of `itemsize`-byte values
/// (`flat`: as one column of every element, in C order).
pub(crate) fn plan(
    engine: &Engine,
    rows: u64,
    row_len: usize,
    itemsize: usize,
    flat: bool,
) -> Result<SortPlan> {
    let limit = engine.budget().limit();
    let threads = engine.threads().max(1);
    let isz = itemsize as u64;
    let row_bytes = (row_len as u64 * isz).max(1);
    // Runs: a block read plus its sorted copy, per slot.
    let per_row = 2 * row_bytes;
    let mut slots = threads + 1;
    let mut run_rows = limit / (slots as u64 * per_row);
    if run_rows == 0 {
        slots = 1;
        run_rows = limit / per_row;
    }
    if run_rows == 0 {
        return Err(too_small(
            engine,
            per_row,
            per_row,
            "sort: one row read and one row sorted",
        ));
    }
    // At least two runs per thread, so every thread sorts.
    let spread = rows.div_ceil(2 * threads as u64).max(1);
    let run_rows = run_rows.min(spread).min(rows.max(1)).min(u32::MAX as u64);
    let runs = rows.div_ceil(run_rows);
    // Merges: (fan_in + 1) windows per task (one per run, one for output).
    let cols = if flat { 1 } else { row_len.max(1) } as u64;
    let window =
        |tasks: u64, fan_in: u64| (limit / (tasks * (fan_in + 1))).saturating_sub(2 * PAGE);
    let mut fan_in = runs.clamp(2, FAN_IN_MAX);
    let mut tasks = (threads as u64).min(cols * runs.div_ceil(fan_in)).max(1);
    let most = (limit / (tasks * (WINDOW_MIN + 2 * PAGE))).saturating_sub(1);
    fan_in = fan_in.min(most.max(2));
    let mut w = window(tasks, fan_in);
    if w < isz {
        tasks = 1;
        w = window(1, fan_in);
    }
    if w < isz {
        fan_in = 2;
        w = window(1, 2);
    }
    if w < isz {
        let minimum = 3 * (isz + 2 * PAGE);
        return Err(too_small(
            engine,
            isz,
            minimum,
            "sort: a merge of two runs needs three mapped windows",
        ));
    }
    let w = w.min(WINDOW_MAX) / isz * isz;
    let mut levels = 0;
    let mut n = runs;
    while n > 1 {
        n = n.div_ceil(fan_in);
        levels += 1;
    }
    // Rows back: an output block plus one column window, per task.
    let mut out_tasks = threads;
    let fit = |t: u64| (limit / t).saturating_sub(2 * PAGE) / (row_bytes + isz);
    let mut out_rows = fit(out_tasks as u64);
    if out_rows == 0 {
        out_tasks = 1;
        out_rows = fit(1);
    }
    if out_rows == 0 && !flat {
        let minimum = row_bytes + isz + 2 * PAGE;
        return Err(too_small(
            engine,
            row_bytes + isz,
            minimum,
            "sort: one output row and a mapped window",
        ));
    }
    let out_rows = out_rows
        .min((engine.block_bytes() / row_bytes).max(1))
        .min(rows.max(1));
    Ok(SortPlan {
        run_rows,
        slots,
        runs,
        fan_in,
        window_bytes: w,
        merge_tasks: tasks as usize,
        levels,
        out_rows,
        out_tasks,
    })
}

/// Reads element `i` of a window of `itemsize`-byte values.
#[inline]
fn read<T: SortKey>(w: &[u8], i: usize, itemsize: usize) -> Result<T> {
    bytemuck::checked::try_pod_read_unaligned::<T>(&w[i * itemsize..(i + 1) * itemsize])
        .map_err(|e| Error::Invalid(format!("internal: spilled value unreadable: {e}")))
}

/// Sorts every column of `src` (or, `flat`, all its elements as one
/// column) into a spill file, column-major.
pub(crate) fn sort_columns<T: SortKey>(
    engine: &Engine,
    src: &ArrayFile,
    flat: bool,
    report: &mut RunReport,
) -> Result<SortedColumns> {
    let meta = src.meta();
    let (rows, row_len) = (meta.rows(), meta.row_len());
    let isz = std::mem::size_of::<T>();
    let p = plan(engine, rows, row_len, isz, flat)?;
    let total = rows * row_len as u64 * isz as u64;
    let (cols, n) = if flat {
        (1, rows * row_len as u64)
    } else {
        (row_len, rows)
    };
    let first = engine.spill().create(total)?;
    let mut runs = make_runs::<T>(engine, src, &first, &p, flat, report)?;
    let mut file = first;
    while runs.len() > 1 {
        let (next, merged) = merge_level::<T>(engine, &file, &runs, cols, &p, report)?;
        file = next;
        runs = merged;
    }
    Ok(SortedColumns {
        file,
        n,
        itemsize: isz,
    })
}

/// Phase 1: sorted runs, one per block, written in place.
fn make_runs<T: SortKey>(
    engine: &Engine,
    src: &ArrayFile,
    spill: &SpillFile,
    p: &SortPlan,
    flat: bool,
    report: &mut RunReport,
) -> Result<Vec<Run>> {
    let meta = src.meta();
    let row_len = meta.row_len();
    let isz = std::mem::size_of::<T>();
    let block = p.run_rows * (row_len * isz) as u64;
    let (_fixed, slots) = reserve_slots(
        engine,
        &[],
        &[(Consumer::Reader, block), (Consumer::Kernel, block)],
        p.slots,
    )?;
    report.note_reservations(&[
        (Consumer::Reader, block * p.slots as u64),
        (Consumer::Kernel, block * p.slots as u64),
    ]);
    let mut runs = Vec::new();
    let read = stream_file(
        engine,
        "blocks of sorted runs",
        src,
        p.run_rows,
        slots,
        |rows, block| {
            let data = block.as_slice::<T>()?;
            let r = (rows.end - rows.start) as usize;
            if data.is_empty() {
                return Ok(());
            }
            let mut buf = if flat {
                data.to_vec()
            } else {
                transpose(data, r, row_len)
            };
            let seg = if flat { buf.len() } else { r };
            for s in buf.chunks_mut(seg) {
                key::sort(s);
            }
            spill.write_at(
                rows.start * (row_len * isz) as u64,
                bytemuck::cast_slice(&buf),
            )?;
            Ok(())
        },
        |rows, ()| {
            let len = rows.end - rows.start;
            runs.push(Run {
                offset: rows.start * row_len as u64,
                len: if flat { len * row_len as u64 } else { len },
            });
            Ok(())
        },
    )?;
    report.bytes_read += read;
    report.bytes_spilled += spill.len();
    report.blocks += runs.len() as u64;
    report.passes += 1;
    Ok(runs)
}

/// `rows × cols` row-major to column-major, in cache-sized tiles.
fn transpose<T: Copy>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = data.to_vec();
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                for c in c0..c1 {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

/// Phase 2, one level: merges groups of `fan_in` runs into a new file.
fn merge_level<T: SortKey>(
    engine: &Engine,
    src: &SpillFile,
    runs: &[Run],
    cols: usize,
    p: &SortPlan,
    report: &mut RunReport,
) -> Result<(SpillFile, Vec<Run>)> {
    let groups: Vec<&[Run]> = runs.chunks(p.fan_in as usize).collect();
    let merged: Vec<Run> = groups
        .iter()
        .map(|g| Run {
            offset: g[0].offset,
            len: g.iter().map(|r| r.len).sum(),
        })
        .collect();
    let dst = engine.spill().create(src.len())?;
    let per_task = (p.fan_in + 1) * (p.window_bytes + 2 * PAGE);
    let _reserved = super::reserve_slots(
        engine,
        &[(Consumer::Spill, per_task * p.merge_tasks as u64)],
        &[],
        0,
    )?;
    report.note_reservations(&[(Consumer::Spill, per_task * p.merge_tasks as u64)]);
    let tasks: Vec<(usize, usize)> = (0..groups.len())
        .flat_map(|g| (0..cols).map(move |j| (g, j)))
        .collect();
    let isz = std::mem::size_of::<T>();
    let window = (p.window_bytes as usize / isz).max(1);
    let workers = p.merge_tasks.min(tasks.len()).max(1);
    // Cancellation is checked before each column merge and at every
    // window of merged output.
    let done = AtomicU64::new(0);
    let check = || {
        engine.check_cancel(
            "column merges of a sort merge level",
            done.load(Ordering::Relaxed),
            tasks.len() as u64,
        )
    };
    engine.pool().install(|| {
        (0..workers).into_par_iter().try_for_each(|t| {
            for &(g, j) in tasks.iter().skip(t).step_by(workers) {
                check()?;
                merge_one::<T>(src, &dst, groups[g], merged[g], j, window, &check)?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), Error>(())
        })
    })?;
    report.bytes_spilled += dst.len();
    report.passes += 1;
    Ok((dst, merged))
}

/// A run's segment of one column, read through a mapped window.
struct Cursor<'f, T> {
    file: &'f SpillFile,
    /// Element index of the current value.
    next: u64,
    end: u64,
    window: SpillWindow,
    window_start: u64,
    window_len: u64,
    cap: u64,
    current: T,
}

impl<'f, T: SortKey> Cursor<'f, T> {
    fn new(file: &'f SpillFile, start: u64, len: u64, cap: usize) -> Result<Option<Self>> {
        if len == 0 {
            return Ok(None);
        }
        let mut c = Cursor {
            file,
            next: start,
            end: start + len,
            window: file.map(0, 0)?,
            window_start: start,
            window_len: 0,
            cap: cap as u64,
            current: T::from_key(0),
        };
        c.refill()?;
        Ok(Some(c))
    }

    fn refill(&mut self) -> Result<()> {
        let isz = std::mem::size_of::<T>();
        let len = self.cap.min(self.end - self.next);
        // Unmap the old window before mapping the next one.
        self.window = self.file.map(0, 0)?;
        self.window = self
            .file
            .map(self.next * isz as u64, (len as usize) * isz)?;
        self.window_start = self.next;
        self.window_len = len;
        self.current = read::<T>(&self.window, 0, isz)?;
        Ok(())
    }

    /// Moves to the next value; false at the end of the segment.
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        self.next += 1;
        if self.next == self.end {
            return Ok(false);
        }
        let i = self.next - self.window_start;
        if i == self.window_len {
            self.refill()?;
        } else {
            self.current = read::<T>(&self.window, i as usize, std::mem::size_of::<T>())?;
        }
        Ok(true)
    }
}

/// Merges column `col` of the runs of `group` into column `col` of `out`,
/// calling `check` (which fails once the run is cancelled) at every
/// `window` values written.
fn merge_one<T: SortKey>(
    src: &SpillFile,
    dst: &SpillFile,
    group: &[Run],
    out: Run,
    col: usize,
    window: usize,
    check: &(dyn Fn() -> Result<()> + Sync),
) -> Result<()> {
    let isz = std::mem::size_of::<T>() as u64;
    let mut cursors = Vec::with_capacity(group.len());
    for run in group {
        if let Some(c) = Cursor::<T>::new(src, run.offset + col as u64 * run.len, run.len, window)?
        {
            cursors.push(c);
        }
    }
    // A loser tree: one comparison per level for each value merged.
    let k = cursors.len();
    let rank = |c: &Cursor<'_, T>, i: usize| (u128::from(c.current.key()) << 64) | i as u128;
    let mut cur: Vec<u128> = cursors
        .iter()
        .enumerate()
        .map(|(i, c)| rank(c, i))
        .collect();
    let mut tree = vec![0usize; k.max(1)];
    fn build(node: usize, k: usize, cur: &[u128], tree: &mut [usize]) -> usize {
        if node >= k {
            return node - k;
        }
        let (l, r) = (
            build(2 * node, k, cur, tree),
            build(2 * node + 1, k, cur, tree),
        );
        let (win, lose) = if cur[l] <= cur[r] { (l, r) } else { (r, l) };
        tree[node] = lose;
        win
    }
    if k == 0 {
        return Ok(());
    }
    tree[0] = build(1, k, &cur, &mut tree);
    let mut at = (out.offset + col as u64 * out.len) * isz;
    let mut buf: Vec<T> = Vec::with_capacity(window);
    loop {
        let w = tree[0];
        if cur[w] == u128::MAX {
            break;
        }
        let c = &mut cursors[w];
        buf.push(c.current);
        cur[w] = if c.advance()? { rank(c, w) } else { u128::MAX };
        let mut winner = w;
        let mut node = (w + k) / 2;
        while node > 0 {
            let t = tree[node];
            if cur[t] < cur[winner] {
                tree[node] = winner;
                winner = t;
            }
            node /= 2;
        }
        tree[0] = winner;
        if buf.len() == window {
            dst.write_at(at, bytemuck::cast_slice(&buf))?;
            at += (buf.len() as u64) * isz;
            buf.clear();
            check()?;
        }
    }
    if !buf.is_empty() {
        dst.write_at(at, bytemuck::cast_slice(&buf))?;
    }
    Ok(())
}

/// Phase 3: writes column-major sorted data as `rows × row_len` row-major
/// blocks to `sink`.
pub(crate) fn write_rows(
    engine: &Engine,
    sorted: &SortedColumns,
    rows: u64,
    row_len: usize,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    let isz = sorted.itemsize;
    let row_bytes = row_len * isz;
    if rows == 0 || row_len == 0 {
        return Ok(());
    }
    let p = plan(engine, rows, row_len, isz, false)?;
    let per_task = p.out_rows * (row_bytes + isz) as u64 + 2 * PAGE;
    let _reserved = reserve_slots(
        engine,
        &[(Consumer::Writer, per_task * p.out_tasks as u64)],
        &[],
        0,
    )?;
    report.note_reservations(&[(Consumer::Writer, per_task * p.out_tasks as u64)]);
    let blocks = rows.div_ceil(p.out_rows) as usize;
    let workers = p.out_tasks.min(blocks).max(1);
    let done = AtomicU64::new(0);
    engine.pool().install(|| {
        (0..workers).into_par_iter().try_for_each(|t| {
            let mut out = vec![0u8; p.out_rows as usize * row_bytes];
            for b in (t..blocks).step_by(workers) {
                engine.check_cancel(
                    "blocks of sorted rows",
                    done.load(Ordering::Relaxed),
                    blocks as u64,
                )?;
                let r0 = b as u64 * p.out_rows;
                let r1 = (r0 + p.out_rows).min(rows);
                let n = (r1 - r0) as usize;
                let out = &mut out[..n * row_bytes];
                for j in 0..row_len {
                    let at = (j as u64 * rows + r0) * isz as u64;
                    let w = sorted.file.map(at, n * isz)?;
                    scatter(&w, out, j, row_len, isz);
                }
                sink.write(r0, row_bytes, out)?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), Error>(())
        })
    })?;
    report.bytes_written += rows * row_bytes as u64;
    report.blocks += blocks as u64;
    report.passes += 1;
    Ok(())
}

/// Copies column `j`'s values (`col`, contiguous) into row-major `out`.
fn scatter(col: &[u8], out: &mut [u8], j: usize, row_len: usize, isz: usize) {
    fn go<const N: usize>(col: &[u8], out: &mut [u8], j: usize, row_len: usize) {
        for (r, v) in col.chunks_exact(N).enumerate() {
            let at = (r * row_len + j) * N;
            out[at..at + N].copy_from_slice(v);
        }
    }
    match isz {
        1 => go::<1>(col, out, j, row_len),
        2 => go::<2>(col, out, j, row_len),
        4 => go::<4>(col, out, j, row_len),
        _ => go::<8>(col, out, j, row_len),
    }
}

/// Sorts `src` (any dtype) along axis 0 into `sink`.
pub(crate) fn sort_any(
    engine: &Engine,
    src: &ArrayFile,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    outcore_chunker::with_dtype!(src.meta().dtype, T => sort_into::<T>(engine, src, sink, report))
}

/// Sorts `src` along axis 0 into `sink`.
fn sort_into<T: SortKey>(
    engine: &Engine,
    src: &ArrayFile,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    let meta = src.meta();
    if meta.is_empty() {
        return Ok(());
    }
    let sorted = sort_columns::<T>(engine, src, false, report)?;
    write_rows(engine, &sorted, meta.rows(), meta.row_len(), sink, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_tiles() {
        let rows = 37;
        let cols = 45;
        let data: Vec<u32> = (0..rows * cols).map(|i| i as u32).collect();
        let t = transpose(&data, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], data[r * cols + c]);
            }
        }
    }

    #[test]
    fn merges_and_rows_stop_when_cancelled() {
        use outcore_chunker::{ArrayWriter, CancelToken, DType, OutputSpec};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let (rows, cols) = (4000usize, 4usize);
        let w = ArrayWriter::create(&path, OutputSpec::npy(DType::I64, vec![4000, 4])).unwrap();
        let a = ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| ((r * 31 + c) % 97) as i64);
        w.write_block(0, a.view()).unwrap();
        w.finish().unwrap();
        let src = ArrayFile::open(&path).unwrap();
        let token = CancelToken::new();
        let engine = Engine::builder()
            .memory_limit(64 << 10)
            .threads(2)
            .spill_dir(dir.path())
            .cancel(token.clone())
            .build()
            .unwrap();
        let p = plan(&engine, rows as u64, cols, 8, false).unwrap();
        assert!(p.runs > 2 && p.levels > 1, "{p:?}");
        let mut report = RunReport::default();
        let first = engine.spill().create((rows * cols * 8) as u64).unwrap();
        let runs = make_runs::<i64>(&engine, &src, &first, &p, false, &mut report).unwrap();
        token.cancel();
        let err = merge_level::<i64>(&engine, &first, &runs, cols, &p, &mut report)
            .err()
            .unwrap();
        assert!(
            matches!(err, Error::Cancelled { stage: "column merges of a sort merge level", done: 0, total } if total > 0),
            "{err}"
        );
        let sorted = SortedColumns {
            file: first,
            n: rows as u64,
            itemsize: 8,
        };
        let out = engine.spill().create((rows * cols * 8) as u64).unwrap();
        let err = write_rows(
            &engine,
            &sorted,
            rows as u64,
            cols,
            &RowSink::Spill(&out),
            &mut report,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Cancelled {
                    stage: "blocks of sorted rows",
                    done: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(engine.budget().reserved(), 0);
    }
}
