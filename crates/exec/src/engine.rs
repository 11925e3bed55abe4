//! The engine: configuration, planning, memory sizing and running passes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::{
    ArrayFile, ArrayWriter, Block, BlockBuffer, CancelToken, OutputSpec, RawSpec, ReadMode,
    with_dtype,
};
use outcore_spill::{Consumer, MemoryBudget, Reservation, SpillFile, SpillSpace};
use rayon::ThreadPool;

use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::expr::{Expr, Extent};
use crate::ops::quantile::QuantileMethod;
use crate::plan::{
    Explain, Input, NodeId, Pass, PassInfo, PassRequest, Planner, id, level, reduce_nodes,
    small_value,
};
use outcore_kernels::cast::{buf_to_array, bytes_to_array, cast_array, reshape, zeroed_like};
use outcore_kernels::eval::{BlockInputs, Buf, Machine, TILE_ELEMS};
use outcore_kernels::{AnyArray, AnyView, Collector, DynElement};
use outcore_kernels::{ReduceAxis, ReduceState as Partial};

/// Blocks are sized so that this many fit in the budget at once (see
/// `Engine::size`): enough for a reader one block ahead of two workers.
const SIZING_SLOTS: u64 = 4;

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
    /// directory.
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
        Ok(Engine {
            budget,
            pool,
            block_bytes: self.block_bytes.unwrap_or(DEFAULT_BLOCK_BYTES),
            progress: self.progress,
            read_mode: self.read_mode,
            fsync: self.fsync,
            overwrite: self.overwrite,
            spill: {
                let space = match self.spill_dir {
                    Some(dir) => SpillSpace::new(dir),
                    None => SpillSpace::system(),
                };
                match self.spill_quota {
                    Some(q) => space.with_quota(q),
                    None => space,
                }
            },
            quantile_method: self.quantile_method,
            cancel: self.cancel,
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
    budget: MemoryBudget,
    pool: Arc<ThreadPool>,
    block_bytes: u64,
    progress: bool,
    read_mode: ReadMode,
    fsync: bool,
    overwrite: bool,
    spill: SpillSpace,
    quantile_method: QuantileMethod,
    cancel: CancelToken,
}

/// What a run did and used.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RunReport {
    /// Wall time.
    pub elapsed: Duration,
    /// Streaming passes run.
    pub passes: usize,
    /// Blocks processed, over all passes.
    pub blocks: u64,
    /// Input bytes read.
    pub bytes_read: u64,
    /// Output bytes written.
    pub bytes_written: u64,
    /// Bytes spilled to temporary files.
    pub bytes_spilled: u64,
    /// The memory limit in bytes.
    pub memory_limit: u64,
    /// Largest reservation of each consumer during the run, in bytes.
    pub reserved_by_consumer: Vec<(Consumer, u64)>,
    /// Largest total reservation during the run, in bytes.
    pub peak_reserved: u64,
    /// The process's peak resident set (VmHWM) after the run; Linux only.
    pub peak_rss: Option<u64>,
    /// The process's resident set (VmRSS) after the run; Linux only.
    pub rss: Option<u64>,
}

impl RunReport {
    fn finish(&mut self, start: Instant) {
        self.elapsed = start.elapsed();
        if let Some(m) = outcore_spill::process_memory() {
            self.peak_rss = Some(m.peak_rss);
            self.rss = Some(m.rss);
        }
    }

    pub(crate) fn note_reservations(&mut self, parts: &[(Consumer, u64)]) {
        let total: u64 = parts.iter().map(|p| p.1).sum();
        self.peak_reserved = self.peak_reserved.max(total);
        for &(c, b) in parts {
            match self.reserved_by_consumer.iter_mut().find(|x| x.0 == c) {
                Some(x) => x.1 = x.1.max(b),
                None => self.reserved_by_consumer.push((c, b)),
            }
        }
    }
}

/// A set of expressions computed together (in as few passes as possible).
pub trait Outputs {
    /// What computing them returns.
    type Values;
    /// The expressions, in order.
    fn exprs(&self) -> Vec<Expr>;
    /// Builds the return value from the computed arrays (same order).
    fn values(values: Vec<AnyArray>) -> Self::Values;
}

impl Outputs for &Expr {
    type Values = AnyArray;
    fn exprs(&self) -> Vec<Expr> {
        vec![(*self).clone()]
    }
    fn values(mut v: Vec<AnyArray>) -> AnyArray {
        v.remove(0)
    }
}

impl Outputs for Expr {
    type Values = AnyArray;
    fn exprs(&self) -> Vec<Expr> {
        vec![self.clone()]
    }
    fn values(mut v: Vec<AnyArray>) -> AnyArray {
        v.remove(0)
    }
}

impl Outputs for &[Expr] {
    type Values = Vec<AnyArray>;
    fn exprs(&self) -> Vec<Expr> {
        self.to_vec()
    }
    fn values(v: Vec<AnyArray>) -> Vec<AnyArray> {
        v
    }
}

impl Outputs for Vec<Expr> {
    type Values = Vec<AnyArray>;
    fn exprs(&self) -> Vec<Expr> {
        self.clone()
    }
    fn values(v: Vec<AnyArray>) -> Vec<AnyArray> {
        v
    }
}

macro_rules! tuple_outputs {
    ($($name:ident),+) => {
        impl<$($name: std::borrow::Borrow<Expr>),+> Outputs for ($($name,)+) {
            type Values = ($(tuple_outputs!(@any $name),)+);
            #[allow(non_snake_case)]
            fn exprs(&self) -> Vec<Expr> {
                let ($($name,)+) = self;
                vec![$($name.borrow().clone()),+]
            }
            fn values(v: Vec<AnyArray>) -> Self::Values {
                let mut it = v.into_iter();
                ($(tuple_outputs!(@next it $name),)+)
            }
        }
    };
    (@any $name:ident) => { AnyArray };
    (@next $it:ident $name:ident) => { $it.next().expect("one value per expression") };
}

