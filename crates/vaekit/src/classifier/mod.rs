//! The evaluation classifier: trained once per dataset, then used to score generated images
//! (the Frechet distance of its features, "FID with a dataset-specific feature net") and to
//! check what reconstructions and class-conditional samples look like.
//!
//! ```text
//! CLASSIFIER_DIR/
//!   classifier.json      the ClassifierConfig (network, data, training settings)
//!   model.safetensors    the weights, written when training finishes
//!   metrics.jsonl        one JSON object per epoch: training loss, test accuracy
//! ```

pub mod model;
pub mod train;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::checkpoint::load_weights;
use crate::config::{DataConfig, ImageShape, OptimConfig};
use crate::error::{Error, Result};
use crate::fsutil::{read_json, write_json_atomic};
pub use model::Classifier;
pub use train::{ClassifierEpoch, accuracy, argmax_rows, features, predict, train_classifier};

/// File name of the classifier's config.
pub const CONFIG_FILE: &str = "classifier.json";
/// File name of its weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Everything that defines a classifier and how it was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Shape of the images. Default 1x28x28.
    pub image: ImageShape,
    /// Number of classes. Default 10.
    pub classes: usize,
    /// Channels of the stride-2 5x5 convolutions. Default [32, 64].
    pub channels: Vec<usize>,
    /// Width of the feature (penultimate) layer. Default 128.
    pub features: usize,
    /// The data it is trained on (gray values, never binarised). Default Fashion-MNIST.
    pub data: DataConfig,
    /// Adam settings. Default lr 1e-3, PyTorch's betas and epsilon.
    pub optim: OptimConfig,
    /// Passes over the training set. Default 3.
    pub epochs: usize,
    /// Images per step. Default 128.
    pub batch_size: usize,
    /// Seed of initialisation and shuffling. Default 0.
    pub seed: u64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            image: ImageShape::MNIST,
            classes: 10,
            channels: vec![32, 64],
            features: 128,
            data: DataConfig::default(),
            optim: OptimConfig::default(),
            epochs: 3,
            batch_size: 128,
            seed: 0,
        }
    }
}

impl ClassifierConfig {
    /// Checks the values that would otherwise fail deep inside training.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.into()));
        if self.classes < 2 {
            return bad("a classifier needs at least 2 classes");
        }
        if self.channels.is_empty() || self.channels.contains(&0) || self.features == 0 {
            return bad("classifier channels and features must be positive");
        }
        if self.epochs == 0 || self.batch_size == 0 || self.batch_size > crate::config::MAX_BATCH {
            return bad("classifier epochs must be at least 1 and batch_size 1 to 65536");
        }
        if self.channels.len() > crate::config::MAX_LAYERS
            || self.features > crate::config::MAX_WIDTH
            || self.channels.iter().any(|&c| c > crate::config::MAX_WIDTH)
        {
            return bad("classifier channels and features must be at most 65536, 16 layers");
        }
        if !(self.optim.lr > 0.0 && self.optim.lr <= f32::MAX as f64) {
            return bad("lr must be a positive number within f32's range");
        }
        Ok(())
    }
}

/// A classifier's folder on disk.
#[derive(Clone, Debug)]
pub struct ClassifierDir {
    root: PathBuf,
}

impl ClassifierDir {
    /// A new folder: refuses one that already holds a classifier or other files.
    pub fn create(root: &Path, cfg: &ClassifierConfig) -> Result<ClassifierDir> {
        crate::fsutil::check_new_dir(
            root,
            CONFIG_FILE,
            "already holds a classifier; choose another --out",
        )?;
        std::fs::create_dir_all(root).map_err(Error::io(root))?;
        write_json_atomic(&root.join(CONFIG_FILE), cfg)?;
        Ok(ClassifierDir {
            root: root.to_path_buf(),
        })
    }

    /// An existing, trained classifier.
    pub fn open(root: &Path) -> Result<ClassifierDir> {
        let reason = if !root.is_dir() {
            Some("no such folder")
        } else if !root.join(CONFIG_FILE).is_file() {
            Some("no classifier.json; train one with `vaekit classifier train`")
        } else if !root.join(WEIGHTS_FILE).is_file() {
            Some("no model.safetensors; its training did not finish")
        } else {
            None
        };
        match reason {
            Some(r) => Err(Error::NotAClassifier {
                path: root.to_path_buf(),
                reason: r.into(),
            }),
            None => Ok(ClassifierDir {
                root: root.to_path_buf(),
            }),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its config.
    pub fn config(&self) -> Result<ClassifierConfig> {
        read_json(&self.root.join(CONFIG_FILE))
    }

    /// The trained network and its config.
    pub fn load(&self, device: &Device) -> Result<(Classifier, ClassifierConfig)> {
        let cfg = self.config()?;
        cfg.validate()?;
        let model = load_weights(Classifier::new(&cfg, device), &self.root.join(WEIGHTS_FILE))?;
        Ok((model, cfg))
    }
}
