//! Write, then read back: every dtype × byte order × shape, `.npy` and raw,
//! written in random block splits, in random order, from several threads,
//! through `write_block` (contiguous and not) and `write_rows`; read back
//! with both read modes and every block size.

mod common;

use std::path::Path;

use common::{Exact, Rng, dir_entries, native_bytes, random_elements, read_bytes, swapped_bytes};
use ndarray::{Array2, ShapeBuilder, s};
use outcore_chunker::{
    ArrayFile, ArrayWriter, ByteOrder, DType, Format, Layout, OutputFormat, OutputSpec, RawSpec,
    ReadMode, with_dtype,
};

const SHAPES: &[&[u64]] = &[&[], &[0], &[0, 5], &[7], &[5, 3], &[2, 3, 4], &[5, 0]];
const ORDERS: [ByteOrder; 2] = [ByteOrder::Little, ByteOrder::Big];
const FORMATS: [OutputFormat; 2] = [OutputFormat::Npy, OutputFormat::Raw];
const MODES: [ReadMode; 2] = [ReadMode::Mmap, ReadMode::Pread];
const THREADS: usize = 3;

/// One array to write and read back.
#[derive(Clone, Debug)]
struct Case {
    dtype: DType,
    order: ByteOrder,
    shape: Vec<u64>,
    format: OutputFormat,
    seed: u64,
}

impl Case {
    fn rows(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1)
    }

    fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product::<u64>() as usize
    }

    fn spec(&self) -> OutputSpec {
        let spec = match self.format {
            OutputFormat::Npy => OutputSpec::npy(self.dtype, self.shape.clone()),
            OutputFormat::Raw => OutputSpec::raw(self.dtype, self.shape.clone()),
        };
        spec.byte_order(self.order).fsync(false)
    }
}

/// How one block is handed to the writer.
#[derive(Clone, Copy, Debug)]
enum Method {
    /// `write_block` of a contiguous (C-order) slice of the whole array.
    Contiguous,
    /// `write_block` of a Fortran-layout copy: the writer must convert.
    Strided,
    /// `write_rows` of bytes already in the output's byte order.
    Bytes,
}

/// Splits `rows` rows into random runs, shuffled.
fn random_blocks(rng: &mut Rng, rows: u64) -> Vec<std::ops::Range<u64>> {
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < rows {
        let len = 1 + rng.below((rows - start).min(4));
        blocks.push(start..start + len);
        start += len;
    }
    rng.shuffle(&mut blocks);
    blocks
}

fn write_one<T: Exact>(
    writer: &ArrayWriter,
    all: &Array2<T>,
    rows: std::ops::Range<u64>,
    method: Method,
    order: ByteOrder,
) -> outcore_chunker::Result<()> {
    let view = all.slice(s![rows.start as usize..rows.end as usize, ..]);
    match method {
        Method::Contiguous => writer.write_block(rows.start, view),
        Method::Strided => {
            let f = Array2::from_shape_fn(view.dim().f(), |ij| view[ij]);
            assert!(f.as_slice().is_none() || f.nrows() <= 1 || f.ncols() <= 1);
            writer.write_block(rows.start, f.view())
        }
        Method::Bytes => {
            let values: Vec<T> = view.iter().copied().collect();
            let bytes = if order.is_native() {
                native_bytes(&values)
            } else {
                swapped_bytes(&values)
            };
            writer.write_rows(rows.start, &bytes)
        }
    }
}

