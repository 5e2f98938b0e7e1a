//! Packed datasets (`.vkd`): an image folder or IDX files decoded once into fixed-size 8-bit
//! records, read back by mapping the file, so training touches only the pages its batches need
//! and several processes share one copy in the page cache.
//!
//! # Layout
//! ```text
//! 0      b"VAEKITPK"
//! 8      format version, u32 little-endian (1)
//! 12     header length L, u32 little-endian
//! 16     header: L bytes of JSON (PackHeader: shape, counts, classes, source, source hash)
//! A      labels: train + test u32 little-endian        (A = 16 + L rounded up to 8)
//! P      pixels: train images, then test images, each  (P = A + 4 (train + test) rounded
//!        shape.numel() bytes, channel-major (CHW)       up to 4096, so records map page-aligned)
//! P + (train + test) numel = the file's length
//! ```
//! The source hash is SHA-256 over the source's files (each file's relative path and the
//! SHA-256 of its bytes, in record order), so two packs of one source say so.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ImageShape;
use crate::data::dataset::{Dataset, Splits};
use crate::data::image_folder::{FolderListing, decode_file_bytes};
use crate::data::mapped::MappedFile;
use crate::data::pixels::Pixels;
use crate::error::{Error, Result};

/// The first bytes of every packed file.
pub const MAGIC: &[u8; 8] = b"VAEKITPK";
/// The layout version this code writes and reads.
pub const VERSION: u32 = 1;
/// The file name extension `vaekit data pack` suggests.
pub const EXTENSION: &str = "vkd";
/// Largest header read (class names of a huge folder tree stay far below it).
const MAX_HEADER: u32 = 64 << 20;
/// Largest image a packed file may hold (values per image).
const MAX_NUMEL: usize = 64 << 20;
/// Images decoded per chunk while packing: the memory packing needs is one chunk.
const CHUNK: usize = 1024;
/// The hash written until the pack is complete (same length as a real one).
const UNFINISHED_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a packed file says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackHeader {
    /// Shape of every image.
    pub shape: ImageShape,
    /// Training images (the first records).
    pub train: usize,
    /// Test images (the records after them).
    pub test: usize,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Where the images came from (the folder as given to `data pack`).
    pub source: String,
    /// SHA-256 (hex) over the source files, in record order (see the module docs).
    pub source_hash: String,
}

impl PackHeader {
    /// Images in the file; `None` when the two counts overflow (a corrupt header).
    pub fn images(&self) -> Option<usize> {
        self.train.checked_add(self.test)
    }

    /// The byte offsets of the labels and of the pixels for a header of `header_len` bytes,
    /// and the file's length; `None` when the sizes overflow.
    fn layout(&self, header_len: usize) -> Option<(u64, u64, u64)> {
        let labels = (16 + header_len).next_multiple_of(8) as u64;
        let n = u64::try_from(self.images()?).ok()?;
        let pixels = labels
            .checked_add(n.checked_mul(4)?)?
            .next_multiple_of(4096);
        let len = pixels.checked_add(n.checked_mul(self.shape.numel() as u64)?)?;
        Some((labels, pixels, len))
    }
}

