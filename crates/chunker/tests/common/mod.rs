//! Helpers shared by the integration tests: the NumPy fixture manifest,
//! exact element comparison, block-by-block reading and a seeded RNG.

#![allow(dead_code)] // each test binary includes this module and uses a different subset of it

use std::path::PathBuf;
use std::sync::OnceLock;

use outcore_chunker::{ArrayFile, ArrayMeta, Block, BlockPlan, ByteOrder, DType, Element, f16};

/// `tests/fixtures` at the workspace root.
pub(crate) fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

// ---------------------------------------------------------------------------
// A minimal JSON reader that keeps numbers as their text.
//
// serde_json (without its `float_roundtrip` feature, which this workspace
// does not enable) parses floats with best-effort precision, which may be off
// by one ulp for 17-digit values such as 2.2250738585072014e-308. The
// fixtures must be compared bit for bit, so numbers are kept as text and
// parsed by `str::parse`, which rounds correctly.
// ---------------------------------------------------------------------------

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
            return p.err("trailing characters");
        }
        Ok(v)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_num(&self) -> Option<&str> {
        match self {
            Json::Num(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn as_arr(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("manifest.json: {what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(items));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return self.err("expected a key");
                    }
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return self.err("expected ':'");
                    }
                    let value = self.value()?;
                    items.push((key, value));
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Json::Obj(items));
                    }
                    return self.err("expected ',' or '}'");
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Json::Arr(items));
                    }
                    return self.err("expected ',' or ']'");
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while matches!(
                    self.s.get(self.i),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
                Ok(Json::Num(text.to_string()))
            }
            Some(_) => self.err("unexpected character"),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or("truncated \\u escape")?;
        let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
        let v = u32::from_str_radix(text, 16).map_err(|e| e.to_string())?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|e| e.to_string());
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(&c) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let ch = match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.eat("\\u") {
                                    return self.err("lone surrogate");
                                }
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or("invalid \\u escape")?
                        }
                        _ => return self.err("unknown escape"),
                    };
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                Some(&b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Element values, compared exactly.
// ---------------------------------------------------------------------------

/// One element, widened without loss: floats compare bit for bit (so -0.0
/// differs from 0.0), except that any NaN equals any NaN.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value {
    Bool(bool),
    Int(i128),
    Float(f64),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => {
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
            }
            _ => false,
        }
    }
}

/// Conversions between each element type and [`Value`].
pub(crate) trait Exact: Element {
    fn to_value(self) -> Value;
    /// The element equal to `v`, if `v` is of this kind and representable exactly.
    fn from_value(v: Value) -> Option<Self>;
}

