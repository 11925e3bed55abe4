//! `outcore cov`, `outcore gram` and `outcore pca`: covariance,
//! correlation, Gram matrices and principal components of the columns of
//! an array of any number of rows, in one streaming pass.
//!
//! The `c × c` matrix is held in memory (and counted in the budget); the
//! rows stream through it block by block. Results print as text or one
//! JSON object; `--out` writes them as `.npy`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use outcore::{AnyArray, DType, Engine, Expr, Matrix, OutputSpec, RunReport};
use serde_json::{Map, Value, json};

use super::stats::write_npy;
use crate::args::{EngineArgs, InputArgs, OutputArgs};
use crate::output;

/// Matrices of more values than this are not printed in JSON (use --out).
const JSON_MAX_VALUES: usize = 1 << 20;

/// Rows and columns of a matrix shown in the text output.
const SHOWN: usize = 6;

/// Arguments of `outcore cov`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Covariance or correlation matrix of the columns (np.cov / np.corrcoef, rowvar=False), with bounded memory",
    long_about = "Covariance (np.cov(x, rowvar=False, ddof=DDOF)) or, with --corr, correlation \
                  (np.corrcoef(x, rowvar=False)) of the columns of a 2-d array of any \
                  number of rows, in one streaming pass under --memory-limit (a 1-d array is \
                  one variable: the result is one value).\n\n\
                  Accumulated in float64 as centred co-moments merged exactly block by \
                  block, so data far from zero keeps its digits; the result is float64 for \
                  every input dtype, as NumPy's. NaN in a column makes its row and column \
                  NaN. The C x C matrix (8 C^2 bytes per block in flight) counts in the \
                  memory limit; with --out, a matrix too large for the limit is computed in \
                  column panels (one pass over the data per panel, written in place; \
                  --explain shows the panels); without --out, or when not even a panel of \
                  one row fits, the run is refused before anything is read, naming the \
                  smallest limit that works.\n\n\
                  With --json, prints one JSON object with the keys path, shape, dtype, op \
                  (\"cov\" or \"corrcoef\"), ddof, result_shape, result (a list of rows, or \
                  null past 1,048,576 values: use --out), out, seconds, passes, blocks, \
                  bytes_read, bytes_written, peak_reserved_bytes, peak_rss_bytes, \
                  memory_limit_bytes and threads. With --explain, prints the plan without \
                  reading the data."
)]
pub(crate) struct CovArgs {
    #[command(flatten)]
    input: InputArgs,

    /// The correlation coefficients instead of the covariance.
    #[arg(long)]
    corr: bool,

    /// Delta degrees of freedom: the divisor is n - ddof (1: the unbiased
    /// estimate, NumPy's default).
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "corr")]
    ddof: u32,

    #[command(flatten)]
    common: MatrixArgs,
}

/// Arguments of `outcore gram`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Gram matrix x.T @ x of the columns, with bounded memory",
    long_about = "Gram matrix x.T @ x of a 2-d array of any number of rows, in one streaming \
                  pass under --memory-limit, on a blocked matrix product (one triangle, \
                  mirrored). Accumulated in float64; the result's dtype is the input's for \
                  floats (float32 stays float32), float64 for integers and bool.\n\n\
                  With --json, prints one JSON object with the keys path, shape, dtype, op \
                  (\"gram\"), result_shape, result (or null past 1,048,576 values: use \
                  --out), out, and the run's keys as `cov` prints them. With --explain, \
                  prints the plan without reading the data."
)]
pub(crate) struct GramArgs {
    #[command(flatten)]
    input: InputArgs,

    #[command(flatten)]
    common: MatrixArgs,
}

/// What `cov` and `gram` share.
#[derive(Debug, clap::Args)]
pub(crate) struct MatrixArgs {
    #[command(flatten)]
    engine: EngineArgs,

    /// Also write the matrix to this .npy file (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Print one JSON object instead of text, and no progress bar.
    #[arg(long)]
    json: bool,

    /// Print the plan and exit without reading the data.
    #[arg(long)]
    explain: bool,
}

/// Runs `outcore cov`.
///
/// # Errors
///
/// When the input cannot be opened or is not 1-d or 2-d, the limit cannot
/// hold the matrix, `--out` cannot be written, or stdout cannot be written.
pub(crate) fn run_cov(args: CovArgs) -> Result<()> {
    let (op, ddof) = if args.corr {
        ("corrcoef", None)
    } else {
        ("cov", Some(args.ddof))
    };
    let what = if args.corr {
        Matrix::Corrcoef
    } else {
        Matrix::Cov { ddof: args.ddof }
    };
    run_matrix(&args.input, &args.common, op, ddof, what, |x: &Expr| {
        if args.corr {
            x.corrcoef()
        } else {
            x.cov(args.ddof)
        }
    })
}

