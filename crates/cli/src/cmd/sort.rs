//! `outcore sort` and `outcore cumsum`: whole-array operators along axis
//! 0, written to a new `.npy` file under the memory limit.
//!
//! `sort` is an external merge sort through spill files (sorted runs,
//! k-way merges, then rows written back); `cumsum` one pass in row order
//! with a carry. Both write through [`job::run`], so the output is atomic
//! and the report is the same as `convert`'s.

use anyhow::Result;

use super::job::{self, Job, JobArgs};

/// Arguments of `outcore sort` and `outcore cumsum`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    job: JobArgs,
}

/// The `about` and `long_about` of `outcore sort`.
pub(crate) const SORT_ABOUT: &str =
    "Sort every column of an array (np.sort(x, axis=0)) into a new .npy file, under a memory limit";
/// The long help of `outcore sort`.
pub(crate) const SORT_LONG: &str = "Sort every column of an array (np.sort(x, axis=0)) into a \
     new .npy file, under a memory limit.\n\n\
     Each column (each trailing position of an n-d array) is sorted independently, \
     ascending, NaN last, as NumPy does. Arrays larger than --memory-limit are sorted \
     externally: sorted runs are written to unnamed spill files (--spill-dir), merged \
     k ways at a time (in several levels when the limit is small), and written back as \
     rows. The spill files need up to twice the array's size on disk; nothing is left \
     behind, even after a kill. OUT is written to an unnamed file in its directory and \
     linked into place when complete.\n\n\
     With --json, prints one JSON object with the keys path, out, dtype_in, dtype, \
     shape, seconds, passes, blocks, bytes_read, bytes_written, bytes_spilled, \
     peak_reserved_bytes, peak_rss_bytes, memory_limit_bytes and threads. With \
     --explain, prints the plan (runs, merge levels, fan-in) without reading anything.";

/// The `about` of `outcore cumsum`.
pub(crate) const CUMSUM_ABOUT: &str = "Cumulative sum down the rows (np.cumsum(x, axis=0)) into a new .npy file, under a memory limit";
/// The long help of `outcore cumsum`.
pub(crate) const CUMSUM_LONG: &str = "Cumulative sum down the rows (np.cumsum(x, axis=0)) \
     into a new .npy file, under a memory limit.\n\n\
     Result dtypes as NumPy: bool and signed integers give int64, unsigned integers \
     uint64, floats keep their type and NumPy's row-by-row rounding (bit for bit). An \
     integer total that overflows is an error (NumPy wraps silently). One pass: blocks \
     are read in parallel and summed in row order with a carry. OUT is written to an \
     unnamed file in its directory and linked into place when complete.\n\n\
     With --json, prints one JSON object with the keys of `outcore sort --json`.";

/// Which operator to run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// `np.sort(x, axis=0)`.
    Sort,
    /// `np.cumsum(x, axis=0)`.
    Cumsum,
}

/// Runs `outcore sort` or `outcore cumsum`.
///
/// # Errors
///
/// When the input cannot be opened, OUT exists (without `--force`), the
/// memory limit is too small, the spill directory is full or over its
/// quota, an integer cumsum overflows, or writing fails.
pub(crate) fn run(op: Op, args: Args) -> Result<()> {
    job::run(&args.job, |x| {
        Ok(Job::of(match op {
            Op::Sort => x.sort(),
            Op::Cumsum => x.cumsum(),
        }))
    })
}
