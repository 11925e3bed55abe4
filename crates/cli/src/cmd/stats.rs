//! `outcore stats`: NumPy's reductions over an array of any size.
//!
//! Every requested reduction (`np.sum`, `np.mean`, `np.std`, ... over all
//! elements, `axis=0` or `axis=1`) is computed in one streaming pass under
//! the memory limit. Results print as a table or one JSON object; `--out`
//! also writes each as a `.npy` file, which is how axis-1 results of large
//! inputs (one value per row) are best taken away.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::{ArrayD, ArrayView2};
use outcore::kernels::reduce::{kind_named, kinds};
use outcore::{AnyArray, ArrayWriter, Element, Expr, OutputSpec, ReduceAxis, ReduceOp};
use serde_json::{Map, Value, json};

use crate::args::{EngineArgs, InputArgs, OutputArgs};
use crate::output::{self, Fields, JsonItem, JsonList, JsonObject};

/// Values of an axis-0 or axis-1 result shown per op in the text output.
const SHOWN_VALUES: usize = 5;

/// Arguments of `outcore stats`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Compute reductions (sum, mean, std, min, max, median, quantiles, ...) over an array of any size",
    long_about = "Compute reductions (sum, mean, std, min, max, ...) over an array of any size \
                  in one pass, and exact medians and quantiles (median, quantile:0.9) in a \
                  few more read passes.\n\n\
                  The array is streamed in blocks of rows by --threads workers, holding at \
                  most --memory-limit bytes of data; all --ops are computed in the same \
                  pass. Results follow NumPy (np.sum, np.nanstd, ...) with exact integer \
                  sums and float sums accumulated in float64. --axis all reduces every \
                  element to one value, --axis 0 gives one value per column (the trailing \
                  shape, flattened in C order), --axis 1 one value per row.\n\n\
                  With --json, prints one JSON object with the keys path, shape, dtype, \
                  axis (\"all\", \"0\" or \"1\"), ops (as given), ddof, results (op as \
                  given -> a number for --axis all, a list of numbers for --axis 0 or 1), \
                  out and files (the --out directory and the file of each op, or null \
                  and {}), nan_count (the input's NaN: 0 for integers and bool; for \
                  floats counted in the same pass when the limit allows, else only once a \
                  result is NaN, and null when not counted), seconds, passes, blocks, bytes_read, bytes_written, \
                  peak_reserved_bytes, peak_rss_bytes, memory_limit_bytes and threads. \
                  Integer results are exact JSON integers; NaN and infinities are the \
                  strings \"nan\", \"inf\" and \"-inf\".\n\n\
                  When a result is NaN because the input holds NaN, a note on stderr \
                  (not with --json) says so once and names the ops that skip NaN \
                  (nanmean, nanmedian, nanquantile:Q, ...).\n\n\
                  With --explain, prints the plan (passes, block sizes, bytes, estimated \
                  peak memory against the limit) without reading the data; with --json \
                  too, as one JSON object whose passes key lists the passes."
)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,

    /// Reduce over all elements, down the rows (0: one value per column),
    /// or along each row (1: one value per row).
    #[arg(long, value_enum, default_value = "all")]
    axis: Axis,

    /// Reductions, comma-separated: sum, mean, min, max, var, std, argmin,
    /// argmax, nansum, nanmean, nanmin, nanmax, nanvar, nanstd, any, all,
    /// count_nonzero, ptp, and the exact median, quantile:Q (0 <= Q <= 1,
    /// NumPy's linear interpolation), nanmedian and nanquantile:Q (NaN
    /// skipped, as np.nanmedian / np.nanquantile).
    #[arg(long, value_name = "OPS", value_delimiter = ',',
          default_value = "sum,mean,std,min,max", value_parser = parse_op)]
    ops: Vec<OpName>,

    /// Delta degrees of freedom of var, std, nanvar and nanstd: the divisor
    /// is n - ddof (0: population, 1: sample).
    #[arg(long, value_name = "N", default_value_t = 0)]
    ddof: u32,

    #[command(flatten)]
    engine: EngineArgs,

    /// Also write each result to `DIR/<op>.npy` (DIR is created if missing;
    /// files of the same name are replaced).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Print one JSON object instead of text, and no progress bar.
    #[arg(long)]
    json: bool,

    /// Print the plan and exit without reading the data.
    #[arg(long)]
    explain: bool,
}

