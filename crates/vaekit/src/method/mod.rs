//! Training methods. A method owns its networks, their optimisers and its step, and reports
//! what a step measured as named [`Metrics`]; the loop in [`crate::train`] knows none of them
//! (burn's `examples/wgan` keeps a generator and a discriminator with an optimiser each the
//! same way).
//!
//! - [`VaeMethod`]: one VAE and one Adam, on the negative ELBO (beta, warm-up, free bits) or the
//!   IWAE bound.
//! - [`VaeGanMethod`]: VAE-GAN, the encoder, decoder and a discriminator with an Adam each.

pub mod vae;
pub mod vaegan;

use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};

use crate::checkpoint::Parts;
use crate::config::{Binarize, MethodConfig, OptimConfig, TrainConfig};
use crate::data::{Dataset, batch_tensor};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::Vae;
use crate::ops::FusedAdam;
use crate::rng::{Stream, stream_rng};

pub use vae::VaeMethod;
pub use vaegan::VaeGanMethod;

/// The Adam optimiser `cfg` describes.
pub fn adam(cfg: &OptimConfig) -> ModuleOptimizer {
    ModuleOptimizer::from(FusedAdam::new(cfg.beta1, cfg.beta2, cfg.epsilon))
}

/// One training batch, as every method sees it.
///
/// # Shapes
/// `x`: `[b, channels, height, width]`
#[derive(Clone, Debug)]
pub struct Batch {
    /// The images, binarised where the run trains on binary images.
    pub x: Tensor<4>,
    /// Their labels.
    pub labels: Vec<u32>,
    /// The global step (0-based): it seeds the step's noise.
    pub step: usize,
    /// Steps in a full epoch (for schedules such as the KL warm-up).
    pub steps_per_epoch: usize,
}

impl Batch {
    /// Images `idx` of `train` for global step `step`, drawn as `cfg` says (a new binary draw
    /// per step under `--binarize dynamic`), on `device`.
    pub fn new(
        cfg: &TrainConfig,
        train: &Dataset,
        idx: &[usize],
        step: usize,
        steps_per_epoch: usize,
        device: &Device,
    ) -> Batch {
        let mut bin_rng = stream_rng(cfg.seed, Stream::TrainBinarize, step as u64);
        let dynamic = cfg.data.binarize == Binarize::Dynamic;
        Batch {
            x: batch_tensor(train, idx, dynamic.then_some(&mut bin_rng), device),
            labels: train.labels_of(idx),
            step,
            steps_per_epoch,
        }
    }

    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// What one step did.
#[derive(Clone, Debug)]
pub struct StepOutcome {
    /// The step's named values (losses in nats per image).
    pub metrics: Metrics,
    /// True when a loss or a gradient was not finite and no network was updated.
    pub skipped: bool,
}

/// A way of training a VAE's networks.
pub trait Method {
    /// One optimisation step on `batch` (on the autodiff device the method was built on).
    fn step(&mut self, batch: &Batch) -> StepOutcome;

    /// The VAE the inference commands use, without autodiff: for evaluation and pictures.
    fn model(&self) -> Vae;

    /// Values reported once per epoch beside the step means (such as the KL weight), at
    /// global step `step` (1-based count of steps taken).
    fn epoch_values(&self, _step: usize, _steps_per_epoch: usize) -> Metrics {
        Metrics::new()
    }

    /// Text values for `metrics.jsonl` (such as the objective that says what `train_loss` is).
    fn labels(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Steps in a row that may be skipped (non-finite) before the run stops; 0 stops at the
    /// first.
    fn max_skipped_steps(&self) -> usize {
        0
    }

    /// Every network and optimiser state, by name, for a checkpoint.
    fn parts(&self) -> Result<Parts>;

    /// Restores every part from a checkpoint folder written from [`Method::parts`].
    fn load(&mut self, dir: &std::path::Path) -> Result<()>;
}

/// The method `cfg` describes, its networks initialised from `cfg.seed` on the autodiff device
/// `device`.
pub fn build(cfg: &TrainConfig, device: &Device) -> Box<dyn Method> {
    match cfg.method {
        MethodConfig::Vae => Box::new(VaeMethod::new(cfg, device)),
        MethodConfig::Vaegan(_) => Box::new(VaeGanMethod::new(cfg, device)),
    }
}