tuple_outputs!(A, B);
tuple_outputs!(A, B, C);
tuple_outputs!(A, B, C, D);
tuple_outputs!(A, B, C, D, E);
tuple_outputs!(A, B, C, D, E, F);
tuple_outputs!(A, B, C, D, E, F, G);
tuple_outputs!(A, B, C, D, E, F, G, H);

/// Where a streamed (full-extent) expression goes.
enum Dest {
    Write(Arc<ArrayWriter>),
    Spill(Arc<SpillFile>),
    Collect,
    Aggregate(Arc<dyn DynAggregate>),
}

/// What a run does with its streamed expression.
pub(crate) enum Target<'a> {
    /// Streamed expressions are returned in memory.
    Collect,
    /// The streamed expression is written to a file.
    Write(&'a Path, OutputSpec),
    /// The streamed expression feeds an aggregate.
    Aggregate(Arc<dyn DynAggregate>),
    /// The streamed expression is written, raw, to a spill file.
    Spill(Arc<SpillFile>),
}

/// The partial state of a user aggregate, type-erased.
type AggState = Box<dyn std::any::Any + Send>;

/// An [`Aggregate`] over one element type, type-erased so the engine can
/// hold it beside the built-in reductions.
pub(crate) trait DynAggregate: Send + Sync {
    fn init(&self) -> AggState;
    fn update(&self, state: &mut AggState, block: AnyView<'_>, first_row: u64);
    fn merge(&self, into: &mut AggState, next: AggState);
    /// (bytes of one state, bytes per row it covers)
    fn state_bytes(&self) -> (u64, u64);
}

struct AggregateAdapter<T, A> {
    agg: A,
    row_len: usize,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T, A> DynAggregate for AggregateAdapter<T, A>
where
    T: DynElement,
    A: Aggregate<T>,
    A::State: 'static,
{
    fn init(&self) -> AggState {
        Box::new(self.agg.init(self.row_len))
    }

    fn update(&self, state: &mut AggState, block: AnyView<'_>, first_row: u64) {
        let state = state
            .downcast_mut::<A::State>()
            .expect("states come from this aggregate's init");
        let view = T::from_view(block).expect("the engine casts the input to T");
        self.agg.update(state, view, first_row);
    }

    fn merge(&self, into: &mut AggState, next: AggState) {
        let into = into
            .downcast_mut::<A::State>()
            .expect("states come from this aggregate's init");
        let next = *next
            .downcast::<A::State>()
            .expect("states come from this aggregate's init");
        self.agg.merge(into, next);
    }

    fn state_bytes(&self) -> (u64, u64) {
        (
            self.agg.state_bytes(self.row_len) as u64,
            self.agg.state_bytes_per_row(self.row_len) as u64,
        )
    }
}

/// What a run produced.
pub(crate) struct RunOutput {
    values: Vec<AnyArray>,
    pub(crate) report: RunReport,
    aggregate: Option<AggState>,
}

/// Sizes of one pass, derived from the budget.
#[derive(Clone, Debug)]
pub(crate) struct Sizing {
    pub(crate) block_rows: u64,
    pub(crate) slots: usize,
    /// Bytes reserved for the whole pass, by consumer.
    pub(crate) fixed: Vec<(Consumer, u64)>,
    /// Bytes of one slot, by consumer.
    pub(crate) slot: Vec<(Consumer, u64)>,
    pub(crate) block_bytes: u64,
    /// The smallest limit this pass can run with.
    pub(crate) minimum: u64,
}

impl Sizing {
    fn total(&self) -> u64 {
        let f: u64 = self.fixed.iter().map(|p| p.1).sum();
        let s: u64 = self.slot.iter().map(|p| p.1).sum();
        f + s * self.slots as u64
    }

    fn by_consumer(&self) -> Vec<(Consumer, u64)> {
        let mut out: Vec<(Consumer, u64)> = Vec::new();
        let mut add = |c: Consumer, b: u64| match out.iter_mut().find(|x| x.0 == c) {
            Some(x) => x.1 += b,
            None => out.push((c, b)),
        };
        for &(c, b) in &self.fixed {
            add(c, b);
        }
        for &(c, b) in &self.slot {
            add(c, b * self.slots as u64);
        }
        out.retain(|x| x.1 > 0);
        out
    }
}

/// The memory of one block in flight: its reservations, and the read
/// buffers of the last block that used it (reused, so copied blocks do
/// not allocate — nor leave the allocator's slack — block after block).
struct Slot {
    _reserved: Vec<Reservation>,
    buffers: Vec<Option<BlockBuffer>>,
}

/// One block as read: its source blocks and the memory slot it holds.
struct ReadBlock {
    first_row: u64,
    rows: usize,
    blocks: Vec<Block>,
    slot: Slot,
}

/// A worker's reusable buffers for one pass: the registers of every
/// frame and the output buffers, so blocks allocate nothing.
struct Scratch {
    machines: Vec<Machine>,
    /// 8-aligned output buffers, one per store.
    outs: Vec<Vec<u64>>,
}

impl Scratch {
    fn new(pass: &Pass) -> Scratch {
        Scratch {
            machines: pass
                .frames
                .iter()
                .map(|f| Machine::new(&f.prog, TILE_ELEMS.max(f.cols)))
                .collect(),
            outs: vec![Vec::new(); pass.stores.len()],
        }
    }
}

/// One block's results.
struct BlockResult {
    partials: Vec<Partial>,
    collected: Vec<Option<Collector>>,
    aggregates: Vec<Option<AggState>>,
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
        &self.budget
    }

    /// Where the engine's spill files go, and their quota.
    pub fn spill_space(&self) -> &SpillSpace {
        &self.spill
    }

    pub(crate) fn spill(&self) -> &SpillSpace {
        &self.spill
    }

    pub(crate) fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    pub(crate) fn block_bytes(&self) -> u64 {
        self.block_bytes
    }

    pub(crate) fn quantile_method(&self) -> QuantileMethod {
        self.quantile_method
    }

