//! `outcore gen`: write a reproducible synthetic array of any size.
//!
//! The array is generated and written block by block from several threads
//! ([`outcore::chunker::synth::write_array_cancellable`]), so memory stays at about
//! threads × block size whatever the array's size. Each element depends
//! only on the seed and its index: the same seed gives the same bytes for
//! any thread count or block size. SIGINT and SIGTERM stop the writing
//! threads between blocks ([`crate::interrupt`]).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use outcore::chunker::synth::{Distribution, Generator, write_array_cancellable};
use outcore::{ArrayMeta, BlockPlan, Format, Layout, OutputSpec};
use serde_json::json;

use crate::args::{self, DTypeArg, Shape};
use crate::output;

/// Arguments of `outcore gen`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Write a reproducible synthetic array of any size with bounded memory",
    long_about = "Write a reproducible synthetic array of any size with bounded memory.\n\n\
                  Blocks are generated and written by --threads threads, so memory stays \
                  at about threads x block size. Each element is a function of the seed \
                  and its index only: the same seed writes the same bytes whatever the \
                  thread count or block size. The output is an unnamed file in OUT's \
                  directory until complete, then linked into place; Ctrl-C (SIGINT) or \
                  SIGTERM stops it between blocks and leaves nothing.\n\n\
                  With --json, prints one JSON object with the keys path, format, shape, \
                  dtype, byte_order, dist, seed, threads, block_bytes, nbytes (data \
                  bytes), bytes_written (the file's size, header included) and seconds."
)]
pub(crate) struct Args {
    /// The file to write.
    #[arg(value_name = "OUT")]
    out: PathBuf,

    /// Shape, comma-separated: 2097152,256 (rows first); "" for a 0-d array.
    #[arg(long, value_name = "SHAPE", value_parser = args::parse_shape)]
    shape: Shape,

    /// Element type: f64, f32, f16, i64 .. i8, u64 .. u8, bool, a NumPy
    /// name (float32) or type string (<f8, >i2).
    #[arg(long, value_name = "DTYPE", default_value = "f64", value_parser = args::parse_dtype)]
    dtype: DTypeArg,

    /// Seed: the same seed gives the same array.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,

    /// Values: uniform (floats in [0, 1), ints in [-100, 100) or [0, 100)),
    /// normal (standard normal; ints round(10 z)), or arange (the flat index).
    #[arg(long, value_name = "DIST", default_value = "uniform",
          value_parser = args::parse_distribution)]
    dist: Distribution,

    /// Write raw elements with no header instead of a .npy file.
    #[arg(long)]
    raw: bool,

    /// Byte order of the elements: little, big or native. By default,
    /// native (or the order a type string such as >f8 names).
    #[arg(long, value_name = "ORDER", value_parser = args::parse_byte_order)]
    byte_order: Option<outcore::ByteOrder>,

    /// Threads generating and writing blocks. By default, the available
    /// parallelism.
    #[arg(long, value_name = "N", value_parser = args::parse_threads)]
    threads: Option<std::num::NonZeroUsize>,

    /// Bytes per block (binary units: 8MiB, 1G, 65536); a block holds at
    /// least one row.
    #[arg(long, value_name = "SIZE", default_value = "8MiB",
          value_parser = args::parse_nonzero_size)]
    block_size: u64,

    /// Do not fsync the output before linking it into place (faster for
    /// scratch files that need not survive a power cut).
    #[arg(long)]
    no_fsync: bool,

    /// Replace OUT if it exists. Without it, an existing OUT is an error and
    /// is left untouched.
    #[arg(long)]
    force: bool,

    /// Print one JSON object instead of text, and no progress bar.
    #[arg(long)]
    json: bool,
}

