//! The VAE's training method: one network (encoder, decoder, prior, likelihood), one Adam, and
//! the objective of the config (the negative ELBO with beta, KL warm-up and free bits, or the
//! IWAE bound).

use std::path::Path;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Batch, Method, StepOutcome, adam};
use crate::checkpoint::{MODEL, Parts, load_optimizer, load_weights, network_file, optimizer_file};
use crate::config::TrainConfig;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::Vae;
use crate::objective::training_terms;
use crate::rng::{Stream, normals, stream_rng};

/// Name of the VAE's one optimiser in a checkpoint (`optimizer.bpk`).
pub const OPTIMIZER: &str = "optimizer";

/// A VAE trained on its config's objective with Adam.
pub struct VaeMethod {
    /// Always `Some` between steps; taken while `optim.step` consumes and returns it.
    model: Option<Vae>,
    optim: ModuleOptimizer,
    cfg: TrainConfig,
    device: Device,
}

impl VaeMethod {
    /// The model of `cfg`, initialised from its seed, on the autodiff device `device`.
    pub fn new(cfg: &TrainConfig, device: &Device) -> VaeMethod {
        VaeMethod {
            model: Some(Vae::init(&cfg.model, cfg.seed, device)),
            optim: adam(&cfg.optim),
            cfg: cfg.clone(),
            device: device.clone(),
        }
    }

    fn vae(&self) -> &Vae {
        self.model
            .as_ref()
            .expect("the model is put back after every step")
    }
}

impl Method for VaeMethod {
    /// Draws `k * b` noise rows from (seed, step), computes the objective and, if it is finite,
    /// takes one Adam step; step values `loss` (the objective), `recon` and `kl`.
    fn step(&mut self, batch: &Batch) -> StepOutcome {
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let cfg = &self.cfg;
        let (b, k, noise) = (batch.len(), cfg.objective.samples(), model.noise_dim());
        let eps = normals(
            &mut stream_rng(cfg.seed, Stream::TrainNoise, batch.step as u64),
            k * b * noise,
        );
        let eps = Tensor::from_data(TensorData::new(eps, [k * b, noise]), &self.device);
        let y = model.condition(&batch.labels, &self.device);
        let beta = cfg.beta_at(batch.step + 1, batch.steps_per_epoch);
        let terms = training_terms(
            &model,
            batch.x.clone(),
            y,
            eps,
            cfg.objective,
            cfg.model.likelihood,
            beta,
            cfg.free_bits,
        );
        let scalar = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let loss = scalar(terms.loss.clone());
        let metrics = Metrics::new()
            .with("loss", loss)
            .with("recon", scalar(terms.recon))
            .with("kl", scalar(terms.kl));
        if !loss.is_finite() {
            self.model = Some(model);
            return StepOutcome {
                metrics,
                skipped: true,
            };
        }
        let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
        self.model = Some(self.optim.step(cfg.optim.lr, model, grads));
        StepOutcome {
            metrics,
            skipped: false,
        }
    }

    fn model(&self) -> Vae {
        self.vae().valid()
    }

    /// `beta`: the KL weight at the epoch's last step (below the config's during a warm-up).
    fn epoch_values(&self, step: usize, steps_per_epoch: usize) -> Metrics {
        Metrics::new().with("beta", self.cfg.beta_at(step, steps_per_epoch))
    }

    /// `objective`: "elbo" or "iwae-K", what `train_loss` is.
    fn labels(&self) -> Vec<(String, String)> {
        vec![("objective".into(), self.cfg.objective.label())]
    }

    fn parts(&self) -> Result<Parts> {
        Parts::default()
            .network(MODEL, &self.model())
            .optimizer(OPTIMIZER, &self.optim)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let model = load_weights(self.vae().clone(), &dir.join(network_file(MODEL)))?;
        let optim = load_optimizer(
            adam(&self.cfg.optim),
            &dir.join(optimizer_file(OPTIMIZER)),
            &model,
        )?;
        self.model = Some(model);
        self.optim = optim;
        Ok(())
    }
}