    /// The token that stops this engine's runs (see
    /// [`EngineBuilder::cancel`]): cancelling it, or a clone of it, stops
    /// every run of the engine and of its clones.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// [`Error::Cancelled`] if the engine's token is cancelled: `done` of
    /// `total` units of `stage` were complete.
    pub(crate) fn check_cancel(&self, stage: &'static str, done: u64, total: u64) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled { stage, done, total });
        }
        Ok(())
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
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
        let exprs = outputs.exprs();
        let out = self.run(&exprs, Target::Collect)?;
        Ok((O::values(out.values), out.report))
    }

    /// Writes a streamed expression to a `.npy` file, atomically (see
    /// [`ArrayWriter`]). Reductions it depends on are computed first, in
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
        let spec = spec.fsync(self.fsync).overwrite(self.overwrite);
        let path = path.as_ref();
        refuse_input_as_output(expr, path)?;
        if !self.overwrite && path.exists() {
            return Err(outcore_chunker::Error::OutputExists {
                path: path.to_path_buf(),
            }
            .into());
        }
        let out = self.run(std::slice::from_ref(expr), Target::Write(path, spec))?;
        Ok(out.report)
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
    {
        expr.check()?;
        let Extent::Full { rows, .. } = expr.extent else {
            return Err(Error::Shape(format!(
                "{expr} is a reduced value, not an array streamed by rows"
            )));
        };
        let input = if expr.dtype() == T::DATA_TYPE {
            expr.clone()
        } else {
            expr.cast(T::DATA_TYPE)
        };
        let row_len = input.extent.row_len();
        let adapter = Arc::new(AggregateAdapter {
            agg,
            row_len,
            _t: std::marker::PhantomData,
        });
        let out = self.run(
            std::slice::from_ref(&input),
            Target::Aggregate(adapter.clone()),
        )?;
        let state = match out.aggregate {
            Some(s) => s,
            None => adapter.init(),
        };
        let state = *state
            .downcast::<A::State>()
            .map_err(|_| Error::Invalid("internal: aggregate state of another type".into()))?;
        let adapter = Arc::try_unwrap(adapter)
            .map_err(|_| Error::Invalid("internal: aggregate still shared".into()))?;
        catch_user(|| adapter.agg.finish(state, rows, row_len))?
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
        let exprs = outputs.exprs();
        for e in &exprs {
            e.check()?;
        }
        let mut lowered = crate::lower::ExplainLowered::new(&exprs);
        let lowered_exprs = exprs
            .iter()
            .map(|e| self.explain_lower(e, &mut lowered))
            .collect::<Result<Vec<Expr>>>()?;
        // A sort or cumsum alone runs as its steps, after one pass that
        // spills its argument if that is not a file already.
        let exprs = match exprs.as_slice() {
            [e] => match &*e.node {
                crate::expr::Node::Op(
                    crate::expr::ArrayOp::Sort | crate::expr::ArrayOp::Cumsum,
                    a,
                ) => {
                    let a = self.explain_lower(a, &mut lowered)?;
                    if matches!(&*a.node, crate::expr::Node::Source(_)) {
                        Vec::new()
                    } else {
                        vec![a]
                    }
                }
                _ => lowered_exprs,
            },
            _ => lowered_exprs,
        };
        let mut explain = Explain {
            steps: std::mem::take(&mut lowered.steps),
            passes: Vec::new(),
            memory_limit: self.budget.limit(),
            threads: self.threads(),
        };
        let requests = self.requests(&exprs, false)?;
        // Streamed expressions are estimated as written, not collected.
        for (req, pass, sizing) in self.plan_all(&requests, false, None, &lowered.values)? {
            explain.passes.push(pass_info(&pass, req, &sizing));
        }
        Ok(explain)
    }