/// Runs `outcore gram`.
///
/// # Errors
///
/// As [`run_cov`]; the input must be 2-d.
pub(crate) fn run_gram(args: GramArgs) -> Result<()> {
    run_matrix(
        &args.input,
        &args.common,
        "gram",
        None,
        Matrix::Gram,
        Expr::gram,
    )
}

fn run_matrix(
    input: &InputArgs,
    common: &MatrixArgs,
    op: &str,
    ddof: Option<u32>,
    what: Matrix,
    make: impl FnOnce(&Expr) -> Expr,
) -> Result<()> {
    let path = input.path.clone();
    let engine = common
        .engine
        .build(!common.json && !common.explain, &OutputArgs::default())?;
    let x = input.open_expr(&engine)?;
    let shape = x.shape();
    let ok = if op == "gram" {
        shape.len() == 2
    } else {
        matches!(shape.len(), 1 | 2)
    };
    if !ok {
        bail!(
            "{}: {op} needs a 2-d array (rows x columns){}; this one has shape {}",
            path.display(),
            if op == "gram" { "" } else { " or a 1-d one" },
            output::shape_text(&shape)
        );
    }
    let m = make(&x);
    let mut head = Map::new();
    head.insert("path".into(), json!(path.display().to_string()));
    head.insert("shape".into(), json!(shape));
    head.insert("dtype".into(), json!(x.dtype().name()));
    head.insert("op".into(), json!(op));
    if let Some(d) = ddof {
        head.insert("ddof".into(), json!(d));
    }
    head.insert("result_shape".into(), json!(m.shape()));

    // With --out, a matrix too large for the limit goes by column panels.
    if let (Some(out), 2) = (&common.out, shape.len()) {
        let plan = engine
            .matrix_panels(&x, what)
            .map_err(|e| output::engine_error(e, &path))?;
        if plan.passes > 1 {
            head.insert("panels".into(), json!(plan.passes));
            head.insert("panel_rows".into(), json!(plan.panel_rows));
            if common.explain {
                if common.json {
                    head.insert("plan".into(), json!(plan.to_string()));
                    return output::print_json(&Value::Object(head));
                }
                return output::print_line(&format!("plan: {plan}"));
            }
            let started = Instant::now();
            engine
                .write_matrix_npy(&x, what, out)
                .map_err(|e| output::engine_error(e, &path))?;
            let seconds = started.elapsed().as_secs_f64();
            if common.json {
                head.insert("result".into(), Value::Null);
                head.insert("out".into(), opt_path(Some(out)));
                head.insert("seconds".into(), json!(seconds));
                return output::print_json(&Value::Object(head));
            }
            let mut fields = output::Fields::new();
            fields
                .add("path", path.display().to_string())
                .add(
                    "array",
                    format!("{} {}", output::shape_text(&shape), x.dtype().name()),
                )
                .add(
                    "result",
                    format!("{op}: {}", output::shape_text(&m.shape())),
                )
                .add("panels", plan.to_string())
                .add("seconds", format!("{seconds:.3}"))
                .add("out", out.display().to_string());
            return output::print_line(fields.render().trim_end());
        }
    }

    if common.explain {
        let plan = engine
            .explain(vec![m])
            .map_err(|e| output::engine_error(e, &path))?;
        if common.json {
            head.extend(output::explain_json(&plan));
            return output::print_json(&Value::Object(head));
        }
        return output::print_line(plan.to_string().trim_end());
    }

    let (value, report) = engine.compute_with_report(&m).map_err(|e| {
        let panels = matches!(e, outcore::Error::LimitTooSmall { .. }) && shape.len() == 2;
        let err = output::engine_error(e, &path);
        if panels {
            err.context(format!(
                "{}: the {op} matrix does not fit the limit in one pass (with --out FILE it is \
                 computed in column panels)",
                path.display()
            ))
        } else {
            err
        }
    })?;
    if let Some(out) = &common.out {
        write_npy(out, &value).with_context(|| format!("{}: cannot write", out.display()))?;
    }
    if common.json {
        head.insert("result".into(), matrix_json(&value));
        head.insert("out".into(), opt_path(common.out.as_deref()));
        head.extend(output::report_json(&report, engine.threads()));
        return output::print_json(&Value::Object(head));
    }
    let mut fields = output::Fields::new();
    fields
        .add("path", path.display().to_string())
        .add(
            "array",
            format!("{} {}", output::shape_text(&shape), x.dtype().name()),
        )
        .add(
            "result",
            format!(
                "{op}{}: {} {}",
                ddof.map_or(String::new(), |d| format!(" (ddof={d})")),
                output::shape_text(&m.shape()),
                value.dtype().name()
            ),
        )
        .add("run", output::report_text(&report));
    if let Some(out) = &common.out {
        fields.add("out", out.display().to_string());
    }
    let mut text = fields.render();
    text.push('\n');
    text.push_str(&matrix_text(&value));
    output::print_line(text.trim_end())
}

