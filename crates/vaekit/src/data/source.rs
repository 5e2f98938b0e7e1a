//! Finding and loading datasets: named IDX datasets and image folders.
//!
//! A named dataset (`fashion-mnist`, `mnist`) is looked for, in order, in the folder given by
//! `--data-dir`, `$VAEKIT_DATA/NAME`, the user's cache folder (`~/.cache/vaekit/NAME` on Linux,
//! where `vaekit data download` puts it) and `/usr/share/datasets/NAME` (where Debian's
//! `dataset-fashion-mnist` package installs Fashion-MNIST).

use std::path::{Path, PathBuf};

use crate::config::{DataConfig, ImageShape};
use crate::data::dataset::{Dataset, Splits};
use crate::data::idx::read_idx_pair;
use crate::data::image_folder::load_image_folder;
use crate::data::packed::{is_packed, open_packed};
use crate::error::{Error, Result};

/// The IDX file stems of an MNIST-style dataset (each may end in `.gz`).
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Datasets vaekit knows by name.
pub const KNOWN_DATASETS: [&str; 2] = ["fashion-mnist", "mnist"];

/// Finds `stem` or `stem.gz` in `dir`: a regular file first, else any entry of that name (a
/// dangling link, a pipe, a folder), which the IDX reader then refuses naming it.
fn find_idx(dir: &Path, stem: &str) -> Option<PathBuf> {
    let names = [dir.join(format!("{stem}.gz")), dir.join(stem)];
    names
        .iter()
        .find(|p| p.is_file())
        .or_else(|| names.iter().find(|p| p.symlink_metadata().is_ok()))
        .cloned()
}

/// Whether `dir` holds an MNIST-style set of IDX files.
pub fn is_idx_dir(dir: &Path) -> bool {
    find_idx(dir, IDX_FILES[0]).is_some()
}

/// The folders searched for a named dataset, in order.
pub fn search_path(name: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(root) = std::env::var_os("VAEKIT_DATA") {
        v.push(PathBuf::from(root).join(name));
    }
    v.push(default_download_dir(name));
    v.push(PathBuf::from("/usr/share/datasets").join(name));
    v
}

/// Where `vaekit data download NAME` stores a dataset unless told otherwise.
pub fn default_download_dir(name: &str) -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("vaekit")
        .join(name)
}

/// Finds the folder of a named dataset.
pub fn locate(name: &str) -> Result<PathBuf> {
    let candidates = search_path(name);
    if let Some(found) = candidates.iter().find(|d| is_idx_dir(d)) {
        return Ok(found.clone());
    }
    let searched = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let hint = match name {
        "fashion-mnist" => "install it with `apt-get install dataset-fashion-mnist` or run `vaekit data download fashion-mnist`".to_string(),
        "mnist" => "run `vaekit data download mnist`, or pass --data-dir with the four IDX files".to_string(),
        _ => format!(
            "known names are {}; for other data pass --data-dir with IDX files or an image folder",
            KNOWN_DATASETS.join(", ")
        ),
    };
    Err(Error::DatasetNotFound {
        name: name.to_string(),
        searched,
        hint,
    })
}

/// Fashion-MNIST's class names, by label (Xiao et al. 2017). IDX files carry only numbers.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Gives IDX data of ten classes Fashion-MNIST's class names.
fn set_fashion_names(splits: &mut Splits) {
    for ds in [&mut splits.train, &mut splits.test] {
        if ds.classes.len() == FASHION_MNIST_CLASSES.len() {
            ds.classes = FASHION_MNIST_CLASSES
                .iter()
                .map(|c| c.to_string())
                .collect();
        }
    }
}

/// Loads the four IDX files in `dir`.
pub fn load_idx_dir(dir: &Path) -> Result<Splits> {
    let need = |stem: &str| {
        find_idx(dir, stem).ok_or_else(|| Error::BadDataset {
            path: dir.to_path_buf(),
            reason: format!(
                "missing {stem}(.gz); an IDX dataset folder needs {}",
                IDX_FILES.join(", ")
            ),
        })
    };
    let load = |img: &str, lab: &str| -> Result<Dataset> {
        let pair = read_idx_pair(&need(img)?, &need(lab)?)?;
        let n_classes = pair
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        Ok(Dataset {
            shape: ImageShape {
                channels: 1,
                height: pair.rows,
                width: pair.cols,
            },
            pixels: pair.pixels.into(),
            labels: pair.labels.into_iter().map(u32::from).collect(),
            classes: (0..n_classes.max(10)).map(|c| c.to_string()).collect(),
        })
    };
    let train = load(IDX_FILES[0], IDX_FILES[1])?;
    let test = load(IDX_FILES[2], IDX_FILES[3])?;
    if train.shape != test.shape {
        return Err(Error::BadDataset {
            path: dir.to_path_buf(),
            reason: format!(
                "train images are {} but test images are {}",
                train.shape, test.shape
            ),
        });
    }
    Ok(Splits {
        train,
        test,
        source: dir.display().to_string(),
        source_hash: None,
    })
}

