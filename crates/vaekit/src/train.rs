//! The training loop: shuffled batches (read ahead on loader threads), one step of the
//! training method per batch ([`Method`] owns the networks, their optimisers and the step),
//! per-epoch evaluation, pictures, named metrics and checkpoints; resumable at any step; on
//! several devices and in several processes (MPI ranks) as one.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::Device;

use crate::checkpoint::{checkpoint_dir, save_checkpoint};
use crate::collective::{Collective, Solo};
use crate::config::TrainConfig;
use crate::data::prefetch::prefetch;
use crate::data::{Splits, batch_tensor, epoch_order};
use crate::error::{Error, Result};
use crate::eval::{eval_set, evaluate_elbo};
use crate::image::{Grid, stack_rows};
use crate::inspect::{reconstruct, sample};
use crate::method::{Batch, Portion};
use crate::metrics::{EpochMetrics, MetricMeans, Metrics};
use crate::model::Vae;
use crate::run::{Meta, RunDir};

/// Seed offset of the per-epoch evaluation noise, kept apart from the training streams.
const EVAL_SEED_OFFSET: u64 = 0x5eed;

/// What one step measured.
#[derive(Clone, Debug)]
pub struct StepStats {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Steps done in this epoch, this one included.
    pub epoch_step: usize,
    /// Steps in a full epoch.
    pub steps_per_epoch: usize,
    /// The method's named values (for a VAE: loss, recon, kl in nats per image).
    pub metrics: Metrics,
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

/// Steps per epoch: the last batch may be smaller.
pub fn steps_per_epoch(n: usize, batch: usize) -> usize {
    n.div_ceil(batch)
}

/// Trains the run's model on `data`, continuing from its checkpoint if it has one.
///
/// `device` is the plain device; training uses its autodiff version. `stop` is polled after
/// every step: when set, the step finishes, a checkpoint is written and training returns.
/// The run's lock is taken for the duration unless `run` holds it already (see
/// [`RunDir::locked`]); a run another process trains into is [`Error::RunInUse`].
pub fn train(
    run: &RunDir,
    cfg: &TrainConfig,
    data: &Splits,
    device: &Device,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    train_on(run, cfg, data, std::slice::from_ref(device), stop, observer)
}

/// [`train`], data-parallel over `devices` (plain devices; the first holds the networks,
/// evaluates and writes the pictures). Each step splits its batch across the devices and sums
/// their gradients on the first before one optimiser step (see [`crate::method::parallel`]).
pub fn train_on(
    run: &RunDir,
    cfg: &TrainConfig,
    data: &Splits,
    devices: &[Device],
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    train_distributed(run, cfg, data, devices, Rc::new(Solo), stop, observer)
}

/// Which checkpoint a run that stopped on a non-finite value keeps, in words.
fn kept_in_words(run: &RunDir) -> Result<String> {
    Ok(match run.meta()? {
        Some(m) => format!(
            "the last good checkpoint ({}, epoch {} step {}) is kept; resume from it, e.g. with a lower --lr",
            m.checkpoint, m.epoch, m.step
        ),
        None => "no checkpoint had been written yet".into(),
    })
}

/// Refuses to continue a run on a packed file of other images than it was trained on.
fn check_same_data(meta: &Meta, data: &Splits) -> Result<()> {
    match (&meta.data_hash, &data.source_hash) {
        (Some(was), Some(now)) if was != now => Err(Error::BadDataset {
            path: data.source.clone().into(),
            reason: format!(
                "holds other images than the run was trained on (its source's SHA-256 is {now}, the run's data had {was}); resume on the packed file it was trained on, or start a new run"
            ),
        }),
        _ => Ok(()),
    }
}

/// [`train_on`] as one of the processes of `ranks` (MPI ranks; see [`crate::collective`]):
/// `cfg.batch_size` images per process per step, so a step takes `ranks.size()` times that;
/// every process visits the same order and applies the same update; rank 0 alone holds the
/// run's lock, evaluates and writes checkpoints, metrics and pictures (the others only read the
/// run, to resume). A stop request on any process stops every process at the same step.
pub fn train_distributed(
    run: &RunDir,
    cfg: &TrainConfig,
    data: &Splits,
    devices: &[Device],
    ranks: Rc<dyn Collective>,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    cfg.validate_training()?;
    let (rank, world) = (ranks.rank(), ranks.size().max(1));
    let writer = rank == 0;
    let Some(device) = devices.first() else {
        return Err(Error::InvalidConfig("no device to train on".into()));
    };
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
    // One writer at a time (a run given already locked keeps its lock).
    let run = &if writer {
        run.clone().locked()?
    } else {
        run.clone()
    };
    let ads: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
    let ad = ads[0].clone();
    let mut method = crate::method::build_on(cfg, &ads, ranks.clone())?;
    let mut meta = match run.meta()? {
        Some(meta) => {
            method.load(&checkpoint_dir(run, &meta))?;
            meta
        }
        None => Meta {
            vaekit_version: crate::VERSION.into(),
            epoch: 0,
            step: 0,
            epoch_step: 0,
            checkpoint: String::new(),
            data_hash: None,
        },
    };
    meta.vaekit_version = crate::VERSION.into();
    check_same_data(&meta, data)?;
    // Epochs logged after the checkpoint (a kill or a full disk while saving) are dropped.
    if writer {
        run.truncate_metrics(meta.epoch)?;
    }
    if data.source_hash.is_some() {
        meta.data_hash = data.source_hash.clone();
    }

    let n = data.train.len();
    // A step takes a batch from every process.
    let whole_batch = cfg.batch_size * world;
    let spe = steps_per_epoch(n, whole_batch);
    if meta.epoch_step >= spe && meta.step > 0 {
        return Err(Error::BadConfig {
            path: run.meta_path(),
            reason: format!(
                "epoch_step {} is not a step of an epoch of {spe} steps",
                meta.epoch_step
            ),
        });
    }
    // The config as continued (e.g. more epochs) is saved only once the checkpoint has loaded:
    // a resume that fails leaves the run as it was.
    if writer && run.config()? != *cfg {
        run.write_config(cfg)?;
    }
    // Scored on one fixed binary draw of the test set when the model sees binary images.
    let test = eval_set(
        &data.test,
        cfg.data.binarize,
        cfg.seed.wrapping_add(EVAL_SEED_OFFSET),
    );
    let preview: Vec<usize> = (0..cfg.preview_images.min(data.test.len())).collect();
    let tolerated = method.max_skipped_steps();
    let mut in_a_row = 0usize; // skipped steps in a row, across epochs

    while meta.epoch < cfg.epochs {
        let epoch = meta.epoch + 1;
        observer.epoch_start(epoch, cfg.epochs, spe, meta.epoch_step);
        let order = epoch_order(cfg.seed, epoch, n);
        let mut means = MetricMeans::default();
        let (mut images_run, mut skipped) = (0usize, 0usize);
        let t0 = Instant::now();
        // The global step of this epoch's first step.
        let step0 = meta.step - meta.epoch_step;
        let (bs, train_set, order) = (whole_batch, &data.train, &order);
        // This process's rows of step k's whole batch.
        let portion = move |k: usize| {
            let len = ((k + 1) * bs).min(n) - k * bs;
            Portion {
                rows: rank * len / world..(rank + 1) * len / world,
                whole: len,
            }
        };
        let (waited, stopped) = std::thread::scope(|scope| -> Result<(Duration, bool)> {
            // Batches are read (and binarised) on loader threads, a few steps ahead.
            let mut input = prefetch(
                scope,
                meta.epoch_step..spe,
                cfg.data.loader_threads,
                move |k| {
                    let whole = &order[k * bs..((k + 1) * bs).min(n)];
                    Batch::host(cfg, train_set, whole, step0 + k, &portion(k))
                },
            );
            while let Some(host) = input.next_item() {
                let k = meta.epoch_step;
                let batch = Batch::from_host(host, meta.step, spe, portion(k), &ad);
                let outcome = method.step(&batch);
                if outcome.skipped {
                    skipped += 1;
                    in_a_row += 1;
                    if in_a_row > tolerated {
                        let (_, value) =
                            outcome.metrics.first_non_finite().unwrap_or(("", f64::NAN));
                        return Err(Error::NonFiniteLoss {
                            value,
                            epoch,
                            step: meta.step + 1,
                            kept: kept_in_words(run)?,
                        });
                    }
                } else {
                    in_a_row = 0;
                    means.add(&outcome.metrics);
                }
                meta.step += 1;
                meta.epoch_step += 1;
                images_run += batch.portion.whole;
                observer.step(&StepStats {
                    epoch,
                    epoch_step: meta.epoch_step,
                    steps_per_epoch: spe,
                    metrics: outcome.metrics,
                });
                if agreed_stop(stop, ranks.as_ref()) && meta.epoch_step < spe {
                    return Ok((input.waited(), true));
                }
            }
            Ok((input.waited(), false))
        })?;
        if stopped {
            if !writer {
                return Ok(TrainOutcome {
                    meta,
                    interrupted: true,
                });
            }
            save_checkpoint(run, &method.parts()?, &meta)?;
            return Ok(TrainOutcome {
                meta: run.require_meta()?,
                interrupted: true,
            });
        }
        let seconds = t0.elapsed().as_secs_f64();
        if !writer {
            // Rank 0 evaluates and writes; the others go on to the next epoch, where the first
            // step waits for it.
            meta.epoch = epoch;
            meta.epoch_step = 0;
            if agreed_stop(stop, ranks.as_ref()) && meta.epoch < cfg.epochs {
                return Ok(TrainOutcome {
                    meta,
                    interrupted: true,
                });
            }
            continue;
        }
        observer.evaluating(epoch);

        let eval_model = method.model();
        let report = evaluate_elbo(
            &eval_model,
            &test,
            cfg.model.likelihood,
            cfg.seed.wrapping_add(EVAL_SEED_OFFSET),
            device,
            |_, _| {},
        );
        let what = if !crate::model::params_finite(&eval_model) {
            Some("the weights are not finite".to_string())
        } else if !report.neg_elbo.is_finite() {
            Some(format!("the test neg-ELBO is {}", report.neg_elbo))
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Error::Diverged {
                epoch,
                what,
                kept: kept_in_words(run)?,
            });
        }
        write_epoch_pictures(run, cfg, &eval_model, data, &preview, epoch, device)?;
        let mut values = means.means().prefixed("train_");
        values.extend(
            Metrics::new()
                .with("neg_elbo", report.neg_elbo)
                .with("recon", report.recon)
                .with("kl", report.kl)
                .prefixed("test_"),
        );
        values.push("images_per_sec", images_run as f64 / seconds.max(1e-9));
        values.push("seconds", seconds);
        values.push("data_wait_seconds", waited.as_secs_f64());
        values.extend(method.epoch_values(meta.step, spe));
        if tolerated > 0 {
            values.push("skipped_steps", skipped as f64);
        }
        let metrics = EpochMetrics {
            epoch,
            step: meta.step,
            values,
            labels: method.labels(),
        };
        meta.epoch = epoch;
        meta.epoch_step = 0;
        run.append_metrics(&metrics)?;
        save_checkpoint(run, &method.parts()?, &meta)?;
        observer.epoch_end(&metrics);
        if agreed_stop(stop, ranks.as_ref()) && meta.epoch < cfg.epochs {
            return Ok(TrainOutcome {
                meta: run.require_meta()?,
                interrupted: true,
            });
        }
    }
    let meta = if writer {
        run.meta()?.unwrap_or(meta)
    } else {
        meta
    };
    Ok(TrainOutcome {
        meta,
        interrupted: false,
    })
}

/// Whether any process of `ranks` was asked to stop (every process calls it at the same
/// points, so all stop at the same step).
fn agreed_stop(stop: &AtomicBool, ranks: &dyn Collective) -> bool {
    let mut flag = [if stop.load(Ordering::SeqCst) {
        1.0
    } else {
        0.0
    }];
    ranks.all_reduce_sum(&mut flag);
    flag[0] > 0.0
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
