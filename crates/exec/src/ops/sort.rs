//! External merge sort along axis 0: every column sorted independently,
//! as `np.sort(x, axis=0)` (NaN last).
//!
//! 1. **Runs.** Blocks of rows are read in parallel; each worker turns its
//!    block column-major and sorts every column, then writes the block to
//!    a spill file at the block's own byte offset. A run is one block:
//!    for each column, a sorted segment.
//! 2. **Merge levels.** Groups of up to `fan_in` consecutive runs are
//!    merged into one longer run at the same place of a second spill file.
//!    Where a column's merged segment fits one window, a *stripe* of as
//!    many columns as fit is merged at once: each run's part of the
//!    stripe (contiguous, since runs are column-major) is read through
//!    one mapped window, and the stripe is written with one write — so
//!    rows of millions of short columns cost a few maps per stripe, not
//!    one per column and run. Longer columns are merged one at a time by
//!    a loser tree over one cursor per run, each reading its segment
//!    through a mapped window. Levels repeat, ping-ponging between two
//!    files, until one run is left: every column sorted, in column-major
//!    order.
//! 3. **Rows.** The column-major result is turned back into row-major
//!    blocks (one mapped window per stripe of columns, or per column
//!    slice when columns are long) and written to the output or to a
//!    spill file.
//!
//! Memory: each phase sizes its blocks, windows and fan-in from the whole
//! budget and reserves it before starting; every allocation of a phase
//! (blocks, windows, the merge's cursors and tree) is counted, and none
//! grows with the number of columns or runs (runs are computed from their
//! index, not listed). A limit too small for any phase is refused before
//! anything is read, naming the smallest limit that runs every phase
//! ([`minimum`]). I/O: the input is read once; runs, every merge level and
//! the final rows each write the data once (spill writes go to the page
//! cache and reach the disk only when memory is short); `docs/spill.md`
//! has the arithmetic.

use std::sync::atomic::{AtomicU64, Ordering};

use outcore_chunker::ArrayFile;
use outcore_spill::{Consumer, SpillFile, SpillWindow};
use rayon::prelude::*;

use super::{PAGE, RowSink, reserve_slots, stream_file, too_small};
use crate::error::{Error, Result};
use crate::report::RunReport;
use crate::runtime::Runtime;
use outcore_kernels::key::{self, SortKey};

/// The most runs merged at once.
const FAN_IN_MAX: u64 = 128;
/// Merge windows are at least this large when the budget allows.
const WINDOW_MIN: u64 = 64 << 10;
/// ... and at most this large.
pub(crate) const WINDOW_MAX: u64 = 1 << 20;
/// Bytes a merge holds per run besides its window: a cursor, its entry
/// in the loser tree and its current key.
const PER_RUN: u64 = 128;

/// Sorted data, column-major: column `j`'s `n` values are elements
/// `j * n .. (j + 1) * n` of `file`.
pub(crate) struct SortedColumns {
    pub(crate) file: SpillFile,
    pub(crate) n: u64,
    pub(crate) itemsize: usize,
}

/// A run: for each of `cols` columns a sorted segment of `len` values;
/// column `j`'s segment starts at element `offset + j * len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    offset: u64,
    len: u64,
}

/// The shape being sorted: `rows × row_len`, by column (or, `flat`, all
/// elements as one column).
#[derive(Clone, Copy, Debug)]
struct Geometry {
    rows: u64,
    row_len: usize,
    flat: bool,
}

impl Geometry {
    fn cols(self) -> u64 {
        if self.flat { 1 } else { self.row_len as u64 }
    }

    /// Run `i` of runs of `span` rows each (the last may be shorter).
    fn run(self, i: u64, span: u64) -> Run {
        let start = i.saturating_mul(span).min(self.rows);
        let end = start.saturating_add(span).min(self.rows);
        let len = end - start;
        Run {
            offset: start * self.row_len as u64,
            len: if self.flat {
                len * self.row_len as u64
            } else {
                len
            },
        }
    }

    /// How many runs of `span` rows there are.
    fn runs(self, span: u64) -> u64 {
        self.rows.div_ceil(span.max(1))
    }
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
    /// Bytes of the window each task maps while writing rows back (at
    /// least one column's slice of a block).
    pub(crate) out_window: u64,
    /// Row blocks written at once.
    pub(crate) out_tasks: usize,
    /// The budget holds the whole array (twice over while it is read):
    /// the sort runs in memory, without spilling ([`InMemory`]).
    pub(crate) in_memory: Option<InMemory>,
}

/// A sort in memory: the array read into one column-major buffer, each
/// column sorted there, rows written back.
#[derive(Clone, Debug)]
pub(crate) struct InMemory {
    /// Rows per block read and written.
    pub(crate) block_rows: u64,
    /// Blocks in flight while reading.
    pub(crate) slots: usize,
    /// Bytes reserved for the whole sort.
    pub(crate) bytes: u64,
}

