//! The VAE's training method: one network (encoder, decoder, prior, likelihood), one Adam, and
//! the objective of the config (the negative ELBO with beta, KL warm-up and free bits, or the
//! IWAE bound).

use std::path::Path;

use burn::module::Module;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;

use super::parallel::{StepGradients, step_gradients, sum_over_ranks};
use super::{Batch, Method, StepOutcome, adam};
use crate::checkpoint::{MODEL, Parts, load_optimizer, load_weights, network_file, optimizer_file};
use crate::collective::{Collective, Solo};
use crate::config::TrainConfig;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::Vae;
use crate::rng::{Stream, normals, stream_rng};

/// Name of the VAE's one optimiser in a checkpoint (`optimizer.bpk`).
pub const OPTIMIZER: &str = "optimizer";

/// A VAE trained on its config's objective with Adam, on one device or data-parallel on
/// several ([`super::parallel`]).
pub struct VaeMethod {
    /// Always `Some` between steps; taken while `optim.step` consumes and returns it.
    model: Option<Vae>,
    optim: ModuleOptimizer,
    cfg: TrainConfig,
    /// Autodiff devices; the first holds the model and its optimiser state.
    devices: Vec<Device>,
    /// The processes training together (one, unless launched by mpirun).
    ranks: Rc<dyn Collective>,
    /// Time spent summing over the processes since the last epoch's report.
    reduce_time: Cell<Duration>,
}

impl VaeMethod {
    /// The model of `cfg`, initialised from its seed, on the autodiff device `device`.
    pub fn new(cfg: &TrainConfig, device: &Device) -> VaeMethod {
        VaeMethod::on_devices(cfg, std::slice::from_ref(device))
    }

    /// The model of `cfg` on the first of the autodiff `devices`, each step's batch split
    /// across all of them.
    ///
    /// # Panics
    /// If `devices` is empty.
    pub fn on_devices(cfg: &TrainConfig, devices: &[Device]) -> VaeMethod {
        VaeMethod::distributed(cfg, devices, Rc::new(Solo))
    }

    /// [`VaeMethod::on_devices`] in one of the processes of `ranks`: each step's gradients
    /// and values are summed over them before the (identical) update on every process.
    pub fn distributed(
        cfg: &TrainConfig,
        devices: &[Device],
        ranks: Rc<dyn Collective>,
    ) -> VaeMethod {
        VaeMethod {
            model: Some(Vae::init(&cfg.model, cfg.seed, &devices[0])),
            optim: adam(&cfg.optim),
            cfg: cfg.clone(),
            devices: devices.to_vec(),
            ranks,
            reduce_time: Cell::new(Duration::ZERO),
        }
    }

    fn vae(&self) -> &Vae {
        self.model
            .as_ref()
            .expect("the model is put back after every step")
    }
}

impl Method for VaeMethod {
    /// Draws the whole batch's `k * b` noise rows from (seed, step), computes this process's
    /// share of the objective and its gradients on its devices, sums both over the processes
    /// and, if the loss is finite everywhere, takes one Adam step; step values `loss` (the
    /// objective), `recon` and `kl`.
    fn step(&mut self, batch: &Batch) -> StepOutcome {
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let cfg = &self.cfg;
        let whole = batch.portion.whole;
        let (k, noise) = (cfg.objective.samples(), model.noise_dim());
        // The whole batch's noise, of which this process uses its rows.
        let eps = normals(
            &mut stream_rng(cfg.seed, Stream::TrainNoise, batch.step as u64),
            k * whole * noise,
        );
        let beta = cfg.beta_at(batch.step + 1, batch.steps_per_epoch);
        let step = if batch.is_empty() {
            // A rank without images this step (a last batch smaller than the ranks) adds nothing.
            StepGradients {
                loss: 0.0,
                recon: 0.0,
                kl: 0.0,
                grads: Some(GradientsParams::new()),
            }
        } else {
            step_gradients(
                &model,
                cfg,
                &self.devices,
                batch.x.clone(),
                &batch.labels,
                &eps,
                beta,
                &batch.portion,
            )
        };
        let t0 = Instant::now();
        let step = sum_over_ranks(&model, step, self.ranks.as_ref(), &self.devices[0]);
        self.reduce_time.set(self.reduce_time.get() + t0.elapsed());
        let metrics = Metrics::new()
            .with("loss", step.loss)
            .with("recon", step.recon)
            .with("kl", step.kl);
        let Some(grads) = step.grads else {
            self.model = Some(model);
            return StepOutcome {
                metrics,
                skipped: true,
            };
        };
        self.model = Some(self.optim.step(cfg.optim.lr, model, grads));
        StepOutcome {
            metrics,
            skipped: false,
        }
    }

    fn model(&self) -> Vae {
        self.vae().valid()
    }

    /// `beta`: the KL weight at the epoch's last step (below the config's during a warm-up),
    /// and, under MPI, `allreduce_seconds`: the epoch's time in summing gradients over the
    /// processes (waiting for the slowest included).
    fn epoch_values(&self, step: usize, steps_per_epoch: usize) -> Metrics {
        let mut m = Metrics::new().with("beta", self.cfg.beta_at(step, steps_per_epoch));
        let reduce = self.reduce_time.take();
        if self.ranks.size() > 1 {
            m.push("allreduce_seconds", reduce.as_secs_f64());
        }
        m
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
