//! Argument types and clap value parsers shared by the subcommands: shapes,
//! sizes, dtypes, byte orders, thread counts, the options that name an
//! input array (a `.npy` file, or a raw file described on the command line),
//! and the options that configure the engine (memory limit, threads) and
//! its outputs (`--force`, `--no-fsync`).

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::Result;
use outcore::chunker::synth::Distribution;
use outcore::{ArrayFile, ByteOrder, DType, Engine, Expr, Layout, RawSpec};

/// A usage error found after clap has parsed the arguments (for example,
/// two options that contradict each other). `main` exits with status 2 for
/// it, as clap does for its own usage errors.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An array shape given on the command line: comma-separated non-negative
/// integers, optionally in parentheses as Python prints it.
///
/// `"2097152,256"`, `"(4, 3)"`, `"7"` and `"(7,)"` are accepted; an empty
/// string (or `"()"`) is the shape of a 0-d array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shape(pub(crate) Vec<u64>);

/// Parses a [`Shape`] (clap value parser).
pub(crate) fn parse_shape(input: &str) -> Result<Shape, String> {
    let dims = parse_dims(input, false)?;
    Ok(Shape(dims.into_iter().flatten().collect()))
}

/// The dimensions of a shape as text; `None` for a `-1` when `unknown` is
/// allowed.
fn parse_dims(input: &str, unknown: bool) -> Result<Vec<Option<u64>>, String> {
    let trimmed = input.trim();
    let inner = match trimmed.strip_prefix('(') {
        Some(rest) => rest
            .strip_suffix(')')
            .ok_or_else(|| format!("invalid shape '{input}': unbalanced parenthesis"))?,
        None => trimmed,
    };
    let inner = inner.trim();
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    // One trailing comma is allowed, as in Python's `(7,)`.
    let inner = inner.strip_suffix(',').unwrap_or(inner);
    inner
        .split(',')
        .map(|dim| {
            let dim = dim.trim().replace('_', "");
            if unknown && dim == "-1" {
                return Ok(None);
            }
            dim.parse::<u64>().map(Some).map_err(|_| {
                format!(
                    "invalid shape '{input}': dimension '{dim}' is not a non-negative integer{} \
                     (expected comma-separated sizes such as 1000,20; an empty string means 0-d)",
                    if unknown { " or -1" } else { "" }
                )
            })
        })
        .collect()
}

/// The shape of a raw input: as [`Shape`], and one dimension may be `-1`,
/// which NumPy's `reshape` infers from the element count (here: from the
/// file's size after the offset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawShape(pub(crate) Vec<Option<u64>>);

/// Parses a [`RawShape`] (clap value parser).
pub(crate) fn parse_raw_shape(input: &str) -> Result<RawShape, String> {
    let dims = parse_dims(input, true)?;
    if dims.iter().filter(|d| d.is_none()).count() > 1 {
        return Err(format!(
            "invalid shape '{input}': can only specify one unknown dimension (-1), as NumPy"
        ));
    }
    Ok(RawShape(dims))
}

impl RawShape {
    /// The shape, the unknown dimension (if any) inferred from `elements`.
    ///
    /// # Errors
    ///
    /// A message with the numbers when `elements` is not a whole multiple
    /// of the known dimensions (NumPy's "cannot reshape").
    fn resolve(&self, elements: u64) -> Result<Vec<u64>, String> {
        let known: u64 = self.0.iter().flatten().product();
        if !self.0.contains(&None) {
            return Ok(self.0.iter().flatten().copied().collect());
        }
        let text = || {
            let dims: Vec<String> = self
                .0
                .iter()
                .map(|d| d.map_or("-1".to_string(), |d| d.to_string()))
                .collect();
            dims.join(",")
        };
        if known == 0 || !elements.is_multiple_of(known) {
            return Err(format!(
                "cannot reshape {elements} elements into shape ({}): they are not a whole \
                 number of rows of {known}",
                text()
            ));
        }
        Ok(self
            .0
            .iter()
            .map(|d| d.unwrap_or(elements / known))
            .collect())
    }
}