/// The in-memory sort of a `rows × row_len` array of `isz`-byte values,
/// when `limit` holds it: the column-major buffer, plus a block and its
/// transposed copy per slot while reading (the same blocks written back).
fn in_memory(rt: &Runtime, rows: u64, row_len: usize, isz: u64, flat: bool) -> Option<InMemory> {
    if flat || rows == 0 || row_len == 0 {
        return None;
    }
    let row_bytes = row_len as u64 * isz;
    let total = rows.checked_mul(row_bytes)?;
    let slots = rt.threads().max(1) + 1;
    let block_rows = (rt.block_bytes() / row_bytes).clamp(1, rows);
    let bytes = total.checked_add(2 * slots as u64 * block_rows * row_bytes)?;
    (bytes <= rt.budget().limit()).then_some(InMemory {
        block_rows,
        slots,
        bytes,
    })
}

impl SortPlan {
    /// Rows per run after `level` merge levels (0: the sorted runs).
    fn span(&self, level: u32) -> u64 {
        self.run_rows
            .saturating_mul(self.fan_in.checked_pow(level).unwrap_or(u64::MAX))
    }
}

/// The smallest limit under which a sort of a `rows × row_len` array of
/// `itemsize`-byte values runs every phase: one row read and one sorted
/// (runs); three windows of one value and two cursors (a merge of two
/// runs, when there are two rows or more); one output row and a window
/// (rows back, unless `flat`).
pub(crate) fn minimum(rows: u64, row_len: usize, itemsize: usize, flat: bool) -> u64 {
    let isz = itemsize as u64;
    let row_bytes = (row_len as u64 * isz).max(1);
    let runs = 2 * row_bytes;
    let merge = if rows > 1 {
        3 * (isz + 2 * PAGE) + 2 * PER_RUN
    } else {
        0
    };
    let out = if flat { 0 } else { row_bytes + isz + 2 * PAGE };
    runs.max(merge).max(out)
}

/// Plans the sort operator (`np.sort(x, axis=0)`): as [`plan`], and also
/// in memory at a limit below the external sort's smallest when the
/// limit holds the array (a few wide rows).
pub(crate) fn op_plan(
    rt: &Runtime,
    rows: u64,
    row_len: usize,
    itemsize: usize,
) -> Result<SortPlan> {
    match plan(rt, rows, row_len, itemsize, false) {
        Err(Error::LimitTooSmall { .. })
            if let Some(held) = in_memory(rt, rows, row_len, itemsize as u64, false) =>
        {
            // No runs, merges or windows.
            Ok(SortPlan {
                run_rows: rows,
                slots: 1,
                runs: 1,
                fan_in: 2,
                window_bytes: 0,
                merge_tasks: 1,
                levels: 0,
                out_rows: rows,
                out_window: 0,
                out_tasks: 1,
                in_memory: Some(held),
            })
        }
        other => other,
    }
}