/// Whether `path` is a file that starts as a packed dataset does.
pub fn is_packed(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    path.is_file()
        && File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == MAGIC
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadDataset {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and checks a packed file's header: signature, version, sizes against the file's
/// length. Returns the header, the offsets of labels and pixels, and the open file.
pub fn read_header(path: &Path) -> Result<(PackHeader, u64, u64, File)> {
    crate::fsutil::check_regular_file(path)?;
    let mut f = File::open(path).map_err(Error::io(path))?;
    let actual = f.metadata().map_err(Error::io(path))?.len();
    let mut fixed = [0u8; 16];
    if f.read_exact(&mut fixed).is_err() || &fixed[..8] != MAGIC {
        return Err(bad(
            path,
            "not a vaekit packed dataset (it does not start with VAEKITPK); make one with `vaekit data pack`",
        ));
    }
    let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(
            path,
            format!(
                "packed with layout version {version}; this vaekit reads version {VERSION}: pack the source again"
            ),
        ));
    }
    let header_len = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER || 16 + header_len as u64 > actual {
        return Err(bad(
            path,
            format!("truncated or corrupt: a header of {header_len} bytes in a file of {actual}"),
        ));
    }
    let mut json = vec![0u8; header_len as usize];
    f.read_exact(&mut json).map_err(Error::io(path))?;
    let header: PackHeader = serde_json::from_slice(&json)
        .map_err(|e| bad(path, format!("corrupt packed header: {e}")))?;
    let numel = header.shape.numel();
    if numel == 0 || numel > MAX_NUMEL || !matches!(header.shape.channels, 1 | 3) {
        return Err(bad(
            path,
            format!("corrupt packed header: image shape {:?}", header.shape),
        ));
    }
    if header.train == 0 || header.test == 0 {
        return Err(bad(path, "holds no training or no test images"));
    }
    // Every image takes at least a label and a pixel: counts beyond the file's length (or
    // whose sum overflows) are corrupt, whatever the rest of the header says.
    let images = header.images().filter(|&n| n as u64 <= actual);
    let Some(images) = images else {
        return Err(bad(
            path,
            format!(
                "corrupt packed header: {} training and {} test images cannot fit in a file of {actual} bytes",
                header.train, header.test
            ),
        ));
    };
    if header.source_hash == UNFINISHED_HASH {
        return Err(bad(
            path,
            "was not finished by `vaekit data pack`; pack the source again",
        ));
    }
    let Some((labels, pixels, expected)) = header.layout(json.len()) else {
        return Err(bad(path, "corrupt packed header: sizes overflow"));
    };
    if actual != expected {
        let what = if actual < expected {
            "truncated"
        } else {
            "corrupt"
        };
        return Err(bad(
            path,
            format!(
                "{what}: the file has {actual} bytes but its header describes {expected} ({images} images of {})",
                header.shape
            ),
        ));
    }
    Ok((header, labels, pixels, f))
}

/// Opens a packed file as train and test sets whose pixels are mapped, not read.
pub fn open_packed(path: &Path) -> Result<Splits> {
    let (header, labels_at, pixels_at, mut f) = read_header(path)?;
    let n = header.images().expect("checked by read_header");
    let mut raw = vec![0u8; n * 4];
    f.seek(SeekFrom::Start(labels_at))
        .and_then(|_| f.read_exact(&mut raw))
        .map_err(Error::io(path))?;
    let labels: Vec<u32> = raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    if let Some(l) = labels.iter().find(|&&l| l as usize >= header.classes.len()) {
        return Err(bad(
            path,
            format!(
                "corrupt: label {l} but {} class names",
                header.classes.len()
            ),
        ));
    }
    let map = Arc::new(MappedFile::map(&f, path)?);
    let numel = header.shape.numel();
    let split = |first: usize, count: usize, labels: &[u32]| {
        let start = pixels_at as usize + first * numel;
        Dataset {
            shape: header.shape,
            pixels: Pixels::Mapped {
                map: map.clone(),
                range: start..start + count * numel,
            },
            labels: labels.to_vec(),
            classes: header.classes.clone(),
        }
    };
    Ok(Splits {
        train: split(0, header.train, &labels[..header.train]),
        test: split(header.train, header.test, &labels[header.train..]),
        source: path.display().to_string(),
        source_hash: Some(header.source_hash.clone()),
    })
}

/// What `data pack` reads.
pub enum PackInput {
    /// An image folder's files, decoded while packing (never all in memory at once).
    Folder {
        /// The folder (file names in the source hash are relative to it).
        dir: PathBuf,
        /// Its files.
        listing: FolderListing,
        /// The shape every image becomes.
        shape: ImageShape,
    },
    /// Images already in memory (IDX data, resized), with the SHA-256 of their source files.
    Memory {
        /// The images.
        splits: Splits,
        /// Hex SHA-256 of the source files.
        source_hash: String,
    },
}

impl PackInput {
    fn header(&self, source: &str) -> PackHeader {
        match self {
            PackInput::Folder { listing, shape, .. } => PackHeader {
                shape: *shape,
                train: listing.train.len(),
                test: listing.test.len(),
                classes: listing.classes.clone(),
                source: source.into(),
                source_hash: UNFINISHED_HASH.into(),
            },
            PackInput::Memory { splits, .. } => PackHeader {
                shape: splits.train.shape,
                train: splits.train.len(),
                test: splits.test.len(),
                classes: splits.train.classes.clone(),
                source: source.into(),
                source_hash: UNFINISHED_HASH.into(),
            },
        }
    }