    /// Plans and sizes every pass before anything runs, with placeholder
    /// values of the right shape standing in for reductions of earlier
    /// passes. A limit too small for any pass is refused here, naming the
    /// smallest limit that works for all of them.
    fn plan_all<'r>(
        &self,
        requests: &'r [PassRequest],
        collect: bool,
        aggregate: Option<(u64, u64)>,
        known: &HashMap<NodeId, AnyArray>,
    ) -> Result<Vec<(&'r PassRequest, Pass, Sizing)>> {
        // Values known already (quantiles) stand as zeroed copies too: a
        // clone of a row of millions of results would be memory outside
        // the budget.
        let mut values: HashMap<NodeId, AnyArray> = known
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if v.len() <= 1 {
                        v.clone()
                    } else {
                        zeroed_like(v)
                    },
                )
            })
            .collect();
        let mut planned = Vec::new();
        let mut too_small: Option<Error> = None;
        let mut minimum = 0;
        for req in requests {
            let pass = Planner {
                values: &values,
                sizing: true,
            }
            .build(req)?;
            let has_stores = !req.stores.is_empty();
            let agg = if has_stores { aggregate } else { None };
            match self.size(&pass, &store_row_bytes(req), collect && has_stores, agg) {
                Ok(sizing) => {
                    minimum = minimum.max(sizing.minimum);
                    planned.push((req, pass, sizing));
                }
                Err(Error::LimitTooSmall {
                    limit,
                    row_bytes,
                    minimum: m,
                    detail,
                }) => {
                    minimum = minimum.max(m);
                    let worst = match &too_small {
                        Some(Error::LimitTooSmall { minimum: w, .. }) => m > *w,
                        _ => true,
                    };
                    if worst {
                        too_small = Some(Error::LimitTooSmall {
                            limit,
                            row_bytes,
                            minimum: m,
                            detail,
                        });
                    }
                }
                Err(e) => return Err(e),
            }
            for r in &req.reduces {
                values.insert(id(r), placeholder(r));
            }
        }
        match too_small {
            Some(Error::LimitTooSmall {
                limit,
                row_bytes,
                detail,
                ..
            }) => Err(Error::LimitTooSmall {
                limit,
                row_bytes,
                minimum,
                detail,
            }),
            _ => Ok(planned),
        }
    }

    /// Splits the work into pass requests (level by level, and by row count).
    fn requests(&self, exprs: &[Expr], write: bool) -> Result<Vec<PassRequest>> {
        for e in exprs {
            e.check()?;
        }
        let mut memo = HashMap::new();
        let mut reduces = Vec::new();
        let mut seen = HashMap::new();
        for e in exprs {
            reduce_nodes(e, &mut reduces, &mut seen);
        }
        let mut by_key: Vec<((usize, u64), PassRequest)> = Vec::new();
        fn slot(by_key: &mut Vec<((usize, u64), PassRequest)>, lvl: usize, rows: u64) -> usize {
            match by_key.iter().position(|(k, _)| *k == (lvl, rows)) {
                Some(i) => i,
                None => {
                    by_key.push((
                        (lvl, rows),
                        PassRequest {
                            rows,
                            reduces: Vec::new(),
                            stores: Vec::new(),
                        },
                    ));
                    by_key.len() - 1
                }
            }
        }
        for r in reduces {
            let crate::expr::Node::Reduce(_, _, arg) = &*r.node else {
                continue;
            };
            let lvl = level(&r, &mut memo);
            let i = slot(&mut by_key, lvl, arg.extent.rows());
            by_key[i].1.reduces.push(r.clone());
        }
        for e in exprs {
            if let Extent::Full { rows, .. } = e.extent {
                let lvl = level(e, &mut memo) + 1;
                let i = slot(&mut by_key, lvl, rows);
                by_key[i].1.stores.push((e.clone(), e.dtype));
            } else if write {
                return Err(Error::Shape(format!("{e} is not streamed")));
            }
        }
        by_key.sort_by_key(|(k, _)| *k);
        Ok(by_key.into_iter().map(|(_, r)| r).collect())
    }

    /// Chooses block size and blocks in flight for a pass under the limit.
    fn size(
        &self,
        pass: &Pass,
        store_row_bytes: &[u64],
        collect: bool,
        aggregate: Option<(u64, u64)>,
    ) -> Result<Sizing> {
        let (agg_fixed, agg_row) = aggregate.unwrap_or((0, 0));
        let threads = self.threads() as u64;
        let limit = self.budget.limit();
        let src_row = pass.source_row_bytes();
        let store_row: u64 = store_row_bytes.iter().sum();
        let stage_row: u64 = pass
            .stages
            .iter()
            .map(|s| {
                let input = pass.frames[s.frame].cols as u64 * s.in_dtype.itemsize() as u64;
                input + s.out_len as u64 * s.out_dtype.itemsize() as u64
            })
            .sum();
        let reduce_row: u64 = pass
            .reduces
            .iter()
            .map(|r| (r.set.state_bytes(2) as u64).saturating_sub(r.set.state_bytes(1) as u64))
            .sum();
        let reduce_row = reduce_row + agg_row;
        // A collected block is copied out of the worker's buffer and waits
        // for its turn to merge: one more block of output per slot.
        let store_row = if collect { 2 * store_row } else { store_row };
        let per_row = src_row + store_row + stage_row + reduce_row;
        let partial_fixed: u64 = pass
            .reduces
            .iter()
            .map(|r| r.set.state_bytes(0) as u64)
            .sum::<u64>()
            + agg_fixed;
        let scratch: u64 = pass
            .frames
            .iter()
            .map(|f| f.prog.scratch_bytes(TILE_ELEMS.max(f.cols)) as u64)
            .sum::<u64>()
            * threads;
        let merged: u64 = pass
            .reduces
            .iter()
            .map(|r| r.set.state_bytes(pass.rows.min(usize::MAX as u64) as usize) as u64)
            .sum::<u64>()
            + agg_fixed
            + agg_row * pass.rows;
        let values: u64 = pass
            .frames
            .iter()
            .flat_map(|f| f.prog.instrs.iter())
            .map(|i| match i {
                outcore_kernels::eval::Instr::Value { data, .. } => buf_bytes(data),
                _ => 0,
            })
            .sum();
        let collected = if collect {
            pass.rows * store_row_bytes.iter().sum::<u64>()
        } else {
            0
        };
        let fixed = vec![
            (Consumer::Kernel, scratch),
            (Consumer::State, merged + values),
            (Consumer::Other, collected),
        ];
        let fixed_total: u64 = fixed.iter().map(|p| p.1).sum();
        let slot_fixed = partial_fixed;
        let minimum = fixed_total + slot_fixed + per_row.max(1);
        if limit < minimum || (per_row == 0 && limit < fixed_total + slot_fixed) {
            return Err(Error::LimitTooSmall {
                limit,
                row_bytes: per_row,
                minimum,
                detail: format!(
                    "input {src_row} B, output {store_row} B, map_blocks {stage_row} B, \
                     per-row results {reduce_row} B; plus {} B of states, scratch and results",
                    fixed_total + slot_fixed
                ),
            });
        }
        let minimum = minimum.max(fixed_total + slot_fixed);
        let target_rows = self
            .block_bytes
            .checked_div(src_row)
            .map_or(pass.rows.max(1), |r| r.max(1));
        // The block size depends on the limit and the data, not on the
        // thread count, so results are bit-identical across thread counts:
        // blocks are sized for SIZING_SLOTS in flight, without the
        // per-thread scratch; then as many slots as fit (up to two per
        // thread) are used.
        let avail = limit - fixed_total;
        let sizing_avail = limit - (fixed_total - scratch);
        let fit =
            |slots: u64, avail: u64| (avail / slots).saturating_sub(slot_fixed) / per_row.max(1);
        let rows = pass.rows.max(1);
        let mut block_rows = fit(SIZING_SLOTS, sizing_avail)
            .max(1)
            .min(target_rows)
            .min(rows)
            .min(u32::MAX as u64);
        let slot_bytes = |b: u64| slot_fixed + b * per_row;
        if slot_bytes(block_rows) > avail {
            // Many threads' scratch crowds a tiny limit: one slot it is.
            block_rows = fit(1, avail).max(1).min(block_rows);
        }
        let blocks = rows.div_ceil(block_rows);
        let slots = avail
            .checked_div(slot_bytes(block_rows))
            .unwrap_or(u64::MAX)
            .min(2 * threads)
            .min(blocks)
            .max(1) as usize;
        let slot = vec![
            (Consumer::Reader, block_rows * src_row),
            (Consumer::Writer, block_rows * (store_row + stage_row)),
            (Consumer::State, slot_fixed + block_rows * reduce_row),
        ];
        Ok(Sizing {
            block_rows,
            slots,
            fixed,
            slot,
            minimum,
            block_bytes: block_rows * (src_row + store_row),
        })
    }

    /// Reserves a pass's memory: everything at once, or nothing while
    /// waiting (so engines sharing a budget never deadlock holding parts).
    pub(crate) fn reserve(
        &self,
        sizing: &Sizing,
    ) -> Result<(Vec<Reservation>, Vec<Vec<Reservation>>)> {
        loop {
            match self.try_reserve_all(sizing) {
                Ok(r) => return Ok(r),
                Err(outcore_spill::BudgetError::Exhausted { .. }) => {
                    // Wait until the whole amount is free, then try again.
                    let total = sizing.total();
                    drop(self.budget.reserve(Consumer::Other, total)?);
                    // Cancelled while waiting for engines sharing the budget.
                    self.check_cancel(
                        "reservations (while waiting for engines sharing the budget)",
                        0,
                        1,
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn try_reserve_all(
        &self,
        sizing: &Sizing,
    ) -> std::result::Result<(Vec<Reservation>, Vec<Vec<Reservation>>), outcore_spill::BudgetError>
    {
        let mut fixed = Vec::new();
        for &(c, b) in &sizing.fixed {
            fixed.push(self.budget.try_reserve(c, b)?);
        }
        let mut slots = Vec::new();
        for _ in 0..sizing.slots {
            let mut slot = Vec::new();
            for &(c, b) in &sizing.slot {
                slot.push(self.budget.try_reserve(c, b)?);
            }
            slots.push(slot);
        }
        Ok((fixed, slots))
    }

    /// Plans and runs everything `exprs` need; writes the single streamed
    /// expression to `output` when given.
    pub(crate) fn run(&self, exprs: &[Expr], target: Target<'_>) -> Result<RunOutput> {
        let start = Instant::now();
        let mut report = RunReport {
            memory_limit: self.budget.limit(),
            ..RunReport::default()
        };
        // Whole-array operators and quantiles run first; what is left is
        // ordinary passes over sources and spilled intermediates. Each is
        // planned before any runs (a limit too small is refused before
        // reading).
        self.plan_ops(exprs)?;
        let mut lowered = crate::lower::Lowered::new(exprs);
        if let Target::Write(path, spec) = &target
            && let Some(done) = self.write_op(exprs, path, spec, &mut lowered, &mut report)?
        {
            report.finish(start);
            return Ok(RunOutput {
                values: vec![done],
                report,
                aggregate: None,
            });
        }
        let exprs = &exprs
            .iter()
            .map(|e| self.lower(e, &mut lowered, &mut report))
            .collect::<Result<Vec<Expr>>>()?;
        let requests = self.requests(exprs, !matches!(target, Target::Collect))?;
        let mut values: HashMap<NodeId, AnyArray> = lowered.take_values();
        let mut aggregate = None;
        let agg_sizes = match &target {
            Target::Aggregate(a) => Some(a.state_bytes()),
            _ => None,
        };
        // Refuse before reading anything if any pass cannot fit.
        self.plan_all(
            &requests,
            matches!(target, Target::Collect),
            agg_sizes,
            &values,
        )?;
        let mut target = Some(target);
        for req in &requests {
            let pass = Planner {
                values: &values,
                sizing: false,
            }
            .build(req)?;
            let mut dests = Vec::new();
            let mut agg = None;
            for _ in &req.stores {
                dests.push(match target.take() {
                    Some(Target::Write(path, spec)) => {
                        Dest::Write(Arc::new(ArrayWriter::create(path, spec)?))
                    }
                    Some(Target::Aggregate(a)) => {
                        agg = agg_sizes;
                        Dest::Aggregate(a)
                    }
                    Some(Target::Spill(f)) => Dest::Spill(f),
                    Some(Target::Collect) | None => Dest::Collect,
                });
            }
            let collect = dests.iter().any(|d| matches!(d, Dest::Collect));
            let sizing = self.size(&pass, &store_row_bytes(req), collect, agg)?;
            let states = self.run_pass(&pass, req, &sizing, &dests, &mut values, &mut report)?;
            if let Some(state) = states.into_iter().flatten().next() {
                aggregate = Some(state);
            }
            for d in dests {
                if let Dest::Write(w) = d {
                    let w = Arc::try_unwrap(w).map_err(|_| {
                        Error::Invalid("internal: output writer still shared".into())
                    })?;
                    // Cancelled after the last block: still no output.
                    self.check_cancel("blocks of a pass", report.blocks, report.blocks)?;
                    w.finish()?;
                }
            }
            report.passes += 1;
        }
        // Values derived in memory from computed reductions come first,
        // while every reduction result is still at hand.
        let mut out: Vec<Option<AnyArray>> = Vec::with_capacity(exprs.len());
        for e in exprs {
            out.push(match e.extent {
                Extent::Full { .. } => None,
                _ if values.contains_key(&id(e)) => None,
                _ => {
                    let (buf, _) = small_value(&values, e)?;
                    Some(buf_to_array(&buf, e.dtype, &e.shape())?)
                }
            });
        }
        // Then results are moved out, not copied, unless requested again.
        let out = out
            .into_iter()
            .enumerate()
            .map(|(i, derived)| {
                let e = &exprs[i];
                derived.unwrap_or_else(|| {
                    let again = exprs[i + 1..].iter().any(|later| id(later) == id(e));
                    let value = if again {
                        values.get(&id(e)).cloned()
                    } else {
                        values.remove(&id(e))
                    };
                    // A written expression returns nothing of its own.
                    value.unwrap_or_else(|| AnyArray::scalar(0u8))
                })
            })
            .collect();
        report.finish(start);
        Ok(RunOutput {
            values: out,
            report,
            aggregate,
        })
    }

    fn run_pass(
        &self,
        pass: &Pass,
        req: &PassRequest,
        sizing: &Sizing,
        dests: &[Dest],
        values: &mut HashMap<NodeId, AnyArray>,
        report: &mut RunReport,
    ) -> Result<Vec<Option<AggState>>> {
        let (_fixed, slots) = self.reserve(sizing)?;
        report.note_reservations(&sizing.by_consumer());
        let plan = outcore_chunker::BlockPlan::new(pass.rows, sizing.block_rows);
        let n = plan.len();
        let bytes_read = AtomicU64::new(0);
        let bar = self.progress_bar(pass.rows * pass.source_row_bytes());

        // Reductions accumulate here, in block order.
        let mut merged: Vec<Option<Partial>> = (0..pass.reduces.len()).map(|_| None).collect();
        // Collected outputs are sized once: growing by doubling would hold
        // up to twice the result for a moment.
        let mut collected: Vec<Option<Collector>> = pass
            .stores
            .iter()
            .zip(dests)
            .map(|(s, d)| match d {
                Dest::Collect => Some(Collector::with_capacity(
                    s.dtype,
                    (pass.rows as usize).saturating_mul(pass.frames[s.frame].cols),
                )),
                _ => None,
            })
            .collect();
        let mut agg_states: Vec<Option<AggState>> = (0..pass.stores.len()).map(|_| None).collect();

        let slots: Vec<Slot> = slots
            .into_iter()
            .map(|r| Slot {
                _reserved: r,
                buffers: Vec::new(),
            })
            .collect();
        let read = |i: usize, mut slot: Slot| -> Result<ReadBlock> {
            let rows = plan.get(i).expect("block index below len");
            let mut blocks = Vec::with_capacity(pass.sources.len());
            slot.buffers.resize_with(pass.sources.len(), || None);
            for (src, buf) in pass.sources.iter().zip(&mut slot.buffers) {
                blocks.push(src.read_rows_into(rows.clone(), buf.take())?);
            }
            Ok(ReadBlock {
                first_row: rows.start,
                rows: (rows.end - rows.start) as usize,
                blocks,
                slot,
            })
        };
        let scratch = std::sync::Mutex::new(Vec::<Scratch>::new());
        let work = |_i: usize, rb: ReadBlock| -> Result<(BlockResult, Slot)> {
            // At most one scratch per worker thread is ever created.
            let taken = scratch.lock().ok().and_then(|mut v| v.pop());
            let mut s = taken.unwrap_or_else(|| Scratch::new(pass));
            let out = self.work_block(pass, &rb, dests, &mut s)?;
            // A mapped input truncated while it was read reads as zeros:
            // the block's results are refused, naming the file.
            for b in &rb.blocks {
                b.check()?;
            }
            if let Ok(mut v) = scratch.lock() {
                v.push(s);
            }
            bytes_read.fetch_add(
                rb.blocks.iter().map(|b| b.nbytes() as u64).sum(),
                Ordering::Relaxed,
            );
            let mut slot = rb.slot;
            slot.buffers = rb.blocks.into_iter().map(Block::into_buffer).collect();
            Ok((out, slot))
        };
        let merge = |_i: usize, r: BlockResult| -> Result<()> {
            for (k, p) in r.partials.into_iter().enumerate() {
                match &mut merged[k] {
                    Some(acc) => pass.reduces[k].set.merge(acc, p),
                    slot @ None => *slot = Some(p),
                }
            }
            for (k, block) in r.collected.into_iter().enumerate() {
                if let (Some(acc), Some(block)) = (&mut collected[k], block) {
                    acc.append(block);
                }
            }
            for (k, state) in r.aggregates.into_iter().enumerate() {
                let (Some(state), Dest::Aggregate(a)) = (state, &dests[k]) else {
                    continue;
                };
                match &mut agg_states[k] {
                    Some(acc) => catch_user(|| a.merge(acc, state))?,
                    slot @ None => *slot = Some(state),
                }
            }
            if let Some(bar) = &bar {
                bar.inc(sizing.block_rows * pass.source_row_bytes());
            }
            Ok(())
        };
        let streamed = crate::stream::run(
            &self.pool,
            &self.cancel,
            "blocks of a pass",
            n,
            slots,
            read,
            work,
            merge,
        );
        // Cleared on error too (an interrupted run's error line then
        // stands alone).
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        streamed?;
        report.blocks += n as u64;
        report.bytes_read += bytes_read.load(Ordering::Relaxed);
        for (k, store) in pass.stores.iter().enumerate() {
            let row_bytes = req.stores[k].0.extent.row_len() as u64 * store.dtype.itemsize() as u64;
            match &dests[k] {
                Dest::Write(_) => report.bytes_written += pass.rows * row_bytes,
                Dest::Spill(_) => report.bytes_spilled += pass.rows * row_bytes,
                Dest::Aggregate(_) => {}
                Dest::Collect => {
                    let e = &req.stores[k].0;
                    let shape: Vec<usize> = e.shape().iter().map(|&d| d as usize).collect();
                    if let Some(c) = collected[k].take() {
                        let array = c.into_array(&shape).map_err(|err| {
                            Error::Invalid(format!("internal: collected shape: {err}"))
                        })?;
                        values.insert(store.target, array);
                    }
                }
            }
        }
        for (k, sink) in pass.reduces.iter().enumerate() {
            let partial = match merged[k].take() {
                Some(p) => p,
                None => sink.set.init(),
            };
            let results = sink.set.finish(partial)?;
            for ((_, nodes, dtype), result) in sink.targets.iter().zip(results) {
                let result = if result.dtype() == *dtype {
                    result
                } else {
                    cast_array(&result, *dtype)
                };
                let result = match sink.axis {
                    ReduceAxis::Axis0 => reshape(result, &sink.row_shape)?,
                    _ => result,
                };
                for node in nodes {
                    values.insert(*node, result.clone());
                }
            }
        }
        Ok(agg_states)
    }

    /// Computes one block: stages, fused frames, reductions, stores.
    fn work_block(
        &self,
        pass: &Pass,
        rb: &ReadBlock,
        dests: &[Dest],
        scratch: &mut Scratch,
    ) -> Result<BlockResult> {
        let views: Vec<AnyView<'_>> = rb.blocks.iter().map(block_view).collect::<Result<_>>()?;
        // map_blocks stages, in order.
        let mut stage_out: Vec<AnyArray> = Vec::with_capacity(pass.stages.len());
        for stage in &pass.stages {
            let machine = &mut scratch.machines[stage.frame];
            let result = self.run_stage(pass, stage, machine, &views, &stage_out, rb)?;
            stage_out.push(result);
        }
        self.work_frames(pass, rb, &views, &stage_out, dests, scratch)
    }

    /// Evaluates a `map_blocks` stage's input for the block and calls it.
    fn run_stage(
        &self,
        pass: &Pass,
        stage: &crate::plan::Stage,
        machine: &mut Machine,
        views: &[AnyView<'_>],
        stage_out: &[AnyArray],
        rb: &ReadBlock,
    ) -> Result<AnyArray> {
        let rows = rb.rows;
        {
            let inputs = BlockInputs {
                sources: views,
                blocks: stage_out,
                first_row: rb.first_row,
            };
            let frame = &pass.frames[stage.frame];
            let cols = frame.cols;
            let mut bytes = vec![0u64; (rows * cols * stage.in_dtype.itemsize()).div_ceil(8)];
            let byte_view: &mut [u8] = bytemuck::cast_slice_mut(&mut bytes);
            for_tiles(rows, cols, |r0, r1| -> Result<()> {
                machine.run(&frame.prog, &inputs, r0, r1, cols)?;
                let isz = stage.in_dtype.itemsize();
                outcore_kernels::eval::store_bytes(
                    machine.reg(stage.reg),
                    (r1 - r0) * cols,
                    stage.in_dtype,
                    &mut byte_view[r0 * cols * isz..r1 * cols * isz],
                );
                Ok(())
            })?;
            let input = bytes_to_array(
                &byte_view[..rows * cols * stage.in_dtype.itemsize()],
                stage.in_dtype,
                &[rows as u64, cols as u64],
            )?;
            let result = call_stage(stage, &input)?;
            if result.shape() != [rows, stage.out_len] || result.dtype() != stage.out_dtype {
                return Err(Error::Shape(format!(
                    "map_blocks returned {} {:?} for a block of {rows} rows; expected {} [{rows}, {}]",
                    result.dtype(),
                    result.shape(),
                    stage.out_dtype,
                    stage.out_len
                )));
            }
            Ok(result)
        }
    }

    /// Runs the fused frames, reductions and stores of one block.
    fn work_frames(
        &self,
        pass: &Pass,
        rb: &ReadBlock,
        views: &[AnyView<'_>],
        stage_out: &[AnyArray],
        dests: &[Dest],
        scratch: &mut Scratch,
    ) -> Result<BlockResult> {
        let rows = rb.rows;
        let inputs = BlockInputs {
            sources: views,
            blocks: stage_out,
            first_row: rb.first_row,
        };
        let mut partials: Vec<Partial> = pass.reduces.iter().map(|r| r.set.init()).collect();
        // Output buffers, 8-aligned so any dtype can be stored in place;
        // every byte used is overwritten below.
        let Scratch { machines, outs } = scratch;
        for ((s, out), dest) in pass.stores.iter().zip(outs.iter_mut()).zip(dests) {
            let row_bytes = pass.frames[s.frame].cols * s.dtype.itemsize();
            let mut bytes = rows * row_bytes;
            if matches!(dest, Dest::Write(_) | Dest::Spill(_)) {
                // Streamed in pieces of FLUSH_BYTES, plus one tile.
                let tile_rows = (TILE_ELEMS / pass.frames[s.frame].cols.max(1)).max(1);
                bytes = bytes.min(FLUSH_BYTES + tile_rows * row_bytes);
            }
            let words = bytes.div_ceil(8);
            if out.len() < words {
                out.resize(words, 0);
            }
        }
        // Reductions straight over an input block: no conversion.
        for (k, sink) in pass.reduces.iter().enumerate() {
            if let Input::Source(src) = sink.input {
                let view = views[src];
                let cols = view.ncols();
                for_tiles(rows, cols, |r0, r1| -> Result<()> {
                    sink.set.update(
                        &mut partials[k],
                        slice_rows(view, r0, r1),
                        rb.first_row + r0 as u64,
                    );
                    Ok(())
                })?;
            }
        }
        for (f, frame) in pass.frames.iter().enumerate() {
            let users_reduce: Vec<usize> = pass
                .reduces
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r.input, Input::Reg { frame, .. } if frame == f))
                .map(|(k, _)| k)
                .collect();
            let users_store: Vec<usize> = pass
                .stores
                .iter()
                .enumerate()
                .filter(|(_, s)| s.frame == f)
                .map(|(k, _)| k)
                .collect();
            if users_reduce.is_empty() && users_store.is_empty() {
                continue;
            }
            let cols = frame.cols;
            let machine = &mut machines[f];
            // Rows of each store already handed to its file: written and
            // spilled rows leave in pieces of about FLUSH_BYTES, while they
            // are still in the cache, rather than once the whole block is
            // done (which would read them back from memory).
            let mut flushed = vec![0usize; pass.stores.len()];
            for_tiles(rows, cols, |r0, r1| -> Result<()> {
                machine.run(&frame.prog, &inputs, r0, r1, cols)?;
                for &k in &users_reduce {
                    let Input::Reg { reg, .. } = pass.reduces[k].input else {
                        continue;
                    };
                    let view = machine.reg(reg).view(r1 - r0, cols);
                    pass.reduces[k]
                        .set
                        .update(&mut partials[k], view, rb.first_row + r0 as u64);
                }
                for &k in &users_store {
                    let s = &pass.stores[k];
                    let isz = s.dtype.itemsize();
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut outs[k]);
                    // A streamed store reuses the front of its buffer for
                    // each piece; the others keep the whole block.
                    let streamed = matches!(dests[k], Dest::Write(_) | Dest::Spill(_));
                    let base = if streamed { flushed[k] } else { 0 };
                    outcore_kernels::eval::store_bytes(
                        machine.reg(s.reg),
                        (r1 - r0) * cols,
                        s.dtype,
                        &mut bytes[(r0 - base) * cols * isz..(r1 - base) * cols * isz],
                    );
                    if streamed && ((r1 - base) * cols * isz >= FLUSH_BYTES || r1 == rows) {
                        let piece = &mut bytes[..(r1 - base) * cols * isz];
                        let first_row = rb.first_row + base as u64;
                        match &dests[k] {
                            Dest::Write(w) => w.write_native_rows(first_row, piece)?,
                            Dest::Spill(file) => {
                                file.write_at(first_row * (cols * isz) as u64, piece)?
                            }
                            Dest::Collect | Dest::Aggregate(_) => {}
                        }
                        flushed[k] = r1;
                    }
                }
                Ok(())
            })?;
        }
        let mut collected = Vec::with_capacity(pass.stores.len());
        let mut aggregates = Vec::with_capacity(pass.stores.len());
        for (k, s) in pass.stores.iter().enumerate() {
            let cols = pass.frames[s.frame].cols;
            let len = rows * cols * s.dtype.itemsize();
            // The whole block, for the stores that keep it.
            let block = || -> &[u8] { &bytemuck::cast_slice(&outs[k])[..len] };
            let mut state = None;
            match &dests[k] {
                // Written piece by piece above, as the tiles were computed.
                Dest::Write(_) | Dest::Spill(_) => collected.push(None),
                Dest::Collect => {
                    let mut c = Collector::with_capacity(s.dtype, rows * cols);
                    c.extend_from_bytes(block());
                    collected.push(Some(c));
                }
                Dest::Aggregate(a) => {
                    let array = bytes_to_array(block(), s.dtype, &[rows as u64, cols as u64])?;
                    let view = outcore_kernels::eval::array_view2(&array)?;
                    let mut st = catch_user(|| a.init())?;
                    catch_user(|| a.update(&mut st, view, rb.first_row))?;
                    state = Some(st);
                    collected.push(None);
                }
            }
            aggregates.push(state);
        }
        Ok(BlockResult {
            partials,
            collected,
            aggregates,
        })
    }

    fn progress_bar(&self, total: u64) -> Option<ProgressBar> {
        use std::io::IsTerminal;
        if !self.progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    }
}

/// Runs user code, turning a panic into an error.
fn catch_user<R>(f: impl FnOnce() -> R) -> Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| Error::Panic(crate::stream::panic_message(&p)))
}

/// Calls a `map_blocks` function, turning a panic into an error.
fn call_stage(stage: &crate::plan::Stage, input: &AnyArray) -> Result<AnyArray> {
    let view = outcore_kernels::eval::array_view2(input)?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.f.call(view)))
        .map_err(|p| Error::Panic(crate::stream::panic_message(&p)))
}

