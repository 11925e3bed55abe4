//! `outcore standardize`: `(x - x.mean(0)) / x.std(0)` into a new `.npy`
//! file, for an array of any size.
//!
//! Two passes under the memory limit: one computes each column's mean and
//! standard deviation, the next streams the array again and writes the
//! standardized values (see [`job::run`]).

use anyhow::{Result, bail};
use outcore::{ByteOrder, DType};
use serde_json::{Map, json};

use super::job::{self, Job, JobArgs};
use crate::args::{self, DTypeArg};

/// Arguments of `outcore standardize`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Standardize each column, (x - mean) / std, into a new .npy file, with bounded memory",
    long_about = "Standardize each column, (x - mean) / std, into a new .npy file, with \
                  bounded memory.\n\n\
                  Writes (x - x.mean(axis=0)) / x.std(axis=0, ddof=DDOF) as NumPy computes \
                  it: a column is everything along the first axis (one per element of the \
                  trailing shape; a 1-d array is one column). Runs in two passes under \
                  --memory-limit: one for the means and standard deviations, one to write. \
                  Integer and bool inputs are computed in float64; float inputs at their \
                  own precision or wider, then cast to --dtype. A constant column (std 0) \
                  gives NaN, as in NumPy (0/0); with ddof >= the number of rows, std is \
                  NaN and so is every value. A column holding NaN is all NaN (NumPy's \
                  mean and std of it are NaN; a note on stderr says so); with --skipna \
                  the mean and std skip NaN (np.nanmean, np.nanstd) and only the NaN \
                  stay NaN. OUT is written to an unnamed file in its directory and \
                  linked into place when complete.\n\n\
                  With --json, prints one JSON object with the keys path, out, dtype_in, \
                  dtype, shape, ddof, skipna, seconds, passes, blocks, bytes_read, bytes_written, \
                  peak_reserved_bytes, peak_rss_bytes, memory_limit_bytes and threads. \
                  With --explain, prints the plan (2 passes) without reading or writing \
                  anything."
)]
pub(crate) struct Args {
    /// Element type of OUT (f64, f32, f16, or a type string such as <f4).
    /// By default, the input's dtype for float inputs, float64 otherwise.
    #[arg(long, value_name = "DTYPE", value_parser = args::parse_dtype)]
    dtype: Option<DTypeArg>,

    /// Delta degrees of freedom of the standard deviation: the divisor is
    /// n - ddof (0: population, 1: sample).
    #[arg(long, value_name = "N", default_value_t = 0)]
    ddof: u32,

    /// Skip NaN: the mean and standard deviation of the values that are
    /// not NaN (np.nanmean, np.nanstd); NaN stay NaN in OUT.
    #[arg(long)]
    skipna: bool,

    #[command(flatten)]
    job: JobArgs,
}

/// Runs `outcore standardize`.
///
/// # Errors
///
/// When the input cannot be opened or is 0-d, OUT exists (without
/// `--force`), the memory limit cannot hold one row, or writing fails.
pub(crate) fn run(args: Args) -> Result<()> {
    job::run(&args.job, |x| {
        if x.shape().is_empty() {
            bail!(
                "{}: standardize needs an array of at least 1 dimension; this one is 0-d",
                args.job.input.display()
            );
        }
        let dtype_in = x.dtype();
        let dtype = args.dtype.unwrap_or(DTypeArg {
            dtype: if dtype_in.is_float() {
                dtype_in
            } else {
                DType::F64
            },
            byte_order: Some(ByteOrder::NATIVE),
        });
        let x = if dtype_in.is_float() {
            x
        } else {
            x.cast(DType::F64)
        };
        let z = if args.skipna {
            (&x - &x.nanmean(0)) / &x.nanstd(0, args.ddof)
        } else {
            (&x - &x.mean(0)) / &x.std(0, args.ddof)
        };
        let expr = if z.dtype() == dtype.dtype {
            z
        } else {
            z.cast(dtype.dtype)
        };
        let mut extra = Map::new();
        extra.insert("ddof".into(), json!(args.ddof));
        extra.insert("skipna".into(), json!(args.skipna));
        // Without --skipna, a column holding NaN is all NaN: said once.
        let nan_hint = (dtype_in.is_float() && !args.skipna).then(|| x.clone());
        Ok(Job {
            expr,
            dtype,
            extra,
            nan_hint,
        })
    })
}
