//! Printing: JSON objects and aligned `label: value` lines on stdout,
//! progress bars and error lines on stderr.
//!
//! # JSON conventions
//!
//! `--json` prints exactly one JSON object on one line of stdout. Integers
//! (sizes, counts, shapes) are exact JSON integers. Floats are JSON numbers
//! when finite; NaN and infinities, which JSON cannot represent, are the
//! strings `"nan"`, `"inf"` and `"-inf"` (see [`float`]). Unknown values
//! are `null`.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outcore::{AnyArray, Explain, RunReport, Scalar};
use serde_json::{Map, Value, json};

/// A float as a JSON value: a number when finite, else `"nan"`, `"inf"` or
/// `"-inf"`.
pub(crate) fn float(x: f64) -> Value {
    if x.is_nan() {
        Value::from("nan")
    } else if x == f64::INFINITY {
        Value::from("inf")
    } else if x == f64::NEG_INFINITY {
        Value::from("-inf")
    } else {
        Value::from(x)
    }
}

/// One value of a result as a JSON value: integers exact (including
/// `u64` above 2^63), floats as [`float`], booleans as booleans.
pub(crate) fn scalar(x: Scalar) -> Value {
    match x {
        Scalar::Bool(b) => Value::from(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::UInt(u) => Value::from(u),
        Scalar::Float(f) => float(f),
    }
}

/// The values of an array as a JSON list, serialised one value at a time
/// (a per-row result of a large input is never held as a JSON tree).
pub(crate) struct JsonList<'a>(pub(crate) &'a AnyArray);

impl serde::Serialize for JsonList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.scalars().map(scalar))
    }
}

/// A JSON object whose entries are serialised in order as they are
/// written, from small values and streamed lists alike.
pub(crate) struct JsonObject<'a>(pub(crate) Vec<(String, JsonItem<'a>)>);

/// A value of a [`JsonObject`].
pub(crate) enum JsonItem<'a> {
    /// A value built in memory (small).
    Value(Value),
    /// An array's values, streamed.
    List(JsonList<'a>),
    /// An object of streamed entries.
    Object(JsonObject<'a>),
}

impl serde::Serialize for JsonItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            JsonItem::Value(v) => v.serialize(s),
            JsonItem::List(l) => l.serialize(s),
            JsonItem::Object(o) => o.serialize(s),
        }
    }
}