/// Writes `case` into `dir` with `threads` threads and returns the values
/// written (flat, C order) and the output path.
fn write_case<T: Exact>(
    case: &Case,
    dir: &Path,
    threads: usize,
) -> Result<(Vec<T>, std::path::PathBuf), String> {
    let mut rng = Rng::new(case.seed);
    let (rows, row_len) = (case.rows(), case.row_len());
    let values: Vec<T> = random_elements(&mut rng, rows as usize * row_len);
    let all = Array2::from_shape_vec((rows as usize, row_len), values.clone()).unwrap();
    let path = dir.join(match case.format {
        OutputFormat::Npy => "out.npy",
        OutputFormat::Raw => "out.bin",
    });
    let writer = ArrayWriter::create(&path, case.spec()).map_err(|e| format!("create: {e}"))?;
    if writer.path() != path {
        return Err(format!("writer.path() is {}", writer.path().display()));
    }
    let blocks = random_blocks(&mut rng, rows);
    let methods = [Method::Contiguous, Method::Strided, Method::Bytes];
    let jobs: Vec<_> = blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| (b, methods[(i + case.seed as usize) % 3]))
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (writer, all, jobs) = (&writer, &all, &jobs);
                scope.spawn(move || {
                    for (rows, method) in jobs.iter().skip(t).step_by(threads) {
                        write_one(writer, all, rows.clone(), *method, case.order)
                            .map_err(|e| format!("writing rows {rows:?} by {method:?}: {e}"))?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("writer thread panicked"))
    })?;
    // An empty block anywhere in range is accepted and changes nothing.
    writer
        .write_block(
            rows,
            Array2::<T>::from_shape_vec((0, row_len), vec![])
                .unwrap()
                .view(),
        )
        .map_err(|e| format!("empty block: {e}"))?;
    let meta = writer.finish().map_err(|e| format!("finish: {e}"))?;
    if meta.shape != case.shape || meta.dtype != case.dtype {
        return Err(format!("finish() returned {meta:?}"));
    }
    let left = dir_entries(dir);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    if left != [name] {
        return Err(format!("directory holds {left:?} after finish"));
    }
    Ok((values, path))
}

/// The bytes the file must hold after its header: the values in the
/// output's byte order.
fn file_data_bytes<T: Exact>(values: &[T], order: ByteOrder) -> Vec<u8> {
    if order.is_native() {
        native_bytes(values)
    } else {
        swapped_bytes(values)
    }
}

fn check_case<T: Exact>(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (values, path) = write_case::<T>(case, dir.path(), THREADS)?;
    let want = native_bytes(&values);

    // The file itself, independent of the reader.
    let on_disk = std::fs::read(&path).map_err(|e| e.to_string())?;
    let data = file_data_bytes(&values, case.order);
    if !on_disk.ends_with(&data) {
        return Err("file data bytes differ from the values written".into());
    }
    let header_len = on_disk.len() - data.len();
    match case.format {
        OutputFormat::Raw if header_len != 0 => {
            return Err(format!("raw output has {header_len} extra bytes"));
        }
        OutputFormat::Npy if header_len % 64 != 0 || !on_disk.starts_with(b"\x93NUMPY\x01\x00") => {
            return Err(format!(
                "npy header of {header_len} bytes: {:?}",
                &on_disk[..header_len.min(16)]
            ));
        }
        _ => {}
    }

    let open = |mode| {
        match case.format {
            OutputFormat::Npy => ArrayFile::open(&path),
            OutputFormat::Raw => ArrayFile::open_raw(
                &path,
                &RawSpec {
                    dtype: case.dtype,
                    byte_order: case.order,
                    shape: Some(case.shape.clone()),
                    offset: 0,
                    layout: outcore_chunker::Layout::C,
                },
            ),
        }
        .map(|f| f.with_read_mode(mode))
        .map_err(|e| format!("reopen: {e}"))
    };
    for mode in MODES {
        let file = open(mode)?;
        let meta = file.meta();
        let format = match case.format {
            OutputFormat::Npy => Format::Npy { major: 1, minor: 0 },
            OutputFormat::Raw => Format::Raw,
        };
        // One-byte types are written as `|`, which reads back as native.
        let order = if case.dtype.itemsize() == 1 && case.format == OutputFormat::Npy {
            ByteOrder::NATIVE
        } else {
            case.order
        };
        let got = (
            &meta.shape,
            meta.dtype,
            meta.byte_order,
            meta.layout,
            meta.format,
            meta.data_offset,
        );
        let expected = (
            &case.shape,
            case.dtype,
            order,
            Layout::C,
            format,
            header_len as u64,
        );
        if got != expected {
            return Err(format!("reopened as {got:?}, expected {expected:?}"));
        }
        for k in 1..=case.rows().max(1) {
            let read =
                read_bytes(&file, k).map_err(|e| format!("{mode:?}, block size {k}: {e}"))?;
            if read != want {
                return Err(format!("{mode:?}, block size {k}: values differ"));
            }
        }
    }
    Ok(())
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for dtype in DType::ALL {
        for order in ORDERS {
            for shape in SHAPES {
                for format in FORMATS {
                    let seed = cases.len() as u64;
                    cases.push(Case {
                        dtype,
                        order,
                        shape: shape.to_vec(),
                        format,
                        seed,
                    });
                }
            }
        }
    }
    cases
}

