//! Reproducible synthetic arrays, for tests, examples and benchmarks.
//!
//! Each element is a pure function of `(seed, flat index)` — a counter-based
//! generator (SplitMix64 over the index) — so an array is the same whatever
//! block size or thread count writes it, and any block can be generated on
//! its own.
//!
//! ```
//! use outcore_chunker::synth::{Distribution, Generator};
//! use outcore_chunker::DType;
//!
//! let g = Generator::new(Distribution::Uniform, 42);
//! let mut a = vec![0u8; 8 * 10];
//! let mut b = vec![0u8; 8 * 4];
//! g.fill_bytes(DType::F64, 0, &mut a);
//! g.fill_bytes(DType::F64, 6, &mut b); // elements 6..10 on their own
//! assert_eq!(&a[48..], &b[..]);
//! ```

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use half::f16;

use crate::block::BlockPlan;
use crate::cancel::CancelToken;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::meta::ArrayMeta;
use crate::source::swap_in_place;
use crate::write::{ArrayWriter, OutputSpec};

/// What values to generate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distribution {
    /// Floats uniform in `[0, 1)`; signed integers uniform in `[-100, 100)`,
    /// unsigned in `[0, 100)`; bools true with probability ½.
    #[default]
    Uniform,
    /// Floats standard normal (Box–Muller); integers `round(10·z)`
    /// saturated to the type's range; bools `z > 0`.
    Normal,
    /// The flat element index, as `np.arange(n).astype(dtype)` (integers
    /// wrap, float16 rounds and becomes `inf` past 65504, bools `i % 2`).
    Arange,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Uniform => "uniform",
            Distribution::Normal => "normal",
            Distribution::Arange => "arange",
        })
    }
}

impl FromStr for Distribution {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" => Ok(Distribution::Uniform),
            "normal" => Ok(Distribution::Normal),
            "arange" => Ok(Distribution::Arange),
            _ => Err(format!(
                "unknown distribution '{s}' (expected uniform, normal or arange)"
            )),
        }
    }
}

/// A counter-based generator of element values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generator {
    dist: Distribution,
    key: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) with 53 random bits.
