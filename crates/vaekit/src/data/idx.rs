//! Reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
//! dimensions), one big-endian u32 per dimension, then the values. vaekit reads unsigned bytes
//! (type 0x08): rank 3 for images `[n, rows, cols]`, rank 1 for labels `[n]`.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Type code of unsigned bytes, the only one MNIST-style datasets use.
const UBYTE: u8 = 0x08;

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// The most data bytes an IDX file may declare (4 GiB: 5 million 28x28 images; vaekit holds a
/// dataset in memory). A header that declares more is refused before anything is read.
pub const MAX_IDX_BYTES: usize = 1 << 32;

/// Reads a whole IDX file, decompressing it if it starts with the gzip magic bytes. The header
/// is read and checked first, and no more than the data it declares is decompressed: a small
/// file whose header claims billions of images (a gzip bomb) is refused at once.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let (r, failed, most) = open_idx(path)?;
    read_idx_from(r, failed, most).map_err(|reason| Error::BadIdx {
        path: path.to_path_buf(),
        reason,
    })
}

/// The dimensions an IDX file declares, read from its header alone (a few bytes, decompressed
/// if need be), checked as [`read_idx`] checks them.
pub fn read_idx_dims(path: &Path) -> Result<Vec<usize>> {
    let (mut r, failed, most) = open_idx(path)?;
    read_dims(&mut r, failed, most).map_err(|reason| Error::BadIdx {
        path: path.to_path_buf(),
        reason,
    })
}

/// Deflate's largest expansion: about 1032 bytes out per byte in.
const GZIP_MAX_RATIO: u64 = 1032;

/// An IDX file as a stream of its bytes (decompressed if it starts with the gzip magic
/// bytes), the prefix of its read errors, and the most bytes the stream can hold (a gzip
/// file of n bytes holds at most ~1032 n).
fn open_idx(path: &Path) -> Result<(Box<dyn Read>, &'static str, u64)> {
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if !meta.is_file() {
        return Err(Error::BadIdx {
            path: path.to_path_buf(),
            reason: "not a regular file (a folder, a pipe or a device)".into(),
        });
    }
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(Error::io(path))?);
    let gz = {
        use std::io::BufRead;
        file.fill_buf()
            .map_err(Error::io(path))?
            .starts_with(&[0x1f, 0x8b])
    };
    Ok(if gz {
        (
            Box::new(flate2::read::GzDecoder::new(file)),
            "gzip stream is corrupt or truncated",
            meta.len().saturating_mul(GZIP_MAX_RATIO),
        )
    } else {
        (Box::new(file), "read failed", meta.len())
    })
}

/// The most data bytes read from one IDX file here: [`MAX_IDX_BYTES`], or half the memory this
/// process may use where that is less; and what sets it, in words.
fn idx_budget() -> (usize, String) {
    match crate::memory::available() {
        Some((m, which)) if ((m / 2) as usize) < MAX_IDX_BYTES => (
            (m / 2) as usize,
            format!(
                "half of {which} ({:.1} GiB)",
                m as f64 / (1u64 << 30) as f64
            ),
        ),
        _ => (MAX_IDX_BYTES, "vaekit's limit for an IDX file".into()),
    }
}

/// Parses IDX bytes; the error is a reason without the file name.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    read_idx_from(bytes, "read failed", bytes.len() as u64)
}

