//! `ArrayWriter` writes `.npy` files byte-identical to NumPy's: the same
//! array as a NumPy-written fixture gives the same bytes, header and data.

mod common;

use common::{Exact, Fixture, OkFixture, fixture, manifest};
use outcore_chunker::{ArrayWriter, ByteOrder, OutputSpec, with_dtype};

/// Writes the fixture's array with `ArrayWriter` (one `write_block` per row)
/// and returns the file's bytes.
fn rewrite(fx: &Fixture, ok: &OkFixture, dir: &std::path::Path) -> Result<Vec<u8>, String> {
    fn typed<T: Exact>(ok: &OkFixture, writer: &ArrayWriter, row_len: usize) -> Result<(), String> {
        let values = ok
            .values
            .iter()
            .map(|&v| T::from_value(v).ok_or_else(|| format!("{v:?} is not a {}", ok.dtype)))
            .collect::<Result<Vec<T>, _>>()?;
        let rows = ok.shape.first().copied().unwrap_or(1) as usize;
        let all =
            ndarray::Array2::from_shape_vec((rows, row_len), values).map_err(|e| e.to_string())?;
        for r in 0..rows {
            writer
                .write_block(r as u64, all.slice(ndarray::s![r..r + 1, ..]))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    let path = dir.join(fx.name());
    let spec = OutputSpec::npy(ok.dtype, ok.shape.clone())
        .byte_order(ok.byte_order.unwrap_or(ByteOrder::Little))
        .fsync(false)
        .overwrite(true);
    let writer = ArrayWriter::create(&path, spec).map_err(|e| e.to_string())?;
    let row_len = writer.meta().row_len();
    with_dtype!(ok.dtype, T => typed::<T>(ok, &writer, row_len))?;
    writer.finish().map_err(|e| e.to_string())?;
    std::fs::read(&path).map_err(|e| e.to_string())
}

fn check_identical(fx: &Fixture, ok: &OkFixture, dir: &std::path::Path) -> Result<(), String> {
    let ours = rewrite(fx, ok, dir)?;
    let numpy = std::fs::read(&fx.path).map_err(|e| e.to_string())?;
    if ours == numpy {
        return Ok(());
    }
    let at = ours
        .iter()
        .zip(&numpy)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(numpy.len()));
    let show =
        |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(ok.data_offset as usize)]).into_owned();
    Err(format!(
        "differs from NumPy's bytes at byte {at} (ours {} bytes, NumPy's {}):\n  ours:  {:?}\n  numpy: {:?}",
        ours.len(),
        numpy.len(),
        show(&ours),
        show(&numpy)
    ))
}

/// The three files written by `np.save` itself.
#[test]
fn np_save_fixtures_are_reproduced_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "default_f8_3x4.npy",
        "default_f4_5.npy",
        "default_i8_0d.npy",
    ] {
        let fx = fixture(name);
        let ok = fx.ok().expect("an ok fixture");
        if let Err(e) = check_identical(fx, ok, dir.path()) {
            panic!("{}: {e}", fx.file);
        }
    }
}

/// Every other fixture NumPy wrote as format 1.0 in C order (all dtypes, both
/// byte orders, 0-d, empty, 1-d, 3-d) — except the two whose headers were
/// built by hand (16-byte padding, reordered keys).
#[test]
fn numpy_written_v1_fixtures_are_reproduced_byte_for_byte() {
    let hand_made = ["unaligned_header_f8.npy", "header_variant_f8.npy"];
    let dir = tempfile::tempdir().unwrap();
    let items = manifest().iter().filter_map(|fx| {
        let ok = fx.ok()?;
        (ok.version == (1, 0) && !ok.fortran_order && !hand_made.contains(&fx.name()))
            .then(|| (fx.file.clone(), (fx, ok)))
    });
    common::check_all(items, |(fx, ok)| check_identical(fx, ok, dir.path()));
}
