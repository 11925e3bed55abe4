//! Helpers shared by the engine's integration tests: writing and reading
//! arrays of any dtype, building engines for every code path, comparing
//! results with tolerances, a tiny seeded RNG and a JSON reader that keeps
//! numbers as text (so floats parse exactly).

// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use half::f16;
use ndarray::{ArrayD, IxDyn};
use outcore_chunker::{ArrayFile, ArrayWriter, DType, OutputSpec, ReadMode, with_dtype};
use outcore_exec::{AnyArray, Engine, Scalar};

/// `tests/fixtures` at the workspace root.
pub(crate) fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

/// An engine with a 64 MiB limit, no fsync, and the given code path.
pub(crate) fn engine(threads: usize, block_bytes: u64, mode: ReadMode) -> Engine {
    Engine::builder()
        .memory_limit(64 << 20)
        .threads(threads)
        .block_bytes(block_bytes)
        .read_mode(mode)
        .fsync(false)
        .build()
        .expect("engine builds")
}

/// Rows and row length of a shape, as the engine streams it.
pub(crate) fn rows_and_len(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [r] => (*r, 1),
        [r, rest @ ..] => (*r, rest.iter().product()),
    }
}

/// Writes `a` (any dtype, any rank) to a `.npy` file at `path`.
pub(crate) fn write_any(path: &Path, a: &AnyArray) {
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let (rows, len) = rows_and_len(a.shape());
    let spec = OutputSpec::npy(a.dtype(), shape).fsync(false);
    let w = ArrayWriter::create(path, spec).expect("create input");
    macro_rules! put {
        ($($var:ident),*) => {
            match a {
                $(AnyArray::$var(x) => {
                    if rows * len > 0 {
                        let flat: Vec<_> = x.iter().copied().collect();
                        let v = ndarray::Array2::from_shape_vec((rows, len), flat).expect("2-d");
                        w.write_block(0, v.view()).expect("write input");
                    }
                })*
            }
        };
    }
    put!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, F32, F64);
    w.finish().expect("finish input");
}

/// Reads a whole `.npy` file (written by the engine or NumPy) into memory,
/// independently of the engine.
pub(crate) fn read_any(path: &Path) -> AnyArray {
    let file = ArrayFile::open(path).expect("open output");
    let meta = file.meta().clone();
    let shape: Vec<usize> = meta.shape.iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    with_dtype!(meta.dtype, T => {
        let v: Vec<T> = if n == 0 {
            Vec::new()
        } else {
            let block = file.read_rows(0..meta.rows()).expect("read output");
            block.as_slice::<T>().expect("typed").to_vec()
        };
        AnyArray::from(ArrayD::from_shape_vec(IxDyn(&shape), v).expect("shape"))
    })
}

/// Every read mode.
pub(crate) const MODES: [ReadMode; 2] = [ReadMode::Mmap, ReadMode::Pread];

/// `got` equals `want` within `tol` (absolute); NaN only matches NaN,
/// infinities only themselves.
pub(crate) fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    got.is_finite() && (got - want).abs() <= tol
}

/// `|got - want| <= rel * |want|` (with NaN/inf as in [`close`]).
pub(crate) fn close_rel(got: f64, want: f64, rel: f64) -> bool {
    close(got, want, rel * want.abs())
}

/// A scalar as `f64` (for messages and float comparisons).
pub(crate) fn scalar_f64(s: Scalar) -> f64 {
    match s {
        Scalar::Bool(b) => f64::from(u8::from(b)),
        Scalar::Int(i) => i as f64,
        Scalar::UInt(u) => u as f64,
        Scalar::Float(f) => f,
    }
}

/// Exact equality of scalars, NaN equal to NaN (and `-0.0 == 0.0`).
pub(crate) fn same_scalar(a: Scalar, b: Scalar) -> bool {
    match (a, b) {
        (Scalar::Float(x), Scalar::Float(y)) => (x.is_nan() && y.is_nan()) || x == y,
        _ => a == b,
    }
}

/// Bit-identical scalars (any NaN equal to any NaN).
pub(crate) fn same_bits(a: Scalar, b: Scalar) -> bool {
    match (a, b) {
        (Scalar::Float(x), Scalar::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// A seeded RNG (SplitMix64): the same stream on every platform.

/// SplitMix64.
#[derive(Clone, Debug)]
pub(crate) struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

// ---------------------------------------------------------------------------
// A minimal JSON reader that keeps numbers and strings as text.
//
// serde_json in this workspace lacks `float_roundtrip`, so the fixtures
// write floats as strings and they are parsed here with `str::parse`, which
// rounds correctly ("nan", "inf" and "-inf" included).

/// A JSON value whose numbers are kept as written.
#[derive(Clone, Debug)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }

    /// The member `key` of an object (panics when missing: a fixture bug).
    pub(crate) fn get(&self, key: &str) -> &Json {
        self.try_get(key)
            .unwrap_or_else(|| panic!("missing key {key:?} in {self:?}"))
    }

    pub(crate) fn try_get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }

    pub(crate) fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// A float written as a string ("0.1", "nan", "-inf") or a number.
    pub(crate) fn f64(&self) -> f64 {
        match self {
            Json::Str(s) | Json::Num(s) => s
                .parse()
                .unwrap_or_else(|e| panic!("not a float: {s:?}: {e}")),
            other => panic!("not a float: {other:?}"),
        }
    }

    pub(crate) fn u64(&self) -> u64 {
        match self {
            Json::Num(s) => s.parse().unwrap_or_else(|e| panic!("not a u64: {s}: {e}")),
            other => panic!("not a number: {other:?}"),
        }
    }

    pub(crate) fn i128(&self) -> i128 {
        match self {
            Json::Num(s) => s
                .parse()
                .unwrap_or_else(|e| panic!("not an integer: {s}: {e}")),
            other => panic!("not a number: {other:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    kv.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(kv));
                        }
                        _ => return Err(format!("bad object at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return Err(format!("bad array at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text =
                    std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                Ok(Json::Num(text.to_string()))
            }
            _ => Err(format!("unexpected input at byte {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at byte {}", self.i));
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = *self.s.get(self.i + 1).ok_or("bad escape")?;
                    self.i += 2;
                    match c {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.s[self.i..self.i + 4])
                                .map_err(|e| e.to_string())?;
                            let cp = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            out.push(char::from_u32(cp).unwrap_or('?'));
                            self.i += 4;
                        }
                        other => out.push(other as char),
                    }
                }
                Some(&c) if c < 0x80 => {
                    out.push(c as char);
                    self.i += 1;
                }
                Some(_) => {
                    // Copy one multi-byte UTF-8 character.
                    let end = (self.i + 4).min(self.s.len());
                    let rest = String::from_utf8_lossy(&self.s[self.i..end]);
                    let ch = rest.chars().next().ok_or("bad utf-8")?;
                    out.push(ch);
                    self.i += ch.len_utf8().max(1);
                }
            }
        }
    }
}

