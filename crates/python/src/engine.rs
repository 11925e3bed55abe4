//! `_outcore.Engine`: an engine and its settings.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use outcore::exec::Progress;
use outcore::{CancelToken, Engine, EngineBuilder, Expr, Layout, RawSpec, RunReport, parse_size};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyTuple};

use crate::array::PyArray;
use crate::convert::{from_numpy_dtype, to_numpy};
use crate::errors::{raise, to_py};

/// A run's progress bar is drawn (by `outcore._progress`) only once the
/// run has taken this long: short runs print nothing.
const PROGRESS_AFTER: Duration = Duration::from_millis(500);

/// Runs `run` on `engine` with the GIL released, on a thread of its own,
/// while this thread checks for signals every 50 ms: Ctrl-C (any pending
/// Python exception from a signal handler) cancels the run — it stops
/// between blocks, leaving no output or spill file — and is raised once
/// the run has stopped. With `progress`, the run's progress is drawn on
/// `sys.stderr` while it lasts.
fn interruptible<T: Send>(
    py: Python<'_>,
    engine: &Engine,
    progress: bool,
    run: impl FnOnce(&Engine) -> outcore::Result<T> + Send,
) -> PyResult<T> {
    let token = CancelToken::new();
    let watch = Arc::new(Progress::default());
    let engine = engine
        .with_cancel(token.clone())
        .with_progress(watch.clone());
    let start = Instant::now();
    let mut drawn = false;
    let result = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let engine = &engine;
        scope.spawn(move || {
            // The receiver waits for this; a closed one is not an error.
            let _ = tx.send(run(engine));
        });
        let mut rx = rx;
        loop {
            // The receiver travels into the GIL-free wait and back (it is
            // `Send`, not `Sync`).
            let (got, back) = py.detach(move || {
                let got = rx.recv_timeout(Duration::from_millis(50));
                (got, rx)
            });
            rx = back;
            match got {
                Ok(result) => return result.map_err(to_py),
                Err(RecvTimeoutError::Timeout) => {
                    if progress && start.elapsed() >= PROGRESS_AFTER {
                        let now = watch.snapshot();
                        let elapsed = start.elapsed().as_secs_f64();
                        // A progress bar that cannot be drawn is no
                        // reason to stop the run.
                        let _ = py.import("outcore._progress").and_then(|m| {
                            m.getattr("draw")?
                                .call1((now.step, now.done, now.total, elapsed))
                        });
                        drawn = true;
                    }
                    if let Err(interrupt) = py.check_signals() {
                        token.cancel();
                        // The run stops within about a block; its error
                        // (Cancelled) gives way to the signal's.
                        let _ = py.detach(move || rx.recv());
                        return Err(interrupt);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(raise(
                        "OutcoreError",
                        "internal: the run ended without a result",
                    ));
                }
            }
        }
    });
    if drawn {
        let _ = py
            .import("outcore._progress")
            .and_then(|m| m.getattr("clear")?.call0());
    }
    result
}

/// A run's report as a dict (the fields of `oc.Report`).
fn report_dict<'py>(py: Python<'py>, r: &RunReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("seconds", r.elapsed.as_secs_f64())?;
    d.set_item("passes", r.passes)?;
    d.set_item("blocks", r.blocks)?;
    d.set_item("bytes_read", r.bytes_read)?;
    d.set_item("bytes_written", r.bytes_written)?;
    d.set_item("bytes_spilled", r.bytes_spilled)?;
    d.set_item("memory_limit", r.memory_limit)?;
    d.set_item("peak_reserved", r.peak_reserved)?;
    d.set_item("peak_rss", r.peak_rss)?;
    d.set_item("rss", r.rss)?;
    let by = PyDict::new(py);
    for (c, b) in &r.reserved_by_consumer {
        by.set_item(c.to_string(), *b)?;
    }
    d.set_item("reserved_by_consumer", by)?;
    Ok(d)
}

/// A memory limit given as bytes (`int`) or text (`"256MiB"`).
fn limit_bytes(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    if obj.is_instance_of::<PyInt>() {
        let n: i64 = obj.extract()?;
        return u64::try_from(n)
            .map_err(|_| raise("ConfigError", format!("memory_limit {n} is negative")));
    }
    let text: String = obj.extract()?;
    parse_size(&text).map_err(|e| to_py(e.into()))
}

