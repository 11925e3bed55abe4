//! The raw openers with a fuzzer-chosen dtype, byte order, shape (or none),
//! offset and file length: `ArrayFile::open_raw` (a raw input, as
//! `np.memmap` reads it) and `ArrayFile::from_file` (the engine's spill
//! files). Each opens exactly when its documented rule says so, and refuses
//! with the documented error kind otherwise; an opened array's blocks hold
//! exactly the file's elements, in both read modes. Then the file is cut
//! to a fuzzer-chosen length under blocks still mapped: reading them is no
//! SIGBUS, `Block::check` reports exactly the blocks cut short, and reads
//! after the cut succeed or fail as the new length says.
#![no_main]

use std::hint::black_box;
use std::ops::Range;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outcore_chunker::{ArrayFile, ByteOrder, DType, RawSpec, ReadMode};
use outcore_fuzz::{
    MAX_FILE, check_error, check_meta, exercise, expected_rows, mem_file, product, ranges,
};

/// A 64-bit number, biased towards the edges that break size arithmetic.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Num {
    Small(u8),
    Medium(u16),
    Any(u64),
    /// `1 << (k % 64)`.
    Pow2(u8),
    /// `u64::MAX - k`.
    BelowMax(u8),
    /// `i64::MAX + k - 128`: NumPy's largest dimension and its neighbours.
    NearI64Max(u8),
}

impl Num {
    fn get(self) -> u64 {
        match self {
            Num::Small(k) => k.into(),
            Num::Medium(k) => k.into(),
            Num::Any(k) => k,
            Num::Pow2(k) => 1 << (k % 64),
            Num::BelowMax(k) => u64::MAX - u64::from(k),
            Num::NearI64Max(k) => (i64::MAX as u64 - 128).wrapping_add(k.into()),
        }
    }
}

/// The file's length.
#[derive(Arbitrary, Debug)]
enum Len {
    /// What the spec calls for: offset plus the shape's bytes (without a
    /// shape, offset plus `seed % 64` elements).
    Exact,
    /// That, plus or minus a few bytes.
    Off(i8),
    /// Any length up to 64 KiB.
    Any(u16),
}

#[derive(Arbitrary, Debug)]
enum Opener {
    OpenRaw,
    FromFile,
}

#[derive(Arbitrary, Debug)]
struct Input {
    dtype: u8,
    big_endian: bool,
    shape: Option<Vec<Num>>,
    offset: Num,
    len: Len,
    opener: Opener,
    /// Seeds the file's bytes; even seeds make every byte 0 or 1 (valid bools).
    seed: u64,
    block_bytes: u16,
    extra: Vec<(Num, Num)>,
    /// A length to cut the file to while blocks are mapped.
    cut: Option<Num>,
}

