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

/// Reads a whole IDX file, decompressing it if it starts with the gzip magic bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(Error::io(path))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::BadIdx {
                path: path.to_path_buf(),
                reason: format!("gzip stream is corrupt or truncated ({e})"),
            })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|reason| Error::BadIdx {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses IDX bytes; the error is a reason without the file name.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "file is {} bytes, too short for a header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x} (expected 0000 08 followed by the rank)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != UBYTE {
        return Err(format!(
            "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            bytes[2]
        ));
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        return Err("rank 0 in the magic number".into());
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {} bytes for a rank-{rank} array",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let Some(expected) = expected else {
        return Err(format!("dimensions {dims:?} overflow"));
    };
    let got = bytes.len() - header;
    if got < expected {
        return Err(format!(
            "truncated: dimensions {dims:?} need {expected} bytes of data, found {got}"
        ));
    }
    if got > expected {
        return Err(format!(
            "{} bytes of trailing data after dimensions {dims:?}",
            got - expected
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
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
}