/// Bytes per row of each streamed output of a pass request.
fn store_row_bytes(req: &PassRequest) -> Vec<u64> {
    req.stores
        .iter()
        .map(|(e, d)| e.extent.row_len() as u64 * d.itemsize() as u64)
        .collect()
}

/// Bytes of a store's output gathered before they are written to its file
/// (or spill file): small enough to still be in the cache when `pwrite`
/// copies them, large enough that the system calls cost nothing.
const FLUSH_BYTES: usize = 512 << 10;

/// Calls `f(r0, r1)` for consecutive tiles of whole rows.
fn for_tiles(
    rows: usize,
    cols: usize,
    mut f: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    let step = (TILE_ELEMS / cols.max(1)).max(1);
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + step).min(rows);
        f(r0, r1)?;
        r0 = r1;
    }
    Ok(())
}

fn block_view(b: &Block) -> Result<AnyView<'_>> {
    Ok(with_dtype!(b.dtype(), T => AnyView::from(b.view::<T>()?)))
}

fn slice_rows(v: AnyView<'_>, r0: usize, r1: usize) -> AnyView<'_> {
    macro_rules! s {
        ($($var:ident),*) => {
            match v {
                $(AnyView::$var(a) => AnyView::$var(a.slice_move(ndarray::s![r0..r1, ..])),)*
            }
        };
    }
    s!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, F32, F64)
}