impl Exact for bool {
    fn to_value(self) -> Value {
        Value::Bool(self)
    }
    fn from_value(v: Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
}

macro_rules! exact_int {
    ($($t:ty),*) => {$(
        impl Exact for $t {
            fn to_value(self) -> Value {
                Value::Int(i128::from(self))
            }
            fn from_value(v: Value) -> Option<$t> {
                match v {
                    Value::Int(i) => <$t>::try_from(i).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
exact_int!(i8, i16, i32, i64, u8, u16, u32, u64);

fn exact_float<T>(v: Value, narrow: impl Fn(f64) -> T, widen: impl Fn(T) -> f64) -> Option<T>
where
    T: Copy,
{
    let Value::Float(x) = v else { return None };
    let t = narrow(x);
    (Value::Float(widen(t)) == v).then_some(t)
}

impl Exact for f16 {
    fn to_value(self) -> Value {
        Value::Float(self.to_f64())
    }
    fn from_value(v: Value) -> Option<f16> {
        exact_float(v, f16::from_f64, f16::to_f64)
    }
}

impl Exact for f32 {
    fn to_value(self) -> Value {
        Value::Float(f64::from(self))
    }
    fn from_value(v: Value) -> Option<f32> {
        exact_float(v, |x| x as f32, f64::from)
    }
}

impl Exact for f64 {
    fn to_value(self) -> Value {
        Value::Float(self)
    }
    fn from_value(v: Value) -> Option<f64> {
        exact_float(v, |x| x, |x| x)
    }
}

// ---------------------------------------------------------------------------
// The manifest.
// ---------------------------------------------------------------------------

/// One entry of `manifest.json`.
#[derive(Debug)]
pub(crate) struct Fixture {
    /// As in the manifest, e.g. `npy/bool_v1_4x3.npy`.
    pub(crate) file: String,
    pub(crate) path: PathBuf,
    pub(crate) expect: Expect,
}

#[derive(Debug)]
pub(crate) enum Expect {
    Ok(OkFixture),
    Error { kind: String, note: String },
}

#[derive(Debug)]
pub(crate) struct OkFixture {
    pub(crate) dtype: DType,
    /// `None` for NumPy's `|` (byte order irrelevant).
    pub(crate) byte_order: Option<ByteOrder>,
    pub(crate) version: (u8, u8),
    pub(crate) shape: Vec<u64>,
    pub(crate) fortran_order: bool,
    pub(crate) data_offset: u64,
    /// Flat, C order.
    pub(crate) values: Vec<Value>,
}

impl Fixture {
    pub(crate) fn ok(&self) -> Option<&OkFixture> {
        match &self.expect {
            Expect::Ok(ok) => Some(ok),
            Expect::Error { .. } => None,
        }
    }

    /// The file name without the `npy/` directory.
    pub(crate) fn name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// Every manifest entry, parsed once per test binary.
pub(crate) fn manifest() -> &'static [Fixture] {
    static MANIFEST: OnceLock<Vec<Fixture>> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let path = fixtures_dir().join("manifest.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json = Json::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let entries = json
            .get("fixtures")
            .and_then(Json::as_arr)
            .expect("manifest.json has a 'fixtures' list");
        entries
            .iter()
            .map(|e| parse_entry(e).unwrap_or_else(|err| panic!("manifest entry {e:?}: {err}")))
            .collect()
    })
}

/// The manifest entry for `npy/<name>`.
pub(crate) fn fixture(name: &str) -> &'static Fixture {
    manifest()
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("no fixture {name} in the manifest"))
}

fn field<'a>(e: &'a Json, key: &str) -> Result<&'a Json, String> {
    e.get(key).ok_or_else(|| format!("missing '{key}'"))
}

fn parse_u64(j: &Json) -> Result<u64, String> {
    j.as_num()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{j:?} is not a u64"))
}

fn parse_entry(e: &Json) -> Result<Fixture, String> {
    let file = field(e, "file")?.as_str().ok_or("'file'")?.to_string();
    let path = fixtures_dir().join(&file);
    let expect = match field(e, "expect")?.as_str() {
        Some("error") => Expect::Error {
            kind: field(e, "error")?.as_str().ok_or("'error'")?.to_string(),
            note: field(e, "note")?.as_str().ok_or("'note'")?.to_string(),
        },
        Some("ok") => {
            let name = field(e, "dtype")?.as_str().ok_or("'dtype'")?;
            let dtype = DType::ALL
                .into_iter()
                .find(|d| d.name() == name)
                .ok_or_else(|| format!("unknown dtype {name}"))?;
            let byte_order = match field(e, "byte_order")?.as_str() {
                Some("little") => Some(ByteOrder::Little),
                Some("big") => Some(ByteOrder::Big),
                Some("none") => None,
                other => return Err(format!("byte_order {other:?}")),
            };
            let version = field(e, "version")?.as_arr().ok_or("'version'")?;
            let [major, minor] = version else {
                return Err("'version' is not [major, minor]".into());
            };
            let to_u8 = |j| parse_u64(j).and_then(|v| u8::try_from(v).map_err(|e| e.to_string()));
            let shape = field(e, "shape")?
                .as_arr()
                .ok_or("'shape'")?
                .iter()
                .map(parse_u64)
                .collect::<Result<Vec<_>, _>>()?;
            let values = field(e, "values")?
                .as_arr()
                .ok_or("'values'")?
                .iter()
                .map(|v| parse_value(dtype, v))
                .collect::<Result<Vec<_>, _>>()?;
            Expect::Ok(OkFixture {
                dtype,
                byte_order,
                version: (to_u8(major)?, to_u8(minor)?),
                shape,
                fortran_order: field(e, "fortran_order")?
                    .as_bool()
                    .ok_or("'fortran_order'")?,
                data_offset: parse_u64(field(e, "data_offset")?)?,
                values,
            })
        }
        other => return Err(format!("expect {other:?}")),
    };
    Ok(Fixture { file, path, expect })
}

fn parse_value(dtype: DType, v: &Json) -> Result<Value, String> {
    let bad = || format!("{v:?} is not a {dtype} value");
    if dtype == DType::Bool {
        return v.as_bool().map(Value::Bool).ok_or_else(bad);
    }
    if !dtype.is_float() {
        return v
            .as_num()
            .and_then(|n| n.parse::<i128>().ok())
            .map(Value::Int)
            .ok_or_else(bad);
    }
    let x = match v {
        Json::Num(n) => n.parse::<f64>().map_err(|_| bad())?,
        Json::Str(s) if s == "nan" => f64::NAN,
        Json::Str(s) if s == "inf" => f64::INFINITY,
        Json::Str(s) if s == "-inf" => f64::NEG_INFINITY,
        _ => return Err(bad()),
    };
    Ok(Value::Float(x))
}

// ---------------------------------------------------------------------------
// Reading.
// ---------------------------------------------------------------------------

/// Checks that `block` is the block of `rows` of an array described by `meta`.
pub(crate) fn check_block(
    block: &Block,
    rows: &std::ops::Range<u64>,
    meta: &ArrayMeta,
) -> Result<(), String> {
    let n = (rows.end - rows.start) as usize;
    let got = (
        block.start_row(),
        block.rows(),
        block.row_len(),
        block.dtype(),
    );
    let want = (rows.start, n, meta.row_len(), meta.dtype);
    if got != want {
        return Err(format!(
            "block {rows:?}: (start_row, rows, row_len, dtype) = {got:?}, expected {want:?}"
        ));
    }
    if block.row_range() != *rows {
        return Err(format!("block {rows:?}: row_range {:?}", block.row_range()));
    }
    let nbytes = n * meta.row_bytes();
    if block.nbytes() != nbytes || block.as_bytes().len() != nbytes {
        return Err(format!(
            "block {rows:?}: nbytes {} / {} bytes, expected {nbytes}",
            block.nbytes(),
            block.as_bytes().len()
        ));
    }
    Ok(())
}

/// The elements of `block` as values, through both `view` and `as_slice`.
pub(crate) fn block_values(block: &Block) -> Result<Vec<Value>, String> {
    fn typed<T: Exact>(block: &Block) -> Result<Vec<Value>, String> {
        let view = block.view::<T>().map_err(|e| format!("view: {e}"))?;
        if view.dim() != (block.rows(), block.row_len()) {
            return Err(format!("view has shape {:?}", view.dim()));
        }
        let slice = block
            .as_slice::<T>()
            .map_err(|e| format!("as_slice: {e}"))?;
        let values: Vec<Value> = slice.iter().map(|x| x.to_value()).collect();
        let from_view: Vec<Value> = view.iter().map(|x| x.to_value()).collect();
        if from_view != values {
            return Err("view and as_slice differ".into());
        }
        Ok(values)
    }
    outcore_chunker::with_dtype!(block.dtype(), T => typed::<T>(block))
}

/// Reads every row of `file` in blocks of `block_rows` rows, checking each
/// block's placement; returns the elements in C order.
pub(crate) fn read_values(file: &ArrayFile, block_rows: u64) -> Result<Vec<Value>, String> {
    let meta = file.meta();
    let mut out = Vec::new();
    for rows in BlockPlan::new(meta.rows(), block_rows).iter() {
        let block = file
            .read_rows(rows.clone())
            .map_err(|e| format!("read_rows({rows:?}): {e}"))?;
        check_block(&block, &rows, meta)?;
        out.extend(block_values(&block).map_err(|e| format!("block {rows:?}: {e}"))?);
    }
    Ok(out)
}

/// Reads every row of `file` in blocks of `block_rows` rows, checking each
/// block's placement and typed access; returns the native-order bytes.
pub(crate) fn read_bytes(file: &ArrayFile, block_rows: u64) -> Result<Vec<u8>, String> {
    let meta = file.meta();
    let mut out = Vec::new();
    for rows in BlockPlan::new(meta.rows(), block_rows).iter() {
        let block = file
            .read_rows(rows.clone())
            .map_err(|e| format!("read_rows({rows:?}): {e}"))?;
        check_block(&block, &rows, meta)?;
        block_values(&block).map_err(|e| format!("block {rows:?}: {e}"))?;
        out.extend_from_slice(block.as_bytes());
    }
    Ok(out)
}

/// Compares values, naming the first difference.
pub(crate) fn compare(got: &[Value], want: &[Value]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{} values read, {} expected",
            got.len(),
            want.len()
        ));
    }
    match got.iter().zip(want).position(|(g, w)| g != w) {
        None => Ok(()),
        Some(i) => Err(format!(
            "value {i} (flat C order) is {:?}, expected {:?}",
            got[i], want[i]
        )),
    }
}

