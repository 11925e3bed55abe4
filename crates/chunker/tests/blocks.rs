//! Block plans and block reads at the edges: plans that cover every row once
//! whatever the sizes, byte-sized plans, zero-width rows, hand-made
//! headers, and reads from many threads at once.

mod common;

use std::path::Path;

use common::{Rng, native_bytes, random_elements, read_bytes};
use outcore_chunker::{ArrayFile, ArrayWriter, BlockPlan, DType, OutputSpec, ReadMode};

/// A `.npy` file of the given header dict (padded as NumPy pads) and data.
fn npy_file(dir: &Path, name: &str, dict: &str, data: &[u8]) -> std::path::PathBuf {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Checks that `plan` splits its rows into contiguous blocks of its size.
fn check_plan(plan: BlockPlan) {
    let (rows, k) = (plan.rows(), plan.block_rows());
    let blocks: Vec<_> = plan.iter().collect();
    assert_eq!(blocks.len(), plan.len(), "{plan:?}");
    assert_eq!(plan.is_empty(), rows == 0, "{plan:?}");
    let mut next = 0u64;
    for (i, r) in blocks.iter().enumerate() {
        assert_eq!(r.start, next, "{plan:?}: block {i}");
        assert!(r.end > r.start, "{plan:?}: block {i} is {r:?}");
        let last = i + 1 == blocks.len();
        assert!(
            r.end - r.start == k || (last && r.end - r.start < k),
            "{plan:?}: block {i} is {r:?}"
        );
        assert_eq!(plan.get(i), Some(r.clone()));
        next = r.end;
    }
    assert_eq!(next, rows, "{plan:?}");
    assert_eq!(plan.get(blocks.len()), None);
}

#[test]
fn plans_cover_every_row_once() {
    for rows in 0..30 {
        for k in 0..=31 {
            let plan = BlockPlan::new(rows, k);
            assert_eq!(plan.block_rows(), k.max(1));
            check_plan(plan);
        }
    }
}

/// Huge row counts (zero-width rows make them possible in a file) and huge
/// block sizes must not overflow when the last block's end is computed.
#[test]
fn plans_of_huge_row_counts_do_not_overflow() {
    for (rows, k) in [
        (u64::MAX, u64::MAX),
        (u64::MAX, 1 << 63),
        (u64::MAX, (1 << 63) + 1),
        (u64::MAX, u64::MAX - 1),
        (u64::MAX - 1, u64::MAX / 2 + 1),
        (10, u64::MAX),
    ] {
        let plan = BlockPlan::new(rows, k);
        let result = std::panic::catch_unwind(|| check_plan(plan));
        assert!(result.is_ok(), "BlockPlan::new({rows}, {k}) panicked");
    }
}

#[test]
fn byte_sized_plans_respect_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.npy");
    let spec = OutputSpec::npy(DType::F32, vec![100, 3]).fsync(false);
    let generator =
        outcore_chunker::synth::Generator::new(outcore_chunker::synth::Distribution::Arange, 0);
    outcore_chunker::synth::write_array(&path, spec, &generator, 64, 2, &|_| {}).unwrap();
    let file = ArrayFile::open(&path).unwrap();
    let row_bytes = 12u64;
    for target in [0, 1, 11, 12, 13, 24, 100, 1199, 1200, 1201, u64::MAX] {
        let plan = file.plan(target);
        check_plan(plan);
        assert_eq!(plan.rows(), 100);
        let want = (target / row_bytes).max(1);
        assert_eq!(plan.block_rows(), want, "target {target}");
        for rows in plan.iter() {
            let block = file.read_rows(rows.clone()).unwrap();
            assert!(
                block.nbytes() as u64 <= target.max(row_bytes),
                "target {target}"
            );
            let first = block.as_slice::<f32>().unwrap()[0];
            assert_eq!(first, (rows.start * 3) as f32);
        }
    }
    // Rows of zero bytes all go in one block.
    let path = dir.path().join("z.npy");
    let writer = ArrayWriter::create(&path, OutputSpec::npy(DType::F64, vec![1000, 0])).unwrap();
    writer.finish().unwrap();
    let file = ArrayFile::open(&path).unwrap();
    assert_eq!(file.plan(1).iter().collect::<Vec<_>>(), vec![0..1000]);
}

