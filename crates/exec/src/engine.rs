//! The engine's face: [`EngineBuilder`] (every setting and its default) and
//! [`Engine`], the public API — open, compute, write, aggregate, explain.
//! Each run is lowered to a plan (`lower.rs`) and executed step by step
//! (`execute.rs`, `pass.rs`) under the runtime (`runtime.rs`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use outcore_chunker::{ArrayFile, CancelToken, DType, OutputSpec, RawSpec, ReadMode};
use outcore_kernels::{AnyArray, DynElement};
use outcore_spill::{MemoryBudget, SpillSpace};
use rayon::ThreadPool;

use crate::aggregate::{Aggregate, AggregateSpec};
use crate::compile::id;
use crate::error::{Error, Result};
use crate::execute::{execute, outputs};
use crate::explain::{Explain, explain};
use crate::expr::{Expr, Extent, Node};
use crate::lower::{Goal, Plan};
use crate::ops::kind::QuantileMethod;
use crate::outputs::Outputs;
use crate::progress::Progress;
use crate::report::RunReport;
use crate::runtime::Runtime;

/// Default bytes of input per block: large enough that mapping a window
/// costs nothing next to reading it, small enough for several blocks in
/// flight under small budgets.
const DEFAULT_BLOCK_BYTES: u64 = 8 << 20;

/// Builds an [`Engine`]. Every setting has a default.
#[derive(Clone, Debug, Default)]
pub struct EngineBuilder {
    memory_limit: Option<u64>,
    budget: Option<MemoryBudget>,
    threads: Option<usize>,
    pool: Option<Arc<ThreadPool>>,
    block_bytes: Option<u64>,
    progress: bool,
    read_mode: ReadMode,
    fsync: bool,
    overwrite: bool,
    spill_dir: Option<std::path::PathBuf>,
    spill_quota: Option<u64>,
    quantile_method: QuantileMethod,
    cancel: CancelToken,
    /// Leave the C allocator's settings alone (see
    /// [`EngineBuilder::return_freed_memory`]).
    keep_allocator: bool,
}

impl EngineBuilder {
    /// The memory limit in bytes for the data the engine holds. By default,
    /// [`outcore_spill::default_limit`]: half of the memory available when
    /// the engine is built (1 GiB where that cannot be read).
    pub fn memory_limit(mut self, bytes: u64) -> EngineBuilder {
        self.memory_limit = Some(bytes);
        self
    }

    /// Shares an existing budget (for several engines in one process).
    /// Overrides [`EngineBuilder::memory_limit`]. By default, each engine
    /// has a budget of its own.
    pub fn budget(mut self, budget: MemoryBudget) -> EngineBuilder {
        self.budget = Some(budget);
        self
    }

    /// Worker threads of the engine's own pool. By default, the machine's
    /// available parallelism. Ignored when a pool is given.
    pub fn threads(mut self, n: usize) -> EngineBuilder {
        self.threads = Some(n.max(1));
        self
    }

    /// Runs on the caller's rayon pool instead of building one. By default
    /// the engine builds its own; it never touches the global pool.
    pub fn thread_pool(mut self, pool: Arc<ThreadPool>) -> EngineBuilder {
        self.pool = Some(pool);
        self
    }

    /// Target bytes of input per block (at least one row is always read).
    /// By default 8 MiB, lowered as the memory limit requires.
    pub fn block_bytes(mut self, bytes: u64) -> EngineBuilder {
        self.block_bytes = Some(bytes.max(1));
        self
    }

    /// Shows a progress bar on stderr when stderr is a terminal. By
    /// default, off: the library never prints unless asked.
    pub fn progress(mut self, yes: bool) -> EngineBuilder {
        self.progress = yes;
        self
    }

    /// How input blocks are read. By default, [`ReadMode::Mmap`].
    pub fn read_mode(mut self, mode: ReadMode) -> EngineBuilder {
        self.read_mode = mode;
        self
    }

    /// Whether outputs are synced to disk before they take their final
    /// name. By default, true.
    pub fn fsync(mut self, yes: bool) -> EngineBuilder {
        self.fsync = yes;
        self
    }

    /// Whether outputs may replace existing files. By default, false.
    pub fn overwrite(mut self, yes: bool) -> EngineBuilder {
        self.overwrite = yes;
        self
    }

    /// Where spill files go (unnamed temporary files; nothing is left
    /// there, even after a kill). By default, the system's temporary
    /// directory. [`EngineBuilder::build`] refuses a directory it cannot
    /// open.
    pub fn spill_dir(mut self, dir: impl Into<std::path::PathBuf>) -> EngineBuilder {
        self.spill_dir = Some(dir.into());
        self
    }

