//! The training loop: shuffled batches, reparameterised ELBO, Adam, per-epoch evaluation,
//! pictures, metrics and checkpoints; resumable at any step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use crate::checkpoint::{
    OPTIMIZER_FILE, WEIGHTS_FILE, checkpoint_dir, load_optimizer, load_weights, save_checkpoint,
};
use crate::config::{Binarize, OptimConfig, TrainConfig};
use crate::data::{Dataset, Splits, batch_tensor, epoch_order};
use crate::error::{Error, Result};
use crate::eval::{ElboReport, eval_set, evaluate_elbo};
use crate::image::{Grid, stack_rows};
use crate::inspect::{reconstruct, sample};
use crate::model::Vae;
use crate::objective::training_terms;
use crate::ops::FusedAdam;
use crate::rng::{Stream, normals, stream_rng};
use crate::run::{EpochMetrics, Meta, RunDir};

/// Seed offset of the per-epoch evaluation noise, kept apart from the training streams.
const EVAL_SEED_OFFSET: u64 = 0x5eed;

/// Losses of one step, nats per image.
#[derive(Clone, Debug)]
pub struct StepStats {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Steps done in this epoch, this one included.
    pub epoch_step: usize,
    /// Steps in a full epoch.
    pub steps_per_epoch: usize,
    /// recon + beta * KL.
    pub loss: f64,
    /// Reconstruction term.
    pub recon: f64,
    /// KL term.
    pub kl: f64,
}

/// Hooks for progress display; every method has an empty default.
pub trait Observer {
    /// An epoch begins at `first_step` (non-zero when resuming mid-epoch).
    fn epoch_start(
        &mut self,
        _epoch: usize,
        _epochs: usize,
        _steps_per_epoch: usize,
        _first_step: usize,
    ) {
    }
    /// A step finished.
    fn step(&mut self, _stats: &StepStats) {}
    /// The epoch's training steps are done; evaluation starts.
    fn evaluating(&mut self, _epoch: usize) {}
    /// The epoch is evaluated and checkpointed.
    fn epoch_end(&mut self, _metrics: &EpochMetrics) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {}

/// How training ended.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Progress at the last checkpoint.
    pub meta: Meta,
    /// True if a stop was requested (Ctrl-C) before the last epoch finished.
    pub interrupted: bool,
}

/// The Adam optimiser `cfg` describes.
pub fn adam(cfg: &OptimConfig) -> ModuleOptimizer {
    ModuleOptimizer::from(FusedAdam::new(cfg.beta1, cfg.beta2, cfg.epsilon))
}

/// Losses of one step, nats per image.
#[derive(Clone, Copy, Debug)]
pub struct StepLosses {
    /// The objective (recon + beta * KL, or the IWAE bound).
    pub loss: f64,
    /// Reconstruction term.
    pub recon: f64,
    /// KL term.
    pub kl: f64,
}

/// One Adam step on the training images `idx` of `train`: `step` (the global step, 0-based)
/// seeds the noise and the dynamic binarisation, `beta` weighs the KL, `device` is the autodiff
/// device. A loss that is not finite leaves the model as it was (the caller decides).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: Vae,
    optim: &mut ModuleOptimizer,
    cfg: &TrainConfig,
    train: &Dataset,
    idx: &[usize],
    step: usize,
    beta: f64,
    device: &Device,
) -> (Vae, StepLosses) {
    let b = idx.len();
    let mut bin_rng = stream_rng(cfg.seed, Stream::TrainBinarize, step as u64);
    let dynamic = cfg.data.binarize == Binarize::Dynamic;
    let x = batch_tensor(train, idx, dynamic.then_some(&mut bin_rng), device);
    let (k, noise) = (cfg.objective.samples(), model.noise_dim()); // noise: z (and z2 for hvae)
    let eps = normals(
        &mut stream_rng(cfg.seed, Stream::TrainNoise, step as u64),
        k * b * noise,
    );
    let eps = Tensor::from_data(TensorData::new(eps, [k * b, noise]), device);
    let y = model.condition(&train.labels_of(idx), device);
    let terms = training_terms(
        &model,
        x,
        y,
        eps,
        cfg.objective,
        cfg.model.likelihood,
        beta,
        cfg.free_bits,
    );
    let loss = terms.loss.clone().into_scalar::<f32>() as f64;
    let (recon, kl) = (
        terms.recon.into_scalar::<f32>() as f64,
        terms.kl.into_scalar::<f32>() as f64,
    );
    if !loss.is_finite() {
        return (model, StepLosses { loss, recon, kl });
    }
    let grads = GradientsParams::from_grads(terms.loss.backward(), &model);
    (
        optim.step(cfg.optim.lr, model, grads),
        StepLosses { loss, recon, kl },
    )
}

