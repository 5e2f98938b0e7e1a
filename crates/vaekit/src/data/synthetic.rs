//! Small generated datasets in the IDX format, for tests and quick trials without downloads.
//!
//! Class `c` of 10 is a bright bar whose position and orientation depend on `c`, on a dim
//! noisy background, so a VAE has real structure to learn.

use std::path::Path;

use rand::Rng;

use crate::config::ImageShape;
use crate::data::idx::encode_idx;
use crate::data::{Dataset, Splits};
use crate::error::{Error, Result};
use crate::rng::{Stream, stream_rng};

/// Image side of the generated datasets (28, as MNIST).
pub const SIDE: usize = 28;

/// `n` images of class-dependent bars and their labels.
pub fn bars(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = stream_rng(seed, Stream::StaticBinarize, 99);
    let mut pixels = vec![0u8; n * SIDE * SIDE];
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = (i % 10) as u8;
        labels.push(c);
        let img = &mut pixels[i * SIDE * SIDE..(i + 1) * SIDE * SIDE];
        let pos = 3 + 2 * (c as usize % 5) + rng.random_range(0..3);
        let vertical = c < 5;
        for y in 0..SIDE {
            for x in 0..SIDE {
                let on = if vertical {
                    x.abs_diff(pos + 5) <= 1
                } else {
                    y.abs_diff(pos + 5) <= 1
                };
                img[y * SIDE + x] = if on {
                    rng.random_range(200..=255)
                } else {
                    rng.random_range(0..30)
                };
            }
        }
    }
    (pixels, labels)
}

/// A bars dataset in memory: `n_train` training and `n_test` test images, labelled "0".."9".
pub fn bars_splits(n_train: usize, n_test: usize, seed: u64) -> Splits {
    let make = |n: usize, s: u64| {
        let (pixels, labels) = bars(n, s);
        Dataset {
            shape: ImageShape::MNIST,
            pixels: pixels.into(),
            labels: labels.into_iter().map(u32::from).collect(),
            classes: (0..10).map(|c| c.to_string()).collect(),
        }
    };
    Splits {
        train: make(n_train, seed),
        test: make(n_test, seed.wrapping_add(1)),
        source: "synthetic bars".into(),
        source_hash: None,
    }
}

/// A gray 8-bit PNG of `side` x `side` zeros, written row by row without holding the image: a
/// decompression bomb (20,000 x 20,000 is 400 MB of pixels in a few hundred KB) for tests of
/// image readers.
pub fn zero_png(side: u32) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; side as usize + 1];
    for _ in 0..side {
        z.write_all(&row).expect("writing to memory");
    }
    chunk(&mut out, b"IDAT", &z.finish().expect("writing to memory"));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Writes the four MNIST-style IDX files (gzip-compressed) of a bars dataset into `dir`.
pub fn write_bars_idx(dir: &Path, n_train: usize, n_test: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let write = |name: &str, bytes: Vec<u8>| -> Result<()> {
        use std::io::Write;
        let p = dir.join(name);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).map_err(Error::io(&p))?;
        crate::fsutil::write_output(&p, &gz.finish().map_err(Error::io(&p))?)
    };
    for (prefix, n, s) in [
        ("train", n_train, seed),
        ("t10k", n_test, seed.wrapping_add(1)),
    ] {
        let (px, lab) = bars(n, s);
        write(
            &format!("{prefix}-images-idx3-ubyte.gz"),
            encode_idx(&[n, SIDE, SIDE], &px),
        )?;
        write(
            &format!("{prefix}-labels-idx1-ubyte.gz"),
            encode_idx(&[n], &lab),
        )?;
    }
    Ok(())
}