/// A dtype given on the command line, and the byte order it names when it is
/// written as a NumPy type string with a byte-order prefix (`<f8`, `>i2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DTypeArg {
    /// The element type.
    pub(crate) dtype: DType,
    /// The byte order named by a `<`, `>`, `=` or `|` prefix, if any.
    pub(crate) byte_order: Option<ByteOrder>,
}

impl DTypeArg {
    /// The byte order to use: the one from `--byte-order` or from the
    /// dtype's prefix, native when neither is given.
    ///
    /// # Errors
    ///
    /// A [`UsageError`] when both are given and disagree (for multi-byte
    /// dtypes; one-byte dtypes have no byte order).
    pub(crate) fn resolve_byte_order(&self, flag: Option<ByteOrder>) -> Result<ByteOrder> {
        match (self.byte_order, flag) {
            (Some(a), Some(b)) if a != b && self.dtype.itemsize() > 1 => Err(UsageError(format!(
                "--dtype names {a}-endian elements but --byte-order is {b}"
            ))
            .into()),
            (_, Some(order)) | (Some(order), None) => Ok(order),
            (None, None) => Ok(ByteOrder::NATIVE),
        }
    }
}

/// Parses a [`DTypeArg`] (clap value parser): short names (`f64`, `u8`),
/// NumPy names (`float32`) and type strings (`<f8`, `>i2`).
pub(crate) fn parse_dtype(input: &str) -> Result<DTypeArg, String> {
    let trimmed = input.trim();
    if trimmed.starts_with(['<', '>', '|', '=']) {
        let (dtype, order) = outcore::chunker::parse_descr(trimmed).map_err(|e| e.to_string())?;
        Ok(DTypeArg {
            dtype,
            byte_order: Some(order),
        })
    } else {
        let dtype = trimmed.parse::<DType>().map_err(|e| e.to_string())?;
        Ok(DTypeArg {
            dtype,
            byte_order: None,
        })
    }
}

/// Parses a byte order (clap value parser): `little`, `big` or `native`.
pub(crate) fn parse_byte_order(input: &str) -> Result<ByteOrder, String> {
    input.parse()
}

/// Parses a synthetic-data distribution (clap value parser).
pub(crate) fn parse_distribution(input: &str) -> Result<Distribution, String> {
    input.parse()
}

/// Parses a byte size such as `8MiB` or `1048576` (clap value parser);
/// units are binary, see [`outcore::parse_size`]. Zero is refused.
pub(crate) fn parse_nonzero_size(input: &str) -> Result<u64, String> {
    match outcore::parse_size(input) {
        Ok(0) => Err(format!("invalid size '{input}': must be at least 1 byte")),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a thread count of at least one (clap value parser).
pub(crate) fn parse_threads(input: &str) -> Result<NonZeroUsize, String> {
    input
        .trim()
        .parse::<NonZeroUsize>()
        .map_err(|_| format!("invalid thread count '{input}': expected an integer of at least 1"))
}

/// The number of threads to use when none is asked for: the machine's
/// available parallelism, or 1 if that is unknown.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The options that describe a raw input (binary elements with no
/// header, as `arr.tofile()` writes and `np.memmap` reads): shared by
/// every command that reads an array, so `--raw` works the same
/// everywhere. The element type is `--raw-dtype` (commands without an
/// output dtype also take it as `--dtype`, see [`InputArgs`]).
#[derive(Debug, clap::Args)]
pub(crate) struct RawArgs {
    /// Read the input as raw binary elements with no header (like
    /// np.memmap or np.fromfile); needs --raw-dtype.
    #[arg(long, help_heading = "Raw input")]
    pub(crate) raw: bool,

    /// Element type of a raw input: f64, f32, f16, i64 .. i8, u64 .. u8,
    /// bool, a NumPy name (float32) or type string (<f8, >i2).
    #[arg(long, requires = "raw", value_name = "DTYPE", value_parser = parse_dtype,
          help_heading = "Raw input")]
    pub(crate) raw_dtype: Option<DTypeArg>,

    /// Shape of a raw input, comma-separated (100,20; "" for 0-d; one -1
    /// is inferred from the file's size, as NumPy's reshape). By default,
    /// 1-d: as many elements as the file holds after the offset.
    #[arg(long, requires = "raw", value_name = "SHAPE", value_parser = parse_raw_shape,
          help_heading = "Raw input", allow_hyphen_values = true)]
    pub(crate) shape: Option<RawShape>,

    /// Bytes to skip at the start of a raw input. By default, 0.
    #[arg(
        long,
        requires = "raw",
        value_name = "BYTES",
        help_heading = "Raw input"
    )]
    pub(crate) offset: Option<u64>,

    /// Byte order of a raw input's elements: little, big or native. By
    /// default, native (or the order a type string such as >f8 names).
    #[arg(long, requires = "raw", value_name = "ORDER", value_parser = parse_byte_order,
          help_heading = "Raw input")]
    pub(crate) byte_order: Option<ByteOrder>,

    /// Element order of a raw input: C (row-major, NumPy's default and
    /// what arr.tofile() writes for a C-contiguous array) or F
    /// (column-major, the first axis varying fastest). By default, C.
    #[arg(long, requires = "raw", value_name = "C|F", value_parser = parse_order,
          help_heading = "Raw input")]
    pub(crate) order: Option<Layout>,
}