fn buf_bytes(b: &Buf) -> u64 {
    match b {
        Buf::Bool(v) => v.len() as u64,
        Buf::I64(v) => v.len() as u64 * 8,
        Buf::U64(v) => v.len() as u64 * 8,
        Buf::F64(v) => v.len() as u64 * 8,
    }
}

/// A value of the right dtype and shape for a reduction not yet run.
pub(crate) fn placeholder(r: &Expr) -> AnyArray {
    let shape: Vec<usize> = match &r.extent {
        Extent::Row { row_len, .. } => vec![*row_len],
        Extent::Column { rows } => vec![*rows as usize],
        _ => vec![],
    };
    let n: usize = shape.iter().product();
    // Zeroed allocations whose pages are never written: a placeholder
    // for a row of millions of values (planning only, not counted by the
    // budget) takes no resident memory.
    outcore_chunker::with_dtype!(r.dtype, T => {
        let v: Vec<T> = bytemuck::zeroed_vec(n);
        ArrayD::from_shape_vec(IxDyn(&shape), v)
            .map(AnyArray::from)
            .unwrap_or_else(|_| AnyArray::scalar(0.0f64))
    })
}

fn pass_info(pass: &Pass, req: &PassRequest, sizing: &Sizing) -> PassInfo {
    PassInfo {
        inputs: pass
            .sources
            .iter()
            .map(|s| s.path().display().to_string())
            .collect(),
        reductions: req.reduces.iter().map(|r| r.to_string()).collect(),
        outputs: req
            .stores
            .iter()
            .map(|(e, d)| format!("{e} as {d}"))
            .collect(),
        fused_programs: pass.frames.len() + pass.stages.len(),
        instructions: pass.frames.iter().map(|f| f.prog.instrs.len()).sum(),
        rows: pass.rows,
        block_rows: sizing.block_rows,
        block_bytes: sizing.block_bytes,
        blocks_in_flight: sizing.slots,
        bytes_read: pass.rows * pass.source_row_bytes(),
        bytes_written: req
            .stores
            .iter()
            .map(|(e, d)| pass.rows * e.extent.row_len() as u64 * d.itemsize() as u64)
            .sum(),
        peak_bytes: sizing.total(),
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
