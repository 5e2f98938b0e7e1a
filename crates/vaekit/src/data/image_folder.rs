//! Image folders: one subfolder per class holding PNG or JPEG files of any size, gray or RGB.
//!
//! If the folder has `train/` and `test/` subfolders, each is read as a class-per-subfolder
//! tree. Otherwise every tenth image (in sorted order within each class) is held out as the
//! test set. Images are resized to the model's input size and converted to its channel count.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::config::ImageShape;
use crate::data::dataset::{Dataset, Splits};
use crate::error::{Error, Result};

/// Image extensions read (case-insensitive).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Side length used when no model shape is given.
const DEFAULT_SIDE: usize = 28;

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .map(|e| e.map(|e| e.path()).map_err(Error::io(dir)))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

/// Whether `p` is an image file to read: an image extension and a file (a link followed). An
/// image name that cannot be looked at (a dangling link, no permission) is an error naming
/// it, not a silent skip.
fn is_image(p: &Path) -> Result<bool> {
    let named = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    if !named {
        return Ok(false);
    }
    match std::fs::metadata(p) {
        Ok(m) => Ok(m.is_file()),
        Err(e) => Err(Error::io(p)(e)),
    }
}

/// (class name, image files) for each class subfolder of `dir`.
fn list_classes(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut classes = Vec::new();
    for sub in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let mut files = Vec::new();
        for p in sorted_entries(&sub)? {
            if is_image(&p)? {
                files.push(p);
            }
        }
        if !files.is_empty() {
            let name = sub
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            classes.push((name, files));
        }
    }
    if classes.is_empty() {
        return Err(Error::BadDataset {
            path: dir.to_path_buf(),
            reason: "neither IDX files nor class subfolders with PNG/JPEG images".into(),
        });
    }
    Ok(classes)
}

