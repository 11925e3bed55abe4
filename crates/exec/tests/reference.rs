//! The engine against an in-memory reference, through every code path.
//!
//! * Reductions: every op × axis × dtype (all 12) on arrays of rank 1–3
//!   (empty dimensions included), with NaN/±inf at random positions, block
//!   sizes from one row to all rows, 1–4 threads, mmap and pread. The
//!   reference is written plainly: exact `i128` integer sums, Neumaier-
//!   compensated `f64` sums, two-pass variances.
//! * Determinism: bit-identical results with 1 and 3 threads.
//! * Elementwise: random expression trees (depth ≤ 3) over one or two
//!   inputs and literals, written with `write_npy`, against the same tree
//!   evaluated with NumPy's dtype rules (NEP 50 weak scalars, rounding to
//!   the result dtype after every operation).
//! * Broadcasting with reductions: `(x - x.mean(0)) / x.std(0, 0)` and
//!   per-row `x - x.mean(1)`.

mod common;

use common::{
    Rng, Vals, check_batch, close, config, engine, int_range, read_any, round_to, rows_and_len,
    same_bits, same_scalar, vals_array, write_any,
};
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::{DType, ReadMode};
use outcore_exec::{AnyArray, Engine, Error, Expr, ReduceAxis, ReduceOp, Scalar};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------
// Inputs.

#[derive(Clone, Debug)]
struct Input {
    dtype: DType,
    shape: Vec<usize>,
    vals: Vals,
}

impl Input {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn array(&self) -> AnyArray {
        vals_array(self.dtype, &self.shape, &self.vals)
    }
}

/// Values for `n` elements of `dtype`. `mode` picks the distribution:
/// integers small / full range / small with extremes; floats on a grid of
/// quarters / continuous; `special` is the rate of NaN (and ±inf when
/// `infs`).
fn gen_vals(dtype: DType, n: usize, rng: &mut Rng, mode: u8, special: f64, infs: bool) -> Vals {
    if dtype.is_float() {
        let v = (0..n)
            .map(|_| {
                if rng.chance(special) {
                    match (infs, rng.below(3)) {
                        (true, 1) => f64::INFINITY,
                        (true, 2) => f64::NEG_INFINITY,
                        _ => f64::NAN,
                    }
                } else if mode == 0 {
                    rng.range(-400, 400) as f64 / 4.0
                } else {
                    round_to(dtype, (rng.unit() - 0.5) * 2000.0)
                }
            })
            .collect();
        return Vals::Float(v);
    }
    let (lo, hi) = int_range(dtype);
    let v = (0..n)
        .map(|_| {
            if dtype == DType::Bool {
                return i128::from(rng.chance(0.5));
            }
            match mode {
                1 => {
                    // Full range (sums of 64-bit types may overflow).
                    let span = (hi - lo) as u128;
                    let r = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()))
                        % (span + 1);
                    lo + r as i128
                }
                2 if rng.chance(0.15) => {
                    if rng.chance(0.5) {
                        lo
                    } else {
                        hi
                    }
                }
                _ => i128::from(rng.range(-9, 9)).clamp(lo, hi),
            }
        })
        .collect();
    Vals::Int(v)
}

#[derive(Clone, Debug)]
struct Case {
    input: Input,
    threads: usize,
    block_rows: usize,
    mode: ReadMode,
    ddof: u32,
    /// Reduce `where(isnan(x), x, x)` (same values and dtype, but computed
    /// by the fused evaluator) instead of the file itself.
    derived: bool,
}

fn case_strategy(dtypes: &'static [DType], max_rows: usize) -> impl Strategy<Value = Case> {
    (
        0..dtypes.len(),
        1usize..=3,
        0..=max_rows,
        0usize..=6,
        0usize..=4,
        any::<u64>(),
        (0u8..3, 0u8..4, any::<bool>()),
        (
            1usize..=4,
            0usize..=41,
            any::<bool>(),
            0u32..=2,
            any::<bool>(),
        ),
    )
        .prop_map(
            move |(
                d,
                rank,
                rows,
                d1,
                d2,
                seed,
                (mode, sp, infs),
                (threads, br, pread, ddof, derived),
            )| {
                let dtype = dtypes[d];
                // Mostly non-empty trailing dims; rows may be 0.
                let d1 = if d1 == 0 && seed % 5 != 0 { 3 } else { d1 };
                let d2 = if d2 == 0 && seed % 7 != 0 { 2 } else { d2 };
                let shape = match rank {
                    1 => vec![rows],
                    2 => vec![rows, d1],
                    _ => vec![rows, d1, d2],
                };
                let n = shape.iter().product();
                let special = [0.0, 0.05, 0.3, 1.0][sp as usize];
                let mut rng = Rng(seed);
                let vals = gen_vals(dtype, n, &mut rng, mode, special, infs);
                Case {
                    input: Input { dtype, shape, vals },
                    threads,
                    block_rows: br,
                    mode: if pread {
                        ReadMode::Pread
                    } else {
                        ReadMode::Mmap
                    },
                    ddof,
                    derived,
                }
            },
        )
}

fn block_bytes(input: &Input, block_rows: usize) -> u64 {
    let (_, len) = rows_and_len(&input.shape);
    // 0 means "1 byte" (1-row blocks); otherwise whole rows.
    ((block_rows * len * input.dtype.itemsize()) as u64).max(1)
}

// ---------------------------------------------------------------------------
// The reference reductions.

/// Neumaier-compensated sum.
fn nsum(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for x in xs {
        let t = s + x;
        if s.abs() >= x.abs() {
            c += (s - t) + x;
        } else {
            c += (x - t) + s;
        }
        s = t;
    }
    s + c
}