/// Arguments of `outcore pca`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Principal component analysis of the rows (scikit-learn's PCA), with bounded memory",
    long_about = "Principal component analysis of the rows of a 2-d array of any number of \
                  rows: one streaming pass computes the column means and the C x C \
                  covariance (centred co-moments, float64), whose symmetric \
                  eigen-decomposition gives the principal axes, as scikit-learn's \
                  PCA(n_components=K, svd_solver=\"full\") reports them (components signed so \
                  that each one's largest entry in magnitude is positive).\n\n\
                  --out DIR writes components.npy (K x C), explained_variance.npy, \
                  explained_variance_ratio.npy, singular_values.npy and mean.npy (replacing \
                  files of those names); --transform OUT writes (x - mean) @ components.T \
                  (N x K, float64) in one more streaming pass, atomically (an existing OUT \
                  needs --force).\n\n\
                  With --json, prints one JSON object with the keys path, shape, dtype, k, \
                  explained_variance, explained_variance_ratio, singular_values, \
                  noise_variance, mean, components (or null past 1,048,576 values), out, \
                  files, transform and seconds."
)]
pub(crate) struct PcaArgs {
    #[command(flatten)]
    input: InputArgs,

    /// Components to keep (1 to min(rows, columns)).
    #[arg(short = 'k', long = "components", value_name = "K")]
    k: usize,

    #[command(flatten)]
    engine: EngineArgs,

    #[command(flatten)]
    output_args: OutputArgs,

    /// Write the fitted arrays to DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Write the projected rows (x - mean) @ components.T to this .npy file.
    #[arg(long, value_name = "OUT")]
    transform: Option<PathBuf>,

    /// Print one JSON object instead of text, and no progress bar.
    #[arg(long)]
    json: bool,
}

