//! `outcore convert`: cast an array to another dtype, into a new `.npy`
//! file, with bounded memory.
//!
//! The input is streamed in blocks, each cast and written at its offset in
//! an unnamed file in the output's directory, linked into place when
//! complete. [`write()`] is shared with `standardize`, which writes another
//! expression the same way.

use std::path::{Path, PathBuf};

use anyhow::Result;
use outcore::{DType, Engine, Expr, OutputSpec};
use serde_json::{Map, Value, json};

use crate::args::{self, DTypeArg, EngineArgs, OutputArgs};
use crate::output;

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
    /// The input .npy file.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// The .npy file to write.
    #[arg(value_name = "OUT")]
    out: PathBuf,

    /// Element type of OUT: f64, f32, f16, i64 .. i8, u64 .. u8, bool, a
    /// NumPy name (float32) or a type string, whose byte order is kept
    /// (<f4 little-endian, >f4 big-endian).
    #[arg(long, value_name = "DTYPE", value_parser = args::parse_dtype)]
    dtype: DTypeArg,

    #[command(flatten)]
    engine: EngineArgs,

    #[command(flatten)]
    output: OutputArgs,

    /// Print one JSON object instead of text, and no progress bar.
    #[arg(long)]
    json: bool,

    /// Print the plan and exit without reading or writing anything.
    #[arg(long)]
    explain: bool,
}

/// Runs `outcore convert`.
///
/// # Errors
///
/// When the input cannot be opened, OUT exists (without `--force`), the
/// memory limit cannot hold one row, or writing fails.
pub(crate) fn run(args: Args) -> Result<()> {
    let engine = args
        .engine
        .build(!args.json && !args.explain, &args.output)?;
    let x = engine.open(&args.input)?;
    let job = Job {
        input: &args.input,
        out: &args.out,
        dtype_in: x.dtype(),
        expr: x.cast(args.dtype.dtype),
        dtype: args.dtype,
        extra: Map::new(),
        json: args.json,
        explain: args.explain,
    };
    write(&engine, job)
}

/// An expression to write to a new file, and how to report it.
#[derive(Debug)]
pub(crate) struct Job<'a> {
    /// The input file (the path errors name when they name no other).
    pub(crate) input: &'a Path,
    /// The output file.
    pub(crate) out: &'a Path,
    /// The input's dtype.
    pub(crate) dtype_in: DType,
    /// What to write (its dtype is `dtype.dtype`).
    pub(crate) expr: Expr,
    /// The output's dtype and byte order.
    pub(crate) dtype: DTypeArg,
    /// Keys the command adds to its JSON object.
    pub(crate) extra: Map<String, Value>,
    /// Print JSON.
    pub(crate) json: bool,
    /// Print the plan instead of running it.
    pub(crate) explain: bool,
}

/// Writes `job.expr` to `job.out` (or explains how it would), and prints
/// the report.
///
/// # Errors
///
/// When OUT exists (and the engine may not overwrite), the memory limit
/// cannot hold one row, reading or writing fails, or stdout cannot be
/// written.
pub(crate) fn write(engine: &Engine, job: Job<'_>) -> Result<()> {
    let byte_order = job.dtype.resolve_byte_order(None)?;
    let shape = job.expr.shape();
    let mut obj = Map::new();
    obj.insert("path".into(), json!(job.input.display().to_string()));
    obj.insert("out".into(), json!(job.out.display().to_string()));
    obj.insert("dtype_in".into(), json!(job.dtype_in.name()));
    obj.insert("dtype".into(), json!(job.dtype.dtype.name()));
    obj.insert("shape".into(), json!(shape));
    obj.extend(job.extra);

    if job.explain {
        let plan = engine
            .explain(vec![job.expr])
            .map_err(|e| output::engine_error(e, job.input))?;
        if job.json {
            obj.extend(output::explain_json(&plan));
            return output::print_json(&Value::Object(obj));
        }
        return output::print_line(plan.to_string().trim_end());
    }

    let spec = OutputSpec::npy(job.dtype.dtype, shape.clone()).byte_order(byte_order);
    let report = engine
        .write(&job.expr, job.out, spec)
        .map_err(|e| output::engine_error(e, job.input))?;
    if job.json {
        obj.extend(output::report_json(&report, engine.threads()));
        return output::print_json(&Value::Object(obj));
    }
    output::print_line(&format!(
        "wrote {}: {} {} (from {}, {})\n{}",
        job.out.display(),
        output::shape_text(&shape),
        job.dtype.dtype.name(),
        job.input.display(),
        job.dtype_in.name(),
        output::report_text(&report),
    ))
}
