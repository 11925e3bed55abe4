//! The spill crate's error type: every variant names the numbers, and the
//! directory where there is one.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::consumer::Consumer;
use crate::units::format_bytes;

/// A `Result` whose error defaults to the spill crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reserving memory, spilling to disk, or reading a size.
///
/// * The memory budget refuses a reservation: not now
///   ([`Exhausted`](Error::Exhausted)) or never ([`TooLarge`](Error::TooLarge)).
/// * A spill file cannot be made, written or mapped:
///   [`Quota`](Error::Quota), [`NoSpace`](Error::NoSpace),
///   [`Io`](Error::Io), [`OutOfBounds`](Error::OutOfBounds).
/// * [`parse_size`](crate::parse_size) cannot read its text:
///   [`InvalidSize`](Error::InvalidSize), [`UnknownUnit`](Error::UnknownUnit),
///   [`NegativeSize`](Error::NegativeSize), [`SizeOverflow`](Error::SizeOverflow).
///
/// Errors compare equal when their variants and fields do; the operating
/// system errors inside [`NoSpace`](Error::NoSpace) and [`Io`](Error::Io)
/// compare by kind, OS code and message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request would fit in the memory budget's limit, but not next to
    /// what is reserved now.
    #[error(
        "memory budget exhausted: {consumer} requested {} but {} of {} is reserved{}",
        format_bytes(*.requested),
        format_bytes(*.reserved),
        format_bytes(*.limit),
        TopConsumers(.top)
    )]
    Exhausted {
        /// Who asked.
        consumer: Consumer,
        /// How many more bytes were asked for.
        requested: u64,
        /// Bytes reserved (by everyone) when the request failed.
        reserved: u64,
        /// The budget's limit in bytes.
        limit: u64,
        /// Consumers holding memory when the request failed, largest first.
        top: Vec<(Consumer, u64)>,
    },
    /// The request is larger than the memory budget's whole limit: it can
    /// never be granted, however much is released.
    #[error(
        "memory budget too small: {consumer} requested {} but the whole budget is {}",
        format_bytes(*.requested),
        format_bytes(*.limit)
    )]
    TooLarge {
        /// Who asked.
        consumer: Consumer,
        /// How many bytes were asked for.
        requested: u64,
        /// The budget's limit in bytes.
        limit: u64,
    },
    /// The spill quota would be exceeded.
    #[error(
        "spill quota exceeded in {dir}: {} requested, {} of {} already in use \
         (raise the spill quota or the memory limit)",
        format_bytes(*requested), format_bytes(*used), format_bytes(*quota)
    )]
    Quota {
        /// The spill directory.
        dir: PathBuf,
        /// Bytes requested.
        requested: u64,
        /// Bytes held by live spill files.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// The disk has no room for a spill file.
    #[error(
        "no space for a {} spill file in {dir}: {error} (free space or choose another spill directory)",
        format_bytes(*requested)
    )]
    NoSpace {
        /// The spill directory.
        dir: PathBuf,
        /// Bytes requested.
        requested: u64,
        /// What the operating system said (part of the message, so not
        /// also a `source()`, which would print it twice).
        error: io::Error,
    },
    /// Creating, writing or mapping a spill file failed.
    #[error("spill file in {dir}: cannot {op}: {source}")]
    Io {
        /// The spill directory.
        dir: PathBuf,
        /// What was being done.
        op: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// A read or write outside a spill file's allocated space.
    #[error("spill file in {dir}: bytes {offset}..{end} are outside its {len} bytes")]
    OutOfBounds {
        /// The spill directory.
        dir: PathBuf,
        /// First byte.
        offset: u64,
        /// One past the last byte.
        end: u64,
        /// The file's size.
        len: u64,
    },
    /// A size that is not a number with an optional unit (empty, garbage,
    /// several dots, ...).
    #[error(
        "invalid size {input:?}: expected a number with an optional unit, \
         such as 512MiB, 1.5GiB or 1048576"
    )]
    InvalidSize {
        /// The text that was parsed.
        input: String,
    },
    /// A size whose number is followed by something that is not a known unit.
    #[error(
        "invalid size {input:?}: unknown unit {unit:?} (expected B, K, KiB, M, MiB, G, GiB, T or TiB)"
    )]
    UnknownUnit {
        /// The text that was parsed.
        input: String,
        /// The unrecognised unit.
        unit: String,
    },
    /// A negative size.
    #[error("invalid size {input:?}: a size cannot be negative")]
    NegativeSize {
        /// The text that was parsed.
        input: String,
    },
    /// A size of more than `u64::MAX` bytes.
    #[error(
        "invalid size {input:?}: larger than the maximum of {} bytes",
        u64::MAX
    )]
    SizeOverflow {
        /// The text that was parsed.
        input: String,
    },
}