/// The `--axis` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Axis {
    /// Over every element.
    #[value(name = "all")]
    All,
    /// Down the rows: one value per column.
    #[value(name = "0")]
    Rows,
    /// Along each row: one value per row.
    #[value(name = "1")]
    Columns,
}

impl Axis {
    /// The engine's axis.
    fn reduce_axis(self) -> ReduceAxis {
        match self {
            Axis::All => ReduceAxis::All,
            Axis::Rows => ReduceAxis::Axis0,
            Axis::Columns => ReduceAxis::Axis1,
        }
    }

    /// The name as given on the command line (and in JSON).
    fn name(self) -> &'static str {
        match self {
            Axis::All => "all",
            Axis::Rows => "0",
            Axis::Columns => "1",
        }
    }

    /// The dimensions an array needs for this axis.
    fn min_ndim(self) -> usize {
        match self {
            Axis::All => 0,
            Axis::Rows => 1,
            Axis::Columns => 2,
        }
    }
}

/// An op of `--ops` as given (trimmed), known to be valid.
#[derive(Clone, Debug, PartialEq)]
struct OpName(String, StatOp);

/// What an op of `--ops` computes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StatOp {
    /// A streaming reduction (ddof applied later).
    Reduce(ReduceOp),
    /// The exact median.
    Median,
    /// The exact quantile `q`.
    Quantile(f64),
    /// The exact median of the values that are not NaN.
    NanMedian,
    /// The exact quantile `q` of the values that are not NaN.
    NanQuantile(f64),
    /// A reduction that is a kernel of its own (`any`, `ptp`, ...), by its
    /// registered name.
    Kind(&'static str),
}

impl OpName {
    /// The op, with `ddof` for the var/std variants.
    fn op(&self, ddof: u32) -> Result<StatOp> {
        Ok(match self.1 {
            // Checked by `parse_op`; an error rather than a panic all the same.
            StatOp::Reduce(_) => StatOp::Reduce(
                ReduceOp::parse(&self.0, ddof)
                    .ok_or_else(|| anyhow::anyhow!("unknown op '{}'", self.0))?,
            ),
            other => other,
        })
    }
}

/// Parses one name of `--ops` (clap value parser).
fn parse_op(input: &str) -> Result<OpName, String> {
    let name = input.trim();
    if name.is_empty() {
        return Err(format!(
            "empty op name in --ops (valid ops: {})",
            valid_ops()
        ));
    }
    match name {
        "median" => return Ok(OpName(name.to_string(), StatOp::Median)),
        "nanmedian" => return Ok(OpName(name.to_string(), StatOp::NanMedian)),
        _ => {}
    }
    for (prefix, nan) in [("quantile:", false), ("nanquantile:", true)] {
        if let Some(q) = name.strip_prefix(prefix) {
            return match q.trim().parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(OpName(
                    name.to_string(),
                    if nan {
                        StatOp::NanQuantile(v)
                    } else {
                        StatOp::Quantile(v)
                    },
                )),
                _ => Err(format!(
                    "bad quantile '{name}': expected {prefix}Q with 0 <= Q <= 1, e.g. {prefix}0.9"
                )),
            };
        }
    }
    if let Some(op) = ReduceOp::parse(name, 0) {
        return Ok(OpName(name.to_string(), StatOp::Reduce(op)));
    }
    match kind_named(name) {
        Some(kind) => Ok(OpName(name.to_string(), StatOp::Kind(kind.name()))),
        None => Err(format!("unknown op '{name}' (valid ops: {})", valid_ops())),
    }
}