/// Parses a memory order (clap value parser): `C` or `F` (NumPy's
/// `order=` names), case-insensitive.
pub(crate) fn parse_order(input: &str) -> Result<Layout, String> {
    match input.trim() {
        "C" | "c" => Ok(Layout::C),
        "F" | "f" => Ok(Layout::Fortran),
        other => Err(format!(
            "invalid order '{other}': expected C (row-major) or F (column-major)"
        )),
    }
}

impl RawArgs {
    /// Opens `path`: as `.npy`, or raw as described (`dtype` standing in
    /// for a missing `--raw-dtype`).
    ///
    /// # Errors
    ///
    /// The chunker's error (which names the path) when the file cannot be
    /// opened or its header or size is wrong; a [`UsageError`] when the raw
    /// options contradict each other.
    pub(crate) fn open(&self, path: &Path, dtype: Option<DTypeArg>) -> Result<ArrayFile> {
        match self.spec(path, dtype)? {
            None => Ok(ArrayFile::open(path)?),
            Some(spec) => Ok(ArrayFile::open_raw(path, &spec)?),
        }
    }

    /// Opens `path` (as [`RawArgs::open`]) as an expression of `engine`.
    ///
    /// # Errors
    ///
    /// As [`RawArgs::open`].
    pub(crate) fn open_expr(
        &self,
        engine: &Engine,
        path: &Path,
        dtype: Option<DTypeArg>,
    ) -> Result<Expr> {
        match self.spec(path, dtype)? {
            None => Ok(engine.open(path)?),
            Some(spec) => Ok(engine.open_raw(path, &spec)?),
        }
    }

    /// The description of a raw input, or `None` for a `.npy` file.
    fn spec(&self, path: &Path, alias: Option<DTypeArg>) -> Result<Option<RawSpec>> {
        if !self.raw {
            return Ok(None);
        }
        let dtype = match (self.raw_dtype, alias) {
            (Some(d), None) | (None, Some(d)) => d,
            (Some(_), Some(_)) => {
                return Err(UsageError(
                    "--raw-dtype and --dtype name the same thing: give one".into(),
                )
                .into());
            }
            (None, None) => {
                return Err(UsageError(
                    "--raw needs --raw-dtype DTYPE (also spelled --dtype where the command has \
                     no output dtype)"
                        .to_string(),
                )
                .into());
            }
        };
        let offset = self.offset.unwrap_or(0);
        let shape = match &self.shape {
            None => None,
            Some(shape) => Some(if shape.0.contains(&None) {
                // The unknown dimension from the file's size; a file too
                // small or of another size is the opener's error below.
                let len = std::fs::metadata(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                    .len();
                let elements = len.saturating_sub(offset) / dtype.dtype.itemsize() as u64;
                shape
                    .resolve(elements)
                    .map_err(|e| UsageError(format!("{}: {e}", path.display())))?
            } else {
                shape.0.iter().flatten().copied().collect()
            }),
        };
        Ok(Some(RawSpec {
            dtype: dtype.dtype,
            byte_order: dtype.resolve_byte_order(self.byte_order)?,
            shape,
            offset,
            layout: self.order.unwrap_or(Layout::C),
            exact: true,
        }))
    }
}

/// The options that name an input array, for commands that have no output
/// dtype (`info`, `stats`): a path, read as `.npy` unless `--raw`
/// describes it as raw binary ([`RawArgs`]), whose element type may also
/// be spelled `--dtype`.
#[derive(Debug, clap::Args)]
pub(crate) struct InputArgs {
    /// The array file: a NumPy .npy file, or raw binary with --raw.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    #[command(flatten)]
    pub(crate) raw: RawArgs,