/// Plans the sort of a `rows × row_len` array of `itemsize`-byte values
/// (`flat`: as one column of every element, in C order).
pub(crate) fn plan(
    rt: &Runtime,
    rows: u64,
    row_len: usize,
    itemsize: usize,
    flat: bool,
) -> Result<SortPlan> {
    let limit = rt.budget().limit();
    let threads = rt.threads().max(1);
    let isz = itemsize as u64;
    let row_bytes = (row_len as u64 * isz).max(1);
    let least = minimum(rows, row_len, itemsize, flat);
    let refuse = |what: &str| too_small(rt, 2 * row_bytes, least, what);
    let held = in_memory(rt, rows, row_len, isz, flat);
    if limit < least {
        let what = if limit < 2 * row_bytes {
            "sort: one row read and one row sorted"
        } else if !flat && limit < row_bytes + isz + 2 * PAGE {
            "sort: one output row and a mapped window"
        } else {
            "sort: a merge of two runs needs three mapped windows"
        };
        return Err(refuse(what));
    }
    // Runs: a block read plus its sorted copy, per slot.
    let per_row = 2 * row_bytes;
    let mut slots = threads + 1;
    let mut run_rows = limit / (slots as u64 * per_row);
    if run_rows == 0 {
        slots = 1;
        run_rows = limit / per_row;
    }
    // At least two runs per thread, so every thread sorts.
    let spread = rows.div_ceil(2 * threads as u64).max(1);
    let run_rows = run_rows
        .max(1)
        .min(spread)
        .min(rows.max(1))
        .min(u32::MAX as u64);
    let runs = rows.div_ceil(run_rows);
    // Merges: (fan_in + 1) windows per task (one per run, one for
    // output), and a cursor per run.
    let cols = if flat { 1 } else { row_len.max(1) } as u64;
    let window = |tasks: u64, fan_in: u64| {
        ((limit / tasks).saturating_sub(fan_in * PER_RUN) / (fan_in + 1)).saturating_sub(2 * PAGE)
    };
    let mut fan_in = runs.clamp(2, FAN_IN_MAX);
    let mut tasks = (threads as u64).min(cols * runs.div_ceil(fan_in)).max(1);
    let most = (limit / (tasks * (WINDOW_MIN + 2 * PAGE + PER_RUN))).saturating_sub(1);
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
    if w < isz && runs > 1 {
        return Err(refuse(
            "sort: a merge of two runs needs three mapped windows",
        ));
    }
    let w = (w.min(WINDOW_MAX) / isz * isz).max(isz);
    let mut levels = 0;
    let mut n = runs;
    while n > 1 {
        n = n.div_ceil(fan_in);
        levels += 1;
    }
    // Rows back: an output block plus a window of at least one column's
    // slice of it, per task.
    let mut out_tasks = threads;
    let fit = |t: u64| (limit / t).saturating_sub(2 * PAGE) / (row_bytes + isz);
    let mut out_rows = fit(out_tasks as u64);
    if out_rows == 0 {
        out_tasks = 1;
        out_rows = fit(1);
    }
    if out_rows == 0 && !flat {
        return Err(refuse("sort: one output row and a mapped window"));
    }
    let out_rows = out_rows
        .max(1)
        .min((rt.block_bytes() / row_bytes).max(1))
        .min(rows.max(1));
    // What is left of a task's share widens its window (a stripe of
    // short columns per map), up to WINDOW_MAX.
    let spare = (limit / out_tasks as u64)
        .saturating_sub(2 * PAGE)
        .saturating_sub(out_rows * row_bytes);
    let out_window = (spare.min(WINDOW_MAX) / isz * isz).max(out_rows * isz);
    Ok(SortPlan {
        in_memory: held,
        run_rows,
        slots,
        runs,
        fan_in,
        window_bytes: w,
        merge_tasks: tasks as usize,
        levels,
        out_rows,
        out_window,
        out_tasks,
    })
}

/// Reads element `i` of a window of `itemsize`-byte values.
#[inline]
fn read<T: SortKey>(w: &[u8], i: usize, itemsize: usize) -> Result<T> {
    bytemuck::checked::try_pod_read_unaligned::<T>(&w[i * itemsize..(i + 1) * itemsize])
        .map_err(|e| Error::Invalid(format!("internal: spilled value unreadable: {e}")))
}

/// A mapped window as values (windows start at a multiple of the item
/// size from a page boundary, so they are aligned).
pub(crate) fn values<T: SortKey>(w: &[u8]) -> Result<&[T]> {
    bytemuck::checked::try_cast_slice::<u8, T>(w)
        .map_err(|e| Error::Invalid(format!("internal: spilled values unreadable: {e}")))
}

/// Sorts every column of `src` (or, `flat`, all its elements as one
/// column) into a spill file, column-major.
pub(crate) fn sort_columns<T: SortKey>(
    rt: &Runtime,
    src: &ArrayFile,
    flat: bool,
    report: &mut RunReport,
) -> Result<SortedColumns> {
    let meta = src.meta();
    let (rows, row_len) = (meta.rows(), meta.row_len());
    let isz = std::mem::size_of::<T>();
    let p = plan(rt, rows, row_len, isz, flat)?;
    let total = rows * row_len as u64 * isz as u64;
    let geo = Geometry {
        rows,
        row_len,
        flat,
    };
    let n = if flat { rows * row_len as u64 } else { rows };
    let first = rt.spill().create(total)?;
    make_runs::<T>(rt, src, &first, &p, flat, report)?;
    let mut file = first;
    let mut level = 0;
    while geo.runs(p.span(level)) > 1 {
        file = merge_level::<T>(rt, &file, geo, level, &p, report)?;
        level += 1;
    }
    Ok(SortedColumns {
        file,
        n,
        itemsize: isz,
    })
}