/// The names `--ops` accepts, comma-separated.
fn valid_ops() -> String {
    let mut names: Vec<&str> = ReduceOp::ALL.map(ReduceOp::name).to_vec();
    names.extend(kinds().iter().map(|k| k.name()));
    names.extend(["median", "quantile:Q", "nanmedian", "nanquantile:Q"]);
    names.join(", ")
}

/// Runs `outcore stats`.
///
/// # Errors
///
/// When the file cannot be opened or is not a valid array, the axis does
/// not exist, the memory limit cannot hold one row, a reduction fails
/// (min of an empty array, an integer sum that overflows), `--out` cannot
/// be written, or stdout cannot be written.
pub(crate) fn run(args: Args) -> Result<()> {
    let path = args.input.path.clone();
    let engine = args
        .engine
        .build(!args.json && !args.explain, &OutputArgs::default())?;
    let x = args.input.open_expr(&engine)?;
    let shape = x.shape();
    if shape.len() < args.axis.min_ndim() {
        bail!(
            "{}: --axis {} needs an array of at least {} dimension{}; this one has shape {}",
            path.display(),
            args.axis.name(),
            args.axis.min_ndim(),
            if args.axis.min_ndim() == 1 { "" } else { "s" },
            output::shape_text(&shape)
        );
    }

    // Each distinct op once; each distinct key (the op as given) once.
    let mut ops: Vec<StatOp> = Vec::new();
    let mut keys: Vec<(String, usize)> = Vec::new();
    for name in &args.ops {
        let op = name.op(args.ddof)?;
        let index = match ops.iter().position(|&o| o == op) {
            Some(i) => i,
            None => {
                ops.push(op);
                ops.len() - 1
            }
        };
        if !keys.iter().any(|(k, _)| *k == name.0) {
            keys.push((name.0.clone(), index));
        }
    }
    let axis = args.axis.reduce_axis();
    let exprs: Vec<Expr> = ops
        .iter()
        .map(|&op| {
            Ok(match op {
                StatOp::Reduce(op) => x.reduce(op, axis),
                StatOp::Median => x.median(axis),
                StatOp::Quantile(q) => x.quantile(q, axis),
                StatOp::NanMedian => x.nanmedian(axis),
                StatOp::NanQuantile(q) => x.nanquantile(q, axis),
                StatOp::Kind(name) => x.reduce_kind(
                    kind_named(name).ok_or_else(|| anyhow::anyhow!("unknown op '{name}'"))?,
                    axis,
                ),
            })
        })
        .collect::<Result<_>>()?;
    // The NaN of a float input, counted in the pass of the streamed
    // reductions (no extra read) when the limit also holds that count's
    // scratch; otherwise (or for quantiles alone) counted only once a
    // result is NaN (see `nan_note`).
    let float = x.dtype().is_float();
    let mut exprs = exprs;
    let mut fused_nan_count = false;
    if float
        && !args.explain
        && ops
            .iter()
            .any(|op| matches!(op, StatOp::Reduce(_) | StatOp::Kind(_)))
    {
        let mut with = exprs.clone();
        with.push(x.isnan().count_nonzero(ReduceAxis::All));
        // Planning reads nothing: the count joins the run only if the
        // plan with it fits the limit as well.
        if engine.explain(with.clone()).is_ok() {
            exprs = with;
            fused_nan_count = true;
        }
    }
    let head = Head {
        path: path.display().to_string(),
        shape,
        dtype: x.dtype().name(),
        axis: args.axis,
        ops: args.ops.iter().map(|o| o.0.clone()).collect(),
        ddof: args.ddof,
    };

    if args.explain {
        let plan = engine
            .explain(exprs)
            .map_err(|e| output::engine_error(e, &path))?;
        if args.json {
            let mut obj = head.json();
            obj.extend(output::explain_json(&plan));
            return output::print_json(&Value::Object(obj));
        }
        return output::print_line(plan.to_string().trim_end());
    }

    let (values, report) = engine
        .compute_with_report(exprs)
        .map_err(|e| output::engine_error(e, &path))?;
    let results: Vec<(String, &AnyArray)> = keys
        .iter()
        .map(|(key, i)| (key.clone(), &values[*i]))
        .collect();
    let files = match &args.out {
        Some(dir) => write_results(dir, &results)?,
        None => Vec::new(),
    };
    let mut nan_count: Option<u64> = if !float {
        Some(0)
    } else if fused_nan_count {
        values
            .last()
            .and_then(AnyArray::as_f64_scalar)
            .map(|n| n as u64)
    } else {
        None
    };
    let affected = nan_affected(&results);
    if nan_count.is_none() && !affected.is_empty() {
        // A result is NaN and the NaN were not counted: one more read.
        nan_count = engine
            .compute(x.isnan().count_nonzero(ReduceAxis::All))
            .map_err(|e| output::engine_error(e, &path))?
            .as_f64_scalar()
            .map(|n| n as u64);
    }

    if args.json {
        // Streamed: a per-row result of a large input must not become a
        // JSON tree in memory.
        let mut res = Vec::with_capacity(results.len());
        for (key, value) in &results {
            let item = match value.scalars().next() {
                Some(v) if args.axis == Axis::All && value.len() == 1 => {
                    JsonItem::Value(output::scalar(v))
                }
                _ => JsonItem::List(JsonList(value)),
            };
            res.push((key.clone(), item));
        }
        let mut obj = Map::new();
        obj.insert(
            "out".into(),
            args.out
                .as_ref()
                .map_or(Value::Null, |d| Value::from(d.display().to_string())),
        );
        let files: Map<String, Value> = files
            .iter()
            .map(|(k, p)| (k.clone(), Value::from(p.display().to_string())))
            .collect();
        obj.insert("files".into(), Value::Object(files));
        obj.insert("nan_count".into(), json!(nan_count));
        obj.extend(output::report_json(&report, engine.threads()));
        let mut entries: Vec<(String, JsonItem<'_>)> = head
            .json()
            .into_iter()
            .map(|(k, v)| (k, JsonItem::Value(v)))
            .collect();
        entries.push(("results".into(), JsonItem::Object(JsonObject(res))));
        entries.extend(obj.into_iter().map(|(k, v)| (k, JsonItem::Value(v))));
        return output::print_json_streamed(&JsonObject(entries));
    }

    let mut fields = head.fields();
    fields.add("run", output::report_text(&report));
    if let Some(dir) = &args.out {
        let names: Vec<String> = files
            .iter()
            .filter_map(|(_, p)| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        fields.add("out", format!("{}: {}", dir.display(), names.join(", ")));
    }
    let mut text = fields.render();
    text.push('\n');
    text.push_str(&table(&results, args.axis, args.out.is_some()));
    output::print_line(text.trim_end())?;
    if let Some(n) = nan_count
        && n > 0
    {
        nan_note(&affected, n, x.shape().iter().product(), args.axis);
    }
    Ok(())
}

/// The nan-variant of an op as given (`mean` → `nanmean`, `quantile:0.9`
/// → `nanquantile:0.9`), if it has one.
fn nan_variant(key: &str) -> Option<String> {
    if key.starts_with("nan") {
        return None;
    }
    let name = format!("nan{key}");
    parse_op(&name).ok().map(|_| name)
}

/// The results of ops that have a nan-variant and hold NaN: the op as
/// given, its nan-variant, its NaN count and its number of values.
fn nan_affected<'a>(results: &'a [(String, &AnyArray)]) -> Vec<(&'a str, String, usize, usize)> {
    let mut affected = Vec::new();
    for (key, value) in results {
        if let Some(variant) = nan_variant(key) {
            let nan = value
                .scalars()
                .filter(|s| matches!(s, outcore::Scalar::Float(v) if v.is_nan()))
                .count();
            if nan > 0 {
                affected.push((key.as_str(), variant, nan, value.len()));
            }
        }
    }
    affected
}

/// Prints once on stderr, after the results, which results are NaN
/// because the input holds `nan_count` NaN among its `len` elements, and
/// the ops that skip NaN instead.
fn nan_note(affected: &[(&str, String, usize, usize)], nan_count: u64, len: u64, axis: Axis) {
    if affected.is_empty() {
        return;
    }
    let most = affected.iter().map(|a| a.2).max().unwrap_or(0);
    let total = affected.iter().map(|a| a.3).max().unwrap_or(0);
    let keys: Vec<&str> = affected.iter().map(|a| a.0).collect();
    let what = match axis {
        Axis::All => keys.join(", "),
        Axis::Rows => format!("{most} of {total} columns of {}", keys.join(", ")),
        Axis::Columns => format!("{most} of {total} rows of {}", keys.join(", ")),
    };
    let variants: Vec<&str> = affected.iter().map(|a| a.1.as_str()).collect();
    eprintln!(
        "note: {what} are NaN because the input holds NaN ({nan_count} of {len} elements); \
         use --ops {} to skip NaN",
        variants.join(",")
    );
}

/// What `stats` says about its input and request, in text and JSON alike.
#[derive(Debug)]
struct Head {
    path: String,
    shape: Vec<u64>,
    dtype: &'static str,
    axis: Axis,
    ops: Vec<String>,
    ddof: u32,
}

impl Head {
    /// The keys path, shape, dtype, axis, ops and ddof.
    fn json(&self) -> Map<String, Value> {
        let mut obj = Map::new();
        obj.insert("path".into(), json!(self.path));
        obj.insert("shape".into(), json!(self.shape));
        obj.insert("dtype".into(), json!(self.dtype));
        obj.insert("axis".into(), json!(self.axis.name()));
        obj.insert("ops".into(), json!(self.ops));
        obj.insert("ddof".into(), json!(self.ddof));
        obj
    }

    /// The input and the axis as aligned text lines.
    fn fields(&self) -> Fields {
        let rows = self.shape.first().copied().unwrap_or(1);
        let row_len: u64 = self.shape.iter().skip(1).product();
        let axis = match self.axis {
            Axis::All => "all (one value per op)".to_string(),
            Axis::Rows => format!("0 (one value per column: {row_len})"),
            Axis::Columns => format!("1 (one value per row: {rows})"),
        };
        let mut f = Fields::new();
        f.add("path", &self.path)
            .add(
                "array",
                format!("{} {}", output::shape_text(&self.shape), self.dtype),
            )
            .add("axis", axis);
        f
    }
}

/// The results as a table: one row per op, the first few values of each.
fn table(results: &[(String, &AnyArray)], axis: Axis, wrote: bool) -> String {
    let width = results.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = String::new();
    let mut cut = None;
    for (key, value) in results {
        let shown: Vec<String> = value
            .scalars()
            .take(SHOWN_VALUES)
            .map(output::scalar_text)
            .collect();
        let total = value.len();
        let cell = if axis == Axis::All {
            shown.join(", ")
        } else {
            let more = if total > SHOWN_VALUES {
                cut = Some(total);
                ", ..."
            } else {
                ""
            };
            format!("[{}{more}] ({} values)", shown.join(", "), total)
        };
        text.push_str(&format!("{key:<width$}  {cell}\n"));
    }
    if let Some(n) = cut {
        let hint = if wrote {
            "all values are in the --out files"
        } else {
            "use --json or --out DIR for all values"
        };
        text.push_str(&format!(
            "(first {SHOWN_VALUES} of {n} values shown; {hint})\n"
        ));
    }
    text
}

/// Writes each result to `dir/<key>.npy`, creating `dir` if needed; returns
/// the key and file of each.
fn write_results(dir: &Path, results: &[(String, &AnyArray)]) -> Result<Vec<(String, PathBuf)>> {
    fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the --out directory", dir.display()))?;
    let mut files = Vec::with_capacity(results.len());
    for (key, value) in results {
        let file = dir.join(format!("{}.npy", file_stem(key)));
        write_npy(&file, value)?;
        files.push((key.clone(), file));
    }
    Ok(files)
}

/// An op name made safe as a file name: characters other than ASCII
/// letters, digits, `-` and `.` become `_` (so a future `quantile:0.9` is
/// written as `quantile_0.9.npy`).
fn file_stem(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes a computed array to a `.npy` file of its dtype and shape,
/// atomically, replacing any file of that name.
pub(crate) fn write_npy(path: &Path, value: &AnyArray) -> Result<()> {
    let shape: Vec<u64> = value.shape().iter().map(|&d| d as u64).collect();
    let writer = ArrayWriter::create(path, OutputSpec::npy(value.dtype(), shape).overwrite(true))?;
    match value {
        AnyArray::Bool(a) => write_rows(&writer, a)?,
        AnyArray::I8(a) => write_rows(&writer, a)?,
        AnyArray::I16(a) => write_rows(&writer, a)?,
        AnyArray::I32(a) => write_rows(&writer, a)?,
        AnyArray::I64(a) => write_rows(&writer, a)?,
        AnyArray::U8(a) => write_rows(&writer, a)?,
        AnyArray::U16(a) => write_rows(&writer, a)?,
        AnyArray::U32(a) => write_rows(&writer, a)?,
        AnyArray::U64(a) => write_rows(&writer, a)?,
        AnyArray::F16(a) => write_rows(&writer, a)?,
        AnyArray::F32(a) => write_rows(&writer, a)?,
        AnyArray::F64(a) => write_rows(&writer, a)?,
    }
    writer.finish()?;
    Ok(())
}

/// Writes all of `a` as the writer's rows.
fn write_rows<T: Element>(writer: &ArrayWriter, a: &ArrayD<T>) -> Result<()> {
    let meta = writer.meta();
    let a = a.as_standard_layout();
    let flat = a
        .as_slice()
        .context("internal: a standard-layout array is not contiguous")?;
    let rows = usize::try_from(meta.rows()).context("result too large for this platform")?;
    let view = ArrayView2::from_shape((rows, meta.row_len()), flat)
        .with_context(|| format!("internal: result of shape {:?} as rows", a.shape()))?;
    writer.write_block(0, view)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names() {
        let mean = parse_op(" Mean ").unwrap();
        assert_eq!(mean.0, "Mean");
        assert_eq!(
            parse_op("std").unwrap().op(1).unwrap(),
            StatOp::Reduce(ReduceOp::Std { ddof: 1 })
        );
        assert_eq!(parse_op("median").unwrap().1, StatOp::Median);
        assert_eq!(
            parse_op("quantile:0.999").unwrap().1,
            StatOp::Quantile(0.999)
        );
        for bad in ["quantile:1.5", "quantile:", "quantile:x", "quantile:-0.1"] {
            let err = parse_op(bad).unwrap_err();
            assert!(err.contains("bad quantile"), "{err}");
        }
        let err = parse_op("mode").unwrap_err();
        assert!(err.contains("unknown op 'mode'"), "{err}");
        assert!(
            err.contains("nanstd") && err.contains("quantile:Q"),
            "{err}"
        );
        assert!(parse_op(" ").unwrap_err().contains("empty op name"));
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("sum"), "sum");
        assert_eq!(file_stem("quantile:0.9"), "quantile_0.9");
        assert_eq!(file_stem("../x"), ".._x");
    }
}