    /// The same as --raw-dtype (this command has no output dtype).
    #[arg(long, requires = "raw", value_name = "DTYPE", value_parser = parse_dtype,
          help_heading = "Raw input")]
    pub(crate) dtype: Option<DTypeArg>,
}

impl InputArgs {
    /// Opens the input array.
    ///
    /// # Errors
    ///
    /// As [`RawArgs::open`].
    pub(crate) fn open(&self) -> Result<ArrayFile> {
        self.raw.open(&self.path, self.dtype)
    }

    /// Opens the input array as an expression of `engine`.
    ///
    /// # Errors
    ///
    /// As [`RawArgs::open`].
    pub(crate) fn open_expr(&self, engine: &Engine) -> Result<Expr> {
        self.raw.open_expr(engine, &self.path, self.dtype)
    }
}

/// The options that configure the engine, shared by the commands that
/// compute (`stats`, `convert`, `standardize`).
#[derive(Debug, clap::Args)]
pub(crate) struct EngineArgs {
    /// Memory budget for the data the engine holds (binary units: 64MiB,
    /// 1GiB, 512M, 1048576). By default, half of the memory available.
    #[arg(long, value_name = "SIZE", value_parser = parse_nonzero_size)]
    pub(crate) memory_limit: Option<u64>,

    /// Worker threads. By default, the available parallelism.
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub(crate) threads: Option<NonZeroUsize>,

    /// Directory for spill files (sort, quantiles and intermediates that
    /// do not fit in memory). They are unnamed: nothing is left there,
    /// even after a kill. By default, the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) spill_dir: Option<std::path::PathBuf>,

    /// Most disk space the spill files may use at once (binary units);
    /// beyond it the command fails with the numbers. By default, no quota.
    #[arg(long, value_name = "SIZE", value_parser = parse_nonzero_size)]
    pub(crate) spill_quota: Option<u64>,
}

impl EngineArgs {
    /// Builds the engine: these options, a progress bar on stderr when
    /// `progress` is true (the engine draws it only when stderr is a
    /// terminal), the output options, and the process's cancel token
    /// (which SIGINT and SIGTERM cancel, see [`crate::interrupt`]).
    ///
    /// # Errors
    ///
    /// When the thread pool cannot start.
    pub(crate) fn build(&self, progress: bool, output: &OutputArgs) -> Result<Engine> {
        if let (Some(limit), Some(available)) = (self.memory_limit, outcore::available_memory())
            && limit > available
        {
            // Not an error (memory may be freed before the run needs it),
            // but the budget cannot protect what the machine does not have.
            eprintln!(
                "warning: --memory-limit {} is more than the {} of memory available now; \
                 a run that uses it may be killed by the system before the limit stops it",
                outcore::format_bytes(limit),
                outcore::format_bytes(available)
            );
        }
        let mut builder = Engine::builder()
            .memory_limit(self.memory_limit.unwrap_or_else(outcore::default_limit))
            .threads(self.threads.map_or_else(default_threads, NonZeroUsize::get))
            .progress(progress)
            .fsync(!output.no_fsync)
            .overwrite(output.force)
            // SIGINT and SIGTERM stop the run between blocks.
            .cancel(crate::interrupt::token());
        if let Some(dir) = &self.spill_dir {
            builder = builder.spill_dir(dir);
        }
        if let Some(q) = self.spill_quota {
            builder = builder.spill_quota(q);
        }
        Ok(builder.build()?)
    }
}

