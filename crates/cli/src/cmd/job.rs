//! What the commands that write one array (`convert`, `standardize`,
//! `sort`, `cumsum`) share: their arguments (IN, OUT, the engine and
//! output options, `--json`, `--explain`) and how they run and report.
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

use crate::args::{DTypeArg, EngineArgs, OutputArgs};
use crate::output;

/// The arguments of every command that writes one array.
#[derive(Debug, clap::Args)]
pub(crate) struct JobArgs {
    /// The input .npy file.
    #[arg(value_name = "IN")]
    pub(crate) input: PathBuf,

    /// The .npy file to write.
    #[arg(value_name = "OUT")]
    out: PathBuf,

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
    let x = engine.open(&args.input)?;
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
    ))
}