/// Phase 1: sorted runs, one per block of `p.run_rows` rows, written in
/// place.
fn make_runs<T: SortKey>(
    rt: &Runtime,
    src: &ArrayFile,
    spill: &SpillFile,
    p: &SortPlan,
    flat: bool,
    report: &mut RunReport,
) -> Result<()> {
    let meta = src.meta();
    let row_len = meta.row_len();
    let isz = std::mem::size_of::<T>();
    let block = p.run_rows * (row_len * isz) as u64;
    let (_fixed, slots) = reserve_slots(
        rt,
        &[],
        &[(Consumer::Reader, block), (Consumer::Kernel, block)],
        p.slots,
    )?;
    report.note_reservations(&[
        (Consumer::Reader, block * p.slots as u64),
        (Consumer::Kernel, block * p.slots as u64),
    ]);
    let mut runs = 0;
    let read = stream_file(
        rt,
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
            if seg > 1 {
                for s in buf.chunks_mut(seg) {
                    key::sort(s);
                }
            }
            spill.write_at(
                rows.start * (row_len * isz) as u64,
                bytemuck::cast_slice(&buf),
            )?;
            Ok(())
        },
        |_rows, ()| {
            runs += 1;
            Ok(())
        },
    )?;
    report.bytes_read += read;
    report.bytes_spilled += spill.len();
    report.blocks += runs;
    report.passes += 1;
    Ok(())
}

/// `rows × cols` row-major to column-major, in cache-sized tiles.
fn transpose<T: Copy>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = data.to_vec();
    if rows <= 1 || cols <= 1 {
        return out;
    }
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

/// Phase 2, one level: merges groups of `fan_in` runs of
/// `p.span(level)` rows into runs of `p.span(level + 1)` rows, in a new
/// file.
fn merge_level<T: SortKey>(
    rt: &Runtime,
    src: &SpillFile,
    geo: Geometry,
    level: u32,
    p: &SortPlan,
    report: &mut RunReport,
) -> Result<SpillFile> {
    let (span_in, span_out) = (p.span(level), p.span(level + 1));
    let runs_in = geo.runs(span_in);
    let groups = geo.runs(span_out);
    let cols = geo.cols();
    let dst = rt.spill().create(src.len())?;
    let per_task = (p.fan_in + 1) * (p.window_bytes + 2 * PAGE) + p.fan_in * PER_RUN;
    let _reserved = super::reserve_slots(
        rt,
        &[(Consumer::Spill, per_task * p.merge_tasks as u64)],
        &[],
        0,
    )?;
    report.note_reservations(&[(Consumer::Spill, per_task * p.merge_tasks as u64)]);
    let isz = std::mem::size_of::<T>();
    let window = (p.window_bytes as usize / isz).max(1);
    // Columns whose merged segments fit one window are merged a stripe
    // at a time; longer ones one by one through cursors.
    let longest = geo.run(0, span_out).len.max(1);
    let stripe = (longest <= window as u64).then(|| window as u64 / longest);
    let per_group = match stripe {
        Some(width) => cols.div_ceil(width),
        None => cols,
    };
    let total = groups * per_group;
    let workers = (p.merge_tasks as u64).min(total).max(1) as usize;
    // Cancellation is checked before each merge and at every window of
    // merged output.
    let done = AtomicU64::new(0);
    let check = || {
        rt.check_cancel(
            "column merges of a sort merge level",
            done.load(Ordering::Relaxed),
            total,
        )
    };
    rt.pool().install(|| {
        (0..workers).into_par_iter().try_for_each(|t| {
            let mut tree = LoserTree::default();
            let mut buf: Vec<T> = Vec::with_capacity(window);
            let mut group: Vec<Run> = Vec::with_capacity(p.fan_in as usize);
            for task in (t as u64..total).step_by(workers) {
                check()?;
                let (g, part) = (task / per_group, task % per_group);
                group.clear();
                let first = g * p.fan_in;
                let last = (first + p.fan_in).min(runs_in);
                group.extend((first..last).map(|i| geo.run(i, span_in)));
                let out = geo.run(g, span_out);
                match stripe {
                    Some(width) => {
                        let c0 = part * width;
                        let c1 = (c0 + width).min(cols);
                        merge_stripe::<T>(src, &dst, &group, out, c0..c1, &mut tree, &mut buf)?;
                    }
                    None => {
                        merge_one::<T>(
                            src, &dst, &group, out, part, window, &mut tree, &mut buf, &check,
                        )?;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                rt.advance(dst.len() / total.max(1));
            }
            Ok::<(), Error>(())
        })
    })?;
    report.bytes_spilled += dst.len();
    report.passes += 1;
    Ok(dst)
}

/// A sorted sequence being merged.
trait Sorted<T> {
    /// The current value.
    fn current(&self) -> T;
    /// Moves to the next value; false at the end.
    fn advance(&mut self) -> Result<bool>;
}

/// A non-empty sorted slice.
struct SliceSeq<'a, T> {
    values: &'a [T],
    at: usize,
}

impl<T: Copy> Sorted<T> for SliceSeq<'_, T> {
    #[inline]
    fn current(&self) -> T {
        self.values[self.at]
    }
    #[inline]
    fn advance(&mut self) -> Result<bool> {
        self.at += 1;
        Ok(self.at < self.values.len())
    }
}