/// Loads the data a [`DataConfig`] describes, without limit or binarisation.
///
/// `shape` is the model's input shape where one is fixed already (image folders are resized to
/// it); IDX data must already have it. With `shape = None`, IDX data keeps its own shape and
/// image folders become 28x28 with the first image's channel count.
pub fn load_source(cfg: &DataConfig, shape: Option<ImageShape>) -> Result<Splits> {
    let dir = match &cfg.dir {
        Some(d) => {
            if let Ok(m) = std::fs::metadata(d)
                && !m.is_file()
                && !m.is_dir()
            {
                return Err(Error::BadDataset {
                    path: d.clone(),
                    reason: "is a pipe, a socket or a device: give a folder (IDX files or an image folder) or a packed .vkd file".into(),
                });
            }
            if d.is_file() && !is_packed(d) {
                return Err(Error::BadDataset {
                    path: d.clone(),
                    reason:
                        "neither a folder nor a packed dataset (make one with `vaekit data pack`)"
                            .into(),
                });
            }
            if !d.exists() {
                return Err(Error::BadDataset {
                    path: d.clone(),
                    reason: "no such folder or packed file".into(),
                });
            }
            d.clone()
        }
        None => locate(&cfg.dataset)?,
    };
    let packed = dir.is_file();
    let mut splits = if packed {
        open_packed(&dir)?
    } else if is_idx_dir(&dir) {
        load_idx_dir(&dir)?
    } else {
        load_image_folder(&dir, shape)?
    };
    if cfg.dir.is_none() && cfg.dataset == "fashion-mnist" {
        set_fashion_names(&mut splits);
    }
    if let Some(want) = shape
        && splits.train.shape != want
    {
        return Err(Error::BadDataset {
            path: dir,
            reason: format!(
                "images are {}x{}x{} but the model takes {}x{}x{}{}",
                splits.train.shape.channels,
                splits.train.shape.height,
                splits.train.shape.width,
                want.channels,
                want.height,
                want.width,
                if packed {
                    format!(
                        " (pack the source again with --size {}x{} --channels {})",
                        want.height, want.width, want.channels
                    )
                } else {
                    String::new()
                }
            ),
        });
    }
    Ok(splits)
}

/// What `vaekit data pack SRC` reads: an IDX folder or an image folder (listed now, decoded
/// while packing), its images made `size` ([height, width]) with `channels` where given (by
/// default an IDX folder keeps its shape, an image folder becomes 28x28 with its first image's
/// channels). A packed file is refused.
/// A known dataset name that is not a path (`fashion-mnist`) is looked up as training does.
/// Returns the input and the folder it reads.
pub fn pack_input(
    src: &Path,
    size: Option<[usize; 2]>,
    channels: Option<usize>,
) -> Result<(crate::data::packed::PackInput, PathBuf)> {
    use crate::data::packed::{PackInput, hash_files};
    let name = src
        .to_str()
        .filter(|n| !src.exists() && KNOWN_DATASETS.contains(n));
    let located;
    let src = match name {
        Some(n) => {
            located = locate(n)?;
            located.as_path()
        }
        None => src,
    };
    if src.is_file() {
        return Err(Error::BadDataset {
            path: src.to_path_buf(),
            reason: if is_packed(src) {
                "is already a packed dataset; give `data pack` the image folder or IDX folder it came from".into()
            } else {
                "not a folder: give `data pack` an image folder or a folder of IDX files".into()
            },
        });
    }
    if !src.is_dir() {
        return Err(Error::BadDataset {
            path: src.to_path_buf(),
            reason: "no such folder".into(),
        });
    }
    if is_idx_dir(src) {
        let mut splits = load_idx_dir(src)?;
        let own = splits.train.shape;
        let [height, width] = size.unwrap_or([own.height, own.width]);
        let s = ImageShape {
            channels: channels.unwrap_or(own.channels),
            height,
            width,
        };
        splits.train = crate::data::image_folder::resize_dataset(&splits.train, s);
        splits.test = crate::data::image_folder::resize_dataset(&splits.test, s);
        if name == Some("fashion-mnist") {
            set_fashion_names(&mut splits);
        }
        let files: Vec<PathBuf> = IDX_FILES
            .iter()
            .filter_map(|stem| find_idx(src, stem))
            .collect();
        let input = PackInput::Memory {
            splits,
            source_hash: hash_files(&files)?,
        };
        return Ok((input, src.to_path_buf()));
    }
    let listing = crate::data::image_folder::list_image_folder(src)?;
    let mut shape = match channels {
        Some(c) => ImageShape {
            channels: c,
            ..ImageShape::MNIST
        },
        None => listing.default_shape()?,
    };
    if let Some([h, w]) = size {
        (shape.height, shape.width) = (h, w);
    }
    let input = PackInput::Folder {
        dir: src.to_path_buf(),
        listing,
        shape,
    };
    Ok((input, src.to_path_buf()))
}

/// Loads the data for training or evaluation: the source, then `limit` (training images only)
/// and static binarisation with `seed`.
pub fn load_data(cfg: &DataConfig, shape: Option<ImageShape>, seed: u64) -> Result<Splits> {
    let mut splits = load_source(cfg, shape)?;
    if let Some(n) = cfg.limit {
        splits.train.truncate(n);
    }
    if cfg.binarize == crate::config::Binarize::Static {
        splits.train.binarize_static(seed);
        splits.test.binarize_static(seed.wrapping_add(1));
    }
    Ok(splits)
}
