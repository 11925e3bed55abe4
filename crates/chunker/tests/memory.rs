//! Arrays in memory (`ArrayFile::from_memory`) read as files would be:
//! in place when native, C-order and aligned, converted otherwise.

use std::sync::Arc;

use outcore_chunker::{ArrayFile, ByteOrder, DType, Error, Format, Layout};

/// Bytes that start `skip` bytes into a buffer: misaligned on purpose.
struct Shifted {
    buf: Vec<u8>,
    skip: usize,
}

impl AsRef<[u8]> for Shifted {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.skip..]
    }
}

/// The values 0, 1, 2, ... of an array of `shape` in C order, as f32.
fn expected(shape: &[usize]) -> Vec<f32> {
    (0..shape.iter().product::<usize>())
        .map(|i| i as f32)
        .collect()
}

/// The bytes of `expected(shape)` laid out in `layout` and `order`.
fn encode(shape: &[usize], layout: Layout, order: ByteOrder) -> Vec<u8> {
    let values = expected(shape);
    let n = values.len();
    let mut out = Vec::with_capacity(n * 4);
    for f in 0..n {
        // Element `f` of the layout: its C-order index.
        let c = match layout {
            Layout::C => f,
            Layout::Fortran => {
                let mut rest = f;
                let mut index = vec![0; shape.len()];
                for (axis, &d) in shape.iter().enumerate() {
                    index[axis] = rest % d;
                    rest /= d;
                }
                shape.iter().zip(&index).fold(0, |c, (&d, &i)| c * d + i)
            }
        };
        let v = values[c];
        out.extend_from_slice(&match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        });
    }
    out
}

#[test]
fn blocks_match_the_values_in_every_layout_order_and_alignment() {
    let shape = [7usize, 3, 2];
    for layout in [Layout::C, Layout::Fortran] {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            for skip in [0usize, 1] {
                let mut buf = vec![0u8; skip];
                buf.extend(encode(&shape, layout, order));
                let file = ArrayFile::from_memory(
                    Arc::new(Shifted { buf, skip }),
                    "<memory>",
                    DType::F32,
                    shape.iter().map(|&d| d as u64).collect(),
                    order,
                    layout,
                )
                .unwrap();
                assert_eq!(file.meta().format, Format::Memory);
                assert!(file.is_memory());
                let want = expected(&shape);
                for rows in [0..7u64, 2..5, 6..7, 3..3] {
                    let block = file.read_rows(rows.clone()).unwrap();
                    block.check().unwrap();
                    let got: Vec<f32> = block
                        .as_bytes()
                        .chunks_exact(4)
                        .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
                        .collect();
                    let (a, b) = (rows.start as usize * 6, rows.end as usize * 6);
                    assert_eq!(
                        got,
                        want[a..b],
                        "{layout:?} {order:?} skip {skip} rows {rows:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_native_aligned_array_is_read_in_place() {
    let values: Arc<Vec<u8>> = Arc::new(encode(&[4, 2], Layout::C, ByteOrder::NATIVE));
    let start = values.as_ptr() as usize;
    let file = ArrayFile::from_memory(
        values.clone(),
        "<memory>",
        DType::F32,
        vec![4, 2],
        ByteOrder::NATIVE,
        Layout::C,
    )
    .unwrap();
    let block = file.read_rows(1..3).unwrap();
    assert_eq!(block.as_bytes().as_ptr() as usize, start + 8);
    assert!(block.into_buffer().is_none());
}

#[test]
fn a_size_that_does_not_match_the_shape_is_an_error() {
    let err = ArrayFile::from_memory(
        Arc::new(vec![0u8; 12]),
        "<ndarray>",
        DType::F64,
        vec![2, 1],
        ByteOrder::NATIVE,
        Layout::C,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SizeMismatch {
                expected: 16,
                actual: 12,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("<ndarray>"), "{err}");
    let err = ArrayFile::from_memory(
        Arc::new(vec![0u8; 16]),
        "<ndarray>",
        DType::F64,
        vec![2, 1],
        ByteOrder::NATIVE,
        Layout::C,
    )
    .unwrap()
    .read_rows(1..3)
    .unwrap_err();
    assert!(matches!(err, Error::RowsOutOfRange { .. }), "{err}");
}