/// Runs `check` on each labelled item and panics listing every failure
/// by its label.
pub(crate) fn check_all<I>(
    items: impl IntoIterator<Item = (String, I)>,
    check: impl Fn(I) -> Result<(), String>,
) {
    let mut failures = Vec::new();
    let mut count = 0;
    for (label, item) in items {
        count += 1;
        if let Err(e) = check(item) {
            failures.push(format!("{label}: {e}"));
        }
    }
    assert!(count > 0, "nothing to check");
    assert!(
        failures.is_empty(),
        "{} of {count} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Random data.
// ---------------------------------------------------------------------------

/// SplitMix64: a small seeded generator for test data and shuffles.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

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

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// `n` elements of `T` with random bit patterns (bools 0 or 1; floats
/// include NaNs with payloads, infinities, subnormals and -0.0), plus the
/// special values at the front when there is room.
pub(crate) fn random_elements<T: Element>(rng: &mut Rng, n: usize) -> Vec<T> {
    let isz = T::DATA_TYPE.itemsize();
    let mut bytes = vec![0u8; n * isz];
    for c in bytes.chunks_exact_mut(isz) {
        let r = rng.next_u64().to_le_bytes();
        c.copy_from_slice(&r[..isz]);
        if T::DATA_TYPE == DType::Bool {
            c[0] &= 1;
        }
    }
    let specials: &[u64] = match T::DATA_TYPE {
        DType::F64 => &[
            0x8000_0000_0000_0000, // -0.0
            0x7FF8_0000_0000_0001, // NaN with payload
            0xFFF0_0000_0000_0000, // -inf
            0x0000_0000_0000_0001, // smallest subnormal
        ],
        DType::F32 => &[0x8000_0000, 0x7FC0_0001, 0xFF80_0000, 0x0000_0001],
        DType::F16 => &[0x8000, 0x7E01, 0xFC00, 0x0001, 0x7BFF],
        _ => &[],
    };
    for (c, s) in bytes.chunks_exact_mut(isz).zip(specials) {
        // The low `isz` bytes of `s`, in native order.
        if cfg!(target_endian = "little") {
            c.copy_from_slice(&s.to_le_bytes()[..isz]);
        } else {
            c.copy_from_slice(&s.to_be_bytes()[8 - isz..]);
        }
    }
    bytes
        .chunks_exact(isz)
        .map(bytemuck::checked::pod_read_unaligned::<T>)
        .collect()
}

/// The native-order bytes of `values`.
pub(crate) fn native_bytes<T: Element>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice::<T, u8>(values).to_vec()
}

/// Every byte of `values` reversed element by element.
pub(crate) fn swapped_bytes<T: Element>(values: &[T]) -> Vec<u8> {
    let isz = T::DATA_TYPE.itemsize();
    let mut bytes = native_bytes(values);
    for c in bytes.chunks_exact_mut(isz) {
        c.reverse();
    }
    bytes
}

/// Names in `dir` (for checking that no temporary file was left behind).
pub(crate) fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