/// Decodes one file into `shape`, appending CHW bytes to `out`.
fn read_image(path: &Path, shape: ImageShape, out: &mut Vec<u8>) -> Result<()> {
    let img = image::open(path).map_err(|e| Error::BadImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    to_shape(img, shape, out);
    Ok(())
}

/// Resizes `img` to `shape` (triangle filter) and converts it to its channels, appending CHW
/// bytes to `out`: the preprocessing of every image a folder's dataset holds.
fn to_shape(img: image::DynamicImage, shape: ImageShape, out: &mut Vec<u8>) {
    let (w, h) = (shape.width as u32, shape.height as u32);
    let img = if img.width() == w && img.height() == h {
        img
    } else {
        img.resize_exact(w, h, FilterType::Triangle)
    };
    match shape.channels {
        1 => out.extend_from_slice(img.to_luma8().as_raw()),
        _ => {
            let rgb = img.to_rgb8();
            let raw = rgb.as_raw();
            for c in 0..3 {
                out.extend(raw.iter().skip(c).step_by(3));
            }
        }
    }
}

/// Largest side of an image decoded from bytes by [`image_from_bytes`].
pub const MAX_DECODED_SIDE: u32 = 4096;

/// Decodes an encoded image (PNG, JPEG or GIF) from memory and preprocesses it exactly as an
/// image folder's files are (resized to `shape`, converted to its channels): CHW bytes.
/// `name` names the source in errors. The header is checked before any pixel is decoded: an
/// image wider or taller than [`MAX_DECODED_SIDE`], or one whose decoder would allocate more
/// than 256 MiB (a decompression bomb), is refused.
pub fn image_from_bytes(bytes: &[u8], shape: ImageShape, name: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BadImage {
        path: PathBuf::from(name),
        reason,
    };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    if reader.format().is_none() {
        return Err(bad("not a PNG, JPEG or GIF image".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODED_SIDE);
    limits.max_image_height = Some(MAX_DECODED_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(shape.numel());
    to_shape(img, shape, &mut out);
    Ok(out)
}

/// An image folder's files, listed but not decoded: what [`load_image_folder`] reads and
/// `vaekit data pack` writes.
#[derive(Clone, Debug)]
pub struct FolderListing {
    /// Class names (subfolder names, sorted), indexed by label.
    pub classes: Vec<String>,
    /// (label, file) of every training image, class by class, sorted within each class.
    pub train: Vec<(u32, PathBuf)>,
    /// (label, file) of every test image.
    pub test: Vec<(u32, PathBuf)>,
}

impl FolderListing {
    /// The shape images become when no model fixes one: 28x28, gray or RGB as the first
    /// training image is.
    pub fn default_shape(&self) -> Result<ImageShape> {
        let first = &self
            .train
            .first()
            .or(self.test.first())
            .expect("listings are not empty")
            .1;
        let img = image::open(first).map_err(|e| Error::BadImage {
            path: first.clone(),
            reason: e.to_string(),
        })?;
        Ok(ImageShape {
            channels: if img.color().has_color() { 3 } else { 1 },
            height: DEFAULT_SIDE,
            width: DEFAULT_SIDE,
        })
    }
}

/// Lists an image folder's classes and its train and test files (see the module docs).
pub fn list_image_folder(dir: &Path) -> Result<FolderListing> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    let presplit = train_dir.is_dir() && test_dir.is_dir();
    let train_classes = list_classes(if presplit { &train_dir } else { dir })?;
    let names: Vec<String> = train_classes.iter().map(|(n, _)| n.clone()).collect();
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (label, (_, files)) in train_classes.into_iter().enumerate() {
        for (i, f) in files.into_iter().enumerate() {
            if !presplit && i % 10 == 9 {
                test.push((label as u32, f));
            } else {
                train.push((label as u32, f));
            }
        }
    }
    if presplit {
        for (name, files) in list_classes(&test_dir)? {
            let Some(label) = names.iter().position(|n| *n == name) else {
                return Err(Error::BadDataset {
                    path: test_dir.join(name),
                    reason: "test class has no training folder of the same name".into(),
                });
            };
            test.extend(files.into_iter().map(|f| (label as u32, f)));
        }
    }
    if test.is_empty() {
        return Err(Error::BadDataset {
            path: dir.to_path_buf(),
            reason: "too few images to hold out a test set (need at least 10 in one class, or train/ and test/)".into(),
        });
    }
    Ok(FolderListing {
        classes: names,
        train,
        test,
    })
}

/// Decodes `files` into `out` (`files.len() * shape.numel()` bytes, CHW per image), on all
/// threads; the first file that fails is the error.
pub fn decode_files(files: &[(u32, PathBuf)], shape: ImageShape, out: &mut [u8]) -> Result<()> {
    use rayon::prelude::*;
    out.par_chunks_mut(shape.numel())
        .zip(files.par_iter())
        .try_for_each(|(dst, (_, path))| {
            let mut v = Vec::with_capacity(shape.numel());
            read_image(path, shape, &mut v)?;
            dst.copy_from_slice(&v);
            Ok(())
        })
}

/// Decodes encoded image bytes (the file `path` holds) into `shape`: CHW bytes. Unlike
/// [`image_from_bytes`] there is no side limit: these are the user's own files.
pub fn decode_file_bytes(bytes: &[u8], shape: ImageShape, path: &Path) -> Result<Vec<u8>> {
    let img = image::load_from_memory(bytes).map_err(|e| Error::BadImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(shape.numel());
    to_shape(img, shape, &mut out);
    Ok(out)
}

/// `ds` with every image resized and converted to `shape` as an image folder's files are (a
/// copy; `ds` itself is returned unchanged when it has the shape already).
pub fn resize_dataset(ds: &Dataset, shape: ImageShape) -> Dataset {
    use rayon::prelude::*;
    if ds.shape == shape {
        return ds.clone();
    }
    let from = ds.shape;
    let (w, h) = (from.width as u32, from.height as u32);
    let mut pixels = vec![0u8; ds.len() * shape.numel()];
    pixels
        .par_chunks_mut(shape.numel())
        .enumerate()
        .for_each(|(i, dst)| {
            let src = ds.image(i);
            let img = if from.channels == 1 {
                image::DynamicImage::ImageLuma8(
                    image::GrayImage::from_raw(w, h, src.to_vec()).expect("sizes agree"),
                )
            } else {
                let plane = from.height * from.width;
                let hwc: Vec<u8> = (0..plane)
                    .flat_map(|p| (0..3).map(move |c| src[c * plane + p]))
                    .collect();
                image::DynamicImage::ImageRgb8(
                    image::RgbImage::from_raw(w, h, hwc).expect("sizes agree"),
                )
            };
            let mut v = Vec::with_capacity(shape.numel());
            to_shape(img, shape, &mut v);
            dst.copy_from_slice(&v);
        });
    Dataset {
        shape,
        pixels: pixels.into(),
        labels: ds.labels.clone(),
        classes: ds.classes.clone(),
    }
}

fn to_dataset(items: &[(u32, PathBuf)], classes: &[String], shape: ImageShape) -> Result<Dataset> {
    let mut pixels = vec![0u8; items.len() * shape.numel()];
    decode_files(items, shape, &mut pixels)?;
    Ok(Dataset {
        shape,
        pixels: pixels.into(),
        labels: items.iter().map(|(l, _)| *l).collect(),
        classes: classes.to_vec(),
    })
}

/// Loads an image folder as train and test sets of shape `shape` (see the module docs),
/// decoding on all threads.
pub fn load_image_folder(dir: &Path, shape: Option<ImageShape>) -> Result<Splits> {
    let listing = list_image_folder(dir)?;
    let shape = match shape {
        Some(s) => s,
        None => listing.default_shape()?,
    };
    Ok(Splits {
        train: to_dataset(&listing.train, &listing.classes, shape)?,
        test: to_dataset(&listing.test, &listing.classes, shape)?,
        source: dir.display().to_string(),
        source_hash: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, img: image::DynamicImage) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_image_name_that_cannot_be_read_is_an_error_naming_it_not_a_skip() {
        // Issue 14, item 7: a dangling link used to be skipped without a word.
        let dir = tempfile::tempdir().unwrap();
        for i in 0..10 {
            save(
                &dir.path().join(format!("cats/{i}.png")),
                image::DynamicImage::ImageLuma8(image::GrayImage::new(4, 4)),
            );
        }
        std::os::unix::fs::symlink(
            dir.path().join("gone.png"),
            dir.path().join("cats/link.png"),
        )
        .unwrap();
        let msg = load_image_folder(dir.path(), None).unwrap_err().to_string();
        assert!(msg.contains("link.png"), "{msg}");
        // A link to a real image is read like the image.
        std::fs::remove_file(dir.path().join("cats/link.png")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("cats/0.png"),
            dir.path().join("cats/link.png"),
        )
        .unwrap();
        let s = load_image_folder(dir.path(), None).unwrap();
        assert_eq!(s.train.len() + s.test.len(), 11);
    }

    #[test]
    fn loads_classes_resizes_and_holds_out_every_tenth() {
        let dir = tempfile::tempdir().unwrap();
        for (c, value) in [("cats", 40u8), ("dogs", 200u8)] {
            for i in 0..10 {
                // 40x30 RGB images of one gray value: resizing keeps the value.
                let img = image::RgbImage::from_pixel(40, 30, image::Rgb([value, value, value]));
                save(
                    &dir.path().join(c).join(format!("{i:02}.png")),
                    image::DynamicImage::ImageRgb8(img),
                );
            }
        }
        let shape = ImageShape {
            channels: 1,
            height: 8,
            width: 8,
        };
        let s = load_image_folder(dir.path(), Some(shape)).unwrap();
        assert_eq!(s.train.classes, vec!["cats", "dogs"]);
        assert_eq!((s.train.len(), s.test.len()), (18, 2));
        assert_eq!(s.test.labels, vec![0, 1]);
        assert!(s.train.image(0).iter().all(|&p| p == 40));
        assert!(s.test.image(1).iter().all(|&p| p == 200));
        // Without a shape: 28x28, colour kept.
        let s = load_image_folder(dir.path(), None).unwrap();
        assert_eq!(
            s.train.shape,
            ImageShape {
                channels: 3,
                height: 28,
                width: 28
            }
        );
    }

    #[test]
    fn rgb_is_stored_channel_major() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..10 {
            let img = image::RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]));
            save(
                &dir.path().join("a").join(format!("{i}.png")),
                image::DynamicImage::ImageRgb8(img),
            );
        }
        let s = load_image_folder(
            dir.path(),
            Some(ImageShape {
                channels: 3,
                height: 4,
                width: 4,
            }),
        )
        .unwrap();
        let im = s.train.image(0);
        assert!(
            im[..16].iter().all(|&p| p == 10)
                && im[16..32].iter().all(|&p| p == 20)
                && im[32..].iter().all(|&p| p == 30)
        );
    }

    #[test]
    fn corrupt_image_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..9 {
            save(
                &dir.path().join(format!("a/{i}.png")),
                image::DynamicImage::ImageLuma8(image::GrayImage::new(4, 4)),
            );
        }
        std::fs::write(dir.path().join("a").join("broken.png"), b"not a png").unwrap();
        let msg = load_image_folder(dir.path(), None).unwrap_err().to_string();
        assert!(msg.contains("broken.png"), "{msg}");
    }
    #[test]
    fn bytes_decode_as_a_folder_file_does_and_bombs_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shape = ImageShape {
            channels: 1,
            height: 8,
            width: 8,
        };
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(20, 12, |x, y| {
            image::Rgb([(x * 12) as u8, (y * 20) as u8, 7])
        }));
        let path = dir.path().join("a.png");
        save(&path, img);
        let mut from_file = Vec::new();
        read_image(&path, shape, &mut from_file).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            image_from_bytes(&bytes, shape, "upload").unwrap(),
            from_file
        );
        let err = image_from_bytes(b"not an image at all", shape, "upload").unwrap_err();
        assert!(err.to_string().contains("upload"), "{err}");
        // A valid 20,000 x 20,000 gray PNG of zeros (400 MB of pixels in a few hundred KB):
        // refused from its header, before decoding.
        let png = crate::data::synthetic::zero_png(20_000);
        assert!(png.len() < 2 << 20, "{}", png.len());
        let err = image_from_bytes(&png, shape, "bomb.png")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bomb.png") && err.contains("limit"), "{err}");
    }
}