/// What the engine must return: per value, the expected scalar and an
/// absolute tolerance (0 = exact).
#[derive(Clone, Debug)]
enum Want {
    Values {
        dtype: DType,
        shape: Vec<usize>,
        vals: Vec<(Scalar, f64)>,
    },
    /// An error: "empty" or "overflow".
    Err(&'static str),
}

fn expected_dtype(op: ReduceOp, input: DType) -> DType {
    match op {
        ReduceOp::Sum | ReduceOp::NanSum => {
            if input.is_float() {
                DType::F64
            } else if input.is_unsigned_int() {
                DType::U64
            } else {
                DType::I64
            }
        }
        ReduceOp::Min | ReduceOp::Max | ReduceOp::NanMin | ReduceOp::NanMax => input,
        ReduceOp::ArgMin | ReduceOp::ArgMax => DType::I64,
        _ => DType::F64,
    }
}

/// The groups of flat indices each result value reduces, the length of
/// the reduced axis, and the result shape.
fn groups(shape: &[usize], axis: ReduceAxis) -> (Vec<Vec<usize>>, usize, Vec<usize>) {
    let (rows, len) = rows_and_len(shape);
    let n = shape.iter().product::<usize>();
    match axis {
        ReduceAxis::All => (vec![(0..n).collect()], n, vec![]),
        ReduceAxis::Axis0 => (
            (0..len)
                .map(|c| (0..rows).map(|r| r * len + c).collect())
                .collect(),
            rows,
            shape.get(1..).map(<[usize]>::to_vec).unwrap_or_default(),
        ),
        ReduceAxis::Axis1 => (
            (0..rows)
                .map(|r| (0..len).map(|c| r * len + c).collect())
                .collect(),
            len,
            vec![rows],
        ),
    }
}

fn float_stats(xs: &[f64], ddof: u32) -> (f64, f64, f64, f64) {
    // (mean, var, tol_mean, tol_var); NaN/inf propagate as in NumPy.
    let n = xs.len();
    let abs = nsum(xs.iter().map(|x| x.abs()));
    let (pinf, ninf) = (xs.contains(&f64::INFINITY), xs.contains(&f64::NEG_INFINITY));
    let mean = if xs.iter().any(|x| x.is_nan()) || (pinf && ninf) {
        f64::NAN
    } else if pinf {
        f64::INFINITY
    } else if ninf {
        f64::NEG_INFINITY
    } else {
        nsum(xs.iter().copied()) / n as f64
    };
    let var = if n as i64 - i64::from(ddof) <= 0 || !mean.is_finite() {
        f64::NAN
    } else {
        nsum(xs.iter().map(|x| (x - mean) * (x - mean))) / (n as f64 - f64::from(ddof))
    };
    let tol_mean = 1e-12 * abs / n as f64;
    let tol_var = 1e-12 * var.abs() + 1e-13 * mean * mean + 1e-300;
    (mean, var, tol_mean, tol_var)
}

fn std_tol(var: f64, tol_var: f64) -> f64 {
    (var + tol_var).sqrt() - (var - tol_var).max(0.0).sqrt()
}

/// The reference result of every op along every axis.
fn reference_all(input: &Input, ddof: u32) -> Vec<(ReduceOp, ReduceAxis, Want)> {
    let mut out = Vec::new();
    for axis in axes(input.shape.len()) {
        let (groups, reduced, shape) = groups(&input.shape, axis);
        // The values of each group, gathered once per axis.
        let (ints, floats): (Vec<Vec<i128>>, Vec<Vec<f64>>) = match &input.vals {
            Vals::Int(all) => (
                groups
                    .iter()
                    .map(|g| g.iter().map(|&i| all[i]).collect())
                    .collect(),
                Vec::new(),
            ),
            Vals::Float(all) => (
                Vec::new(),
                groups
                    .iter()
                    .map(|g| g.iter().map(|&i| all[i]).collect())
                    .collect(),
            ),
        };
        for op in ops(ddof) {
            let needs_elements = matches!(
                op,
                ReduceOp::Min
                    | ReduceOp::Max
                    | ReduceOp::ArgMin
                    | ReduceOp::ArgMax
                    | ReduceOp::NanMin
                    | ReduceOp::NanMax
            );
            let want = if needs_elements && reduced == 0 {
                Want::Err("empty")
            } else if matches!(input.vals, Vals::Int(_)) {
                ints.iter()
                    .map(|xs| int_reduce(xs, input.dtype, op))
                    .collect::<Option<Vec<_>>>()
                    .map_or(Want::Err("overflow"), |vals| Want::Values {
                        dtype: expected_dtype(op, input.dtype),
                        shape: shape.clone(),
                        vals,
                    })
            } else {
                Want::Values {
                    dtype: expected_dtype(op, input.dtype),
                    shape: shape.clone(),
                    vals: floats.iter().map(|xs| float_reduce(xs, op)).collect(),
                }
            };
            out.push((op, axis, want));
        }
    }
    out
}

fn int_reduce(xs: &[i128], dtype: DType, op: ReduceOp) -> Option<(Scalar, f64)> {
    let typed = |v: i128| -> Scalar {
        match dtype {
            DType::Bool => Scalar::Bool(v != 0),
            d if d.is_unsigned_int() => Scalar::UInt(v as u64),
            _ => Scalar::Int(v as i64),
        }
    };
    let n = xs.len();
    let sum: i128 = xs.iter().sum();
    let ddof = op.ddof().unwrap_or(0);
    let f: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
    Some(match op {
        ReduceOp::Sum | ReduceOp::NanSum => {
            if dtype.is_unsigned_int() {
                (Scalar::UInt(u64::try_from(sum).ok()?), 0.0)
            } else {
                (Scalar::Int(i64::try_from(sum).ok()?), 0.0)
            }
        }
        ReduceOp::Mean | ReduceOp::NanMean => {
            let m = sum as f64 / n as f64;
            (Scalar::Float(m), 1e-15 * m.abs())
        }
        ReduceOp::Min | ReduceOp::NanMin => (typed(*xs.iter().min()?), 0.0),
        ReduceOp::Max | ReduceOp::NanMax => (typed(*xs.iter().max()?), 0.0),
        ReduceOp::ArgMin => {
            let m = xs.iter().min()?;
            (Scalar::Int(xs.iter().position(|x| x == m)? as i64), 0.0)
        }
        ReduceOp::ArgMax => {
            let m = xs.iter().max()?;
            (Scalar::Int(xs.iter().position(|x| x == m)? as i64), 0.0)
        }
        ReduceOp::Var { .. } | ReduceOp::NanVar { .. } => {
            let (_, var, _, tv) = float_stats(&f, ddof);
            (Scalar::Float(var), tv)
        }
        ReduceOp::Std { .. } | ReduceOp::NanStd { .. } => {
            let (_, var, _, tv) = float_stats(&f, ddof);
            (Scalar::Float(var.sqrt()), std_tol(var, tv))
        }
    })
}

fn float_reduce(all: &[f64], op: ReduceOp) -> (Scalar, f64) {
    let ddof = op.ddof().unwrap_or(0);
    let kept: Vec<f64> = if op.skips_nan() {
        all.iter().copied().filter(|x| !x.is_nan()).collect()
    } else {
        all.to_vec()
    };
    let xs = &kept[..];
    let any_nan = xs.iter().any(|x| x.is_nan());
    let f = |v: f64, tol: f64| (Scalar::Float(v), tol);
    match op {
        ReduceOp::Sum | ReduceOp::NanSum => {
            let (m, _, tm, _) = float_stats(xs, 0);
            if xs.is_empty() {
                f(0.0, 0.0)
            } else {
                f(m * xs.len() as f64, tm * xs.len() as f64)
            }
        }
        ReduceOp::Mean | ReduceOp::NanMean => {
            if xs.is_empty() {
                return f(f64::NAN, 0.0);
            }
            let (m, _, tm, _) = float_stats(xs, 0);
            f(m, tm)
        }
        ReduceOp::Var { .. } | ReduceOp::NanVar { .. } => {
            if xs.is_empty() {
                return f(f64::NAN, 0.0);
            }
            let (_, v, _, tv) = float_stats(xs, ddof);
            f(v, tv)
        }
        ReduceOp::Std { .. } | ReduceOp::NanStd { .. } => {
            if xs.is_empty() {
                return f(f64::NAN, 0.0);
            }
            let (_, v, _, tv) = float_stats(xs, ddof);
            f(v.sqrt(), std_tol(v, tv))
        }
        ReduceOp::Min | ReduceOp::NanMin | ReduceOp::Max | ReduceOp::NanMax => {
            let is_max = matches!(op, ReduceOp::Max | ReduceOp::NanMax);
            if any_nan || xs.is_empty() {
                return f(f64::NAN, 0.0);
            }
            let v = xs.iter().copied().fold(
                if is_max {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                },
                |a, b| {
                    if is_max { a.max(b) } else { a.min(b) }
                },
            );
            f(v, 0.0)
        }
        ReduceOp::ArgMin | ReduceOp::ArgMax => {
            let i = match xs.iter().position(|x| x.is_nan()) {
                Some(i) => i,
                None => {
                    let mut best = 0;
                    for (i, &x) in xs.iter().enumerate() {
                        let better = if op == ReduceOp::ArgMax {
                            x > xs[best]
                        } else {
                            x < xs[best]
                        };
                        if better {
                            best = i;
                        }
                    }
                    best
                }
            };
            (Scalar::Int(i as i64), 0.0)
        }
    }
}

// ---------------------------------------------------------------------------
// Running and comparing.

fn ops(ddof: u32) -> Vec<ReduceOp> {
    let mut v = ReduceOp::ALL.to_vec();
    if ddof > 0 {
        v.extend([
            ReduceOp::Var { ddof },
            ReduceOp::Std { ddof },
            ReduceOp::NanVar { ddof },
            ReduceOp::NanStd { ddof },
        ]);
    }
    v
}

fn axes(rank: usize) -> Vec<ReduceAxis> {
    if rank >= 2 {
        vec![ReduceAxis::All, ReduceAxis::Axis0, ReduceAxis::Axis1]
    } else {
        vec![ReduceAxis::All, ReduceAxis::Axis0]
    }
}

fn describe(op: ReduceOp, axis: ReduceAxis) -> String {
    format!(
        "{}{} axis={axis:?}",
        op.name(),
        match op.ddof() {
            Some(d) => format!("(ddof={d})"),
            None => String::new(),
        }
    )
}

fn check_value(what: &str, got: &AnyArray, want: &Want) -> Result<(), String> {
    let Want::Values { dtype, shape, vals } = want else {
        return Err(format!("{what}: expected an error, got {got:?}"));
    };
    if got.dtype() != *dtype {
        return Err(format!("{what}: dtype {} != expected {dtype}", got.dtype()));
    }
    if got.shape() != shape.as_slice() {
        return Err(format!(
            "{what}: shape {:?} != expected {shape:?}",
            got.shape()
        ));
    }
    for (k, (g, (w, tol))) in got.to_scalars().into_iter().zip(vals).enumerate() {
        let ok = match (g, *w) {
            (Scalar::Float(g), Scalar::Float(w)) => close(g, w, *tol),
            _ => same_scalar(g, *w),
        };
        if !ok {
            return Err(format!(
                "{what}: value {k}: got {g:?}, expected {w:?} (tol {tol:e})"
            ));
        }
    }
    Ok(())
}

fn check_error(
    what: &str,
    op: ReduceOp,
    got: Result<AnyArray, Error>,
    kind: &str,
) -> Result<(), String> {
    match (got, kind) {
        (Err(Error::Empty { op: name, .. }), "empty") if name == op.name() => Ok(()),
        (Err(Error::IntegerOverflow { .. }), "overflow") => Ok(()),
        (Err(e), _) => Err(format!("{what}: expected a {kind} error, got: {e}")),
        (Ok(v), _) => Err(format!("{what}: expected a {kind} error, got {v:?}")),
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    run_case_with(case, reference_all(&case.input, case.ddof))
}

fn run_case_with(case: &Case, wants: Vec<(ReduceOp, ReduceAxis, Want)>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("x.npy");
    write_any(&path, &case.input.array());
    let bb = if case.block_rows == 0 {
        1
    } else {
        block_bytes(&case.input, case.block_rows)
    };
    let eng = engine(case.threads, bb, case.mode);
    let src = eng.open(&path).map_err(|e| e.to_string())?;
    let x = if case.derived {
        src.isnan().select(&src, &src)
    } else {
        src
    };
    let mut batch: Vec<(String, Expr, Want)> = Vec::new();
    for (op, axis, want) in wants {
        let what = describe(op, axis);
        let expr = x.reduce(op, axis);
        if let Want::Err(kind) = want {
            check_error(&what, op, eng.compute(&expr), kind)?;
        } else {
            batch.push((what, expr, want));
        }
    }
    // Everything that must succeed, in one shared pass.
    check_batch(&eng, &batch, check_value)
}

const ALL_DTYPES: &[DType] = &DType::ALL;

proptest! {
    #![proptest_config(config(64))]

    /// Every reduction × axis × dtype against the reference, through every
    /// block size, thread count and read mode.
    #[test]
    fn reductions_match_reference(case in case_strategy(ALL_DTYPES, 40)) {
        run_case(&case).map_err(|e| TestCaseError::fail(format!(
            "{e}\n  input {} {:?}, threads {}, block_rows {}, {:?}, ddof {}, derived {}",
            case.input.dtype, case.input.shape, case.threads, case.block_rows, case.mode, case.ddof,
            case.derived
        )))?;
    }

    /// Float reductions are bit-identical with 1 and 3 threads.
    #[test]
    fn float_reductions_do_not_depend_on_threads(
        case in case_strategy(&[DType::F16, DType::F32, DType::F64], 60)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_any(&path, &case.input.array());
        let bb = block_bytes(&case.input, case.block_rows.max(1));
        let results: Vec<Vec<AnyArray>> = [1, 3]
            .iter()
            .map(|&t| {
                let eng = engine(t, bb, case.mode);
                let x = eng.open(&path).unwrap();
                let exprs: Vec<Expr> = ops(case.ddof)
                    .into_iter()
                    .filter(|op| !matches!(op,
                        ReduceOp::Min | ReduceOp::Max | ReduceOp::ArgMin | ReduceOp::ArgMax
                        | ReduceOp::NanMin | ReduceOp::NanMax))
                    .flat_map(|op| axes(case.input.shape.len()).into_iter().map(move |a| (op, a)))
                    .map(|(op, a)| x.reduce(op, a))
                    .collect();
                eng.compute(exprs).unwrap()
            })
            .collect();
        for (a, b) in results[0].iter().zip(&results[1]) {
            let (sa, sb) = (a.to_scalars(), b.to_scalars());
            prop_assert!(
                sa.iter().zip(&sb).all(|(x, y)| same_bits(*x, *y)),
                "1 thread: {sa:?}\n3 threads: {sb:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Elementwise expressions against NumPy's rules.

/// The dtypes the elementwise reference models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum T {
    Bool,
    I32,
    I64,
    F32,
    F64,
}

impl T {
    fn dtype(self) -> DType {
        match self {
            T::Bool => DType::Bool,
            T::I32 => DType::I32,
            T::I64 => DType::I64,
            T::F32 => DType::F32,
            T::F64 => DType::F64,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, T::F32 | T::F64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
enum Tree {
    Input(usize),
    FConst(f64),
    IConst(i64),
    Neg(Box<Tree>),
    Abs(Box<Tree>),
    Sqrt(Box<Tree>),
    Bin(Bin, Box<Tree>, Box<Tree>),
    Cmp(Cmp, Box<Tree>, Box<Tree>),
    Logic(bool, Box<Tree>, Box<Tree>),
    Select(Box<Tree>, Box<Tree>, Box<Tree>),
    Cast(Box<Tree>, T),
}

/// NumPy's promotion among the modelled dtypes.
fn promote(a: T, b: T) -> T {
    use T::*;
    match (a, b) {
        _ if a == b => a,
        (Bool, x) | (x, Bool) => x,
        (F32, F64) | (F64, F32) => F64,
        (I32, I64) | (I64, I32) => I64,
        // Any int with float32 needs float64 (int32 does not fit float32).
        _ => F64,
    }
}

fn is_weak(t: &Tree) -> bool {
    matches!(t, Tree::FConst(_) | Tree::IConst(_))
}

/// NEP 50: a Python int takes the array's dtype (bool → int64); a Python
/// float takes a float array's dtype and gives float64 with an int array.
fn promote_operands(a: &Tree, b: &Tree, inputs: &[T]) -> T {
    let (ta, tb) = (ty(a, inputs), ty(b, inputs));
    let weak_with = |weak: &Tree, strong: T| match (weak, strong) {
        (Tree::IConst(_), T::Bool) => T::I64,
        (Tree::IConst(_), s) => s,
        (_, s) if s.is_float() => s,
        _ => T::F64,
    };
    match (is_weak(a), is_weak(b)) {
        (true, false) => weak_with(a, tb),
        (false, true) => weak_with(b, ta),
        _ => promote(ta, tb),
    }
}

fn ty(t: &Tree, inputs: &[T]) -> T {
    match t {
        Tree::Input(k) => inputs[*k],
        Tree::FConst(_) => T::F64,
        Tree::IConst(_) => T::I64,
        Tree::Neg(a) | Tree::Abs(a) => ty(a, inputs),
        Tree::Sqrt(a) => match ty(a, inputs) {
            T::F32 => T::F32,
            _ => T::F64,
        },
        Tree::Bin(Bin::Div, a, b) => match promote_operands(a, b, inputs) {
            T::F32 => T::F32,
            _ => T::F64,
        },
        Tree::Bin(_, a, b) | Tree::Select(_, a, b) => promote_operands(a, b, inputs),
        Tree::Cmp(..) | Tree::Logic(..) => T::Bool,
        Tree::Cast(_, t) => *t,
    }
}

const TS: [T; 5] = [T::Bool, T::I32, T::I64, T::F32, T::F64];
// 0.1 and -0.3 are not float32 numbers: NEP 50 rounds them to float32
// before `x_f32 * 0.1` or `x_f32 == 0.1`.
const FCONSTS: [f64; 8] = [0.5, -1.5, 2.0, 0.0, 3.25, -7.0, 0.1, -0.3];

/// A literal operand or a subtree.
fn gen_operand(rng: &mut Rng, depth: u32, n_inputs: usize) -> Tree {
    match rng.below(5) {
        0 => Tree::FConst(FCONSTS[rng.below(FCONSTS.len() as u64) as usize]),
        1 => Tree::IConst(rng.range(-3, 3)),
        _ => gen_tree(rng, depth, n_inputs),
    }
}

/// A random tree of depth ≤ `depth` with at least one array leaf; literals
/// only as direct operands of binary nodes, never both at once.
fn gen_tree(rng: &mut Rng, depth: u32, n_inputs: usize) -> Tree {
    if depth == 0 || rng.chance(0.2) {
        return Tree::Input(rng.below(n_inputs as u64) as usize);
    }
    let d = depth - 1;
    let sub = |rng: &mut Rng| Box::new(gen_tree(rng, d, n_inputs));
    let pair = |rng: &mut Rng| {
        let a = gen_tree(rng, d, n_inputs);
        let b = gen_operand(rng, d, n_inputs);
        if rng.chance(0.5) {
            (Box::new(a), Box::new(b))
        } else {
            (Box::new(b), Box::new(a))
        }
    };
    match rng.below(10) {
        0 => Tree::Neg(sub(rng)),
        1 => Tree::Abs(sub(rng)),
        2 => Tree::Sqrt(sub(rng)),
        3 | 4 => {
            let op =
                [Bin::Add, Bin::Sub, Bin::Mul, Bin::Div, Bin::Max, Bin::Min][rng.below(6) as usize];
            let (a, b) = pair(rng);
            Tree::Bin(op, a, b)
        }
        5 | 6 => {
            let op = [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge][rng.below(6) as usize];
            let (a, b) = pair(rng);
            Tree::Cmp(op, a, b)
        }
        7 => Tree::Logic(rng.chance(0.5), sub(rng), sub(rng)),
        8 => {
            let c = sub(rng);
            let (a, b) = pair(rng);
            Tree::Select(c, a, b)
        }
        _ => Tree::Cast(sub(rng), TS[rng.below(5) as usize]),
    }
}

/// Inserts the casts that make a tree valid for NumPy and the engine:
/// no arithmetic on bools (NumPy refuses `-bool`; the engine refuses bool
/// arithmetic), bool operands for logic and conditions.
fn fix(t: Tree, inputs: &[T]) -> Tree {
    let to = |t: Tree, d: T| Tree::Cast(Box::new(t), d);
    let f = |b: Box<Tree>| fix(*b, inputs);
    match t {
        Tree::Neg(a) => {
            let a = f(a);
            Tree::Neg(Box::new(if ty(&a, inputs) == T::Bool {
                to(a, T::I32)
            } else {
                a
            }))
        }
        Tree::Abs(a) => {
            let a = f(a);
            Tree::Abs(Box::new(if ty(&a, inputs) == T::Bool {
                to(a, T::I32)
            } else {
                a
            }))
        }
        Tree::Sqrt(a) => {
            let a = f(a);
            Tree::Sqrt(Box::new(if ty(&a, inputs) == T::Bool {
                to(a, T::I32)
            } else {
                a
            }))
        }
        Tree::Bin(op, a, b) => {
            let (a, b) = (f(a), f(b));
            if op != Bin::Div && promote_operands(&a, &b, inputs) == T::Bool {
                Tree::Bin(op, Box::new(to(a, T::I32)), Box::new(b))
            } else {
                Tree::Bin(op, Box::new(a), Box::new(b))
            }
        }
        Tree::Cmp(op, a, b) => Tree::Cmp(op, Box::new(f(a)), Box::new(f(b))),
        Tree::Logic(and, a, b) => {
            let bool_of = |x: Tree| {
                if ty(&x, inputs) == T::Bool {
                    x
                } else {
                    to(x, T::Bool)
                }
            };
            Tree::Logic(and, Box::new(bool_of(f(a))), Box::new(bool_of(f(b))))
        }
        Tree::Select(c, a, b) => {
            let c = f(c);
            let c = if ty(&c, inputs) == T::Bool {
                c
            } else {
                to(c, T::Bool)
            };
            Tree::Select(Box::new(c), Box::new(f(a)), Box::new(f(b)))
        }
        Tree::Cast(a, d) => Tree::Cast(Box::new(f(a)), d),
        leaf => leaf,
    }
}

fn build(t: &Tree, xs: &[Expr]) -> Expr {
    let operand = |t: &Tree| -> Expr {
        match t {
            Tree::FConst(v) => Expr::constant(*v),
            Tree::IConst(v) => Expr::int_constant(*v),
            other => build(other, xs),
        }
    };
    match t {
        Tree::Input(k) => xs[*k].clone(),
        Tree::FConst(_) | Tree::IConst(_) => unreachable!("literals are operands only"),
        Tree::Neg(a) => -&build(a, xs),
        Tree::Abs(a) => build(a, xs).abs(),
        Tree::Sqrt(a) => build(a, xs).sqrt(),
        Tree::Bin(op, a, b) => {
            let (a, b) = (operand(a), operand(b));
            match op {
                Bin::Add => &a + &b,
                Bin::Sub => &a - &b,
                Bin::Mul => &a * &b,
                Bin::Div => &a / &b,
                Bin::Max => a.maximum(&b),
                Bin::Min => a.minimum(&b),
            }
        }
        Tree::Cmp(op, a, b) => {
            let (a, b) = (operand(a), operand(b));
            match op {
                Cmp::Eq => a.eq(&b),
                Cmp::Ne => a.ne(&b),
                Cmp::Lt => a.lt(&b),
                Cmp::Le => a.le(&b),
                Cmp::Gt => a.gt(&b),
                Cmp::Ge => a.ge(&b),
            }
        }
        Tree::Logic(and, a, b) => {
            let (a, b) = (build(a, xs), build(b, xs));
            if *and { a.and(&b) } else { a.or(&b) }
        }
        Tree::Select(c, a, b) => build(c, xs).select(operand(a), operand(b)),
        Tree::Cast(a, d) => build(a, xs).cast(d.dtype()),
    }
}

/// One value of the elementwise reference. `Undef` marks a value NumPy
/// leaves undefined (a float → int cast of NaN, ±inf or an out-of-range
/// value); it propagates and is not compared.
#[derive(Clone, Copy, Debug)]
enum V {
    B(bool),
    I(i64),
    F(f64),
    Undef,
}

/// Converts a value to dtype `to` (`astype`).
fn conv(v: V, to: T) -> V {
    let f_to_int = |f: f64, lo: f64, hi: f64| {
        let t = f.trunc();
        if f.is_finite() && t >= lo && t <= hi {
            V::I(t as i64)
        } else {
            V::Undef
        }
    };
    match (v, to) {
        (V::Undef, _) => V::Undef,
        (V::B(b), T::Bool) => V::B(b),
        (V::I(i), T::Bool) => V::B(i != 0),
        (V::F(f), T::Bool) => V::B(f != 0.0),
        (V::B(b), T::I32 | T::I64) => V::I(i64::from(b)),
        (V::I(i), T::I32) => V::I(i64::from(i as i32)),
        (V::I(i), T::I64) => V::I(i),
        (V::F(f), T::I32) => f_to_int(f, f64::from(i32::MIN), f64::from(i32::MAX)),
        (V::F(f), T::I64) => f_to_int(f, -9.223372036854776e18, 9.223372036854775e18),
        (V::B(b), T::F32 | T::F64) => V::F(f64::from(u8::from(b))),
        (V::I(i), T::F32) => V::F(i as f32 as f64),
        (V::I(i), T::F64) => V::F(i as f64),
        (V::F(f), T::F32) => V::F(f as f32 as f64),
        (V::F(f), T::F64) => V::F(f),
    }
}

fn round(v: f64, t: T) -> V {
    V::F(if t == T::F32 { v as f32 as f64 } else { v })
}

fn eval(t: &Tree, inputs: &[T], vals: &[Vec<V>], i: usize) -> V {
    let e = |t: &Tree| eval(t, inputs, vals, i);
    let out = ty(t, inputs);
    match t {
        Tree::Input(k) => vals[*k][i],
        Tree::FConst(v) => V::F(*v),
        Tree::IConst(v) => V::I(*v),
        Tree::Neg(a) => match e(a) {
            V::I(x) => conv(V::I(x.wrapping_neg()), out),
            V::F(x) => V::F(-x),
            _ => V::Undef,
        },
        Tree::Abs(a) => match e(a) {
            V::I(x) => conv(V::I(x.wrapping_abs()), out),
            V::F(x) => V::F(x.abs()),
            _ => V::Undef,
        },
        Tree::Sqrt(a) => match conv(e(a), out) {
            V::F(x) => round(x.sqrt(), out),
            _ => V::Undef,
        },
        Tree::Bin(op, a, b) => {
            let p = promote_operands(a, b, inputs);
            let calc = if *op == Bin::Div { out } else { p };
            match (conv(e(a), calc), conv(e(b), calc)) {
                (V::I(x), V::I(y)) => conv(
                    V::I(match op {
                        Bin::Add => x.wrapping_add(y),
                        Bin::Sub => x.wrapping_sub(y),
                        Bin::Mul => x.wrapping_mul(y),
                        Bin::Max => x.max(y),
                        Bin::Min => x.min(y),
                        Bin::Div => unreachable!("true division is float"),
                    }),
                    out,
                ),
                (V::F(x), V::F(y)) => round(
                    match op {
                        Bin::Add => x + y,
                        Bin::Sub => x - y,
                        Bin::Mul => x * y,
                        Bin::Div => x / y,
                        Bin::Max if x.is_nan() || y.is_nan() => f64::NAN,
                        Bin::Min if x.is_nan() || y.is_nan() => f64::NAN,
                        Bin::Max => x.max(y),
                        Bin::Min => x.min(y),
                    },
                    out,
                ),
                _ => V::Undef,
            }
        }
        Tree::Cmp(op, a, b) => {
            let p = promote_operands(a, b, inputs);
            let ord = match (conv(e(a), p), conv(e(b), p)) {
                (V::B(x), V::B(y)) => Some(x.cmp(&y)),
                (V::I(x), V::I(y)) => Some(x.cmp(&y)),
                (V::F(x), V::F(y)) => x.partial_cmp(&y),
                _ => return V::Undef,
            };
            use std::cmp::Ordering::*;
            V::B(match (op, ord) {
                (Cmp::Ne, None) => true,
                (_, None) => false,
                (Cmp::Eq, Some(o)) => o == Equal,
                (Cmp::Ne, Some(o)) => o != Equal,
                (Cmp::Lt, Some(o)) => o == Less,
                (Cmp::Le, Some(o)) => o != Greater,
                (Cmp::Gt, Some(o)) => o == Greater,
                (Cmp::Ge, Some(o)) => o != Less,
            })
        }
        Tree::Logic(and, a, b) => match (e(a), e(b)) {
            (V::B(x), V::B(y)) => V::B(if *and { x && y } else { x || y }),
            _ => V::Undef,
        },
        Tree::Select(c, a, b) => match e(c) {
            V::B(true) => conv(e(a), out),
            V::B(false) => conv(e(b), out),
            _ => V::Undef,
        },
        Tree::Cast(a, d) => conv(e(a), *d),
    }
}

fn to_v(s: Scalar) -> V {
    match s {
        Scalar::Bool(b) => V::B(b),
        Scalar::Int(i) => V::I(i),
        Scalar::UInt(u) => V::I(u as i64),
        Scalar::Float(f) => V::F(f),
    }
}

fn same_v(got: V, want: V) -> bool {
    match (got, want) {
        (_, V::Undef) => true,
        (V::B(a), V::B(b)) => a == b,
        (V::I(a), V::I(b)) => a == b,
        (V::F(a), V::F(b)) => (a.is_nan() && b.is_nan()) || a == b,
        _ => false,
    }
}

fn elem_input(t: T, n: usize, rng: &mut Rng, special: f64) -> (AnyArray, Vec<V>) {
    let mut vals = Vec::with_capacity(n);
    for _ in 0..n {
        vals.push(match t {
            T::Bool => V::B(rng.chance(0.5)),
            T::I32 if rng.chance(0.03) => V::I(
                if rng.chance(0.5) {
                    i32::MAX - 1
                } else {
                    i32::MIN + 1
                }
                .into(),
            ),
            T::I32 | T::I64 => V::I(rng.range(-50, 50)),
            T::F32 | T::F64 => {
                if rng.chance(special) {
                    V::F([f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.below(3) as usize])
                } else if rng.chance(0.4) {
                    V::F(rng.range(-200, 200) as f64 / 4.0)
                } else if rng.chance(0.3) {
                    // Tenths, such as 0.1 and -0.3 (rounded to float32).
                    round(rng.range(-5, 5) as f64 / 10.0, t)
                } else {
                    round((rng.unit() - 0.5) * 100.0, t)
                }
            }
        });
    }
    let sh = IxDyn(&[n]);
    let arr = match t {
        T::Bool => AnyArray::from(
            ArrayD::from_shape_vec(sh, vals.iter().map(|v| matches!(v, V::B(true))).collect())
                .unwrap(),
        ),
        T::I32 => AnyArray::from(
            ArrayD::from_shape_vec(
                sh,
                vals.iter()
                    .map(|v| match v {
                        V::I(i) => *i as i32,
                        _ => 0,
                    })
                    .collect(),
            )
            .unwrap(),
        ),
        T::I64 => AnyArray::from(
            ArrayD::from_shape_vec(
                sh,
                vals.iter()
                    .map(|v| match v {
                        V::I(i) => *i,
                        _ => 0,
                    })
                    .collect(),
            )
            .unwrap(),
        ),
        T::F32 => AnyArray::from(
            ArrayD::from_shape_vec(
                sh,
                vals.iter()
                    .map(|v| match v {
                        V::F(f) => *f as f32,
                        _ => 0.0,
                    })
                    .collect(),
            )
            .unwrap(),
        ),
        T::F64 => AnyArray::from(
            ArrayD::from_shape_vec(
                sh,
                vals.iter()
                    .map(|v| match v {
                        V::F(f) => *f,
                        _ => 0.0,
                    })
                    .collect(),
            )
            .unwrap(),
        ),
    };
    (arr, vals)
}

fn reshape(a: AnyArray, shape: &[usize]) -> AnyArray {
    macro_rules! r {
        ($($var:ident),*) => {
            match a {
                $(AnyArray::$var(x) => AnyArray::$var(x.into_shape_with_order(IxDyn(shape)).unwrap()),)*
            }
        };
    }
    r!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, F32, F64)
}

#[derive(Clone, Debug)]
struct ElemCase {
    shape: Vec<usize>,
    types: Vec<T>,
    seed: u64,
    threads: usize,
    block_rows: usize,
    mode: ReadMode,
    special: f64,
}

fn elem_strategy() -> impl Strategy<Value = ElemCase> {
    (
        1usize..=3,
        0usize..=40,
        // Trailing dims ≥ 1: rows of length 0 are pinned by
        // semantics.rs (elementwise_over_zero_length_rows, an engine bug).
        1usize..=5,
        1usize..=3,
        prop::collection::vec(0usize..5, 1..=2),
        any::<u64>(),
        (1usize..=4, 1usize..=41, any::<bool>(), 0usize..3),
    )
        .prop_map(
            |(rank, rows, d1, d2, types, seed, (threads, block_rows, pread, sp))| ElemCase {
                shape: match rank {
                    1 => vec![rows],
                    2 => vec![rows, d1],
                    _ => vec![rows, d1, d2],
                },
                types: types.into_iter().map(|k| TS[k]).collect(),
                seed,
                threads,
                block_rows,
                mode: if pread {
                    ReadMode::Pread
                } else {
                    ReadMode::Mmap
                },
                special: [0.0, 0.05, 0.3][sp],
            },
        )
}

fn run_elem_case(c: &ElemCase) -> Result<(), String> {
    let mut rng = Rng(c.seed);
    let n: usize = c.shape.iter().product();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_, len) = rows_and_len(&c.shape);
    let row_bytes: usize = len * 8;
    let eng = engine(
        c.threads,
        ((c.block_rows * row_bytes) as u64).max(1),
        c.mode,
    );
    let mut exprs = Vec::new();
    let mut vals = Vec::new();
    for (k, &t) in c.types.iter().enumerate() {
        let (arr, v) = elem_input(t, n, &mut rng, c.special);
        let path = dir.path().join(format!("in{k}.npy"));
        write_any(&path, &reshape(arr, &c.shape));
        exprs.push(eng.open(&path).map_err(|e| e.to_string())?);
        vals.push(v);
    }
    let tree = fix(gen_tree(&mut rng, 3, c.types.len()), &c.types);
    let out_t = ty(&tree, &c.types);
    let expr = build(&tree, &exprs);
    let what = format!("{expr} (tree {tree:?}, inputs {:?})", c.types);
    if expr.dtype() != out_t.dtype() {
        return Err(format!(
            "{what}: expression dtype {} != NumPy's {:?}",
            expr.dtype(),
            out_t
        ));
    }
    let out = dir.path().join("out.npy");
    eng.write_npy(&expr, &out)
        .map_err(|e| format!("{what}: write_npy failed: {e}"))?;
    let written = read_any(&out);
    let collected = eng
        .compute(&expr)
        .map_err(|e| format!("{what}: compute failed: {e}"))?;
    for (how, got) in [("write_npy", &written), ("compute", &collected)] {
        if got.dtype() != out_t.dtype() || got.shape() != c.shape.as_slice() {
            return Err(format!(
                "{what}: {how} gave {} {:?}, expected {:?} {:?}",
                got.dtype(),
                got.shape(),
                out_t,
                c.shape
            ));
        }
        for (i, g) in got.to_scalars().into_iter().enumerate() {
            let want = eval(&tree, &c.types, &vals, i);
            if !same_v(to_v(g), want) {
                let ins: Vec<V> = vals.iter().map(|v| v[i]).collect();
                return Err(format!(
                    "{what}: {how} element {i} (inputs {ins:?}): got {g:?}, expected {want:?}"
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    /// Random elementwise trees follow NumPy's dtype and rounding rules.
    #[test]
    fn elementwise_trees_match_numpy_rules(c in elem_strategy()) {
        run_elem_case(&c).map_err(|e| TestCaseError::fail(format!(
            "{e}\n  shape {:?}, threads {}, block_rows {}, {:?}", c.shape, c.threads, c.block_rows, c.mode
        )))?;
    }

    /// Standardizing with broadcast reductions: `(x - x.mean(0)) / x.std(0, 0)`
    /// and per-row centring `x - x.mean(1)`.
    #[test]
    fn broadcast_reductions_match_reference(
        case in case_strategy(&[DType::F32, DType::F64], 40)
            .prop_filter("rank 2 or 3, rows of non-zero length", |c| {
                // Zero-length rows: see semantics.rs,
                // broadcast_over_zero_length_rows (an engine bug).
                c.input.shape.len() >= 2 && rows_and_len(&c.input.shape).1 > 0
            })
    ) {
        let mut case = case;
        // Continuous values without NaN: constant columns would make 0/0
        // versus ±tiny/0 depend on the last bit of the mean.
        let mut rng = Rng(case.block_rows as u64 * 7919 + case.threads as u64);
        let n = case.input.len();
        case.input.vals = gen_vals(case.input.dtype, n, &mut rng, 1, 0.0, false);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_any(&path, &case.input.array());
        let eng = engine(case.threads, block_bytes(&case.input, case.block_rows.max(1)), case.mode);
        let x = eng.open(&path).unwrap();
        let z = (&x - &x.mean(0)) / &x.std(0, 0);
        let c = &x - &x.mean(1);
        let out = dir.path().join("z.npy");
        eng.write_npy(&z, &out).unwrap();
        let z_got = read_any(&out);
        let c_got = eng.compute(&c).unwrap();
        // mean(0) of float32 is float64 in the engine, so both are float64.
        prop_assert_eq!(z_got.dtype(), DType::F64);
        prop_assert_eq!(c_got.dtype(), DType::F64);
        prop_assert_eq!(z_got.shape(), case.input.shape.as_slice());
        let Vals::Float(xs) = &case.input.vals else { unreachable!() };
        let (rows, len) = rows_and_len(&case.input.shape);
        let col: Vec<(f64, f64, f64)> = (0..len)
            .map(|j| {
                let v: Vec<f64> = (0..rows).map(|r| xs[r * len + j]).collect();
                let (m, var, _, _) = float_stats(&v, 0);
                let amax = v.iter().fold(0.0f64, |a, b| a.max(b.abs()));
                (m, var.sqrt(), amax)
            })
            .collect();
        let z_got = z_got.to_f64();
        for r in 0..rows {
            for j in 0..len {
                let (m, s, amax) = col[j];
                let want = (xs[r * len + j] - m) / s;
                let tol = 1e-11 * (amax / s) * (1.0 + want.abs());
                let got = z_got.as_slice().unwrap()[r * len + j];
                prop_assert!(close(got, want, tol), "z[{r},{j}] = {got}, expected {want} (tol {tol:e})");
            }
        }
        let c_got = c_got.to_f64();
        for r in 0..rows {
            let v: Vec<f64> = xs[r * len..(r + 1) * len].to_vec();
            let (m, _, tm, _) = float_stats(&v, 0);
            for (j, &vj) in v.iter().enumerate() {
                let want = vj - m;
                let got = c_got.as_slice().unwrap()[r * len + j];
                prop_assert!(close(got, want, tm + 1e-300), "c[{r},{j}] = {got}, expected {want}");
            }
        }
    }
}

/// A fixed case per dtype through every block size, thread count and read
/// mode (cheap; catches a path the random cases could miss).
#[test]
fn every_dtype_every_path() {
    for (k, dtype) in DType::ALL.into_iter().enumerate() {
        let mut rng = Rng(k as u64 + 1);
        let shape = vec![7, 3, 2];
        let vals = gen_vals(dtype, 42, &mut rng, 2, 0.1, true);
        let input = Input { dtype, shape, vals };
        let wants = reference_all(&input, 1);
        for threads in [1, 3] {
            for block_rows in [0, 2, 7] {
                for mode in common::MODES {
                    let case = Case {
                        input: input.clone(),
                        threads,
                        block_rows,
                        mode,
                        ddof: 1,
                        derived: block_rows == 2,
                    };
                    if let Err(e) = run_case_with(&case, wants.clone()) {
                        panic!("{dtype} threads {threads} block_rows {block_rows} {mode:?}: {e}");
                    }
                }
            }
        }
    }
}

/// Engines can be shared between threads of a test (Send + Sync).
#[test]
fn engine_is_send_and_sync() {
    fn check<X: Send + Sync>() {}
    check::<Engine>();
    check::<Expr>();
}

/// Rows longer than a kernel tile (4096 elements) and many short rows:
/// the tiling of rows into kernels and the growth of per-row states.
#[test]
fn long_rows_and_many_rows() {
    let shapes: [&[usize]; 4] = [&[6, 4100], &[3, 2, 2100], &[9000], &[5000, 2]];
    for (k, shape) in shapes.into_iter().enumerate() {
        for dtype in [DType::F16, DType::F64, DType::I32, DType::Bool] {
            let mut rng = Rng(100 + k as u64);
            let n = shape.iter().product();
            let vals = gen_vals(dtype, n, &mut rng, 1, 0.001, true);
            let input = Input {
                dtype,
                shape: shape.to_vec(),
                vals,
            };
            let long_rows = shape[0] < 10;
            let wants = reference_all(&input, 1);
            let configs: &[(usize, usize)] = if long_rows {
                &[(1, 1000), (3, 1), (2, 2)]
            } else {
                &[(1, 10_000), (3, 333)]
            };
            for &(threads, block_rows) in configs {
                let case = Case {
                    input: input.clone(),
                    threads,
                    block_rows,
                    mode: ReadMode::Mmap,
                    ddof: 1,
                    derived: threads == 2,
                };
                if let Err(e) = run_case_with(&case, wants.clone()) {
                    panic!("{dtype} {shape:?} threads {threads} block_rows {block_rows}: {e}");
                }
            }
        }
    }
}

/// Bit-identical float results for 1, 2, 3 and 4 threads when the block
/// size is left to the engine (derived from a small memory limit), not
/// set by hand.
#[test]
fn float_results_do_not_depend_on_threads_under_a_small_limit() {
    let mut rng = Rng(7);
    let (rows, len) = (20_000, 8);
    let vals: Vec<f64> = (0..rows * len).map(|_| (rng.unit() - 0.5) * 1e3).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_any(
        &path,
        &AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[rows, len]), vals).unwrap()),
    );
    let mut first: Option<Vec<Vec<Scalar>>> = None;
    for threads in [1, 2, 3, 4] {
        let eng = Engine::builder()
            .memory_limit(512 << 10)
            .threads(threads)
            .build()
            .unwrap();
        let x = eng.open(&path).unwrap();
        let z = (&x - &x.mean(0)) / &x.std(0, 0);
        let got: Vec<Vec<Scalar>> = eng
            .compute(vec![
                x.sum(None),
                x.mean(0),
                x.var(1, 1),
                x.std(None, 0),
                x.nanmean(None),
                z.sum(0),
            ])
            .unwrap()
            .iter()
            .map(AnyArray::to_scalars)
            .collect();
        match &first {
            None => first = Some(got),
            Some(want) => {
                for (k, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        g.iter().zip(w).all(|(a, b)| same_bits(*a, *b)),
                        "output {k} differs with {threads} threads: {:?} vs {:?}",
                        &g[..g.len().min(4)],
                        &w[..w.len().min(4)]
                    );
                }
            }
        }
    }
}
