//! `outcore info`: what an array is, and whether loading it whole would fit.
//!
//! Answers the question a NumPy user asks before `np.load`: how big is it,
//! how much memory is there, will it fit — and what would a smaller float
//! dtype save? Only the header is read.

use anyhow::Result;
use outcore::{ArrayMeta, DType, Format, Layout};
use serde_json::{Value, json};

use crate::args::InputArgs;
use crate::output::{self, Fields};

/// Arguments of `outcore info`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Show an array's shape, dtype, layout and size, and whether loading it whole would fit in memory",
    long_about = "Show an array's shape, dtype, layout and size, and whether loading it whole \
                  would fit in memory.\n\n\
                  Reads only the header. Compares the array's size (what np.load would \
                  allocate) with the memory available on this machine (MemAvailable), and \
                  shows the size at each smaller float dtype.\n\n\
                  With --json, prints one JSON object with the keys path, format, version \
                  (null for raw), shape, dtype, byte_order (\"none\" for one-byte dtypes), \
                  layout, data_offset, nbytes, rows, row_len, row_bytes, \
                  available_memory_bytes (null if unknown), fits_in_memory (null if \
                  unknown), as_float32_bytes and as_float16_bytes."
)]
pub(crate) struct Args {
    #[command(flatten)]
    input: InputArgs,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `outcore info`.
///
/// # Errors
///
/// When the file cannot be opened or is not a valid array, or stdout cannot
/// be written.
pub(crate) fn run(args: Args) -> Result<()> {
    let file = args.input.open()?;
    let report = Report {
        path: file.path().display().to_string(),
        meta: file.meta().clone(),
        available: outcore::spill::available_memory(),
    };
    if args.json {
        output::print_json(&report.json())
    } else {
        report.fields().print()
    }
}

/// What `info` reports about one array.
#[derive(Debug)]
struct Report {
    /// The path as given.
    path: String,
    /// The array's metadata.
    meta: ArrayMeta,
    /// Memory available on this machine, if known.
    available: Option<u64>,
}

impl Report {
    /// The array's size at `dtype` (`None` if that overflows 64 bits).
    fn size_as(&self, dtype: DType) -> Option<u64> {
        self.meta.len().checked_mul(dtype.itemsize() as u64)
    }

    /// Whether the whole array fits in available memory, if that is known.
    fn fits(&self, bytes: u64) -> Option<bool> {
        self.available.map(|avail| bytes <= avail)
    }

    /// The byte order as a word; one-byte elements have none.
    fn byte_order_name(&self) -> &'static str {
        if self.meta.dtype.itemsize() == 1 {
            "none"
        } else {
            self.meta.byte_order.name()
        }
    }

    /// The report as the JSON object `--json` prints.
    fn json(&self) -> Value {
        let m = &self.meta;
        let version = match m.format {
            Format::Npy { major, minor } => Value::from(format!("{major}.{minor}")),
            Format::Raw | Format::Memory => Value::Null,
        };
        let format = match m.format {
            Format::Npy { .. } => "npy",
            Format::Raw => "raw",
            Format::Memory => "memory",
        };
        json!({
            "path": self.path,
            "format": format,
            "version": version,
            "shape": m.shape,
            "dtype": m.dtype.name(),
            "byte_order": self.byte_order_name(),
            "layout": layout_name(m.layout),
            "data_offset": m.data_offset,
            "nbytes": m.nbytes(),
            "rows": m.rows(),
            "row_len": m.row_len(),
            "row_bytes": m.row_bytes(),
            "available_memory_bytes": output::opt_u64(self.available),
            "fits_in_memory": self.fits(m.nbytes()),
            "as_float32_bytes": output::opt_u64(self.size_as(DType::F32)),
            "as_float16_bytes": output::opt_u64(self.size_as(DType::F16)),
        })
    }

    /// The report as aligned text lines.
    fn fields(&self) -> Fields {
        let m = &self.meta;
        let mut f = Fields::new();
        f.add("path", &self.path)
            .add("format", m.format.to_string())
            .add("shape", m.shape_string())
            .add(
                "dtype",
                format!("{} ({})", m.dtype.name(), m.dtype.descr(m.byte_order)),
            )
            .add("byte order", self.byte_order_text())
            .add("layout", layout_text(m))
            .add("data offset", format!("{} bytes", m.data_offset))
            .add("size", output::bytes(m.nbytes()))
            .add("rows", m.rows().to_string())
            .add(
                "row length",
                format!("{} elements, {} bytes", m.row_len(), m.row_bytes()),
            );
        match self.available {
            Some(avail) => {
                f.add("available memory", output::bytes(avail));
                f.add("np.load", self.fit_text(m.nbytes(), avail));
            }
            None => {
                f.add(
                    "available memory",
                    "unknown (MemAvailable could not be read)",
                );
            }
        }
        for smaller in [DType::F32, DType::F16] {
            if smaller.itemsize() >= m.dtype.itemsize() {
                continue;
            }
            if let Some(size) = self.size_as(smaller) {
                let mut text = format!(
                    "{}, saves {}",
                    output::bytes(size),
                    outcore::format_bytes(m.nbytes() - size)
                );
                if let Some(avail) = self.available {
                    let verdict = if size <= avail {
                        "fits"
                    } else {
                        "does not fit"
                    };
                    text.push_str(&format!("; {verdict} in available memory"));
                }
                f.add(format!("as {}", smaller.name()), text);
            }
        }
        f
    }