/// Reads an IDX array from a stream: header first, checked, then exactly the data it declares
/// (growing the buffer only as data arrives); `failed` prefixes read errors (a corrupt gzip
/// stream).
fn read_idx_from(mut r: impl Read, failed: &str, most: u64) -> Result<IdxArray, String> {
    let io = |e: std::io::Error| format!("{failed} ({e})");
    let dims = read_dims(&mut r, failed, most)?;
    let expected: usize = dims.iter().product();
    let mut data = Vec::with_capacity(expected.min(1 << 26));
    (&mut r)
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() < expected {
        return Err(format!(
            "truncated: dimensions {dims:?} need {expected} bytes of data, found {}",
            data.len()
        ));
    }
    // Anything after the declared data (counted up to 1 MiB, no further decompression).
    let mut rest = vec![0u8; 1 << 20];
    let trailing = read_upto(&mut r, &mut rest).map_err(io)?;
    if trailing == rest.len() {
        return Err(format!(
            "more than 1 MiB of trailing data after dimensions {dims:?}"
        ));
    }
    if trailing > 0 {
        return Err(format!(
            "{trailing} bytes of trailing data after dimensions {dims:?}"
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Reads and checks the magic number and dimensions: their product is within [`idx_budget`]
/// and within `most`, the bytes the stream can hold at all.
fn read_dims(mut r: impl Read, failed: &str, most: u64) -> Result<Vec<usize>, String> {
    let io = |e: std::io::Error| format!("{failed} ({e})");
    let mut magic = [0u8; 4];
    let n = read_upto(&mut r, &mut magic).map_err(io)?;
    if n < 4 {
        return Err(format!("file is {n} bytes, too short for a header"));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x} (expected 0000 08 followed by the rank)",
            magic[0], magic[1], magic[2], magic[3]
        ));
    }
    if magic[2] != UBYTE {
        return Err(format!(
            "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            magic[2]
        ));
    }
    let rank = magic[3] as usize;
    if rank == 0 {
        return Err("rank 0 in the magic number".into());
    }
    let mut header = vec![0u8; 4 * rank];
    let n = read_upto(&mut r, &mut header).map_err(io)?;
    if n < header.len() {
        return Err(format!(
            "truncated header: {} bytes for a rank-{rank} array",
            4 + n
        ));
    }
    let dims: Vec<usize> = header
        .chunks(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let (budget, why) = idx_budget();
    if expected.is_none_or(|e| e > budget) {
        let declared = dims.iter().fold(1f64, |acc, &d| acc * d as f64);
        return Err(format!(
            "dimensions {dims:?} declare {:.1} GiB of data; the most read here is {:.1} GiB ({why})",
            declared / (1u64 << 30) as f64,
            budget as f64 / (1u64 << 30) as f64
        ));
    }
    let expected = expected.expect("checked above") as u64;
    if expected > most {
        return Err(format!(
            "truncated: dimensions {dims:?} need {expected} bytes of data, more than the file can hold ({most} bytes at most)"
        ));
    }
    Ok(dims)
}

/// Fills `buf` as far as the stream goes; the count read.
fn read_upto(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Encodes an unsigned-byte array as IDX (used by tests and by anyone making small datasets).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "dims do not match data length"
    );
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Images `[n, rows, cols]` and their labels `[n]` read from a pair of IDX files.
#[derive(Clone, Debug)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Pixels, `count * rows * cols` bytes.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// Reads an image file and its label file and checks that they agree.
pub fn read_idx_pair(images: &Path, labels: &Path) -> Result<IdxImages> {
    // Both headers first: a label file that disagrees is refused before any data is read.
    let declared = |path: &Path| -> Result<Vec<usize>> {
        let (mut r, failed, _) = open_idx(path)?;
        read_dims(&mut r, failed, u64::MAX).map_err(|reason| Error::BadIdx {
            path: path.to_path_buf(),
            reason,
        })
    };
    let (img_dims, lab_dims) = (declared(images)?, declared(labels)?);
    if img_dims.len() == 3 && lab_dims.len() == 1 && lab_dims[0] != img_dims[0] {
        return Err(Error::BadIdx {
            path: labels.to_path_buf(),
            reason: format!(
                "count mismatch: {} labels for {} images in {}",
                lab_dims[0],
                img_dims[0],
                images.display()
            ),
        });
    }
    let img = read_idx(images)?;
    if img.dims.len() != 3 {
        return Err(Error::BadIdx {
            path: images.to_path_buf(),
            reason: format!(
                "expected images of rank 3 [n, rows, cols], found rank {}",
                img.dims.len()
            ),
        });
    }
    let lab = read_idx(labels)?;
    if lab.dims.len() != 1 {
        return Err(Error::BadIdx {
            path: labels.to_path_buf(),
            reason: format!(
                "expected labels of rank 1 [n], found rank {}",
                lab.dims.len()
            ),
        });
    }
    if lab.dims[0] != img.dims[0] {
        return Err(Error::BadIdx {
            path: labels.to_path_buf(),
            reason: format!(
                "count mismatch: {} labels for {} images in {}",
                lab.dims[0],
                img.dims[0],
                images.display()
            ),
        });
    }
    Ok(IdxImages {
        count: img.dims[0],
        rows: img.dims[1],
        cols: img.dims[2],
        pixels: img.data,
        labels: lab.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn round_trips_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let bytes = encode_idx(&[2, 3, 4], &data);
        let raw = write(dir.path(), "a.idx", &bytes);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bytes).unwrap();
        let gzp = write(dir.path(), "a.idx.gz", &gz.finish().unwrap());
        for p in [raw, gzp] {
            let a = read_idx(&p).unwrap();
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, data);
        }
    }

    #[test]
    fn rejects_wrong_magic_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[1, 2, 2], &[0; 4]);
        bytes[0] = 0x12;
        let p = write(dir.path(), "bad-magic.idx", &bytes);
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("bad-magic.idx") && msg.contains("magic"),
            "{msg}"
        );
        // An unsupported element type is also a magic-number problem.
        let mut bytes = encode_idx(&[4], &[0; 4]);
        bytes[2] = 0x0D;
        let p = write(dir.path(), "float.idx", &bytes);
        assert!(read_idx(&p).unwrap_err().to_string().contains("0x0d"));
    }

    #[test]
    fn rejects_truncated_data_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_idx(&[3, 2, 2], &[7; 12]);
        let p = write(dir.path(), "short.idx", &bytes[..bytes.len() - 5]);
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("short.idx") && msg.contains("truncated"),
            "{msg}"
        );
        let p = write(dir.path(), "hdr.idx", &bytes[..9]);
        assert!(
            read_idx(&p)
                .unwrap_err()
                .to_string()
                .contains("truncated header")
        );
        // A truncated gzip stream names the file too.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bytes).unwrap();
        let z = gz.finish().unwrap();
        let p = write(dir.path(), "cut.idx.gz", &z[..z.len() / 2]);
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(msg.contains("cut.idx.gz") && msg.contains("gzip"), "{msg}");
    }

    #[test]
    fn a_gzip_bomb_is_refused_by_its_header_before_decompressing() {
        // Issue 14, item 6: a small .gz whose header claims 2^31 images of 28x28 used to be
        // decompressed whole (6.3 GB) before the header was looked at.
        let dir = tempfile::tempdir().unwrap();
        let mut header = vec![0, 0, 8, 3];
        for d in [1u32 << 31, 28, 28] {
            header.extend_from_slice(&d.to_be_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&header).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap(); // 64 MiB of zeros: about 64 KiB compressed
        }
        let z = gz.finish().unwrap();
        let p = write(dir.path(), "bomb-idx3-ubyte.gz", &z);
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("bomb-idx3-ubyte.gz") && msg.contains("GiB"),
            "{msg}"
        );
        // Only the header was decompressed: count what the reader takes from the stream.
        struct Counting<R>(R, std::rc::Rc<std::cell::Cell<usize>>);
        impl<R: Read> Read for Counting<R> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1.set(self.1.get() + n);
                Ok(n)
            }
        }
        let count = std::rc::Rc::new(std::cell::Cell::new(0));
        let r = Counting(flate2::read::GzDecoder::new(&z[..]), count.clone());
        assert!(read_idx_from(r, "gzip", u64::MAX).is_err());
        assert_eq!(count.get(), 16, "bytes decompressed before refusing");
        // More than the gzip file can expand to (1032 bytes a byte at most): refused from the
        // header, nothing of the data read.
        let mut header = vec![0, 0, 8, 3];
        for d in [1_000_000u32, 28, 28] {
            header.extend_from_slice(&d.to_be_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&header).unwrap();
        gz.write_all(&[0u8; 784 * 10]).unwrap();
        let p = write(dir.path(), "bomb-idx3-ubyte.gz", &gz.finish().unwrap());
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(msg.contains("more than the file can hold"), "{msg}");
        // Within both bounds but shorter than declared: truncated, read as far as the data goes.
        let mut header = vec![0, 0, 8, 3];
        for d in [20u32, 28, 28] {
            header.extend_from_slice(&d.to_be_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&header).unwrap();
        gz.write_all(&[0u8; 784 * 10]).unwrap();
        let p = write(dir.path(), "short-idx3-ubyte.gz", &gz.finish().unwrap());
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(msg.contains("truncated") && msg.contains("7840"), "{msg}");
        // Trailing data after a well-formed array is still refused.
        let mut bytes = encode_idx(&[2], &[1, 2]);
        bytes.extend_from_slice(&[9; 3]);
        let p = write(dir.path(), "tail.idx", &bytes);
        assert!(
            read_idx(&p)
                .unwrap_err()
                .to_string()
                .contains("3 bytes of trailing data")
        );
    }

    #[test]
    fn rejects_count_mismatch_between_images_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = write(dir.path(), "img.idx", &encode_idx(&[3, 2, 2], &[1; 12]));
        let labs = write(dir.path(), "lab.idx", &encode_idx(&[2], &[0, 1]));
        let msg = read_idx_pair(&imgs, &labs).unwrap_err().to_string();
        assert!(
            msg.contains("lab.idx") && msg.contains("count mismatch"),
            "{msg}"
        );
        let ok = write(dir.path(), "lab3.idx", &encode_idx(&[3], &[0, 1, 2]));
        let pair = read_idx_pair(&imgs, &ok).unwrap();
        assert_eq!((pair.count, pair.rows, pair.cols), (3, 2, 2));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let msg = read_idx(Path::new("/nonexistent/x.idx"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/x.idx"), "{msg}");
    }

    #[test]
    fn a_label_file_of_another_count_is_refused_before_any_data_is_read() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let images = write(
            dir.path(),
            "i-idx3-ubyte",
            &encode_idx(&[3, 4, 4], &[0; 48]),
        );
        // 2^31 labels declared, 8 MiB of them present (8 KiB compressed).
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&[0, 0, 8, 1]).unwrap();
        gz.write_all(&(1u32 << 31).to_be_bytes()).unwrap();
        gz.write_all(&vec![0u8; 8 << 20]).unwrap();
        let labels = write(dir.path(), "l-idx1-ubyte.gz", &gz.finish().unwrap());
        let msg = read_idx_pair(&images, &labels).unwrap_err().to_string();
        assert!(
            msg.contains("count mismatch") && msg.contains("2147483648 labels"),
            "{msg}"
        );
    }
}