/// A loser tree over non-empty sorted sequences: one comparison per level
/// for each value merged. Its vectors are kept between merges.
#[derive(Default)]
struct LoserTree {
    cur: Vec<u128>,
    tree: Vec<usize>,
}

impl LoserTree {
    /// Merges `seqs` (each non-empty), calling `emit` with every value in
    /// order (ties in sequence order).
    fn merge<T: SortKey, S: Sorted<T>>(
        &mut self,
        seqs: &mut [S],
        mut emit: impl FnMut(T) -> Result<()>,
    ) -> Result<()> {
        let k = seqs.len();
        if k == 0 {
            return Ok(());
        }
        let rank = |v: T, i: usize| (u128::from(v.key()) << 64) | i as u128;
        self.cur.clear();
        self.cur
            .extend(seqs.iter().enumerate().map(|(i, s)| rank(s.current(), i)));
        self.tree.clear();
        self.tree.resize(k.max(1), 0);
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
        let (cur, tree) = (&mut self.cur, &mut self.tree);
        tree[0] = build(1, k, cur, tree);
        loop {
            let w = tree[0];
            if cur[w] == u128::MAX {
                return Ok(());
            }
            let s = &mut seqs[w];
            emit(s.current())?;
            cur[w] = if s.advance()? {
                rank(s.current(), w)
            } else {
                u128::MAX
            };
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
        }
    }
}

/// Merges columns `cols` of the runs of `group` into `out`, a stripe at
/// once: each run's part of the stripe through one mapped window, the
/// merged stripe (at most `buf`'s capacity) written with one write.
fn merge_stripe<T: SortKey>(
    src: &SpillFile,
    dst: &SpillFile,
    group: &[Run],
    out: Run,
    cols: std::ops::Range<u64>,
    tree: &mut LoserTree,
    buf: &mut Vec<T>,
) -> Result<()> {
    let isz = std::mem::size_of::<T>() as u64;
    let width = cols.end - cols.start;
    let mut windows: Vec<SpillWindow> = Vec::with_capacity(group.len());
    for run in group {
        let at = (run.offset + cols.start * run.len) * isz;
        windows.push(src.map(at, (width * run.len * isz) as usize)?);
    }
    let views = windows
        .iter()
        .map(|w| values::<T>(w))
        .collect::<Result<Vec<&[T]>>>()?;
    buf.clear();
    let mut seqs: Vec<SliceSeq<'_, T>> = Vec::with_capacity(group.len());
    for j in 0..width as usize {
        seqs.clear();
        for (run, view) in group.iter().zip(&views) {
            let len = run.len as usize;
            if len > 0 {
                seqs.push(SliceSeq {
                    values: &view[j * len..(j + 1) * len],
                    at: 0,
                });
            }
        }
        if let [only] = seqs.as_slice() {
            buf.extend_from_slice(only.values);
        } else {
            tree.merge(&mut seqs, |v| {
                buf.push(v);
                Ok(())
            })?;
        }
    }
    dst.write_at(
        (out.offset + cols.start * out.len) * isz,
        bytemuck::cast_slice(buf),
    )?;
    Ok(())
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
}

impl<T: SortKey> Sorted<T> for Cursor<'_, T> {
    #[inline]
    fn current(&self) -> T {
        self.current
    }

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

/// Merges column `col` of the runs of `group` into column `col` of `out`
/// through cursors, writing every `window` values from `buf` (whose
/// capacity is `window`) and calling `check` (which fails once the run
/// is cancelled) after each write.
#[allow(clippy::too_many_arguments)] // the hot merge loop: its buffers and tree are borrowed from the caller, reused per column
fn merge_one<T: SortKey>(
    src: &SpillFile,
    dst: &SpillFile,
    group: &[Run],
    out: Run,
    col: u64,
    window: usize,
    tree: &mut LoserTree,
    buf: &mut Vec<T>,
    check: &(dyn Fn() -> Result<()> + Sync),
) -> Result<()> {
    let isz = std::mem::size_of::<T>() as u64;
    let mut cursors = Vec::with_capacity(group.len());
    for run in group {
        if let Some(c) = Cursor::<T>::new(src, run.offset + col * run.len, run.len, window)? {
            cursors.push(c);
        }
    }
    let mut at = (out.offset + col * out.len) * isz;
    buf.clear();
    tree.merge(&mut cursors, |v| {
        buf.push(v);
        if buf.len() == window {
            dst.write_at(at, bytemuck::cast_slice(buf))?;
            at += (buf.len() as u64) * isz;
            buf.clear();
            check()?;
        }
        Ok(())
    })?;
    if !buf.is_empty() {
        dst.write_at(at, bytemuck::cast_slice(buf))?;
    }
    Ok(())
}