/// The engine's dtype with NumPy's name.
pub(crate) fn dtype_named(name: &str) -> DType {
    DType::ALL
        .into_iter()
        .find(|d| d.name() == name)
        .unwrap_or_else(|| panic!("unknown dtype {name}"))
}

/// The smallest and largest value of an integer (or bool) dtype.
pub(crate) fn int_range(d: DType) -> (i128, i128) {
    match d {
        DType::Bool => (0, 1),
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I64 => (i64::MIN.into(), i64::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        DType::U16 => (0, u16::MAX.into()),
        DType::U32 => (0, u32::MAX.into()),
        DType::U64 => (0, u64::MAX.into()),
        _ => unreachable!("not an integer dtype"),
    }
}

/// `x` rounded to a float dtype (float64 unchanged).
pub(crate) fn round_to(d: DType, x: f64) -> f64 {
    match d {
        DType::F16 => outcore_chunker::f16::from_f64(x).to_f64(),
        DType::F32 => x as f32 as f64,
        _ => x,
    }
}

/// `cases` proptest cases; failures are reported, not persisted (the bugs
/// found are pinned as named tests instead).
pub(crate) fn config(cases: u32) -> proptest::test_runner::Config {
    // PROPTEST_CASES=n overrides the count for a deeper search.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Values of a generated input: exact integers (bool as 0/1) or floats
/// already rounded to the dtype.
#[derive(Clone, Debug)]
pub(crate) enum Vals {
    Int(Vec<i128>),
    Float(Vec<f64>),
}

/// `vals` as an array of `dtype` and `shape`.
pub(crate) fn vals_array(dtype: DType, shape: &[usize], vals: &Vals) -> AnyArray {
    let sh = IxDyn(shape);
    macro_rules! ints {
        ($t:ty) => {{
            let Vals::Int(v) = vals else { unreachable!() };
            AnyArray::from(
                ArrayD::from_shape_vec(sh, v.iter().map(|&x| x as $t).collect()).unwrap(),
            )
        }};
    }
    macro_rules! floats {
        ($f:expr) => {{
            let Vals::Float(v) = vals else { unreachable!() };
            AnyArray::from(ArrayD::from_shape_vec(sh, v.iter().map($f).collect()).unwrap())
        }};
    }
    match dtype {
        DType::Bool => {
            let Vals::Int(v) = vals else { unreachable!() };
            AnyArray::from(ArrayD::from_shape_vec(sh, v.iter().map(|&x| x != 0).collect()).unwrap())
        }
        DType::I8 => ints!(i8),
        DType::I16 => ints!(i16),
        DType::I32 => ints!(i32),
        DType::I64 => ints!(i64),
        DType::U8 => ints!(u8),
        DType::U16 => ints!(u16),
        DType::U32 => ints!(u32),
        DType::U64 => ints!(u64),
        DType::F16 => floats!(|&x: &f64| f16::from_f64(x)),
        DType::F32 => floats!(|&x: &f64| x as f32),
        DType::F64 => floats!(|&x: &f64| x),
    }
}

/// Computes the expressions of `batch` (`(what, expr, want)`) in one
/// shared call and checks each value with `check`; when the batch fails,
/// finds the expression that fails alone.
pub(crate) fn check_batch<W>(
    eng: &Engine,
    batch: &[(String, outcore_exec::Expr, W)],
    check: impl Fn(&str, &AnyArray, &W) -> Result<(), String>,
) -> Result<(), String> {
    let exprs: Vec<outcore_exec::Expr> = batch.iter().map(|b| b.1.clone()).collect();
    match eng.compute(exprs) {
        Ok(values) => {
            for ((what, _, want), got) in batch.iter().zip(&values) {
                check(what, got, want)?;
            }
        }
        Err(e) => {
            // Find the culprit.
            for (what, expr, want) in batch {
                match eng.compute(expr) {
                    Ok(got) => check(what, &got, want)?,
                    Err(e) => return Err(format!("{what}: unexpected error: {e}")),
                }
            }
            return Err(format!(
                "the batch failed ({e}) though every reduction alone succeeds"
            ));
        }
    }
    Ok(())
}