    /// The most disk the engine's live spill files may use at once; more
    /// is an error naming the numbers. By default, no quota (a full disk
    /// is still an error, never a crash).
    pub fn spill_quota(mut self, bytes: u64) -> EngineBuilder {
        self.spill_quota = Some(bytes);
        self
    }

    /// Whether building the engine asks the C allocator to give large freed
    /// blocks back to the system at once ([`outcore_spill::return_freed_memory`],
    /// a process-wide setting on glibc), so that the process's RSS follows
    /// the memory the engine holds rather than what its threads once held.
    /// By default, true.
    pub fn return_freed_memory(mut self, yes: bool) -> EngineBuilder {
        self.keep_allocator = !yes;
        self
    }

    /// How quantiles and medians are found (by default
    /// [`QuantileMethod::Auto`]: radix selection, falling back to the
    /// external sort when its histograms do not fit the budget).
    pub fn quantile_method(mut self, method: QuantileMethod) -> EngineBuilder {
        self.quantile_method = method;
        self
    }

    /// Stops the engine's runs when `token` is cancelled (from another
    /// thread, or a signal handler through [`CancelToken::flag`]).
    ///
    /// Every loop that reads, computes, merges or writes blocks checks the
    /// token between blocks (sort merges: at every window of output), so
    /// a run stops within about one block's work per thread and returns
    /// [`Error::Cancelled`]. Nothing half-done is kept: an output being
    /// written is abandoned (nothing appears under its name, even if the
    /// token is cancelled after the last block), spill files are released
    /// (they are unnamed) and every reservation returns to the budget. A
    /// run waiting for another engine to release a shared budget notices
    /// the token when that wait ends.
    ///
    /// A token stays cancelled: every later run of the engine stops before
    /// its first block. By default, the engine has a token of its own that
    /// nobody cancels ([`Engine::cancel_token`] returns it).
    ///
    /// ```
    /// use outcore_exec::{CancelToken, Engine, Error};
    /// use outcore_chunker::{ArrayWriter, DType, OutputSpec};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("x.npy");
    /// let w = ArrayWriter::create(&path, OutputSpec::npy(DType::F64, vec![4, 1]))?;
    /// w.write_block(0, ndarray::array![[1.0], [2.0], [3.0], [4.0]].view())?;
    /// w.finish()?;
    ///
    /// let token = CancelToken::new();
    /// let engine = Engine::builder().cancel(token.clone()).build()?;
    /// let x = engine.open(&path)?;
    /// token.cancel(); // e.g. from a SIGINT handler, while a run goes on
    /// let out = dir.path().join("y.npy");
    /// let err = engine.write_npy(&(&x * 2.0), &out).unwrap_err();
    /// assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    /// assert!(!out.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(mut self, token: CancelToken) -> EngineBuilder {
        self.cancel = token;
        self
    }

    /// Builds the engine.
    ///
    /// # Errors
    ///
    /// [`Error::ThreadPool`] when the thread pool cannot start.
    pub fn build(self) -> Result<Engine> {
        if !self.keep_allocator {
            outcore_spill::return_freed_memory();
        }
        let budget = match self.budget {
            Some(b) => b,
            None => MemoryBudget::new(
                self.memory_limit
                    .unwrap_or_else(outcore_spill::default_limit),
            ),
        };
        let pool = match self.pool {
            Some(p) => p,
            None => {
                let threads = self
                    .threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(|i| format!("outcore-worker-{i}"))
                        .build()
                        .map_err(|e| Error::ThreadPool(e.to_string()))?,
                )
            }
        };
        let spill = match self.spill_dir {
            Some(dir) => {
                // Refused now, even for runs that turn out to need no
                // spill file: a typo should not wait for the big input.
                if let Err(source) = std::fs::read_dir(&dir) {
                    return Err(Error::Spill(outcore_spill::Error::Io {
                        dir,
                        op: "open the spill directory",
                        source,
                    }));
                }
                SpillSpace::new(dir)
            }
            None => SpillSpace::system(),
        };
        Ok(Engine {
            rt: Runtime {
                budget,
                pool,
                spill: match self.spill_quota {
                    Some(q) => spill.with_quota(q),
                    None => spill,
                },
                cancel: self.cancel,
                block_bytes: self.block_bytes.unwrap_or(DEFAULT_BLOCK_BYTES),
                quantile_method: self.quantile_method,
                progress: self.progress,
                watch: None,
            },
            read_mode: self.read_mode,
            fsync: self.fsync,
            overwrite: self.overwrite,
        })
    }
}