/// Formats the `top` list of [`Error::Exhausted`].
struct TopConsumers<'a>(&'a [(Consumer, u64)]);

impl fmt::Display for TopConsumers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (consumer, bytes)) in self.0.iter().enumerate() {
            let sep = if i == 0 {
                " (largest consumers: "
            } else {
                ", "
            };
            write!(f, "{sep}{consumer} {}", format_bytes(*bytes))?;
        }
        if !self.0.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Operating-system errors are equal when their kind, OS code and message are.
fn same_io(a: &io::Error, b: &io::Error) -> bool {
    a.kind() == b.kind() && a.raw_os_error() == b.raw_os_error() && a.to_string() == b.to_string()
}

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        use Error::*;
        match (self, other) {
            (
                Exhausted {
                    consumer,
                    requested,
                    reserved,
                    limit,
                    top,
                },
                Exhausted {
                    consumer: c,
                    requested: r,
                    reserved: v,
                    limit: l,
                    top: t,
                },
            ) => (consumer, requested, reserved, limit, top) == (c, r, v, l, t),
            (
                TooLarge {
                    consumer,
                    requested,
                    limit,
                },
                TooLarge {
                    consumer: c,
                    requested: r,
                    limit: l,
                },
            ) => (consumer, requested, limit) == (c, r, l),
            (
                Quota {
                    dir,
                    requested,
                    used,
                    quota,
                },
                Quota {
                    dir: d,
                    requested: r,
                    used: u,
                    quota: q,
                },
            ) => (dir, requested, used, quota) == (d, r, u, q),
            (
                NoSpace {
                    dir,
                    requested,
                    error,
                },
                NoSpace {
                    dir: d,
                    requested: r,
                    error: e,
                },
            ) => (dir, requested) == (d, r) && same_io(error, e),
            (
                Io { dir, op, source },
                Io {
                    dir: d,
                    op: o,
                    source: s,
                },
            ) => (dir, op) == (d, o) && same_io(source, s),
            (
                OutOfBounds {
                    dir,
                    offset,
                    end,
                    len,
                },
                OutOfBounds {
                    dir: d,
                    offset: o,
                    end: e,
                    len: l,
                },
            ) => (dir, offset, end, len) == (d, o, e, l),
            (InvalidSize { input }, InvalidSize { input: i })
            | (NegativeSize { input }, NegativeSize { input: i })
            | (SizeOverflow { input }, SizeOverflow { input: i }) => input == i,
            (UnknownUnit { input, unit }, UnknownUnit { input: i, unit: u }) => {
                (input, unit) == (i, u)
            }
            _ => false,
        }
    }
}

impl Eq for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_compare_by_kind_code_and_message() {
        let no_space = |code| Error::NoSpace {
            dir: "/spill".into(),
            requested: 10,
            error: io::Error::from_raw_os_error(code),
        };
        assert_eq!(no_space(libc::ENOSPC), no_space(libc::ENOSPC));
        assert_ne!(no_space(libc::ENOSPC), no_space(libc::EDQUOT));
        let io = |msg: &str| Error::Io {
            dir: "/spill".into(),
            op: "map",
            source: io::Error::other(msg.to_owned()),
        };
        assert_eq!(io("a"), io("a"));
        assert_ne!(io("a"), io("b"));
        assert_ne!(
            Error::InvalidSize { input: "x".into() },
            Error::NegativeSize { input: "x".into() }
        );
    }
}
