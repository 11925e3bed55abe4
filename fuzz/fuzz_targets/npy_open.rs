//! Arbitrary bytes as a `.npy` file: `ArrayFile::open` either refuses them
//! with a typed error naming the file, or opens an array that accounts for
//! every byte of the file and whose blocks (first, last, all rows; mapped
//! and copied) hold exactly the file's elements. Never a panic, a hang or
//! an allocation sized from the header rather than from the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outcore_chunker::{ArrayFile, Format, ReadMode};
use outcore_fuzz::{MAX_FILE, check_error, check_meta, exercise, mem_file};

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > MAX_FILE {
        return;
    }
    let mem = mem_file();
    mem.set(data);
    let open = |mode| ArrayFile::open(mem.path()).map(|f| f.with_read_mode(mode));
    match (open(ReadMode::Mmap), open(ReadMode::Pread)) {
        (Ok(mapped), Ok(copied)) => {
            let meta = mapped.meta();
            assert_eq!(meta, copied.meta());
            assert!(matches!(
                meta.format,
                Format::Npy {
                    major: 1..=3,
                    minor: 0
                }
            ));
            // Magic (6), version (2), header length (2 or 4), header.
            assert!(meta.data_offset >= 10, "{meta:?}");
            check_meta(meta, data.len() as u64, true);
            for file in [&mapped, &copied] {
                exercise(file, data, 1, &[]);
                exercise(file, data, 64, &[]);
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.kind(), b.kind());
            check_error(&a, mem.path());
        }
        (a, b) => panic!("the read mode changed whether the file opens: {a:?} / {b:?}"),
    }
});
