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

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

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
