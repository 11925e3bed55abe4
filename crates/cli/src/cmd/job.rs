//! What the commands that write one array (`convert`, `standardize`,
//! `sort`, `cumsum`) share: their arguments (IN — a `.npy` file or raw
//! binary with `--raw` —, OUT, the engine and output options, `--json`,
//! `--explain`) and how they run and report.
//!
//! A command flattens [`JobArgs`] last into its `Args` (so its own options
//! come first in `--help`, before the engine's) and calls [`run`] with a
//! closure that turns the opened input into the [`Job`] to write: the
//! expression, its dtype, and any keys the command adds to its JSON
//! object. [`run`] does the rest the same way for every command: it builds
//! the engine (a progress bar unless `--json` or `--explain`; `--force`
//! and `--no-fsync`), opens IN, and then writes OUT atomically — an
//! existing OUT is refused without `--force` — or prints the plan, and
//! prints the report as text or one JSON object.

use std::path::PathBuf;

use anyhow::Result;
use outcore::{Expr, OutputSpec};
use serde_json::{Map, Value, json};

use crate::args::{DTypeArg, EngineArgs, OutputArgs, RawArgs};
use crate::output;

/// The arguments of every command that writes one array.
#[derive(Debug, clap::Args)]
pub(crate) struct JobArgs {
    /// The input: a .npy file, or raw binary with --raw.
    #[arg(value_name = "IN")]
    pub(crate) input: PathBuf,

    /// The .npy file to write.
    #[arg(value_name = "OUT")]
    out: PathBuf,

    #[command(flatten)]
    raw: RawArgs,

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

/// What a command writes, made from its opened input.
#[derive(Debug)]
pub(crate) struct Job {
    /// What to write (its dtype is `dtype.dtype`).
    pub(crate) expr: Expr,
    /// The output's dtype and byte order.
    pub(crate) dtype: DTypeArg,
    /// Keys the command adds to its JSON object, after `shape`.
    pub(crate) extra: Map<String, Value>,
    /// The input, when columns of OUT that are NaN because the input
    /// holds NaN deserve a note on stderr (see [`nan_note`]).
    pub(crate) nan_hint: Option<Expr>,
}

impl Job {
    /// `expr` written in its own dtype, native byte order, with no extra
    /// JSON keys.
    pub(crate) fn of(expr: Expr) -> Job {
        Job {
            dtype: DTypeArg {
                dtype: expr.dtype(),
                byte_order: None,
            },
            expr,
            extra: Map::new(),
            nan_hint: None,
        }
    }
}

/// Runs a command that writes one array: builds the engine from `args`,
/// opens IN, asks `make` what to write, writes it to OUT (or explains how
/// it would) and prints the report.
///
/// # Errors
///
/// When the input cannot be opened, `make` fails, OUT exists (without
/// `--force`), the memory limit cannot hold one row, reading, spilling or
/// writing fails, or stdout cannot be written.
pub(crate) fn run(args: &JobArgs, make: impl FnOnce(Expr) -> Result<Job>) -> Result<()> {
    let engine = args
        .engine
        .build(!args.json && !args.explain, &args.output)?;
    let x = args.raw.open_expr(&engine, &args.input, None)?;
    let dtype_in = x.dtype();
    let job = make(x)?;

    let byte_order = job.dtype.resolve_byte_order(None)?;
    let shape = job.expr.shape();
    let mut obj = Map::new();
    obj.insert("path".into(), json!(args.input.display().to_string()));
    obj.insert("out".into(), json!(args.out.display().to_string()));
    obj.insert("dtype_in".into(), json!(dtype_in.name()));
    obj.insert("dtype".into(), json!(job.dtype.dtype.name()));
    obj.insert("shape".into(), json!(shape));
    obj.extend(job.extra);

    if args.explain {
        let plan = engine
            .explain(vec![job.expr])
            .map_err(|e| output::engine_error(e, &args.input))?;
        if args.json {
            obj.extend(output::explain_json(&plan));
            return output::print_json(&Value::Object(obj));
        }
        return output::print_line(plan.to_string().trim_end());
    }

    let spec = OutputSpec::npy(job.dtype.dtype, shape.clone()).byte_order(byte_order);
    let report = engine
        .write(&job.expr, &args.out, spec)
        .map_err(|e| output::engine_error(e, &args.input))?;
    if args.json {
        obj.extend(output::report_json(&report, engine.threads()));
        return output::print_json(&Value::Object(obj));
    }
    output::print_line(&format!(
        "wrote {}: {} {} (from {}, {})\n{}",
        args.out.display(),
        output::shape_text(&shape),
        job.dtype.dtype.name(),
        args.input.display(),
        dtype_in.name(),
        output::report_text(&report),
    ))?;
    match &job.nan_hint {
        Some(x) => nan_note(&engine, x, &args.out),
        None => Ok(()),
    }
}

/// Says once on stderr how many columns of `out` are NaN because the
/// input `x` holds NaN there (`standardize` without `--skipna`). A column
/// whose mean or std is NaN is NaN in every row, so the first row of OUT
/// is read first (one row); only when it holds NaN is the input's NaN
/// counted per column, in one more read.
fn nan_note(engine: &outcore::Engine, x: &Expr, out: &std::path::Path) -> Result<()> {
    let file = outcore::ArrayFile::open(out)?;
    if file.meta().rows() == 0 || !file.meta().dtype.is_float() {
        return Ok(());
    }
    let first_nan = first_row_nan(&file)?;
    if !first_nan.iter().any(|&n| n) {
        return Ok(());
    }
    let counts = engine.compute(x.isnan().count_nonzero(0))?;
    let cols = counts.len();
    let nan_cols = counts
        .scalars()
        .zip(first_nan.iter().chain(std::iter::repeat(&false)))
        .filter(|(c, nan)| {
            **nan && !matches!(c, outcore::Scalar::Int(0) | outcore::Scalar::UInt(0))
        })
        .count();
    if nan_cols > 0 {
        eprintln!(
            "note: {nan_cols} of {cols} columns of {} are NaN because the input holds NaN; \
             use standardize --skipna to skip NaN (np.nanmean, np.nanstd)",
            out.display()
        );
    }
    Ok(())
}

/// Which values of the first row of a float array are NaN.
fn first_row_nan(file: &outcore::ArrayFile) -> Result<Vec<bool>> {
    let block = file.read_rows(0..1)?;
    Ok(match file.meta().dtype {
        outcore::DType::F64 => block
            .as_slice::<f64>()?
            .iter()
            .map(|v| v.is_nan())
            .collect(),
        outcore::DType::F32 => block
            .as_slice::<f32>()?
            .iter()
            .map(|v| v.is_nan())
            .collect(),
        outcore::DType::F16 => block
            .as_slice::<outcore::f16>()?
            .iter()
            .map(|v| v.is_nan())
            .collect(),
        _ => Vec::new(),
    })
}