    /// `"fits (31% of available memory)"` or why not.
    fn fit_text(&self, bytes: u64, avail: u64) -> String {
        let share = if avail == 0 {
            f64::INFINITY
        } else {
            bytes as f64 / avail as f64
        };
        if bytes <= avail {
            let percent = if bytes > 0 && share < 0.01 {
                "less than 1%".to_string()
            } else {
                format!("{:.0}%", share * 100.0)
            };
            format!("would fit: loading it whole takes {percent} of available memory")
        } else {
            format!(
                "would NOT fit: loading it whole needs {:.1}x the available memory \
                 ({} more); outcore streams it in blocks under a budget (default {})",
                share,
                outcore::format_bytes(bytes - avail),
                outcore::format_bytes(outcore::default_limit())
            )
        }
    }

    /// The byte order, and whether reading converts it.
    fn byte_order_text(&self) -> String {
        let order = self.meta.byte_order;
        if self.meta.dtype.itemsize() == 1 {
            "not applicable (one-byte elements)".to_string()
        } else if order.is_native() {
            format!("{order} (native)")
        } else {
            format!("{order} (swapped to native when read)")
        }
    }
}

/// `"C"` or `"Fortran"`.
fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::C => "C",
        Layout::Fortran => "Fortran",
    }
}

/// The layout, and what it means for reading rows.
fn layout_text(meta: &ArrayMeta) -> String {
    match meta.layout {
        Layout::C => "C (row-major)".to_string(),
        Layout::Fortran if meta.ndim() > 1 => {
            "Fortran (column-major; rows are gathered when read)".to_string()
        }
        Layout::Fortran => "Fortran (same as C for 0-d and 1-d arrays)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outcore::ByteOrder;
    use std::path::Path;

    fn report(shape: &[u64], dtype: DType, available: Option<u64>) -> Report {
        let meta = ArrayMeta::new(
            Path::new("x.npy"),
            shape.to_vec(),
            dtype,
            ByteOrder::Big,
            Layout::Fortran,
            Format::Npy { major: 1, minor: 0 },
            128,
        )
        .unwrap();
        Report {
            path: "x.npy".to_string(),
            meta,
            available,
        }
    }

    #[test]
    fn json_keys_and_numbers() {
        let r = report(&[1000, 20], DType::F64, Some(100_000));
        let v = r.json();
        assert_eq!(v["format"], "npy");
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["shape"], json!([1000, 20]));
        assert_eq!(v["dtype"], "float64");
        assert_eq!(v["byte_order"], "big");
        assert_eq!(v["layout"], "Fortran");
        assert_eq!(v["nbytes"], 160_000);
        assert_eq!(v["row_bytes"], 160);
        assert_eq!(v["fits_in_memory"], false);
        assert_eq!(v["as_float32_bytes"], 80_000);
        assert_eq!(v["as_float16_bytes"], 40_000);
        assert_eq!(v.as_object().unwrap().len(), 16);

        let v = report(&[3], DType::U8, None).json();
        assert_eq!(v["byte_order"], "none");
        assert_eq!(v["available_memory_bytes"], Value::Null);
        assert_eq!(v["fits_in_memory"], Value::Null);
    }

    #[test]
    fn text_shows_smaller_floats_only() {
        let text = report(&[1000, 20], DType::F64, Some(100_000))
            .fields()
            .render();
        assert!(text.contains("as float32:"), "{text}");
        assert!(text.contains("as float16:"), "{text}");
        assert!(text.contains("would NOT fit"), "{text}");
        let text = report(&[4], DType::F32, Some(1 << 30)).fields().render();
        assert!(!text.contains("as float32:"), "{text}");
        assert!(text.contains("as float16:"), "{text}");
        assert!(text.contains("would fit"), "{text}");
        let text = report(&[4], DType::I16, None).fields().render();
        assert!(!text.contains("as float"), "{text}");
        assert!(text.contains("unknown"), "{text}");
    }
}
