//! Property tests: random arrays round-trip through the writer and reader in
//! any block size and read mode, and no input — random bytes, random
//! headers, mutated fixtures — makes opening or reading panic.

mod common;

use std::io::Write;
use std::path::Path;

use common::{
    Rng, block_values, manifest, native_bytes, random_elements, read_bytes, swapped_bytes,
};
use ndarray::{Array2, s};
use outcore_chunker::{
    ArrayFile, ArrayWriter, ByteOrder, DType, OutputSpec, RawSpec, ReadMode, with_dtype,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures are pinned as named regression tests instead of files
        // written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

fn dtype() -> impl Strategy<Value = DType> {
    (0..DType::ALL.len()).prop_map(|i| DType::ALL[i])
}

fn order() -> impl Strategy<Value = ByteOrder> {
    prop_oneof![Just(ByteOrder::Little), Just(ByteOrder::Big)]
}

fn mode() -> impl Strategy<Value = ReadMode> {
    prop_oneof![Just(ReadMode::Mmap), Just(ReadMode::Pread)]
}

/// A shape of rank 0 to 3, dimensions 0 to 8, with a block size from 1 to
/// one more than the row count.
fn shape_and_block() -> impl Strategy<Value = (Vec<u64>, u64)> {
    prop::collection::vec(0u64..9, 0..=3).prop_flat_map(|shape| {
        let rows = shape.first().copied().unwrap_or(1);
        (Just(shape), 1..=rows + 1)
    })
}

/// Writes random values of `dtype` and `shape` (in random row blocks, in
/// random order), reads them back, and compares bytes.
fn round_trip<T: common::Exact>(
    dtype: DType,
    shape: &[u64],
    order: ByteOrder,
    npy: bool,
    seed: u64,
    block_rows: u64,
    mode: ReadMode,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let rows = shape.first().copied().unwrap_or(1) as usize;
    let row_len = shape.iter().skip(1).product::<u64>() as usize;
    let values: Vec<T> = random_elements(&mut rng, rows * row_len);
    let all = Array2::from_shape_vec((rows, row_len), values.clone()).unwrap();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("a");
    let spec = if npy {
        OutputSpec::npy(dtype, shape.to_vec())
    } else {
        OutputSpec::raw(dtype, shape.to_vec())
    };
    let writer = ArrayWriter::create(&path, spec.byte_order(order).fsync(false))
        .map_err(|e| format!("create: {e}"))?;
    let mut starts: Vec<usize> = (0..rows).step_by(1 + rng.below(3) as usize).collect();
    rng.shuffle(&mut starts);
    let step = starts
        .iter()
        .copied()
        .filter(|&s| s > 0)
        .min()
        .unwrap_or(rows);
    for start in starts {
        let end = (start + step).min(rows);
        let block = all.slice(s![start..end, ..]);
        if rng.below(2) == 0 {
            writer.write_block(start as u64, block)
        } else {
            let v: Vec<T> = block.iter().copied().collect();
            let bytes = if order.is_native() {
                native_bytes(&v)
            } else {
                swapped_bytes(&v)
            };
            writer.write_rows(start as u64, &bytes)
        }
        .map_err(|e| format!("write rows {start}..{end}: {e}"))?;
    }
    writer.finish().map_err(|e| format!("finish: {e}"))?;
    let file = if npy {
        ArrayFile::open(&path)
    } else {
        ArrayFile::open_raw(
            &path,
            &RawSpec {
                dtype,
                byte_order: order,
                shape: Some(shape.to_vec()),
                offset: 0,
                layout: outcore_chunker::Layout::C,
            },
        )
    }
    .map_err(|e| format!("open: {e}"))?
    .with_read_mode(mode);
    if file.meta().shape != shape || file.meta().dtype != dtype {
        return Err(format!("reopened as {:?}", file.meta()));
    }
    let got = read_bytes(&file, block_rows)?;
    if got != native_bytes(&values) {
        return Err("values read back differ".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn written_arrays_read_back_identically(
        dtype in dtype(),
        (shape, block_rows) in shape_and_block(),
        order in order(),
        npy in any::<bool>(),
        seed in any::<u64>(),
        mode in mode(),
    ) {
        let result = with_dtype!(dtype, T =>
            round_trip::<T>(dtype, &shape, order, npy, seed, block_rows, mode));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// Opens `path` as `.npy` in both read modes; if it opens, reads every row
/// (in small blocks and all at once) and views every block. Errors are
/// fine; panics are not (proptest reports them as failures).
fn exercise(path: &Path) {
    for mode in [ReadMode::Mmap, ReadMode::Pread] {
        let Ok(file) = ArrayFile::open(path) else {
            return;
        };
        let file = file.with_read_mode(mode);
        let rows = file.meta().rows();
        for range in file.plan(40).iter().take(1000) {
            if let Ok(block) = file.read_rows(range) {
                let _ = block_values(&block);
            }
        }
        if let Ok(block) = file.read_rows(0..rows) {
            let _ = block_values(&block);
        }
    }
}

fn exercise_bytes(bytes: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    exercise(file.path());
}

/// A `.npy` file (format version 1, 2 or 3) whose header dict is assembled
/// from fragments, mostly valid, and whose data is mostly the right size.
fn header_file() -> impl Strategy<Value = Vec<u8>> {
    // (descr, itemsize) — itemsize 0 for descrs that are refused.
    let descr = prop_oneof![
        6 => prop::sample::select(vec![
            ("'<f8'", 8), ("'>f8'", 8), ("'<f2'", 2), ("'>i2'", 2), ("'|b1'", 1),
            ("'|u1'", 1), ("'<u8'", 8), ("'>i4'", 4), ("'=i8'", 8), ("'>f4'", 4),
        ]),
        1 => prop::sample::select(vec![
            ("'<c16'", 0), ("'<U3'", 0), ("'|O'", 0), ("'<f16'", 0), ("'f8'", 0),
            ("'<M8[ns]'", 0), ("[('a', '<i4')]", 0), ("8", 0), ("''", 0), ("'<q9'", 0),
            ("None", 0),
        ]),
    ];
    let fortran = prop_oneof![
        4 => Just("False"),
        4 => Just("True"),
        1 => prop::sample::select(vec!["0", "None", "'False'"]),
    ];
    // (text, value) — value None for dims that are not plain integers.
    let dim = prop_oneof![
        8 => (0u64..6).prop_map(|d| (d.to_string(), Some(d))),
        1 => prop::sample::select(vec![
            9223372036854775807, 9223372036854775808, 18446744073709551615,
            4294967296, 4611686018427387904,
        ])
        .prop_map(|d: u64| (d.to_string(), Some(d))),
        1 => prop::sample::select(vec!["-1", "4.0", "True", "2**3", "18446744073709551616"])
            .prop_map(|t| (t.to_string(), None)),
    ];
    let dims = prop::collection::vec(dim, 0..4);
    let version = prop::sample::select(vec![1u8, 2, 3]);
    let data = prop_oneof![
        4 => Just(None),                              // exactly the right size
        1 => (0usize..200).prop_map(Some),            // any size
    ];
    (
        descr,
        fortran,
        dims,
        any::<bool>(),
        version,
        data,
        any::<u64>(),
    )
        .prop_map(
            |((descr, isz), fortran, dims, reorder, version, data_len, seed)| {
                let texts: Vec<&str> = dims.iter().map(|(t, _)| t.as_str()).collect();
                let shape = match texts.len() {
                    1 => format!("({},)", texts[0]),
                    _ => format!("({})", texts.join(", ")),
                };
                let dict = if reorder {
                    format!("{{'shape': {shape}, 'descr': {descr}, 'fortran_order': {fortran}}}")
                } else {
                    format!("{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}")
                };
                // The data size the shape calls for, when small enough to write.
                let exact = dims
                    .iter()
                    .try_fold(isz as u64, |acc, (_, d)| acc.checked_mul((*d)?))
                    .filter(|&n| n <= 4096);
                let len = data_len.or(exact.map(|n| n as usize)).unwrap_or(16);
                let mut bytes = b"\x93NUMPY".to_vec();
                bytes.extend_from_slice(&[version, 0]);
                let mut text = dict.into_bytes();
                text.push(b'\n');
                if version == 1 {
                    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
                } else {
                    bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
                }
                bytes.extend_from_slice(&text);
                let mut rng = Rng::new(seed);
                // Bool data stays mostly valid (0 or 1) so reads get past the check.
                bytes.extend(
                    (0..len).map(|_| (rng.next_u64() % if isz == 1 { 3 } else { 256 }) as u8),
                );
                bytes
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise_bytes(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_prefix_never_panic(
        version in prop::sample::select(vec![[1u8, 0], [2, 0], [3, 0], [1, 1]]),
        len in prop_oneof![0u32..300, any::<u32>()],
        rest in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend_from_slice(&version);
        if version[0] == 1 {
            bytes.extend_from_slice(&(len as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&len.to_le_bytes());
        }
        bytes.extend_from_slice(&rest);
        exercise_bytes(&bytes);
    }

    #[test]
    fn random_headers_never_panic(bytes in header_file()) {
        exercise_bytes(&bytes);
    }
}

/// One edit of a file's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        at.prop_map(|at| Mutation::Delete { at }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match *m {
        Mutation::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
        Mutation::Set { at, byte } if n > 0 => bytes[at % n] = byte,
        Mutation::Insert { at, byte } => bytes.insert(at % (n + 1), byte),
        Mutation::Delete { at } if n > 0 => {
            bytes.remove(at % n);
        }
        Mutation::Truncate { at } => bytes.truncate(at % (n + 1)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn mutated_fixtures_never_panic(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let fixtures = manifest();
        let fx = &fixtures[index.index(fixtures.len())];
        let mut bytes = std::fs::read(&fx.path).unwrap();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        exercise_bytes(&bytes);
    }
}

/// Every single-byte change in the header region of a valid fixture, to
/// every one of a few values, is handled without panicking.
#[test]
fn every_header_byte_changed_never_panics() {
    let fx = common::fixture("int16_be_v1_fortran_3x5.npy");
    let original = std::fs::read(&fx.path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npy");
    for at in 0..128 {
        for byte in [b'0', b'9', b' ', b'(', b')', b',', b'\'', 0xFF, 0] {
            let mut bytes = original.clone();
            bytes[at] = byte;
            std::fs::write(&path, &bytes).unwrap();
            exercise(&path);
        }
    }
}

/// A dimension or offset: mostly small, sometimes at the edges of the size
/// arithmetic (NumPy's largest dimension, powers of two, `u64::MAX`).
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..6,
        1 => prop::sample::select(vec![
            1 << 20, 1 << 31, 1 << 32, 1 << 40, 1 << 61, 1 << 62, 1 << 63,
            i64::MAX as u64 - 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX,
        ]),
        1 => any::<u64>(),
    ]
}

/// A raw spec and a file to open it over: any dtype, byte order, shape (or
/// none), offset and length, the length often exactly what the spec needs.
fn raw_case() -> impl Strategy<Value = (RawSpec, Vec<u8>)> {
    let shape = prop::option::weighted(0.8, prop::collection::vec(edgy_u64(), 0..4));
    let offset = prop_oneof![4 => 0u64..20, 1 => edgy_u64()];
    (
        dtype(),
        order(),
        shape,
        offset,
        any::<bool>(),
        0usize..200,
        any::<u64>(),
    )
        .prop_map(|(dtype, byte_order, shape, offset, exact, any_len, seed)| {
            let isz = dtype.itemsize() as u128;
            let needed = match &shape {
                Some(dims) => dims
                    .iter()
                    .try_fold(isz, |acc, &d| acc.checked_mul(u128::from(d)))
                    .map(|n| n + u128::from(offset)),
                None => Some(u128::from(offset) + isz * (seed % 9) as u128),
            };
            let len = match needed {
                Some(n) if exact && n <= 4096 => n as usize,
                _ => any_len,
            };
            let mut rng = Rng::new(seed);
            // Bool data stays valid (0 or 1) so views succeed.
            let mask = if dtype == DType::Bool { 1 } else { 0xFF };
            let bytes = (0..len).map(|_| rng.next_u64() as u8 & mask).collect();
            let spec = RawSpec {
                dtype,
                byte_order,
                shape,
                offset,
                layout: outcore_chunker::Layout::C,
            };
            (spec, bytes)
        })
}

/// Whether `ArrayFile::open_raw` must accept `spec` over `len` bytes, as
/// its documentation and `ArrayMeta::new` say: an offset within the file;
/// without a shape, a whole number of elements after it; with one, every
/// dimension at most `i64::MAX`, the non-zero dimensions' bytes at most
/// `isize::MAX` (wherever the zeros are), and exactly the file's bytes
/// after the offset. The error kind otherwise.
fn raw_verdict(spec: &RawSpec, len: u64) -> Result<(), &'static str> {
    let isz = spec.dtype.itemsize() as u64;
    if spec.offset > len {
        return Err("offset_past_end");
    }
    let Some(shape) = &spec.shape else {
        return if (len - spec.offset).is_multiple_of(isz) {
            Ok(())
        } else {
            Err("bad_raw_spec")
        };
    };
    let bytes = |dims: &[u64]| {
        dims.iter()
            .try_fold(u128::from(isz), |acc, &d| acc.checked_mul(u128::from(d)))
    };
    let nonzero: Vec<u64> = shape.iter().copied().filter(|&d| d != 0).collect();
    if shape.iter().any(|&d| d > i64::MAX as u64)
        || bytes(&nonzero).is_none_or(|b| b > isize::MAX as u128)
    {
        return Err("overflow");
    }
    match bytes(shape) {
        Some(n) if n == u128::from(len - spec.offset) => Ok(()),
        _ => Err("size_mismatch"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The raw opener (what `fuzz/raw_open` fuzzes, bounded for CI): opens
    /// exactly when the spec fits the file, refuses with the documented
    /// error kind naming the file otherwise, and an opened array's blocks
    /// hold the file's elements in native order, in either read mode.
    #[test]
    fn raw_specs_open_exactly_when_they_fit_and_read_the_file(
        (spec, bytes) in raw_case(),
        mode in mode(),
        target in prop_oneof![1u64..64, Just(u64::MAX)],
    ) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(&bytes).unwrap();
        tmp.flush().unwrap();
        let path = tmp.path();
        let verdict = raw_verdict(&spec, bytes.len() as u64);
        let file = match ArrayFile::open_raw(path, &spec) {
            Err(e) => {
                prop_assert_eq!(Err(e.kind()), verdict, "{}", e);
                prop_assert_eq!(e.path(), path);
                return Ok(());
            }
            Ok(file) => file.with_read_mode(mode),
        };
        prop_assert_eq!(verdict, Ok(()), "{:?} opened", file.meta());
        let meta = file.meta();
        let isz = spec.dtype.itemsize();
        let data = &bytes[spec.offset as usize..];
        prop_assert_eq!(meta.nbytes(), data.len() as u64);
        // The file's elements in native byte order.
        let mut want = data.to_vec();
        if !spec.byte_order.is_native() {
            want.chunks_exact_mut(isz).for_each(<[u8]>::reverse);
        }
        let row_bytes = meta.row_bytes();
        // A plan of zero-byte rows is one block, however many rows.
        for rows in file.plan(target).iter().take(64) {
            let block = file
                .read_rows(rows.clone())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            common::check_block(&block, &rows, meta).map_err(TestCaseError::fail)?;
            block_values(&block).map_err(TestCaseError::fail)?;
            let at = rows.start as usize * row_bytes;
            prop_assert!(block.as_bytes() == &want[at..at + block.nbytes()], "rows {:?}", rows);
            block
                .check()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
}