impl serde::Serialize for JsonObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Writes one JSON value on stdout, streamed through a buffer, and a newline.
///
/// # Errors
///
/// When stdout cannot be written (for example, a closed pipe).
pub(crate) fn print_json_streamed(value: &impl serde::Serialize) -> Result<()> {
    let mut out = io::BufWriter::with_capacity(64 << 10, io::stdout().lock());
    serde_json::to_writer(&mut out, value)
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// One value of a result for people: integers exact, floats in Rust's
/// shortest round-trip form (`0.1`, `2.0`, `1e300`), non-finite floats as `nan`, `inf`, `-inf`.
pub(crate) fn scalar_text(x: Scalar) -> String {
    match x {
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::UInt(u) => u.to_string(),
        Scalar::Float(f) if f.is_nan() => "nan".to_string(),
        Scalar::Float(f) if f.is_infinite() => if f > 0.0 { "inf" } else { "-inf" }.to_string(),
        // Debug switches to exponents for very large and small values.
        Scalar::Float(f) => format!("{f:?}"),
    }
}

/// A shape as Python prints a tuple: `()`, `(7,)`, `(4, 3)`.
pub(crate) fn shape_text(shape: &[u64]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The keys every engine command's `--json` shares, from a run's report:
/// `seconds`, `passes`, `blocks`, `bytes_read`, `bytes_written`,
/// `bytes_spilled` (to temporary spill files), `peak_reserved_bytes`, `peak_rss_bytes` (`null` where unknown),
/// `memory_limit_bytes` and `threads`.
pub(crate) fn report_json(report: &RunReport, threads: usize) -> Map<String, Value> {
    let value = json!({
        "seconds": float(report.elapsed.as_secs_f64()),
        "passes": report.passes,
        "blocks": report.blocks,
        "bytes_read": report.bytes_read,
        "bytes_written": report.bytes_written,
        "bytes_spilled": report.bytes_spilled,
        "peak_reserved_bytes": report.peak_reserved,
        "peak_rss_bytes": opt_u64(report.peak_rss),
        "memory_limit_bytes": report.memory_limit,
        "threads": threads,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A run's report for people, as one line: passes, bytes, time, memory.
pub(crate) fn report_text(report: &RunReport) -> String {
    let seconds = report.elapsed.as_secs_f64();
    let mut io = format!("read {}", outcore::format_bytes(report.bytes_read));
    if report.bytes_written > 0 {
        io.push_str(&format!(
            ", wrote {}",
            outcore::format_bytes(report.bytes_written)
        ));
    }
    if report.bytes_spilled > 0 {
        io.push_str(&format!(
            ", spilled {}",
            outcore::format_bytes(report.bytes_spilled)
        ));
    }
    let rate = if seconds > 0.0 && report.bytes_read > 0 {
        format!(" ({:.2} GB/s)", report.bytes_read as f64 / seconds / 1e9)
    } else {
        String::new()
    };
    let rss = report.peak_rss.map_or_else(
        || "peak RSS unknown".to_string(),
        |r| format!("peak RSS {}", outcore::format_bytes(r)),
    );
    format!(
        "{} pass{}, {io} in {seconds:.3} s{rate}; {rss}, memory limit {}",
        report.passes,
        if report.passes == 1 { "" } else { "es" },
        outcore::format_bytes(report.memory_limit)
    )
}

/// The keys an engine command's `--explain --json` shares: `steps` (the
/// whole-array operators and quantiles run before the passes, as text),
/// `passes` (one
/// object per pass: inputs, reductions, outputs, rows, block_rows,
/// block_bytes, blocks_in_flight, bytes_read, bytes_written, peak_bytes,
/// fused_programs, instructions), `peak_bytes` (the largest estimate of
/// any pass), `memory_limit_bytes` and `threads`.
pub(crate) fn explain_json(explain: &Explain) -> Map<String, Value> {
    let passes: Vec<Value> = explain
        .passes
        .iter()
        .map(|p| {
            json!({
                "inputs": p.inputs,
                "reductions": p.reductions,
                "outputs": p.outputs,
                "rows": p.rows,
                "block_rows": p.block_rows,
                "block_bytes": p.block_bytes,
                "blocks_in_flight": p.blocks_in_flight,
                "bytes_read": p.bytes_read,
                "bytes_written": p.bytes_written,
                "peak_bytes": p.peak_bytes,
                "fused_programs": p.fused_programs,
                "instructions": p.instructions,
            })
        })
        .collect();
    let peak = explain
        .passes
        .iter()
        .map(|p| p.peak_bytes)
        .max()
        .unwrap_or(0);
    let value = json!({
        "steps": explain.steps,
        "passes": passes,
        "peak_bytes": peak,
        "memory_limit_bytes": explain.memory_limit,
        "threads": explain.threads,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// An engine error as the error a command reports about `input`.
///
/// Errors that carry a path (opening, reading, writing) already name it and
/// are kept as they are, except that an existing output gets the hint to
/// use `--force`; the others (a memory limit too small, an empty
/// reduction, an integer overflow, ...) are prefixed with `input`.
pub(crate) fn engine_error(err: outcore::Error, input: &Path) -> anyhow::Error {
    use outcore::chunker::Error as ArrayError;
    match err {
        outcore::Error::Array(ArrayError::OutputExists { path }) => anyhow::anyhow!(
            "{}: output already exists (use --force to replace it)",
            path.display()
        ),
        err @ (outcore::Error::Array(_) | outcore::Error::Io { .. }) => err.into(),
        err => anyhow::Error::new(err).context(input.display().to_string()),
    }
}

/// An optional integer as a JSON value (`null` when `None`).
pub(crate) fn opt_u64(x: Option<u64>) -> Value {
    x.map_or(Value::Null, Value::from)
}

/// Prints `value` as one line of compact JSON on stdout.
///
/// # Errors
///
/// When stdout cannot be written (for example, a closed pipe).
pub(crate) fn print_json(value: &Value) -> Result<()> {
    let text = serde_json::to_string(value).context("cannot encode JSON output")?;
    print_line(&text)
}

/// Prints one line on stdout, reporting write errors instead of panicking
/// as `println!` does.
///
/// # Errors
///
/// When stdout cannot be written.
pub(crate) fn print_line(line: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// A byte count for people: `"4.0 GiB (4294967296 bytes)"`, or just
/// `"512 B"` below 1 KiB, where the two would say the same.
pub(crate) fn bytes(n: u64) -> String {
    let human = outcore::format_bytes(n);
    if n < 1024 {
        human
    } else {
        format!("{human} ({n} bytes)")
    }
}

/// Lines of `label: value`, printed with the values aligned.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    rows: Vec<(String, String)>,
}

impl Fields {
    /// An empty list.
    pub(crate) fn new() -> Fields {
        Fields::default()
    }

    /// Adds a line.
    pub(crate) fn add(&mut self, label: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.rows.push((label.into(), value.into()));
        self
    }

    /// The lines as text, each ending in a newline.
    pub(crate) fn render(&self) -> String {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        let mut text = String::new();
        for (label, value) in &self.rows {
            let label = format!("{label}:");
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{label:<width$} {value}");
        }
        text
    }

    /// Prints the lines on stdout.
    ///
    /// # Errors
    ///
    /// When stdout cannot be written.
    pub(crate) fn print(&self) -> Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(self.render().as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write to stdout")
    }
}

/// True when progress bars may be drawn: stderr is a terminal.
pub(crate) fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// A progress bar over `total` bytes on stderr (bytes done, throughput,
/// ETA), or a hidden one that draws nothing when `show` is false.
///
/// Callers pass `show = !json && stderr_is_terminal()`: bars never go to a
/// file or a pipe, and never mix with JSON output.
pub(crate) fn progress_bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    // The template is a constant; should it ever be rejected, fall back to
    // the default style rather than fail the command.
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{wide_bar}] {binary_bytes}/{binary_total_bytes} \
         ({binary_bytes_per_sec}, ETA {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The message of an error and its causes on one line, joined by `": "`.
///
/// A cause whose message the previous message already ends with is left
/// out: the chunker's errors print their I/O source themselves and also
/// return it from `source()`, and it should be said once.
pub(crate) fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        let msg = msg.trim();
        if msg.is_empty() || line.ends_with(msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(msg);
    }
    one_line(&line)
}

/// `text` with its lines joined by single spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when the error comes from writing to a closed pipe (as in
/// `outcore info x.npy | head -1`), which is not worth reporting.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Prints `error: MESSAGE` as one line on stderr.
pub(crate) fn print_error(message: &str) {
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(io::stderr().lock(), "error: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_floats() {
        assert_eq!(float(1.5), serde_json::json!(1.5));
        assert_eq!(float(f64::NAN), serde_json::json!("nan"));
        assert_eq!(float(f64::INFINITY), serde_json::json!("inf"));
        assert_eq!(float(f64::NEG_INFINITY), serde_json::json!("-inf"));
        assert_eq!(opt_u64(None), Value::Null);
        // Integers stay exact beyond 2^53.
        let big = u64::MAX - 1;
        assert_eq!(
            serde_json::to_string(&opt_u64(Some(big))).unwrap(),
            big.to_string()
        );
    }

    #[test]
    fn json_scalars_keep_integers_exact() {
        assert_eq!(
            serde_json::to_string(&scalar(Scalar::UInt(u64::MAX))).unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            serde_json::to_string(&scalar(Scalar::Int(i64::MIN))).unwrap(),
            "-9223372036854775808"
        );
        assert_eq!(scalar(Scalar::Float(f64::NAN)), serde_json::json!("nan"));
        assert_eq!(scalar(Scalar::Bool(true)), serde_json::json!(true));
        assert_eq!(scalar_text(Scalar::Float(f64::NEG_INFINITY)), "-inf");
        assert_eq!(scalar_text(Scalar::Float(0.1)), "0.1");
        assert_eq!(scalar_text(Scalar::UInt(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn shapes_print_as_python_tuples() {
        assert_eq!(shape_text(&[]), "()");
        assert_eq!(shape_text(&[7]), "(7,)");
        assert_eq!(shape_text(&[4, 3]), "(4, 3)");
    }

    #[test]
    fn fields_align() {
        let mut f = Fields::new();
        f.add("path", "x.npy").add("data offset", "128");
        assert_eq!(f.render(), "path:        x.npy\ndata offset: 128\n");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(8 << 20), "8.0 MiB (8388608 bytes)");
    }

    #[test]
    fn error_chains_are_one_line_without_repeats() {
        let io = io::Error::new(io::ErrorKind::NotFound, "no such file");
        #[derive(Debug)]
        struct Wraps(io::Error);
        impl std::fmt::Display for Wraps {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "x.npy: open: {}", self.0)
            }
        }
        impl std::error::Error for Wraps {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = anyhow::Error::new(Wraps(io)).context("reading input\nagain");
        assert_eq!(
            error_line(&err),
            "reading input again: x.npy: open: no such file"
        );
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe.context("cannot write")));
    }
}
