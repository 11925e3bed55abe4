//! `outcore convert`: cast an array to another dtype, into a new `.npy`
//! file, with bounded memory.
//!
//! The input is streamed in blocks, each cast and written at its offset in
//! an unnamed file in the output's directory, linked into place when
//! complete (through [`job::run`], as every command that writes one array).

use anyhow::Result;
use serde_json::Map;

use super::job::{self, Job, JobArgs};
use crate::args::{self, DTypeArg};

/// Arguments of `outcore convert`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Cast an array to another dtype, into a new .npy file, with bounded memory",
    long_about = "Cast an array to another dtype, into a new .npy file, with bounded memory.\n\n\
                  Like np.load(IN).astype(DTYPE) saved to OUT, but streamed in blocks under \
                  --memory-limit. Floats narrow to the nearest value (overflowing to \
                  +-inf); floats to integers truncate toward zero and saturate (NaN -> 0); \
                  integers narrow by wrapping; anything to bool is x != 0. OUT is written \
                  to an unnamed file in its directory and linked into place when complete: \
                  it never exists half-written, even after a kill.\n\n\
                  With --json, prints one JSON object with the keys path, out, dtype_in, \
                  dtype, shape, seconds, passes, blocks, bytes_read, bytes_written, \
                  peak_reserved_bytes, peak_rss_bytes, memory_limit_bytes and threads. \
                  With --explain, prints the plan without reading or writing anything."
)]
pub(crate) struct Args {
    /// Element type of OUT: f64, f32, f16, i64 .. i8, u64 .. u8, bool, a
    /// NumPy name (float32) or a type string, whose byte order is kept
    /// (<f4 little-endian, >f4 big-endian).
    #[arg(long, value_name = "DTYPE", value_parser = args::parse_dtype)]
    dtype: DTypeArg,

    #[command(flatten)]
    job: JobArgs,
}

/// Runs `outcore convert`.
///
/// # Errors
///
/// When the input cannot be opened, OUT exists (without `--force`), the
/// memory limit cannot hold one row, or writing fails.
pub(crate) fn run(args: Args) -> Result<()> {
    job::run(&args.job, |x| {
        Ok(Job {
            expr: x.cast(args.dtype.dtype),
            dtype: args.dtype,
            extra: Map::new(),
            nan_hint: None,
        })
    })
}
