//! `_outcore.Engine`: an engine and its settings.

use std::path::PathBuf;
use std::sync::OnceLock;

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use outcore::{CancelToken, Engine, EngineBuilder, Expr, Layout, RawSpec, parse_size};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyTuple};

use crate::array::PyArray;
use crate::convert::{from_numpy_dtype, to_numpy};
use crate::errors::{raise, to_py};

/// Runs `run` on `engine` with the GIL released, on a thread of its own,
/// while this thread checks for signals every 50 ms: Ctrl-C (any pending
/// Python exception from a signal handler) cancels the run — it stops
/// between blocks, leaving no output or spill file — and is raised once
/// the run has stopped.
fn interruptible<T: Send>(
    py: Python<'_>,
    engine: &Engine,
    run: impl FnOnce(&Engine) -> outcore::Result<T> + Send,
) -> PyResult<T> {
    let token = CancelToken::new();
    let engine = engine.with_cancel(token.clone());
    std::thread::scope(|scope| {
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
    })
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
}

impl PyEngine {
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
    /// (default: the system's temporary directory).
    #[new]
    #[pyo3(signature = (memory_limit=None, threads=None, spill_dir=None))]
    fn new(
        memory_limit: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
        spill_dir: Option<PathBuf>,
    ) -> PyResult<PyEngine> {
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
        })
    }

    /// The memory limit in bytes.
    #[getter]
    fn memory_limit(&self) -> u64 {
        self.engine.budget().limit()
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
        let values = interruptible(py, &self.engine, |e| e.compute(exprs.as_slice()))?;
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
        interruptible(py, engine, |e| e.write_npy(&expr, &path))?;
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