/// Steps per epoch: the last batch may be smaller.
pub fn steps_per_epoch(n: usize, batch: usize) -> usize {
    n.div_ceil(batch)
}

/// Trains the run's model on `data`, continuing from its checkpoint if it has one.
///
/// `device` is the plain device; training uses its autodiff version. `stop` is polled after
/// every step: when set, the step finishes, a checkpoint is written and training returns.
pub fn train(
    run: &RunDir,
    cfg: &TrainConfig,
    data: &Splits,
    device: &Device,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    if data.train.is_empty() || data.test.is_empty() {
        return Err(Error::BadDataset {
            path: data.source.clone().into(),
            reason: "no training or no test images".into(),
        });
    }
    let classes = cfg.model.classes;
    if let Some(&l) = data
        .train
        .labels
        .iter()
        .chain(&data.test.labels)
        .find(|&&l| classes > 0 && l as usize >= classes)
    {
        return Err(Error::BadDataset {
            path: data.source.clone().into(),
            reason: format!("label {l} is outside the conditional model's {classes} classes"),
        });
    }
    let ad = device.clone().autodiff();
    let mut model = Vae::init(&cfg.model, cfg.seed, &ad);
    let mut optim = adam(&cfg.optim);
    let mut meta = match run.meta()? {
        Some(meta) => {
            let dir = checkpoint_dir(run, &meta);
            model = load_weights(model, &dir.join(WEIGHTS_FILE))?;
            optim = load_optimizer(optim, &dir.join(OPTIMIZER_FILE))?;
            // Epochs logged after the checkpoint (a kill during saving) are dropped.
            run.truncate_metrics(meta.epoch)?;
            meta
        }
        None => Meta {
            vaekit_version: crate::VERSION.into(),
            epoch: 0,
            step: 0,
            epoch_step: 0,
            checkpoint: String::new(),
        },
    };
    meta.vaekit_version = crate::VERSION.into();

    let n = data.train.len();
    let spe = steps_per_epoch(n, cfg.batch_size);
    // Scored on one fixed binary draw of the test set when the model sees binary images.
    let test = eval_set(
        &data.test,
        cfg.data.binarize,
        cfg.seed.wrapping_add(EVAL_SEED_OFFSET),
    );
    let preview: Vec<usize> = (0..cfg.preview_images.min(data.test.len())).collect();

    while meta.epoch < cfg.epochs {
        let epoch = meta.epoch + 1;
        observer.epoch_start(epoch, cfg.epochs, spe, meta.epoch_step);
        let order = epoch_order(cfg.seed, epoch, n);
        let (mut sum_loss, mut sum_recon, mut sum_kl, mut steps_run, mut images_run) =
            (0.0, 0.0, 0.0, 0usize, 0usize);
        let t0 = Instant::now();
        while meta.epoch_step < spe {
            let idx = &order
                [meta.epoch_step * cfg.batch_size..((meta.epoch_step + 1) * cfg.batch_size).min(n)];
            let b = idx.len();
            let beta = cfg.beta_at(meta.step + 1, spe);
            let (next, StepLosses { loss, recon, kl }) = train_step(
                model,
                &mut optim,
                cfg,
                &data.train,
                idx,
                meta.step,
                beta,
                &ad,
            );
            model = next;
            if !loss.is_finite() {
                return Err(Error::NonFiniteLoss {
                    value: loss,
                    epoch,
                    step: meta.step + 1,
                });
            }
            meta.step += 1;
            meta.epoch_step += 1;
            sum_loss += loss;
            sum_recon += recon;
            sum_kl += kl;
            steps_run += 1;
            images_run += b;
            observer.step(&StepStats {
                epoch,
                epoch_step: meta.epoch_step,
                steps_per_epoch: spe,
                loss,
                recon,
                kl,
            });
            if stop.load(Ordering::SeqCst) && meta.epoch_step < spe {
                save_checkpoint(run, &model.valid(), &optim, &meta)?;
                return Ok(TrainOutcome {
                    meta: run.require_meta()?,
                    interrupted: true,
                });
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        observer.evaluating(epoch);

        let eval_model = model.valid();
        let report: ElboReport = evaluate_elbo(
            &eval_model,
            &test,
            cfg.model.likelihood,
            cfg.seed.wrapping_add(EVAL_SEED_OFFSET),
            device,
            |_, _| {},
        );
        write_epoch_pictures(run, cfg, &eval_model, data, &preview, epoch, device)?;
        let k = steps_run.max(1) as f64;
        let metrics = EpochMetrics {
            epoch,
            step: meta.step,
            train_loss: sum_loss / k,
            train_recon: sum_recon / k,
            train_kl: sum_kl / k,
            test_neg_elbo: report.neg_elbo,
            test_recon: report.recon,
            test_kl: report.kl,
            images_per_sec: images_run as f64 / seconds.max(1e-9),
            seconds,
            beta: cfg.beta_at(meta.step, spe),
            objective: cfg.objective.label(),
        };
        meta.epoch = epoch;
        meta.epoch_step = 0;
        run.append_metrics(&metrics)?;
        save_checkpoint(run, &eval_model, &optim, &meta)?;
        observer.epoch_end(&metrics);
        if stop.load(Ordering::SeqCst) && meta.epoch < cfg.epochs {
            return Ok(TrainOutcome {
                meta: run.require_meta()?,
                interrupted: true,
            });
        }
    }
    let meta = run.meta()?.unwrap_or(meta);
    Ok(TrainOutcome {
        meta,
        interrupted: false,
    })
}

/// Reconstructions of the fixed preview batch and prior samples for `epoch`.
fn write_epoch_pictures(
    run: &RunDir,
    cfg: &TrainConfig,
    model: &Vae,
    data: &Splits,
    preview: &[usize],
    epoch: usize,
    device: &Device,
) -> Result<()> {
    let images = run.images_dir();
    std::fs::create_dir_all(&images).map_err(Error::io(&images))?;
    if !preview.is_empty() {
        let x = batch_tensor(&data.test, preview, None, device);
        let mut grid = Grid::from_tensor(x.clone(), preview.len());
        grid.extend(Grid::from_tensor(
            reconstruct(model, x, &data.test.labels_of(preview)),
            preview.len(),
        ));
        grid.save_png(&images.join(format!("recon_epoch_{epoch:03}.png")))?;
        let mut files: Vec<_> = (1..=epoch)
            .map(|e| images.join(format!("recon_epoch_{e:03}.png")))
            .filter(|p| p.exists())
            .collect();
        files.sort();
        stack_rows(&files, grid.height, &run.root().join("reconstructions.png"))?;
    }
    if cfg.sample_images > 0 {
        let samples = sample(model, cfg.sample_images, cfg.seed, None, 1.0, device);
        let cols = (cfg.sample_images as f64).sqrt().ceil() as usize;
        let grid = Grid::from_tensor(samples, cols);
        grid.save_png(&images.join(format!("samples_epoch_{epoch:03}.png")))?;
        grid.save_png(&run.root().join("samples.png"))?;
    }
    Ok(())
}