/// Runs `outcore pca`.
///
/// # Errors
///
/// When the input cannot be opened or is not 2-d, K is out of range, the
/// data has NaN or inf, the limit cannot hold the covariance, or an
/// output cannot be written.
pub(crate) fn run_pca(args: PcaArgs) -> Result<()> {
    let path = args.input.path.clone();
    let started = Instant::now();
    let engine: Engine = args.engine.build(!args.json, &args.output_args)?;
    let x = args.input.open_expr(&engine)?;
    let shape = x.shape();
    if shape.len() != 2 {
        bail!(
            "{}: pca needs a 2-d array (rows x columns); this one has shape {}",
            path.display(),
            output::shape_text(&shape)
        );
    }
    let fit = engine
        .pca(&x, args.k)
        .map_err(|e| output::engine_error(e, &path))?;
    let arrays: Vec<(&str, AnyArray)> = vec![
        (
            "components",
            AnyArray::from(fit.components.clone().into_dyn()),
        ),
        (
            "explained_variance",
            AnyArray::from(fit.explained_variance.clone().into_dyn()),
        ),
        (
            "explained_variance_ratio",
            AnyArray::from(fit.explained_variance_ratio.clone().into_dyn()),
        ),
        (
            "singular_values",
            AnyArray::from(fit.singular_values.clone().into_dyn()),
        ),
        ("mean", AnyArray::from(fit.mean.clone().into_dyn())),
    ];
    let mut files = Map::new();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the --out directory", dir.display()))?;
        for (name, a) in &arrays {
            let file = dir.join(format!("{name}.npy"));
            write_npy(&file, a).with_context(|| format!("{}: cannot write", file.display()))?;
            files.insert((*name).into(), json!(file.display().to_string()));
        }
    }
    let mut transform_report: Option<RunReport> = None;
    if let Some(out) = &args.transform {
        let z = fit.transform(&x);
        let spec = OutputSpec::npy(DType::F64, z.shape());
        transform_report = Some(
            engine
                .write(&z, out, spec)
                .map_err(|e| output::engine_error(e, &path))?,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let mut obj = Map::new();
        obj.insert("path".into(), json!(path.display().to_string()));
        obj.insert("shape".into(), json!(shape));
        obj.insert("dtype".into(), json!(x.dtype().name()));
        obj.insert("k".into(), json!(args.k));
        for (name, a) in &arrays {
            let v = if *name == "components" {
                matrix_json(a)
            } else {
                Value::Array(a.to_f64().iter().map(|&v| output::float(v)).collect())
            };
            obj.insert((*name).into(), v);
        }
        obj.insert("noise_variance".into(), output::float(fit.noise_variance));
        obj.insert("out".into(), opt_path(args.out.as_deref()));
        obj.insert("files".into(), Value::Object(files));
        obj.insert("transform".into(), opt_path(args.transform.as_deref()));
        obj.insert("seconds".into(), json!(seconds));
        return output::print_json(&Value::Object(obj));
    }
    let list = |a: &ndarray::Array1<f64>| {
        a.iter()
            .take(SHOWN)
            .map(|&v| output::scalar_text(outcore::Scalar::Float(v)))
            .collect::<Vec<_>>()
            .join(", ")
            + if a.len() > SHOWN { ", ..." } else { "" }
    };
    let mut fields = output::Fields::new();
    fields
        .add("path", path.display().to_string())
        .add(
            "array",
            format!("{} {}", output::shape_text(&shape), x.dtype().name()),
        )
        .add("components", format!("{} of {}", args.k, shape[1]))
        .add("explained variance", list(&fit.explained_variance))
        .add("ratio", list(&fit.explained_variance_ratio))
        .add("seconds", format!("{seconds:.3}"));
    if let Some(dir) = &args.out {
        fields.add("out", dir.display().to_string());
    }
    if let (Some(out), Some(r)) = (&args.transform, &transform_report) {
        fields.add(
            "transform",
            format!("{} ({})", out.display(), output::report_text(r)),
        );
    }
    let mut text = fields.render();
    text.push('\n');
    text.push_str(&matrix_text(&arrays[0].1));
    output::print_line(text.trim_end())
}

/// A matrix as a JSON list of rows (a number for a 0-d value), or null
/// when it is too large to print.
fn matrix_json(value: &AnyArray) -> Value {
    if value.len() > JSON_MAX_VALUES {
        return Value::Null;
    }
    let v = value.to_f64();
    match v.ndim() {
        0 => v.iter().next().map_or(Value::Null, |&x| output::float(x)),
        1 => Value::Array(v.iter().map(|&x| output::float(x)).collect()),
        _ => {
            let cols = v.shape()[1];
            let flat: Vec<Value> = v.iter().map(|&x| output::float(x)).collect();
            Value::Array(
                flat.chunks(cols.max(1))
                    .map(|r| Value::Array(r.to_vec()))
                    .collect(),
            )
        }
    }
}

/// The top-left corner of a matrix as text rows.
fn matrix_text(value: &AnyArray) -> String {
    let v = value.to_f64();
    if v.ndim() == 0 {
        return v.iter().next().map_or(String::new(), |&x| {
            output::scalar_text(outcore::Scalar::Float(x))
        });
    }
    let (rows, cols) = match v.shape() {
        [r, c] => (*r, *c),
        [n] => (1, *n),
        _ => return String::new(),
    };
    let flat: Vec<f64> = v.iter().copied().collect();
    let mut text = String::new();
    for r in 0..rows.min(SHOWN) {
        let cells: Vec<String> = (0..cols.min(SHOWN))
            .map(|c| format!("{:>12}", format_cell(flat[r * cols + c])))
            .collect();
        text.push_str(&cells.join(" "));
        if cols > SHOWN {
            text.push_str(" ...");
        }
        text.push('\n');
    }
    if rows > SHOWN || cols > SHOWN {
        text.push_str(&format!(
            "(top-left {} x {} of {rows} x {cols} shown; use --json or --out for all)\n",
            rows.min(SHOWN),
            cols.min(SHOWN)
        ));
    }
    text
}

fn format_cell(x: f64) -> String {
    if x.is_finite() && x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) {
        format!("{x:.4e}")
    } else {
        format!("{x:.6}")
    }
}

fn opt_path(p: Option<&Path>) -> Value {
    p.map_or(Value::Null, |p| Value::from(p.display().to_string()))
}