/// Runs `outcore gen`.
///
/// # Errors
///
/// When OUT exists (without `--force`), the shape is too large, the
/// blocks would not fit in available memory, or writing fails.
pub(crate) fn run(args: Args) -> Result<()> {
    let dtype = args.dtype.dtype;
    let byte_order = args.dtype.resolve_byte_order(args.byte_order)?;
    let shape = args.shape.0;
    // The same checks the writer makes, before any file is touched, to size
    // the thread pool and the memory it takes.
    let meta = ArrayMeta::new(
        &args.out,
        shape.clone(),
        dtype,
        byte_order,
        Layout::C,
        Format::Raw,
        0,
    )?;
    let plan = BlockPlan::from_bytes(meta.rows(), meta.row_bytes(), args.block_size);
    let requested = args.threads.map_or_else(args::default_threads, |n| n.get());
    // More threads than blocks would only wait.
    let threads = requested.min(plan.len().max(1));
    check_memory(&meta, &plan, threads)?;

    let spec = if args.raw {
        OutputSpec::raw(dtype, shape)
    } else {
        OutputSpec::npy(dtype, shape)
    }
    .byte_order(byte_order)
    .fsync(!args.no_fsync)
    .overwrite(args.force);
    let generator = Generator::new(args.dist, args.seed);

    let bar = output::progress_bar(meta.nbytes(), !args.json && output::stderr_is_terminal());
    let start = Instant::now();
    // SIGINT and SIGTERM stop the threads between blocks; the unfinished
    // output is dropped.
    let written = write_array_cancellable(
        &args.out,
        spec,
        &generator,
        args.block_size,
        threads,
        &|n| bar.inc(n),
        &crate::interrupt::token(),
    );
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let written = written.map_err(|e| match e {
        outcore::chunker::Error::OutputExists { path } => anyhow::anyhow!(
            "{}: output already exists (use --force to replace it)",
            path.display()
        ),
        other => other.into(),
    })?;

    let file_bytes = written.data_offset + written.nbytes();
    let path = args.out.display().to_string();
    if args.json {
        return output::print_json(&json!({
            "path": path,
            "format": if args.raw { "raw" } else { "npy" },
            "shape": written.shape,
            "dtype": dtype.name(),
            "byte_order": byte_order.name(),
            "dist": args.dist.to_string(),
            "seed": args.seed,
            "threads": threads,
            "block_bytes": args.block_size,
            "nbytes": written.nbytes(),
            "bytes_written": file_bytes,
            "seconds": output::float(seconds),
        }));
    }
    let rate = if seconds > 0.0 {
        format!("{:.2} GB/s", written.nbytes() as f64 / seconds / 1e9)
    } else {
        "instant".to_string()
    };
    output::print_line(&format!(
        "wrote {path}: {} {} ({}), {} in {seconds:.2} s ({rate})",
        written.shape_string(),
        dtype.name(),
        written.format,
        output::bytes(written.nbytes()),
    ))
}

/// Refuses up front when the blocks held at once (one per thread) would not
/// fit in the memory available on this machine — typically a single row
/// far larger than the block size.
fn check_memory(meta: &ArrayMeta, plan: &BlockPlan, threads: usize) -> Result<()> {
    let Some(available) = outcore::spill::available_memory() else {
        return Ok(());
    };
    // The largest block never holds more rows than the array.
    let block_bytes = plan.block_rows().min(meta.rows()) * meta.row_bytes() as u64;
    let needed = block_bytes.saturating_mul(threads as u64);
    if needed <= available {
        return Ok(());
    }
    let what = format!("generating {} {}", meta.shape_string(), meta.dtype);
    let row_bytes = meta.row_bytes() as u64;
    if row_bytes > available {
        bail!(
            "{what}: one row is {} bytes ({}), more than the {} of memory available; \
             rows must fit in memory",
            row_bytes,
            outcore::format_bytes(row_bytes),
            outcore::format_bytes(available),
        );
    }
    bail!(
        "{what}: {threads} thread(s) x {} per block need {} at once, more than the {} of \
         memory available; use fewer --threads or a smaller --block-size",
        outcore::format_bytes(block_bytes),
        outcore::format_bytes(needed),
        outcore::format_bytes(available),
    );
}