    fn labels(&self) -> Vec<u32> {
        match self {
            PackInput::Folder { listing, .. } => listing
                .train
                .iter()
                .chain(&listing.test)
                .map(|(l, _)| *l)
                .collect(),
            PackInput::Memory { splits, .. } => splits
                .train
                .labels
                .iter()
                .chain(&splits.test.labels)
                .copied()
                .collect(),
        }
    }
}

/// Writes `input` to `out` as a packed file, `source` naming it in the header. The file is
/// written under a temporary name and renamed when complete, so `out` never holds a partial
/// pack; an existing `out` is refused. `progress(done, total)` is called after every chunk of
/// images; `stop` is polled between chunks (the temporary file is removed). Returns the header.
pub fn write_packed(
    input: &PackInput,
    source: &str,
    out: &Path,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PackHeader> {
    crate::fsutil::check_output(out)?;
    crate::fsutil::remove_orphan_temps_of(out);
    if out.exists() {
        return Err(bad(
            out,
            "exists already; remove it or choose another --out",
        ));
    }
    let tmp = crate::fsutil::temp_path(out);
    let result = write_to(input, source, &tmp, out, stop, progress);
    match result {
        Ok(header) => {
            std::fs::rename(&tmp, out).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::io(out)(e)
            })?;
            Ok(header)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_to(
    input: &PackInput,
    source: &str,
    tmp: &Path,
    out: &Path,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PackHeader> {
    let io = |e| Error::io(out)(e);
    let mut header = input.header(source);
    let json = serde_json::to_vec(&header).expect("the header serialises");
    let (labels_at, pixels_at, _) = header
        .layout(json.len())
        .ok_or_else(|| bad(out, "the dataset is too large to pack"))?;
    let f = File::create(tmp).map_err(Error::io(tmp))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&VERSION.to_le_bytes()).map_err(io)?;
    w.write_all(&(json.len() as u32).to_le_bytes())
        .map_err(io)?;
    w.write_all(&json).map_err(io)?;
    let mut at = 16 + json.len() as u64;
    w.write_all(&vec![0u8; (labels_at - at) as usize])
        .map_err(io)?;
    let labels: Vec<u8> = input
        .labels()
        .iter()
        .flat_map(|l| l.to_le_bytes())
        .collect();
    w.write_all(&labels).map_err(io)?;
    at = labels_at + labels.len() as u64;
    w.write_all(&vec![0u8; (pixels_at - at) as usize])
        .map_err(io)?;

    let total = header.images().expect("counts of images in memory");
    let mut hasher = Sha256::new();
    match input {
        PackInput::Folder {
            dir,
            listing,
            shape,
        } => {
            let files: Vec<&PathBuf> = listing
                .train
                .iter()
                .chain(&listing.test)
                .map(|(_, p)| p)
                .collect();
            for (c, chunk) in files.chunks(CHUNK).enumerate() {
                if stop.load(Ordering::SeqCst) {
                    return Err(Error::Interrupted(out.to_path_buf()));
                }
                let decoded: Vec<(Vec<u8>, [u8; 32])> = chunk
                    .par_iter()
                    .map(|path| {
                        let bytes = std::fs::read(path).map_err(Error::io(*path))?;
                        let pixels = decode_file_bytes(&bytes, *shape, path)?;
                        Ok((pixels, Sha256::digest(&bytes).into()))
                    })
                    .collect::<Result<_>>()?;
                for (path, (pixels, digest)) in chunk.iter().zip(&decoded) {
                    let rel = path.strip_prefix(dir).unwrap_or(path);
                    hasher.update(rel.to_string_lossy().as_bytes());
                    hasher.update([0u8]);
                    hasher.update(digest);
                    w.write_all(pixels).map_err(io)?;
                }
                progress((c * CHUNK + chunk.len()).min(total), total);
            }
        }
        PackInput::Memory { splits, .. } => {
            let mut done = 0;
            for ds in [&splits.train, &splits.test] {
                let numel = ds.shape.numel().max(1);
                for chunk in ds.pixels.chunks(CHUNK * numel) {
                    if stop.load(Ordering::SeqCst) {
                        return Err(Error::Interrupted(out.to_path_buf()));
                    }
                    w.write_all(chunk).map_err(io)?;
                    done += chunk.len() / numel;
                    progress(done.min(total), total);
                }
            }
        }
    }
    if stop.load(Ordering::SeqCst) {
        return Err(Error::Interrupted(out.to_path_buf()));
    }
    header.source_hash = match input {
        PackInput::Folder { .. } => hex(&hasher.finalize()),
        PackInput::Memory { source_hash, .. } => source_hash.clone(),
    };
    let mut f = w.into_inner().map_err(|e| io(e.into_error()))?;
    // The hash has the placeholder's length, so the header keeps its size and offsets.
    let json = serde_json::to_vec(&header).expect("the header serialises");
    f.seek(SeekFrom::Start(16))
        .and_then(|_| f.write_all(&json))
        .and_then(|_| f.sync_all())
        .map_err(io)?;
    Ok(header)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 over files (their names and contents), for sources read whole (IDX files).
pub fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut hasher = Sha256::new();
    for p in files {
        let bytes = std::fs::read(p).map_err(Error::io(p))?;
        if let Some(name) = p.file_name() {
            hasher.update(name.to_string_lossy().as_bytes());
        }
        hasher.update([0u8]);
        hasher.update(Sha256::digest(&bytes));
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image_folder::load_image_folder;
    use crate::data::source::{load_idx_dir, pack_input};

    /// A colour folder of 3 classes x 10 images of different sizes.
    fn folder(dir: &Path) {
        for (c, name) in ["ants", "bees", "cats"].iter().enumerate() {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            for i in 0..10u32 {
                let img = image::RgbImage::from_fn(9 + i, 7 + c as u32, |x, y| {
                    image::Rgb([(x * 20 + i) as u8, (y * 30) as u8, (c * 90) as u8])
                });
                img.save(dir.join(name).join(format!("{i}.png"))).unwrap();
            }
        }
    }

    fn pack(src: &Path, size: Option<[usize; 2]>, out: &Path) -> Result<PackHeader> {
        let (input, dir) = pack_input(src, size, None)?;
        write_packed(
            &input,
            &dir.display().to_string(),
            out,
            &AtomicBool::new(false),
            &mut |_, _| {},
        )
    }

    #[test]
    fn a_folder_packs_and_maps_back_to_what_loading_it_gives() {
        let tmp = tempfile::tempdir().unwrap();
        folder(&tmp.path().join("src"));
        let out = tmp.path().join("d.vkd");
        let mut calls = Vec::new();
        let (input, _) = pack_input(&tmp.path().join("src"), Some([6, 5]), None).unwrap();
        let h = write_packed(&input, "src", &out, &AtomicBool::new(false), &mut |d, t| {
            calls.push((d, t))
        })
        .unwrap();
        assert_eq!((h.train, h.test, h.classes.len()), (27, 3, 3));
        assert_eq!(calls.last(), Some(&(30, 30)));
        let shape = ImageShape {
            channels: 3,
            height: 6,
            width: 5,
        };
        assert_eq!(h.shape, shape);
        let got = open_packed(&out).unwrap();
        let want = load_image_folder(&tmp.path().join("src"), Some(shape)).unwrap();
        for (g, w) in [(&got.train, &want.train), (&got.test, &want.test)] {
            assert!(g.pixels.is_mapped());
            assert_eq!(g.pixels, w.pixels);
            assert_eq!(g.labels, w.labels);
            assert_eq!(g.classes, w.classes);
            assert_eq!(g.shape, shape);
        }
        // Released pages read back the same bytes.
        let before = got.train.image(4).to_vec();
        got.train.release_all();
        assert_eq!(got.train.image(4), &before[..]);
        // Truncating and static binarisation work on a mapping (the latter copies it).
        let mut t = got.train.clone();
        t.truncate(5);
        assert_eq!(t.len(), 5);
        assert_eq!(t.image(4), &before[..]);
        t.binarize_static(1);
        assert!(!t.pixels.is_mapped() && t.pixels.iter().all(|&p| p == 0 || p == 255));
    }

    #[test]
    fn idx_files_pack_with_their_shape_or_resized() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("bars");
        crate::data::synthetic::write_bars_idx(&src, 30, 10, 3).unwrap();
        let out = tmp.path().join("b.vkd");
        let h = pack(&src, None, &out).unwrap();
        let got = open_packed(&out).unwrap();
        let want = load_idx_dir(&src).unwrap();
        assert_eq!(got.train.pixels, want.train.pixels);
        assert_eq!(got.test.labels, want.test.labels);
        assert_eq!(h.shape, ImageShape::MNIST);
        // The hash is of the source: packing it again gives the same one.
        let again = pack(&src, None, &tmp.path().join("c.vkd")).unwrap();
        assert_eq!(again.source_hash, h.source_hash);
        assert_eq!(h.source_hash.len(), 64);
        let small = pack(&src, Some([14, 14]), &tmp.path().join("s.vkd")).unwrap();
        assert_eq!((small.shape.height, small.shape.width), (14, 14));
        assert_eq!(
            open_packed(&tmp.path().join("s.vkd"))
                .unwrap()
                .train
                .pixels
                .len(),
            30 * 196
        );
    }

    #[test]
    fn a_changed_source_file_changes_the_source_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        folder(&src);
        let a = pack(&src, None, &tmp.path().join("a.vkd")).unwrap();
        let img = image::RgbImage::from_pixel(9, 7, image::Rgb([1, 2, 3]));
        img.save(src.join("bees/3.png")).unwrap();
        let b = pack(&src, None, &tmp.path().join("b.vkd")).unwrap();
        assert_ne!(a.source_hash, b.source_hash);
    }

    #[test]
    fn truncated_foreign_and_corrupt_files_are_one_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("bars");
        crate::data::synthetic::write_bars_idx(&src, 20, 10, 3).unwrap();
        let good = tmp.path().join("g.vkd");
        pack(&src, None, &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let check = |name: &str, content: &[u8], want: &str| {
            let p = tmp.path().join(name);
            std::fs::write(&p, content).unwrap();
            let msg = open_packed(&p).unwrap_err().to_string();
            assert!(msg.contains(name) && msg.contains(want), "{name}: {msg}");
        };
        check("short.vkd", &bytes[..bytes.len() - 1], "truncated");
        check("tiny.vkd", &bytes[..20], "truncated");
        check("long.vkd", &[&bytes[..], b"x"].concat(), "corrupt");
        check(
            "foreign.vkd",
            b"PK\x03\x04 a zip file, not ours",
            "not a vaekit packed dataset",
        );
        check("empty.vkd", b"", "not a vaekit packed dataset");
        let mut v2 = bytes.clone();
        v2[8] = 2;
        check("v2.vkd", &v2, "version 2");
        let mut json = bytes.clone();
        json[17] = b'!';
        check("json.vkd", &json, "corrupt packed header");
        // A label beyond the class names.
        let (header, labels_at, _, _) = read_header(&good).unwrap();
        let mut lab = bytes.clone();
        lab[labels_at as usize] = header.classes.len() as u8;
        check("label.vkd", &lab, "label 10");
    }

    #[test]
    fn packing_refuses_a_packed_file_and_an_existing_output_and_stops_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        folder(&src);
        let out = tmp.path().join("d.vkd");
        pack(&src, None, &out).unwrap();
        let msg = pack(&out, None, &tmp.path().join("e.vkd"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("d.vkd") && msg.contains("already a packed dataset"),
            "{msg}"
        );
        let msg = pack(&src, None, &out).unwrap_err().to_string();
        assert!(msg.contains("exists already"), "{msg}");
        // A stop request: an error naming the output, and nothing left behind.
        let (input, _) = pack_input(&src, None, None).unwrap();
        let stopped = tmp.path().join("stopped.vkd");
        let err = write_packed(
            &input,
            "src",
            &stopped,
            &AtomicBool::new(true),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(err, Error::Interrupted(_)), "{err}");
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("stopped")), "{names:?}");
        // A corrupt image names its file, and leaves no output.
        std::fs::write(src.join("ants/5.png"), b"not a png").unwrap();
        let msg = pack(&src, None, &tmp.path().join("x.vkd"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("5.png"), "{msg}");
        assert!(!tmp.path().join("x.vkd").exists());
    }

    #[test]
    fn a_stop_during_the_write_of_images_in_memory_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("bars");
        crate::data::synthetic::write_bars_idx(&src, 3000, 10, 1).unwrap();
        let (input, _) = pack_input(&src, None, None).unwrap();
        assert!(matches!(input, PackInput::Memory { .. }));
        let out = tmp.path().join("d.vkd");
        // Stopped after the first chunk has been written.
        let stop = AtomicBool::new(false);
        let mut calls = 0;
        let err = write_packed(&input, "bars", &out, &stop, &mut |_, _| {
            calls += 1;
            stop.store(true, Ordering::SeqCst);
        })
        .unwrap_err();
        assert!(matches!(err, Error::Interrupted(_)), "{err}");
        assert_eq!(calls, 1, "the write went on after the stop");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "a file was left"
        );
    }
}