/// An engine with its settings; `oc.config` makes one, and the module
/// functions use the innermost.
#[pyclass(name = "Engine", module = "outcore._outcore", frozen)]
pub struct PyEngine {
    engine: Engine,
    /// A twin that replaces existing outputs (`save(..., overwrite=True)`),
    /// sharing the budget; built on first use.
    overwriting: OnceLock<Engine>,
    threads: Option<usize>,
    spill_dir: Option<PathBuf>,
    /// Draw a progress bar on `sys.stderr` during long runs.
    progress: bool,
    /// The report of the last run that finished.
    last: Mutex<Option<RunReport>>,
}

impl PyEngine {
    fn keep(&self, report: RunReport) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(report);
        }
    }

    fn builder(&self) -> EngineBuilder {
        let mut b = Engine::builder().budget(self.engine.budget().clone());
        if let Some(n) = self.threads {
            b = b.threads(n);
        }
        if let Some(dir) = &self.spill_dir {
            b = b.spill_dir(dir.clone());
        }
        b
    }

    fn exprs(arrays: &Bound<'_, PyTuple>) -> PyResult<Vec<Expr>> {
        arrays
            .iter()
            .map(|a| Ok(a.extract::<PyRef<'_, PyArray>>()?.expr.clone()))
            .collect()
    }
}

#[pymethods]
impl PyEngine {
    /// A new engine. `memory_limit`: bytes or text such as `"256MiB"`
    /// (default: half the available memory); `threads`: worker threads
    /// (default: one per core); `spill_dir`: where spill files go
    /// (default: the system's temporary directory); `progress`: a
    /// progress bar on `sys.stderr` during runs longer than half a second
    /// (default: when `sys.stderr` is a terminal — never in pipes or
    /// tests).
    #[new]
    #[pyo3(signature = (memory_limit=None, threads=None, spill_dir=None, progress=None))]
    fn new(
        py: Python<'_>,
        memory_limit: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
        spill_dir: Option<PathBuf>,
        progress: Option<bool>,
    ) -> PyResult<PyEngine> {
        let progress = match progress {
            Some(p) => p,
            None => py
                .import("sys")?
                .getattr("stderr")?
                .call_method0("isatty")
                .and_then(|t| t.extract())
                .unwrap_or(false),
        };
        let mut b = Engine::builder();
        if let Some(limit) = memory_limit {
            b = b.memory_limit(limit_bytes(limit)?);
        }
        if let Some(n) = threads {
            if n == 0 {
                return Err(raise("ConfigError", "threads must be at least 1"));
            }
            b = b.threads(n);
        }
        if let Some(dir) = &spill_dir {
            b = b.spill_dir(dir.clone());
        }
        Ok(PyEngine {
            engine: b.build().map_err(to_py)?,
            overwriting: OnceLock::new(),
            threads,
            spill_dir,
            progress,
            last: Mutex::new(None),
        })
    }

    /// The memory limit in bytes.
    #[getter]
    fn memory_limit(&self) -> u64 {
        self.engine.budget().limit()
    }

    /// Whether runs draw a progress bar.
    #[getter]
    fn progress(&self) -> bool {
        self.progress
    }

    /// The report of the last run that finished (a dict of the fields of
    /// `oc.Report`), or `None` before the first.
    fn last_report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let last = self.last.lock().ok().and_then(|l| l.clone());
        last.map(|r| report_dict(py, &r)).transpose()
    }

    /// The number of worker threads.
    #[getter]
    fn threads(&self) -> usize {
        self.engine.threads()
    }

    /// Opens a `.npy` file (reads only its header).
    fn open(&self, py: Python<'_>, path: PathBuf) -> PyResult<PyArray> {
        let expr = py.detach(|| self.engine.open(&path)).map_err(to_py)?;
        Ok(PyArray { expr })
    }

    /// Opens a raw binary file as `np.memmap(path, dtype, offset=, shape=)`.
    #[pyo3(signature = (path, dtype, shape, offset=0, order="C"))]
    fn open_raw(
        &self,
        py: Python<'_>,
        path: PathBuf,
        dtype: &Bound<'_, PyAny>,
        shape: &Bound<'_, PyAny>,
        offset: u64,
        order: &str,
    ) -> PyResult<PyArray> {
        let layout = match order {
            "C" => Layout::C,
            "F" => Layout::Fortran,
            _ => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "order must be one of 'C', 'F' (got {order:?})"
                )));
            }
        };
        let (dtype, byte_order) = crate::memory::dtype_and_order(dtype)?;
        let shape: Vec<u64> = match shape.extract::<u64>() {
            Ok(n) => vec![n],
            Err(_) => shape.extract()?,
        };
        // As np.memmap: bytes past the array's end are allowed.
        let spec = RawSpec {
            byte_order,
            offset,
            layout,
            exact: false,
            ..RawSpec::new(dtype, shape)
        };
        let expr = py
            .detach(|| self.engine.open_raw(&path, &spec))
            .map_err(to_py)?;
        Ok(PyArray { expr })
    }

    /// Computes the arrays in one run; a tuple of NumPy arrays.
    #[pyo3(signature = (*arrays))]
    fn compute<'py>(
        &self,
        py: Python<'py>,
        arrays: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let exprs = Self::exprs(arrays)?;
        let (values, report) = interruptible(py, &self.engine, self.progress, |e| {
            e.compute_with_report(exprs.as_slice())
        })?;
        self.keep(report);
        PyTuple::new(py, values.into_iter().map(|v| to_numpy(py, v)))
    }

    /// Writes an array as `.npy` (atomically: nothing appears under `path`
    /// unless the whole file was written).
    #[pyo3(signature = (path, array, dtype=None, overwrite=false))]
    fn save(
        &self,
        py: Python<'_>,
        path: PathBuf,
        array: PyRef<'_, PyArray>,
        dtype: Option<&Bound<'_, PyAny>>,
        overwrite: bool,
    ) -> PyResult<()> {
        let mut expr = array.expr.clone();
        if let Some(dt) = dtype {
            expr = expr.cast(from_numpy_dtype(dt)?);
        }
        let engine = if overwrite {
            match self.overwriting.get() {
                Some(e) => e,
                None => {
                    let built = self.builder().overwrite(true).build().map_err(to_py)?;
                    self.overwriting.get_or_init(|| built)
                }
            }
        } else {
            &self.engine
        };
        let report = interruptible(py, engine, self.progress, |e| e.write_npy(&expr, &path))?;
        self.keep(report);
        Ok(())
    }

    /// The plan of computing the arrays together, as text.
    #[pyo3(signature = (*arrays))]
    fn explain(&self, py: Python<'_>, arrays: &Bound<'_, PyTuple>) -> PyResult<String> {
        let exprs = Self::exprs(arrays)?;
        let plan = py
            .detach(|| self.engine.explain(exprs.as_slice()))
            .map_err(to_py)?;
        Ok(plan.to_string())
    }

    /// The plan of computing the arrays together, as data: a dict with
    /// `text`, `memory_limit`, `threads`, `steps` (text lines) and
    /// `passes` (dicts of inputs, reductions, outputs, rows, block_rows,
    /// block_bytes, blocks_in_flight, bytes_read, bytes_written,
    /// peak_bytes).
    #[pyo3(signature = (*arrays))]
    fn explain_dict<'py>(
        &self,
        py: Python<'py>,
        arrays: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let exprs = Self::exprs(arrays)?;
        let plan = py
            .detach(|| self.engine.explain(exprs.as_slice()))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("text", plan.to_string())?;
        d.set_item("memory_limit", plan.memory_limit)?;
        d.set_item("threads", plan.threads)?;
        d.set_item("steps", plan.steps.clone())?;
        let passes = PyList::empty(py);
        for p in &plan.passes {
            let pd = PyDict::new(py);
            pd.set_item("inputs", p.inputs.clone())?;
            pd.set_item("reductions", p.reductions.clone())?;
            pd.set_item("outputs", p.outputs.clone())?;
            pd.set_item("fused_programs", p.fused_programs)?;
            pd.set_item("instructions", p.instructions)?;
            pd.set_item("rows", p.rows)?;
            pd.set_item("block_rows", p.block_rows)?;
            pd.set_item("block_bytes", p.block_bytes)?;
            pd.set_item("blocks_in_flight", p.blocks_in_flight)?;
            pd.set_item("bytes_read", p.bytes_read)?;
            pd.set_item("bytes_written", p.bytes_written)?;
            pd.set_item("peak_bytes", p.peak_bytes)?;
            passes.append(pd)?;
        }
        d.set_item("passes", passes)?;
        Ok(d)
    }
}