#[test]
fn every_dtype_order_shape_and_format_round_trips() {
    let cases = all_cases().into_iter().map(|c| (format!("{c:?}"), c));
    common::check_all(
        cases,
        |case| with_dtype!(case.dtype, T => check_case::<T>(&case)),
    );
}

/// Blocks larger than the writer's 1 MiB conversion buffer, byte-swapped or
/// strided, cross its chunk boundaries intact.
#[test]
fn large_converted_blocks_round_trip() {
    let cases = [
        (DType::F64, ByteOrder::Big, vec![50_001, 3]),
        (DType::F32, ByteOrder::Big, vec![3, 160_007]),
        (DType::I32, ByteOrder::NATIVE, vec![70_000, 5]),
    ];
    for (i, (dtype, order, shape)) in cases.into_iter().enumerate() {
        let case = Case {
            dtype,
            order,
            shape,
            format: OutputFormat::Npy,
            seed: 1000 + i as u64,
        };
        let result = with_dtype!(dtype, T => (|| {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mut rng = Rng::new(case.seed);
            let (rows, row_len) = (case.rows() as usize, case.row_len());
            let values: Vec<T> = random_elements(&mut rng, rows * row_len);
            let all = Array2::from_shape_vec((rows, row_len), values.clone()).unwrap();
            let path = dir.path().join("big.npy");
            let writer = ArrayWriter::create(&path, case.spec()).map_err(|e| e.to_string())?;
            // All but the first row in one strided block of more than 1 MiB.
            write_one(&writer, &all, 1..rows as u64, Method::Strided, order)
                .map_err(|e| e.to_string())?;
            write_one(&writer, &all, 0..1, Method::Contiguous, order)
                .map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            let on_disk = std::fs::read(&path).map_err(|e| e.to_string())?;
            if !on_disk.ends_with(&file_data_bytes(&values, order)) {
                return Err("file data bytes differ from the values written".into());
            }
            let want = native_bytes(&values);
            for mode in MODES {
                let file = ArrayFile::open(&path).map_err(|e| e.to_string())?.with_read_mode(mode);
                let block = file.read_rows(0..rows as u64).map_err(|e| e.to_string())?;
                block.as_slice::<T>().map_err(|e| e.to_string())?;
                if block.as_bytes() != want {
                    return Err(format!("{mode:?}: values read back differ"));
                }
            }
            Ok::<(), String>(())
        })());
        if let Err(e) = result {
            panic!("{case:?}: {e}");
        }
    }
}

/// The same array written by one thread and by eight gives the same file.
#[test]
fn thread_count_does_not_change_the_file() {
    for dtype in [DType::F64, DType::I16, DType::Bool] {
        let case = Case {
            dtype,
            order: ByteOrder::Big,
            shape: vec![97, 5],
            format: OutputFormat::Npy,
            seed: 77,
        };
        let bytes = |threads| {
            let dir = tempfile::tempdir().unwrap();
            let (_, path) = with_dtype!(dtype, T => write_case::<T>(&case, dir.path(), threads)
                .map(|(_, p)| ((), p)))
            .unwrap_or_else(|e| panic!("{case:?}: {e}"));
            std::fs::read(path).unwrap()
        };
        assert_eq!(bytes(1), bytes(8), "{case:?}");
    }
}