/// A shape with a zero-width row and an enormous leading dimension holds no
/// data, so NumPy-side sizes do not overflow. Opening it must either refuse
/// it (`overflow`) or give blocks that can be viewed — never panic.
#[test]
fn zero_width_rows_of_any_count_open_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for rows in [1000u64, i64::MAX as u64, 1 << 63, u64::MAX] {
        let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, 0), }}");
        let path = npy_file(dir.path(), "wide.npy", &dict, &[]);
        let file = match ArrayFile::open(&path) {
            Err(e) => {
                assert_eq!(e.kind(), "overflow", "{rows} rows: {e}");
                continue;
            }
            Ok(file) => file,
        };
        assert_eq!((file.meta().rows(), file.meta().row_len()), (rows, 0));
        let outcome = std::panic::catch_unwind(|| {
            for range in file.plan(1 << 20).iter() {
                let block = file.read_rows(range).unwrap();
                let view = block.view::<f64>().unwrap();
                assert_eq!(view.dim(), (block.rows(), 0));
            }
        });
        assert!(
            outcome.is_ok(),
            "shape ({rows}, 0) opened, but viewing its one block panicked"
        );
    }
}

/// `fortran_order: True` changes nothing for 0-d and 1-d arrays.
#[test]
fn fortran_order_0d_and_1d_read_like_c_order() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<i32> = (0..7).map(|i| i * 11 - 30).collect();
    let path = npy_file(
        dir.path(),
        "f1.npy",
        "{'descr': '<i4', 'fortran_order': True, 'shape': (7,), }",
        &values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    for mode in [ReadMode::Mmap, ReadMode::Pread] {
        let file = ArrayFile::open(&path).unwrap().with_read_mode(mode);
        for k in 1..=7 {
            let got = read_bytes(&file, k).unwrap();
            assert_eq!(got, native_bytes(&values), "{mode:?}, block size {k}");
        }
    }
    let path = npy_file(
        dir.path(),
        "f0.npy",
        "{'descr': '>f8', 'fortran_order': True, 'shape': (), }",
        &(-2.5f64).to_be_bytes(),
    );
    let file = ArrayFile::open(&path).unwrap();
    assert_eq!(
        file.read_rows(0..1).unwrap().as_slice::<f64>().unwrap(),
        &[-2.5]
    );
}

/// A Fortran-ordered array whose trailing axis is empty has no data to
/// gather; a Fortran array with rows but one column is one contiguous run.
#[test]
fn fortran_order_edge_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = npy_file(
        dir.path(),
        "e.npy",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 0, 3), }",
        &[],
    );
    let file = ArrayFile::open(&path).unwrap();
    let block = file.read_rows(0..4).unwrap();
    assert_eq!(block.view::<f32>().unwrap().dim(), (4, 0));
    let values: Vec<u16> = (0..5).map(|i| 1000 + i).collect();
    let path = npy_file(
        dir.path(),
        "c.npy",
        "{'descr': '>u2', 'fortran_order': True, 'shape': (5, 1), }",
        &values
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<_>>(),
    );
    let file = ArrayFile::open(&path).unwrap();
    for k in 1..=5 {
        assert_eq!(
            read_bytes(&file, k).unwrap(),
            native_bytes(&values),
            "block size {k}"
        );
    }
}

/// Several threads reading random blocks of one `ArrayFile` at once get
/// the same bytes as one thread reading it front to back.
#[test]
fn concurrent_reads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(9);
    for (dtype, order) in [
        (DType::F64, outcore_chunker::ByteOrder::NATIVE),
        (DType::I16, outcore_chunker::ByteOrder::Big),
    ] {
        outcore_chunker::with_dtype!(dtype, T => {
            let values: Vec<T> = random_elements(&mut rng, 501 * 7);
            let path = dir.path().join(format!("{dtype}.npy"));
            let spec = OutputSpec::npy(dtype, vec![501, 7]).byte_order(order).fsync(false).overwrite(true);
            let writer = ArrayWriter::create(&path, spec).unwrap();
            let all = ndarray::Array2::from_shape_vec((501, 7), values.clone()).unwrap();
            writer.write_block(0, all.view()).unwrap();
            writer.finish().unwrap();
            let want = native_bytes(&values);
            for mode in [ReadMode::Mmap, ReadMode::Pread] {
                let file = ArrayFile::open(&path).unwrap().with_read_mode(mode);
                std::thread::scope(|s| {
                    for t in 0..4u64 {
                        let (file, want) = (&file, &want);
                        s.spawn(move || {
                            let mut rng = Rng::new(t);
                            for _ in 0..200 {
                                let a = rng.below(502);
                                let b = a + rng.below(502 - a);
                                let block = file.read_rows(a..b).unwrap();
                                let row = 7 * std::mem::size_of::<T>();
                                assert_eq!(
                                    block.as_bytes(),
                                    &want[a as usize * row..b as usize * row],
                                    "{dtype} {mode:?} rows {a}..{b}"
                                );
                            }
                        });
                    }
                });
            }
        });
    }
}
