//! Training methods. A method owns its networks, their optimisers and its step, and reports
//! what a step measured as named [`Metrics`]; the loop in [`crate::train`] knows none of them
//! (burn's `examples/wgan` keeps a generator and a discriminator with an optimiser each the
//! same way).
//!
//! - [`VaeMethod`]: one VAE and one Adam, on the negative ELBO (beta, warm-up, free bits) or the
//!   IWAE bound.
//! - [`VaeGanMethod`]: VAE-GAN, the encoder, decoder and a discriminator with an Adam each.

pub mod parallel;
pub mod vae;
pub mod vaegan;

use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};

use crate::checkpoint::Parts;
use crate::collective::Collective;
use crate::config::{Binarize, MethodConfig, OptimConfig, TrainConfig};
use crate::data::{Dataset, HostBatch, host_batch};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::Vae;
use crate::ops::FusedAdam;
use crate::rng::{Stream, stream_rng};

pub use parallel::Portion;
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
    /// Which rows of the step's whole batch these are (all of it in a one-process job; this
    /// rank's part under MPI).
    pub portion: Portion,
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
        let all = Portion::all(idx.len());
        let host = Batch::host(cfg, train, idx, step, &all);
        Batch::from_host(host, step, steps_per_epoch, all, device)
    }

    /// The host half of [`Batch::new`], which the loader threads run: rows `portion.rows` of
    /// the whole batch `whole` (images of `train`) for global step `step`, binarised as `cfg`
    /// says with the draws those rows get when the whole batch is drawn in one process.
    pub fn host(
        cfg: &TrainConfig,
        train: &Dataset,
        whole: &[usize],
        step: usize,
        portion: &Portion,
    ) -> HostBatch {
        let mut bin_rng = stream_rng(cfg.seed, Stream::TrainBinarize, step as u64);
        // One 32-bit word per pixel (an f32 draw): skip the rows before this part.
        let skip = (portion.rows.start * train.shape.numel()) as u128;
        bin_rng.set_word_pos(bin_rng.get_word_pos() + skip);
        let dynamic = cfg.data.binarize == Binarize::Dynamic;
        host_batch(
            train,
            &whole[portion.rows.clone()],
            dynamic.then_some(&mut bin_rng),
        )
    }

    /// A host batch of global step `step` as a batch on `device`.
    pub fn from_host(
        host: HostBatch,
        step: usize,
        steps_per_epoch: usize,
        portion: Portion,
        device: &Device,
    ) -> Batch {
        let HostBatch {
            values,
            dims,
            labels,
        } = host;
        Batch {
            x: Tensor::from_data(TensorData::new(values, dims), device),
            labels,
            step,
            steps_per_epoch,
            portion,
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

/// [`build`] over several autodiff devices and processes: the networks live on the first
/// device, each step's batch is split across the devices ([`parallel`]) and its gradients are
/// summed over the processes of `ranks` ([`crate::collective`]). A VAE-GAN trains on one
/// device in one process.
pub fn build_on(
    cfg: &TrainConfig,
    devices: &[Device],
    ranks: std::rc::Rc<dyn Collective>,
) -> Result<Box<dyn Method>> {
    let solo = ranks.size() <= 1;
    match (devices, &cfg.method) {
        ([], _) => Err(crate::error::Error::InvalidConfig(
            "no device to train on".into(),
        )),
        ([one], _) if solo => Ok(build(cfg, one)),
        (_, MethodConfig::Vae) => Ok(Box::new(VaeMethod::distributed(cfg, devices, ranks))),
        (_, MethodConfig::Vaegan(_)) => Err(crate::error::Error::InvalidConfig(
            "a VAE-GAN trains on one device in one process (its three networks step in turn)"
                .into(),
        )),
    }
}