/// Phase 3: writes column-major sorted data as `rows × row_len` row-major
/// blocks to `sink`. For each block, columns are read a stripe at a time:
/// one mapped window from the block's first row of a stripe's first
/// column to its last row of the stripe's last column (one column per
/// window when columns are long).
pub(crate) fn write_rows(
    rt: &Runtime,
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
    let p = plan(rt, rows, row_len, isz, false)?;
    let per_task = p.out_rows * row_bytes as u64 + p.out_window + 2 * PAGE;
    let _reserved = reserve_slots(
        rt,
        &[(Consumer::Writer, per_task * p.out_tasks as u64)],
        &[],
        0,
    )?;
    report.note_reservations(&[(Consumer::Writer, per_task * p.out_tasks as u64)]);
    let blocks = rows.div_ceil(p.out_rows) as usize;
    let workers = p.out_tasks.min(blocks).max(1);
    let window = (p.out_window / isz as u64).max(1);
    let done = AtomicU64::new(0);
    rt.pool().install(|| {
        (0..workers).into_par_iter().try_for_each(|t| {
            let mut out = vec![0u8; p.out_rows as usize * row_bytes];
            for b in (t..blocks).step_by(workers) {
                rt.check_cancel(
                    "blocks of sorted rows",
                    done.load(Ordering::Relaxed),
                    blocks as u64,
                )?;
                let r0 = b as u64 * p.out_rows;
                let r1 = (r0 + p.out_rows).min(rows);
                let n = r1 - r0;
                let out = &mut out[..n as usize * row_bytes];
                // Columns c0..c1 span (c1 - c0 - 1) * rows + n values.
                let width = (1 + window.saturating_sub(n) / rows).max(1);
                let mut c0 = 0u64;
                while c0 < row_len as u64 {
                    let c1 = (c0 + width).min(row_len as u64);
                    let at = (c0 * rows + r0) * isz as u64;
                    let len = ((c1 - c0 - 1) * rows + n) as usize * isz;
                    let w = sorted.file.map(at, len)?;
                    for j in c0..c1 {
                        let from = ((j - c0) * rows) as usize * isz;
                        let col = &w[from..from + n as usize * isz];
                        scatter(col, out, j as usize, row_len, isz);
                    }
                    c0 = c1;
                }
                sink.write(r0, row_bytes, out)?;
                rt.advance(n * row_bytes as u64);
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
    rt: &Runtime,
    src: &ArrayFile,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    outcore_chunker::with_dtype!(src.meta().dtype, T => sort_into::<T>(rt, src, sink, report))
}

/// Sorts `src` along axis 0 into `sink`.
fn sort_into<T: SortKey>(
    rt: &Runtime,
    src: &ArrayFile,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    let meta = src.meta();
    if meta.is_empty() {
        return Ok(());
    }
    let p = op_plan(rt, meta.rows(), meta.row_len(), std::mem::size_of::<T>())?;
    if let Some(m) = p.in_memory {
        return sort_in_memory::<T>(rt, src, &m, sink, report);
    }
    let sorted = sort_columns::<T>(rt, src, false, report)?;
    write_rows(rt, &sorted, meta.rows(), meta.row_len(), sink, report)
}

/// Sorts `src` in memory ([`InMemory`]): one pass reads it into a
/// column-major buffer (each block transposed by a worker, copied into
/// place in block order), the columns are sorted in parallel, and a
/// second pass writes the rows back — nothing spilled.
fn sort_in_memory<T: SortKey>(
    rt: &Runtime,
    src: &ArrayFile,
    m: &InMemory,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    let meta = src.meta();
    let (rows, row_len) = (meta.rows(), meta.row_len());
    let isz = std::mem::size_of::<T>();
    let row_bytes = row_len * isz;
    let n = usize::try_from(rows)
        .map_err(|_| Error::Invalid(format!("internal: {rows} rows to sort in memory")))?;
    let block = m.block_rows * row_bytes as u64;
    let total = rows * row_bytes as u64;
    let (_fixed, slots) = reserve_slots(
        rt,
        &[(Consumer::Kernel, total)],
        &[(Consumer::Reader, block), (Consumer::Kernel, block)],
        m.slots,
    )?;
    report.note_reservations(&[
        (Consumer::Kernel, total + block * m.slots as u64),
        (Consumer::Reader, block * m.slots as u64),
    ]);
    let mut cols: Vec<T> = vec![T::from_key(0); n * row_len];
    let mut blocks = 0;
    let read = stream_file(
        rt,
        "blocks of the array to sort",
        src,
        m.block_rows,
        slots,
        |r, b| {
            let data = b.as_slice::<T>()?;
            Ok(transpose(data, (r.end - r.start) as usize, row_len))
        },
        |r, t| {
            let (r0, k) = (r.start as usize, (r.end - r.start) as usize);
            if k > 0 {
                for (j, col) in t.chunks_exact(k).enumerate() {
                    cols[j * n + r0..j * n + r0 + k].copy_from_slice(col);
                }
            }
            blocks += 1;
            Ok(())
        },
    )?;
    report.bytes_read += read;
    report.blocks += blocks;
    report.passes += 1;
    rt.check_cancel("columns sorted in memory", 0, row_len as u64)?;
    rt.pool().install(|| {
        if row_len == 1 {
            cols.par_sort_unstable_by_key(|x| x.key());
        } else {
            cols.par_chunks_mut(n).for_each(key::sort);
        }
    });
    // Rows back, a block per task.
    let tasks = rt.threads().max(1) as u64;
    let _writing = reserve_slots(rt, &[(Consumer::Writer, block * tasks)], &[], 0)?;
    report.note_reservations(&[(Consumer::Kernel, total), (Consumer::Writer, block * tasks)]);
    let out_blocks = rows.div_ceil(m.block_rows) as usize;
    let done = AtomicU64::new(0);
    rt.pool().install(|| {
        // Each task's block buffer is reused from block to block.
        (0..out_blocks)
            .into_par_iter()
            .try_for_each_init(Vec::new, |out, b| {
                rt.check_cancel(
                    "blocks of sorted rows",
                    done.load(Ordering::Relaxed),
                    out_blocks as u64,
                )?;
                let r0 = b * m.block_rows as usize;
                let r1 = (r0 + m.block_rows as usize).min(n);
                out.clear();
                for r in r0..r1 {
                    for j in 0..row_len {
                        out.extend_from_slice(bytemuck::bytes_of(&cols[j * n + r]));
                    }
                }
                sink.write(r0 as u64, row_bytes, out)?;
                rt.advance(out.len() as u64);
                done.fetch_add(1, Ordering::Relaxed);
                Ok::<(), Error>(())
            })
    })?;
    report.bytes_written += total;
    report.blocks += out_blocks as u64;
    report.passes += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use outcore_chunker::{ArrayWriter, DType, OutputSpec};

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

    fn write_i64(path: &std::path::Path, a: &ndarray::Array2<i64>) {
        let shape = a.shape().iter().map(|&d| d as u64).collect();
        let w = ArrayWriter::create(path, OutputSpec::npy(DType::I64, shape)).unwrap();
        w.write_block(0, a.view()).unwrap();
        w.finish().unwrap();
    }

    /// Sorts `a` under `limit` through the spill path and compares with
    /// each column sorted in memory; returns the plan.
    fn sort_and_check(dir: &std::path::Path, a: &ndarray::Array2<i64>, limit: u64) -> SortPlan {
        let path = dir.join("x.npy");
        let _ = std::fs::remove_file(&path);
        write_i64(&path, a);
        let src = ArrayFile::open(&path).unwrap();
        let rt = Runtime::for_tests(limit, 2, Some(dir), outcore_chunker::CancelToken::new());
        let (rows, cols) = a.dim();
        let p = plan(&rt, rows as u64, cols, 8, false).unwrap();
        let mut report = RunReport::default();
        let sorted = sort_columns::<i64>(&rt, &src, false, &mut report).unwrap();
        let out = rt.spill().create((rows * cols * 8) as u64).unwrap();
        write_rows(
            &rt,
            &sorted,
            rows as u64,
            cols,
            &RowSink::Spill(&out),
            &mut report,
        )
        .unwrap();
        assert!(report.peak_reserved <= limit, "{report:?}");
        assert_eq!(rt.budget().reserved(), 0);
        let w = out.map(0, rows * cols * 8).unwrap();
        let got: &[i64] = values(&w).unwrap();
        for c in 0..cols {
            let mut want: Vec<i64> = a.column(c).to_vec();
            want.sort_unstable();
            let col: Vec<i64> = (0..rows).map(|r| got[r * cols + c]).collect();
            assert_eq!(col, want, "column {c} of {rows} x {cols} at {limit}: {p:?}");
        }
        p
    }

    /// Rows far wider than a window: runs of one row, merged a stripe of
    /// columns at a time, and rows written back a stripe at a time —
    /// equal to sorting each column in memory, also at the smallest limit
    /// the plan names.
    #[test]
    fn wide_rows_merge_and_write_by_stripes() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols) = (7usize, 20_000usize);
        let a = ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| {
            ((r * 7919 + c * 104_729) % 1013) as i64 - 500
        });
        let row_bytes = (cols * 8) as u64;
        let least = minimum(rows as u64, cols, 8, false);
        assert_eq!(least, 2 * row_bytes);
        let p = sort_and_check(dir.path(), &a, least);
        assert_eq!((p.run_rows, p.runs), (1, 7), "{p:?}");
        // A merged column (at most 7 values) is far shorter than a window.
        assert!(p.levels >= 1 && p.window_bytes >= 7 * 8 * 64, "{p:?}");
        assert!(p.out_window > p.out_rows * 8, "{p:?}");
        // Just below: refused, naming that limit.
        let rt = Runtime::for_tests(least - 1, 2, None, outcore_chunker::CancelToken::new());
        match plan(&rt, rows as u64, cols, 8, false) {
            Err(Error::LimitTooSmall { minimum: m, .. }) => assert_eq!(m, least),
            other => panic!("expected LimitTooSmall, got {other:?}"),
        }
        // Several levels of stripes, and columns long enough for cursors.
        sort_and_check(dir.path(), &a, 6 * row_bytes);
        let tall = ndarray::Array2::from_shape_fn((5000, 3), |(r, c)| {
            ((r * 7919 + c * 104_729) % 1013) as i64
        });
        let p = sort_and_check(dir.path(), &tall, 64 << 10);
        assert!(p.levels > 1, "{p:?}");
    }

    /// When the limit holds the array, the sort runs in memory: the
    /// same rows as the external sort, nothing spilled, the reservation
    /// within the limit; one byte less than it needs, it spills.
    #[test]
    fn a_sort_the_limit_holds_runs_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        for (rows, cols) in [(3000usize, 5usize), (4097, 1), (1, 7)] {
            let a = ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| {
                ((r * 7919 + c * 104_729) % 1013) as i64 - 500
            });
            let path = dir.path().join("x.npy");
            let _ = std::fs::remove_file(&path);
            write_i64(&path, &a);
            let src = ArrayFile::open(&path).unwrap();
            let total = (rows * cols * 8) as u64;
            let token = outcore_chunker::CancelToken::new();
            let rt = Runtime::for_tests(4 * total + (64 << 20), 2, Some(dir.path()), token);
            let p = op_plan(&rt, rows as u64, cols, 8).unwrap();
            let m = p.in_memory.clone().expect("in memory");
            let out = rt.spill().create(total).unwrap();
            let mut report = RunReport::default();
            sort_in_memory::<i64>(&rt, &src, &m, &RowSink::Spill(&out), &mut report).unwrap();
            assert_eq!(report.bytes_spilled, 0);
            assert_eq!((report.bytes_read, report.bytes_written), (total, total));
            assert!(report.peak_reserved <= m.bytes + (m.block_rows * cols as u64 * 8) * 2);
            assert_eq!(rt.budget().reserved(), 0);
            let w = out.map(0, rows * cols * 8).unwrap();
            let got: &[i64] = values(&w).unwrap();
            for c in 0..cols {
                let mut want: Vec<i64> = a.column(c).to_vec();
                want.sort_unstable();
                let col: Vec<i64> = (0..rows).map(|r| got[r * cols + c]).collect();
                assert_eq!(col, want, "column {c} of {rows} x {cols}");
            }
            let token = outcore_chunker::CancelToken::new();
            let tight = Runtime::for_tests(m.bytes - 1, 2, Some(dir.path()), token);
            // Spilled, or refused when even that needs more.
            if let Ok(p) = op_plan(&tight, rows as u64, cols, 8) {
                assert!(p.in_memory.is_none(), "{p:?}");
            }
        }
    }

    #[test]
    fn merges_and_rows_stop_when_cancelled() {
        use outcore_chunker::CancelToken;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let (rows, cols) = (4000usize, 4usize);
        let a = ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| ((r * 31 + c) % 97) as i64);
        write_i64(&path, &a);
        let src = ArrayFile::open(&path).unwrap();
        let token = CancelToken::new();
        let rt = Runtime::for_tests(64 << 10, 2, Some(dir.path()), token.clone());
        let p = plan(&rt, rows as u64, cols, 8, false).unwrap();
        assert!(p.runs > 2 && p.levels > 1, "{p:?}");
        let mut report = RunReport::default();
        let first = rt.spill().create((rows * cols * 8) as u64).unwrap();
        make_runs::<i64>(&rt, &src, &first, &p, false, &mut report).unwrap();
        token.cancel();
        let geo = Geometry {
            rows: rows as u64,
            row_len: cols,
            flat: false,
        };
        let err = merge_level::<i64>(&rt, &first, geo, 0, &p, &mut report)
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
        let out = rt.spill().create((rows * cols * 8) as u64).unwrap();
        let err = write_rows(
            &rt,
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
        assert_eq!(rt.budget().reserved(), 0);
    }
}