#[inline]
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl Generator {
    /// A generator of `dist` values for `seed`.
    pub fn new(dist: Distribution, seed: u64) -> Generator {
        Generator {
            dist,
            key: splitmix(seed ^ 0x6F75_7463_6F72_6531),
        }
    }

    #[inline]
    fn hash(&self, i: u64) -> u64 {
        splitmix(self.key.wrapping_add(i.wrapping_mul(GOLDEN)))
    }

    #[inline]
    fn normal(&self, i: u64) -> f64 {
        // Box–Muller on two independent draws; 1 - u keeps ln away from 0.
        let u1 = 1.0 - unit(self.hash(2 * i));
        let u2 = unit(self.hash(2 * i + 1));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// The value of element `i` as `f64` for the float and bool cases, or
    /// as `i64`/`u64` for integers — see [`Generator::fill_bytes`].
    #[inline]
    fn float(&self, i: u64) -> f64 {
        match self.dist {
            Distribution::Uniform => unit(self.hash(i)),
            Distribution::Normal => self.normal(i),
            Distribution::Arange => i as f64,
        }
    }

    #[inline]
    fn signed(&self, i: u64) -> i64 {
        match self.dist {
            Distribution::Uniform => (self.hash(i) % 200) as i64 - 100,
            Distribution::Normal => (self.normal(i) * 10.0).round() as i64,
            Distribution::Arange => i as i64,
        }
    }

    #[inline]
    fn unsigned(&self, i: u64) -> u64 {
        match self.dist {
            Distribution::Uniform => self.hash(i) % 100,
            Distribution::Normal => (self.normal(i) * 10.0).round().max(0.0) as u64,
            Distribution::Arange => i,
        }
    }

    #[inline]
    fn boolean(&self, i: u64) -> bool {
        match self.dist {
            Distribution::Uniform => self.hash(i) >> 63 == 1,
            Distribution::Normal => self.normal(i) > 0.0,
            Distribution::Arange => i % 2 == 1,
        }
    }

    /// Fills `out` with elements `first, first + 1, …` of `dtype`, in
    /// native byte order. `out.len()` must be a multiple of the item size.
    pub fn fill_bytes(&self, dtype: DType, first: u64, out: &mut [u8]) {
        let isz = dtype.itemsize();
        debug_assert_eq!(out.len() % isz, 0);
        let idx = |k: usize| first + k as u64;
        macro_rules! fill {
            ($conv:expr) => {
                for (k, c) in out.chunks_exact_mut(isz).enumerate() {
                    c.copy_from_slice(&$conv(idx(k)).to_ne_bytes());
                }
            };
        }
        // Narrowing `as` casts saturate for floats and wrap for Arange
        // integers, as NumPy's astype does for in-range values.
        match dtype {
            DType::Bool => fill!(|i| u8::from(self.boolean(i))),
            DType::I8 => fill!(|i| self.saturate_signed(i, i8::MIN as i64, i8::MAX as i64) as i8),
            DType::I16 => {
                fill!(|i| self.saturate_signed(i, i16::MIN as i64, i16::MAX as i64) as i16)
            }
            DType::I32 => {
                fill!(|i| self.saturate_signed(i, i32::MIN as i64, i32::MAX as i64) as i32)
            }
            DType::I64 => fill!(|i| self.signed(i)),
            DType::U8 => fill!(|i| self.saturate_unsigned(i, u8::MAX as u64) as u8),
            DType::U16 => fill!(|i| self.saturate_unsigned(i, u16::MAX as u64) as u16),
            DType::U32 => fill!(|i| self.saturate_unsigned(i, u32::MAX as u64) as u32),
            DType::U64 => fill!(|i| self.unsigned(i)),
            DType::F16 => fill!(|i| f16::from_f64(self.float(i))),
            DType::F32 => fill!(|i| self.float(i) as f32),
            DType::F64 => fill!(|i| self.float(i)),
        }
    }

    fn saturate_signed(&self, i: u64, min: i64, max: i64) -> i64 {
        let v = self.signed(i);
        match self.dist {
            // arange wraps like astype; the others saturate.
            Distribution::Arange => v,
            _ => v.clamp(min, max),
        }
    }

    fn saturate_unsigned(&self, i: u64, max: u64) -> u64 {
        let v = self.unsigned(i);
        match self.dist {
            Distribution::Arange => v,
            _ => v.min(max),
        }
    }
}

/// Writes a synthetic array to `path` as described by `spec`, block by
/// block from `threads` threads (at least one).
///
/// Memory is bounded by `threads × block_bytes` (at least one row per
/// block). `progress` is called with the number of bytes of each block
/// written, from the writing threads.
///
/// # Errors
///
/// As [`ArrayWriter::create`], [`ArrayWriter::write_rows`] and
/// [`ArrayWriter::finish`]; the output is not created on error.
pub fn write_array(
    path: impl AsRef<Path>,
    spec: OutputSpec,
    generator: &Generator,
    block_bytes: u64,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ArrayMeta> {
    write_array_cancellable(
        path,
        spec,
        generator,
        block_bytes,
        threads,
        progress,
        &CancelToken::new(),
    )
}

/// As [`write_array`], stopping between blocks once `cancel` is
/// cancelled.
///
/// Every thread checks the token before generating each block; a
/// cancelled run drops the unfinished output (nothing appears under
/// `path`) and returns [`Error::Cancelled`] with the blocks written.
///
/// # Errors
///
/// As [`write_array`], and [`Error::Cancelled`].
pub fn write_array_cancellable(
    path: impl AsRef<Path>,
    spec: OutputSpec,
    generator: &Generator,
    block_bytes: u64,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
    cancel: &CancelToken,
) -> Result<ArrayMeta> {
    let path = path.as_ref();
    let writer = ArrayWriter::create(path, spec)?;
    let meta = writer.meta().clone();
    let plan = BlockPlan::from_bytes(meta.rows(), meta.row_bytes(), block_bytes);
    let next = AtomicUsize::new(0);
    let written = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let cancelled = || Error::Cancelled {
        path: path.to_path_buf(),
        done: written.load(Ordering::Relaxed),
        total: plan.len() as u64,
    };
    let worker = || -> Result<()> {
        let mut buf = Vec::new();
        loop {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            if cancel.is_cancelled() {
                failed.store(true, Ordering::Relaxed);
                return Err(cancelled());
            }
            let Some(rows) = plan.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            buf.resize((rows.end - rows.start) as usize * meta.row_bytes(), 0);
            let first = rows.start * meta.row_len() as u64;
            generator.fill_bytes(meta.dtype, first, &mut buf);
            if !meta.byte_order.is_native() {
                swap_in_place(&mut buf, meta.dtype.itemsize());
            }
            if let Err(e) = writer.write_rows(rows.start, &buf) {
                // Stop the other workers: the output is lost anyway.
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
            written.fetch_add(1, Ordering::Relaxed);
            progress(buf.len() as u64);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("synthetic-data worker does not panic"))
            .collect::<Result<Vec<()>>>()
    })?;
    // A token cancelled after the last block still stops the run before
    // the output takes its name: the caller asked for no output.
    if cancel.is_cancelled() {
        return Err(cancelled());
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_values_whatever_the_split() {
        for dtype in DType::ALL {
            for dist in [
                Distribution::Uniform,
                Distribution::Normal,
                Distribution::Arange,
            ] {
                let g = Generator::new(dist, 7);
                let isz = dtype.itemsize();
                let mut whole = vec![0u8; 50 * isz];
                g.fill_bytes(dtype, 0, &mut whole);
                let mut parts = vec![0u8; 50 * isz];
                for (a, b) in [(0, 13), (13, 14), (14, 50)] {
                    g.fill_bytes(dtype, a, &mut parts[a as usize * isz..b * isz]);
                }
                assert_eq!(whole, parts, "{dtype} {dist}");
            }
        }
    }

    #[test]
    fn uniform_and_normal_look_right() {
        let g = Generator::new(Distribution::Normal, 1);
        let n = 200_000u64;
        let (mut s, mut s2) = (0.0, 0.0);
        for i in 0..n {
            let z = g.float(i);
            s += z;
            s2 += z * z;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        let u = Generator::new(Distribution::Uniform, 1);
        assert!(
            (0..1000)
                .map(|i| u.float(i))
                .all(|x| (0.0..1.0).contains(&x))
        );
        assert!(
            (0..1000)
                .map(|i| u.signed(i))
                .all(|x| (-100..100).contains(&x))
        );
    }

    #[test]
    fn arange_is_the_index() {
        let g = Generator::new(Distribution::Arange, 0);
        let mut out = [0u8; 8 * 3];
        g.fill_bytes(DType::I64, 5, &mut out);
        let v: Vec<i64> = out
            .chunks_exact(8)
            .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(v, [5, 6, 7]);
    }

    #[test]
    fn a_cancelled_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let g = Generator::new(Distribution::Uniform, 3);
        let spec = || OutputSpec::npy(DType::F64, vec![1000, 4]);
        // Cancelled by the progress callback after the third block: the
        // threads stop before the next one, and nothing takes the name.
        let token = CancelToken::new();
        let blocks = AtomicU64::new(0);
        let progress = |_| {
            if blocks.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                token.cancel();
            }
        };
        let err =
            write_array_cancellable(&path, spec(), &g, 320, 2, &progress, &token).unwrap_err();
        match &err {
            Error::Cancelled { done, total, .. } => {
                assert!(*done >= 3 && *done < *total, "{err}");
                assert_eq!(*total, 100);
            }
            other => panic!("{other}"),
        }
        assert_eq!(err.kind(), "cancelled");
        assert!(err.to_string().contains("x.npy"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // Already cancelled: not even the first block.
        let err = write_array_cancellable(&path, spec(), &g, 320, 1, &|_| {}, &token).unwrap_err();
        assert!(matches!(err, Error::Cancelled { done: 0, .. }), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        // A fresh token writes the array.
        write_array_cancellable(&path, spec(), &g, 320, 2, &|_| {}, &CancelToken::new()).unwrap();
        assert!(path.exists());
    }
}