/// The options of commands that write one output array.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct OutputArgs {
    /// Replace OUT if it exists. Without it, an existing OUT is an error and
    /// is left untouched.
    #[arg(long)]
    pub(crate) force: bool,

    /// Do not fsync the output before linking it into place (faster for
    /// scratch files that need not survive a power cut).
    #[arg(long)]
    pub(crate) no_fsync: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_shapes_infer_one_unknown_dimension() {
        let shape = parse_raw_shape("100,-1").unwrap();
        assert_eq!(shape.0, vec![Some(100), None]);
        assert_eq!(shape.resolve(6400).unwrap(), vec![100, 64]);
        let err = shape.resolve(6401).unwrap_err();
        assert!(err.contains("6401") && err.contains("100,-1"), "{err}");
        assert_eq!(
            parse_raw_shape("(-1,)").unwrap().resolve(7).unwrap(),
            vec![7]
        );
        assert_eq!(
            parse_raw_shape("3,4").unwrap().resolve(99).unwrap(),
            vec![3, 4]
        );
        let two = parse_raw_shape("-1,-1").unwrap_err();
        assert!(two.contains("one unknown dimension"), "{two}");
        assert!(parse_raw_shape("-2,4").is_err());
        // A shape to write has no unknown.
        assert!(parse_shape("100,-1").is_err());
    }

    #[test]
    fn shapes() {
        let ok = |s: &str| parse_shape(s).unwrap().0;
        assert_eq!(ok("2097152,256"), vec![2_097_152, 256]);
        assert_eq!(ok(" 4 , 3 "), vec![4, 3]);
        assert_eq!(ok("(4, 3)"), vec![4, 3]);
        assert_eq!(ok("(7,)"), vec![7]);
        assert_eq!(ok("7"), vec![7]);
        assert_eq!(ok("1_000,2"), vec![1000, 2]);
        assert_eq!(ok("0"), vec![0]);
        assert_eq!(ok(""), Vec::<u64>::new());
        assert_eq!(ok("()"), Vec::<u64>::new());
        // A single trailing comma is Python's 1-tuple spelling.
        assert_eq!(ok("4,3,"), vec![4, 3]);
        for bad in [
            "-1",
            "4,,3",
            "a",
            ",",
            "(4,3",
            "1.5",
            "18446744073709551616",
        ] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dtypes_and_byte_orders() {
        let d = parse_dtype("f64").unwrap();
        assert_eq!((d.dtype, d.byte_order), (DType::F64, None));
        let d = parse_dtype(">i2").unwrap();
        assert_eq!((d.dtype, d.byte_order), (DType::I16, Some(ByteOrder::Big)));
        assert!(parse_dtype("complex128").is_err());
        assert!(parse_dtype("<c16").is_err());

        assert_eq!(d.resolve_byte_order(None).unwrap(), ByteOrder::Big);
        assert_eq!(
            d.resolve_byte_order(Some(ByteOrder::Big)).unwrap(),
            ByteOrder::Big
        );
        assert!(d.resolve_byte_order(Some(ByteOrder::Little)).is_err());
        let u8 = parse_dtype("|u1").unwrap();
        assert_eq!(
            u8.resolve_byte_order(Some(ByteOrder::Big)).unwrap(),
            ByteOrder::Big
        );
        let f = parse_dtype("float32").unwrap();
        assert_eq!(f.resolve_byte_order(None).unwrap(), ByteOrder::NATIVE);
    }

    #[test]
    fn sizes_and_threads() {
        assert_eq!(parse_nonzero_size("8MiB").unwrap(), 8 << 20);
        assert!(parse_nonzero_size("0").is_err());
        assert!(parse_nonzero_size("lots").is_err());
        assert_eq!(parse_threads("3").unwrap().get(), 3);
        assert!(parse_threads("0").is_err());
        assert!(parse_threads("-2").is_err());
        assert!(default_threads() >= 1);
    }
}
