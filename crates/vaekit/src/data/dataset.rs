//! In-memory image datasets: 8-bit pixels, labels, and the train/test pair.

use rand::Rng;

use crate::config::ImageShape;
use crate::data::pixels::Pixels;
use crate::rng::stream_rng;

/// Images of one shape, stored as 8-bit intensities (pixels scale to [0, 1] when batched).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Shape of every image.
    pub shape: ImageShape,
    /// `len() * shape.numel()` bytes, image after image, channel-major (CHW) within each: in
    /// memory, or mapped from a packed file.
    pub pixels: Pixels,
    /// One class index per image.
    pub labels: Vec<u32>,
    /// Class names, indexed by label (digits for IDX data, folder names for image folders).
    pub classes: Vec<String>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.numel();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Says that no image's bytes are needed for now: a mapped dataset's pages then leave the
    /// resident set (see [`Pixels::release`]), those the kernel mapped around the pages read
    /// included (a page fault maps up to 16 cached neighbours, which random access would
    /// otherwise leave resident until the whole file is).
    pub fn release_all(&self) {
        self.pixels.release(0..self.pixels.len());
    }

    /// The labels of images `indices`.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<u32> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }

    /// Keeps only the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.pixels.truncate(n * self.shape.numel());
        }
    }

    /// Binarises every pixel once: 255 with probability pixel/255, else 0, from a generator
    /// seeded by `seed` (the same seed gives the same binary dataset).
    pub fn binarize_static(&mut self, seed: u64) {
        let mut rng = stream_rng(seed, crate::rng::Stream::StaticBinarize, 0);
        for p in self.pixels.make_mut() {
            let u: f32 = rng.random();
            *p = if u < *p as f32 / 255.0 { 255 } else { 0 };
        }
    }
}

/// The training and test sets of one source.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Training images.
    pub train: Dataset,
    /// Held-out images for evaluation and previews.
    pub test: Dataset,
    /// Where they came from, for messages and metadata.
    pub source: String,
    /// The packed file's SHA-256 of its source (see [`crate::data::packed`]), which names the
    /// images a run was trained on; `None` for data read from IDX files or folders.
    pub source_hash: Option<String>,
}

/// Which half of a dataset a command works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

impl Splits {
    /// The chosen half.
    pub fn get(&self, split: Split) -> &Dataset {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }
}
