//! On-disk arrays as row blocks: formats, dtypes, block reading and
//! atomic outputs for outcore.
//!
//! This crate knows files, not computation: it opens NumPy `.npy` files
//! (format 1.0, 2.0, 3.0; C or Fortran order; any rank) and raw binary
//! files, checks their headers with errors that name the path and the
//! numbers, splits them into blocks of contiguous rows, and reads each
//! block as an [`ndarray::ArrayView2`] of `rows × row_len` in native byte
//! order. It also writes outputs — `.npy` headers byte-identical to
//! NumPy's — block by block from several threads, finished atomically.
//!
//! # Brief overview
//!
//! * [`ArrayFile`] — an opened array: [`ArrayMeta`] plus block reads.
//! * [`BlockPlan`] — how rows split into blocks, chosen from a byte size.
//! * [`Block`] — one block's data, a mapped window or an aligned copy,
//!   released (and its pages dropped from RSS) when it is dropped;
//!   [`Block::check`] after reading a mapped block reports an input
//!   truncated under it (no SIGBUS).
//! * [`ArrayWriter`] / [`OutputSpec`] — an output filled by blocks,
//!   unnamed until complete, then linked into place.
//! * [`DType`], [`ByteOrder`], [`Element`] — element types at run time and
//!   their Rust counterparts; [`with_dtype!`] bridges the two.
//! * [`synth`] — reproducible synthetic data for tests and benchmarks.
//! * [`CancelToken`] — a shared request to stop a run between blocks
//!   (the engine and [`synth::write_array_cancellable`] check it).
//!
//! # Example
//!
//! ```
//! use outcore_chunker::{ArrayFile, ArrayWriter, BlockPlan, DType, OutputSpec};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("x.npy");
//!
//! // Write a 1000 × 4 float64 array, 100 rows at a time.
//! let writer = ArrayWriter::create(&path, OutputSpec::npy(DType::F64, vec![1000, 4]))?;
//! for rows in BlockPlan::new(1000, 100).iter() {
//!     let block = ndarray::Array2::from_shape_fn((100, 4), |(r, c)| {
//!         (rows.start as usize + r) as f64 * c as f64
//!     });
//!     writer.write_block(rows.start, block.view())?;
//! }
//! writer.finish()?;
//!
//! // Read it back in blocks of at most 4 KiB and sum column 1.
//! let file = ArrayFile::open(&path)?;
//! assert_eq!(file.meta().shape, vec![1000, 4]);
//! let mut sum = 0.0;
//! for rows in file.plan(4096).iter() {
//!     let block = file.read_rows(rows)?;
//!     sum += block.view::<f64>()?.column(1).sum();
//!     block.check()?; // nobody truncated the file under this block
//! }
//! assert_eq!(sum, (0..1000).sum::<i32>() as f64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub use half::f16;

pub use crate::block::{Block, BlockBuffer, BlockPlan, SharedBytes};
pub use crate::cancel::CancelToken;
pub use crate::dtype::{ByteOrder, DType, Element, ParseDTypeError, parse_descr};
pub use crate::error::{Error, Result};
pub use crate::meta::{ArrayMeta, Format, Layout};
pub use crate::source::{ArrayFile, RawSpec, ReadMode};
pub use crate::write::{ArrayWriter, OutputFormat, OutputSpec};

mod block;
mod cancel;
mod dtype;
mod error;
mod map;
mod meta;
mod npy;
mod source;
pub mod synth;
mod write;