/// The byte size of an array of `shape` and `itemsize` at `offset` when
/// the library must accept these sizes, per `ArrayMeta::new`'s documented
/// rule (NumPy's and ndarray's): every dimension at most `i64::MAX`, the
/// non-zero dimensions' bytes at most `isize::MAX` wherever the zeros are,
/// and the data ending within 64 bits.
fn sizes_fit(shape: &[u64], itemsize: u64, offset: u64) -> Option<u128> {
    let isz = u128::from(itemsize);
    if shape.iter().any(|&d| d > i64::MAX as u64) {
        return None;
    }
    let nonzero: Vec<u64> = shape.iter().copied().filter(|&d| d != 0).collect();
    let nonzero_bytes = product(&nonzero)?.checked_mul(isz)?;
    let nbytes = product(shape)?.checked_mul(isz)?;
    let fits =
        nonzero_bytes <= isize::MAX as u128 && u128::from(offset) + nbytes <= u128::from(u64::MAX);
    fits.then_some(nbytes)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fuzz_target!(|input: Input| {
    let dtype = DType::ALL[usize::from(input.dtype) % DType::ALL.len()];
    let itemsize = dtype.itemsize() as u64;
    let byte_order = if input.big_endian {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };
    let shape: Option<Vec<u64>> = input
        .shape
        .as_ref()
        .map(|dims| dims.iter().map(|d| d.get()).collect());
    let offset = input.offset.get();

    // The file: its length as chosen, its bytes from the seed.
    let exact = match &shape {
        Some(shape) => sizes_fit(shape, itemsize, offset).map(|n| u128::from(offset) + n),
        None => Some(u128::from(offset) + u128::from(itemsize) * u128::from(input.seed % 64)),
    };
    let len = match input.len {
        Len::Exact => exact,
        Len::Off(d) => exact.and_then(|n| n.checked_add_signed(d.into())),
        Len::Any(n) => Some(n.into()),
    }
    .filter(|&n| n <= u128::from(MAX_FILE))
    .map_or(64, |n| n as u64);
    let mut state = input.seed;
    let bools = input.seed.is_multiple_of(2);
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            let b = splitmix(&mut state) as u8;
            if bools { b & 1 } else { b }
        })
        .collect();
    let mem = mem_file();
    mem.set(&bytes);
    let path = mem.path();

    // What the opener must do, from its documentation.
    let open = |mode: ReadMode| {
        match input.opener {
            Opener::OpenRaw => {
                let spec = RawSpec {
                    dtype,
                    byte_order,
                    shape: shape.clone(),
                    offset,
                    layout: outcore_chunker::Layout::C,
                };
                ArrayFile::open_raw(path, &spec)
            }
            Opener::FromFile => ArrayFile::from_file(
                mem.reopen(),
                path,
                dtype,
                shape.clone().unwrap_or_default(),
                offset,
            ),
        }
        .map(|f| f.with_read_mode(mode))
    };
    let expected: Result<(), &str> = match input.opener {
        Opener::OpenRaw => match &shape {
            _ if offset > len => Err("offset_past_end"),
            None if !(len - offset).is_multiple_of(itemsize) => Err("bad_raw_spec"),
            None => Ok(()),
            Some(shape) => match sizes_fit(shape, itemsize, offset) {
                None => Err("overflow"),
                Some(n) if u128::from(offset) + n != u128::from(len) => Err("size_mismatch"),
                Some(_) => Ok(()),
            },
        },
        Opener::FromFile => match sizes_fit(shape.as_deref().unwrap_or(&[]), itemsize, offset) {
            None => Err("overflow"),
            Some(n) if u128::from(offset) + n > u128::from(len) => Err("size_mismatch"),
            Some(_) => Ok(()),
        },
    };
    let (mapped, copied) = match (open(ReadMode::Mmap), open(ReadMode::Pread)) {
        (Ok(mapped), Ok(copied)) => (mapped, copied),
        (Err(a), Err(b)) => {
            assert_eq!(a.kind(), b.kind());
            assert_eq!(Err(a.kind()), expected, "{a}");
            check_error(&a, path);
            return;
        }
        (a, b) => panic!("the read mode changed whether the file opens: {a:?} / {b:?}"),
    };
    assert_eq!(expected, Ok(()), "{:?} opened", mapped.meta());

    // The array opened: its metadata is the spec's, its blocks the file's.
    let meta = mapped.meta().clone();
    assert_eq!(&meta, copied.meta());
    assert_eq!(meta.dtype, dtype);
    assert_eq!(meta.data_offset, offset);
    match input.opener {
        Opener::OpenRaw => {
            assert_eq!(meta.byte_order, byte_order);
            let want = shape
                .clone()
                .unwrap_or_else(|| vec![(len - offset) / itemsize]);
            assert_eq!(meta.shape, want);
        }
        Opener::FromFile => {
            assert!(meta.byte_order.is_native());
            assert_eq!(meta.shape, shape.clone().unwrap_or_default());
        }
    }
    check_meta(&meta, len, matches!(input.opener, Opener::OpenRaw));
    let block_bytes = u64::from(input.block_bytes);
    let extra: Vec<(u64, u64)> = input
        .extra
        .iter()
        .take(4)
        .map(|(a, b)| (a.get(), b.get()))
        .collect();
    exercise(&mapped, &bytes, block_bytes, &extra);
    exercise(&copied, &bytes, block_bytes, &extra);

    // Cut the file under blocks still held (mapped ones where the layout
    // allows), then read their bytes and check them.
    let Some(cut) = input.cut else {
        return;
    };
    let cut = cut.get() % (len + 1);
    let row_bytes = meta.row_bytes() as u64;
    let end_of = |rows: &Range<u64>| offset + rows.end * row_bytes;
    let held: Vec<_> = ranges(&mapped, block_bytes)
        .into_iter()
        .map(|rows| {
            let block = mapped.read_rows(rows.clone()).expect("read before the cut");
            (rows, block)
        })
        .collect();
    mem.truncate(cut);
    for (rows, block) in &held {
        // Touch every byte: a page past the new end faults here.
        black_box(block.as_bytes().iter().fold(0u8, |a, &b| a.wrapping_add(b)));
        let want = expected_rows(&meta, &bytes, rows.clone());
        let result = block.check();
        if block.is_mapped() && cut < end_of(rows) {
            let e = result.expect_err("a mapped block cut short passed its check");
            assert_eq!(e.kind(), "truncated", "{e}");
            check_error(&e, path);
            // The bytes before the cut are still the file's.
            let start = offset + rows.start * row_bytes;
            let kept = cut.saturating_sub(start) as usize;
            assert!(block.as_bytes()[..kept] == want[..kept]);
        } else {
            result.unwrap_or_else(|e| panic!("rows {rows:?} intact after the cut: {e}"));
            assert!(block.as_bytes() == want.as_slice());
        }
    }
    drop(held);
    for file in [&mapped, &copied] {
        for rows in ranges(file, block_bytes) {
            match file.read_rows(rows.clone()) {
                Ok(block) => {
                    let fits = rows.is_empty() || row_bytes == 0 || end_of(&rows) <= cut;
                    assert!(fits, "rows {rows:?} read past the cut at {cut}");
                    let want = expected_rows(&meta, &bytes, rows.clone());
                    assert!(block.as_bytes() == want.as_slice());
                    block.check().expect("a block within the cut");
                }
                Err(e) => {
                    assert_eq!(e.kind(), "truncated", "{e}");
                    check_error(&e, path);
                    assert!(
                        end_of(&rows) > cut,
                        "rows {rows:?} refused within the cut: {e}"
                    );
                }
            }
        }
    }
});