/// Runs computations over on-disk arrays under a memory budget.
///
/// ```
/// use outcore_exec::Engine;
/// use outcore_chunker::{ArrayWriter, DType, OutputSpec};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("x.npy");
/// let w = ArrayWriter::create(&path, OutputSpec::npy(DType::F64, vec![4, 2]))?;
/// w.write_block(0, ndarray::array![[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]].view())?;
/// w.finish()?;
///
/// let engine = Engine::builder().memory_limit(16 << 20).threads(2).build()?;
/// let x = engine.open(&path)?;
/// let (mean, std) = engine.compute((&x.mean(0), &x.std(0, 0)))?;
/// assert_eq!(mean.to_f64().into_raw_vec_and_offset().0, vec![2.5, 25.0]);
/// let std = std.to_f64();
/// assert!((std[1] - 11.180339887498949).abs() < 1e-12);
///
/// // Standardize: one statistics pass, one write pass.
/// let z = (&x - &x.mean(0)) / &x.std(0, 0);
/// engine.write_npy(&z.cast(DType::F32), dir.path().join("z.npy"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Engine {
    /// What runs execute with.
    rt: Runtime,
    read_mode: ReadMode,
    fsync: bool,
    overwrite: bool,
}

impl Engine {
    /// A builder with every setting at its default.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            fsync: true,
            ..EngineBuilder::default()
        }
    }

    /// An engine with default settings.
    ///
    /// # Errors
    ///
    /// As [`EngineBuilder::build`].
    pub fn new() -> Result<Engine> {
        Engine::builder().build()
    }

    /// The engine's memory budget.
    pub fn budget(&self) -> &MemoryBudget {
        self.rt.budget()
    }

    /// Where the engine's spill files go, and their quota.
    pub fn spill_space(&self) -> &SpillSpace {
        self.rt.spill()
    }

    /// The token that stops this engine's runs (see
    /// [`EngineBuilder::cancel`]): cancelling it, or a clone of it, stops
    /// every run of the engine and of its clones.
    pub fn cancel_token(&self) -> &CancelToken {
        self.rt.cancel_token()
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.rt.threads()
    }

    /// A clone of this engine whose runs stop when `token` is cancelled
    /// (see [`EngineBuilder::cancel`]), sharing its budget, threads and
    /// spill space: a fresh token per run lets a caller stop one run (on
    /// Ctrl-C, say) without stopping the engine's later ones.
    pub fn with_cancel(&self, token: CancelToken) -> Engine {
        let mut engine = self.clone();
        engine.rt.cancel = token;
        engine
    }

    /// A clone of this engine (same budget, pool and settings) whose runs
    /// tell `progress` how far they have come, for a watcher on another
    /// thread (the Python package draws its progress bar from it).
    pub fn with_progress(&self, progress: Arc<Progress>) -> Engine {
        let mut engine = self.clone();
        engine.rt.watch = Some(progress);
        engine
    }

    /// Opens a `.npy` file as a lazy expression. Only the header is read.
    ///
    /// # Errors
    ///
    /// As [`ArrayFile::open`].
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Expr> {
        let file = ArrayFile::open(path)?.with_read_mode(self.read_mode);
        Ok(Expr::source(Arc::new(file)))
    }

    /// Opens a raw binary file as a lazy expression.
    ///
    /// # Errors
    ///
    /// As [`ArrayFile::open_raw`].
    pub fn open_raw(&self, path: impl AsRef<Path>, spec: &RawSpec) -> Result<Expr> {
        let file = ArrayFile::open_raw(path, spec)?.with_read_mode(self.read_mode);
        Ok(Expr::source(Arc::new(file)))
    }

    /// An array already opened — from a file, or in memory with
    /// [`ArrayFile::from_memory`] — as a lazy expression. Files get the
    /// engine's read mode.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use outcore_chunker::{ArrayFile, ByteOrder, DType, Layout};
    /// use outcore_exec::Engine;
    ///
    /// let bytes: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_ne_bytes()).collect();
    /// let file = ArrayFile::from_memory(
    ///     Arc::new(bytes), "<memory>", DType::F64, vec![2, 2], ByteOrder::NATIVE, Layout::C,
    /// )?;
    /// let engine = Engine::builder().memory_limit(16 << 20).build()?;
    /// let x = engine.array(file);
    /// let sums = engine.compute(x.sum(Some(0)))?;
    /// assert_eq!(sums.to_f64().into_raw_vec_and_offset().0, vec![4.0, 6.0]);
    /// # Ok::<(), outcore_exec::Error>(())
    /// ```
    pub fn array(&self, file: ArrayFile) -> Expr {
        if file.is_memory() {
            Expr::array(file)
        } else {
            Expr::array(file.with_read_mode(self.read_mode))
        }
    }

    /// Computes expressions: reductions (and expressions of them) are
    /// returned as 0-d or 1-d arrays; a streamed expression is
    /// materialised in memory if it fits the budget. Everything requested
    /// is computed in the fewest passes over the data.
    ///
    /// # Errors
    ///
    /// Construction errors recorded in the expressions, I/O and format
    /// errors, [`Error::LimitTooSmall`], reduction errors (empty input for
    /// min/max, integer overflow) and panics in user functions.
    pub fn compute<O: Outputs>(&self, outputs: O) -> Result<O::Values> {
        self.compute_with_report(outputs).map(|(v, _)| v)
    }

    /// As [`Engine::compute`], also returning the run's report.
    ///
    /// # Errors
    ///
    /// As [`Engine::compute`].
    pub fn compute_with_report<O: Outputs>(&self, outputs: O) -> Result<(O::Values, RunReport)> {
        let (values, report) = self.run(&outputs.exprs(), Goal::Collect, None)?;
        Ok((O::values(values), report))
    }

    /// Writes a streamed expression to a `.npy` file, atomically (see
    /// [`ArrayWriter`](outcore_chunker::ArrayWriter)). Reductions it depends on are computed first, in
    /// as few passes as possible.
    ///
    /// # Errors
    ///
    /// As [`Engine::compute`], plus [`outcore_chunker::Error::OutputExists`]
    /// when the output exists and overwriting is off.
    pub fn write_npy(&self, expr: &Expr, path: impl AsRef<Path>) -> Result<RunReport> {
        let spec = OutputSpec::npy(expr.dtype(), expr.shape());
        self.write(expr, path, spec)
    }

    /// Writes a streamed expression as `spec` describes (format, byte
    /// order; the spec's dtype and shape must match the expression's).
    ///
    /// # Errors
    ///
    /// As [`Engine::write_npy`]; [`Error::Shape`] when the spec does not
    /// match the expression.
    pub fn write(
        &self,
        expr: &Expr,
        path: impl AsRef<Path>,
        spec: OutputSpec,
    ) -> Result<RunReport> {
        expr.check()?;
        if !matches!(expr.extent, Extent::Full { .. }) {
            return Err(Error::Shape(format!(
                "{expr} is a reduced value, not an array streamed by rows; use compute"
            )));
        }
        if spec.dtype() != expr.dtype() || spec.shape() != expr.shape().as_slice() {
            return Err(Error::Shape(format!(
                "output spec {} {:?} does not match the expression's {} {:?}",
                spec.dtype(),
                spec.shape(),
                expr.dtype(),
                expr.shape()
            )));
        }
        let path = path.as_ref();
        let spec = self.output_spec(expr, path, spec)?;
        let (_, report) = self.run(std::slice::from_ref(expr), Goal::Write, Some((path, spec)))?;
        Ok(report)
    }

    /// `spec` with the engine's fsync and overwrite settings, once `path`
    /// is known not to be an input of `expr` and, unless overwriting, not
    /// to exist.
    pub(crate) fn output_spec(
        &self,
        expr: &Expr,
        path: &Path,
        spec: OutputSpec,
    ) -> Result<OutputSpec> {
        refuse_input_as_output(expr, path)?;
        if !self.overwrite && path.exists() {
            return Err(outcore_chunker::Error::OutputExists {
                path: path.to_path_buf(),
            }
            .into());
        }
        Ok(spec.fsync(self.fsync).overwrite(self.overwrite))
    }

    /// Runs a user [`Aggregate`] over a streamed expression (cast to `T`
    /// first if its dtype differs), in block order, in parallel, under the
    /// budget; reductions the expression depends on are computed first.
    ///
    /// ```
    /// use ndarray::ArrayView2;
    /// use outcore_exec::{Engine, aggregate::Aggregate};
    /// use outcore_chunker::{ArrayWriter, DType, OutputSpec};
    ///
    /// /// Counts values above a threshold.
    /// struct CountAbove(f64);
    /// impl Aggregate<f64> for CountAbove {
    ///     type State = u64;
    ///     type Output = u64;
    ///     fn init(&self, _row_len: usize) -> u64 { 0 }
    ///     fn update(&self, n: &mut u64, block: ArrayView2<'_, f64>, _first_row: u64) {
    ///         *n += block.iter().filter(|&&v| v > self.0).count() as u64;
    ///     }
    ///     fn merge(&self, n: &mut u64, next: u64) { *n += next }
    ///     fn finish(&self, n: u64, _rows: u64, _row_len: usize) -> outcore_exec::Result<u64> { Ok(n) }
    /// }
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("x.npy");
    /// let w = ArrayWriter::create(&path, OutputSpec::npy(DType::I32, vec![3, 2]))?;
    /// w.write_block(0, ndarray::array![[1, 5], [7, 2], [9, 4]].view())?;
    /// w.finish()?;
    ///
    /// let engine = Engine::builder().memory_limit(16 << 20).build()?;
    /// let x = engine.open(&path)?;
    /// // int32 input, f64 aggregate: the engine casts; the standardized
    /// // values above zero are counted, after a statistics pass.
    /// let z = (&x - &x.mean(None)) / &x.std(None, 0);
    /// assert_eq!(engine.aggregate(&z, CountAbove(0.0))?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Engine::compute`], and whatever the aggregate's `finish`
    /// returns; a panic in the aggregate is [`Error::Panic`].
    pub fn aggregate<T, A>(&self, expr: &Expr, agg: A) -> Result<A::Output>
    where
        T: DynElement,
        A: Aggregate<T> + 'static,
        A::State: 'static,
        A::Output: Send + 'static,
    {
        expr.check()?;
        let Extent::Full { .. } = expr.extent else {
            return Err(Error::Shape(format!(
                "{expr} is a reduced value, not an array streamed by rows"
            )));
        };
        let input = if expr.dtype() == T::DATA_TYPE {
            expr.clone()
        } else {
            expr.cast(T::DATA_TYPE)
        };
        // The aggregate runs as a kernel node (the machinery of every
        // reduction); its typed result is left in `stash`.
        let stash = Arc::new(Mutex::new(None));
        let spec = AggregateSpec::<T, A>::stash(agg, stash.clone());
        let node = Expr::new(
            Node::Kernel(Arc::new(spec), input),
            DType::U8,
            Extent::Scalar,
        );
        self.run(&[node], Goal::Collect, None)?;
        let out = stash.lock().ok().and_then(|mut s| s.take());
        out.ok_or_else(|| Error::Invalid("internal: the aggregate gave no result".into()))
    }

    /// Describes how the expressions would run: passes, fused programs,
    /// block sizes, bytes to read and write, and the memory estimate.
    ///
    /// Reductions of earlier passes are not run; their sizes are known
    /// from the shapes.
    ///
    /// # Errors
    ///
    /// Construction errors, and [`Error::LimitTooSmall`] when the plan
    /// cannot run under the limit.
    pub fn explain<O: Outputs>(&self, outputs: O) -> Result<Explain> {
        let plan = Plan::new(&outputs.exprs(), Goal::Explain)?;
        explain(&self.rt, &plan)
    }

    /// Lowers `exprs` to a plan for `goal` and runs it; returns the
    /// values of the requested expressions (none for a lone written
    /// operator) and the run's report.
    fn run(
        &self,
        exprs: &[Expr],
        goal: Goal,
        output: Option<(&Path, OutputSpec)>,
    ) -> Result<(Vec<AnyArray>, RunReport)> {
        let start = Instant::now();
        let mut report = RunReport::new(self.rt.budget().limit());
        let plan = Plan::new(exprs, goal)?;
        let values = execute(&self.rt, &plan, output, &mut report)?;
        let out = outputs(&plan.outputs, values)?;
        report.finish(start);
        Ok((out, report))
    }
}

/// Refuses to write over a file the expression reads: the same path, or
/// another name (hard link, symlink) of the same file.
fn refuse_input_as_output(expr: &Expr, out: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out_md) = std::fs::metadata(out) else {
        return Ok(()); // a new file cannot be an input
    };
    let mut stack = vec![expr];
    let mut seen = std::collections::HashSet::new();
    while let Some(e) = stack.pop() {
        if !seen.insert(id(e)) {
            continue;
        }
        if let crate::expr::Node::Source(f) = &*e.node
            && let Ok(md) = std::fs::metadata(f.path())
            && md.dev() == out_md.dev()
            && md.ino() == out_md.ino()
        {
            return Err(outcore_chunker::Error::OutputIsInput {
                path: out.to_path_buf(),
                input: f.path().to_path_buf(),
            }
            .into());
        }
        stack.extend(e.children());
    }
    Ok(())
}
