//! Throughput of the hot paths, for `vaekit bench`: training steps, prior sampling and the
//! importance-sampled log-likelihood, each timed over several repetitions after a warm-up
//! (medians reported, as machines are noisy), and the process's peak memory.
//!
//! Training steps are exactly those of [`crate::train::train`] (the step of the method the
//! config names: [`crate::method::VaeMethod`]'s or [`crate::method::VaeGanMethod`]'s); sampling and
//! the IS estimate are [`sample_batch`] and [`evaluate_nll`]. `bench/pytorch_vae.py --bench`
//! times the same three things in PyTorch (`bench/pytorch_vaegan.py --bench` the VAE-GAN's
//! training), and `bench/compare.py --bench` prints the ratios.

use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::{Dataset, epoch_order};
use crate::eval::evaluate_nll;
use crate::inspect::sample_batch;
use crate::method::{Batch, Method, build};
use crate::train::steps_per_epoch;

/// How much to time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Training steps per repetition. Default 50.
    pub steps: usize,
    /// Repetitions of every measurement. Default 5.
    pub reps: usize,
    /// Untimed training steps first (allocations, caches, thread pools). Default 5.
    pub warmup: usize,
    /// Images decoded per sampling repetition. Default 1000.
    pub sample_images: usize,
    /// Test images per IS repetition. Default 100.
    pub iw_images: usize,
    /// Importance samples per image. Default 100.
    pub iw_k: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            steps: 50,
            reps: 5,
            warmup: 5,
            sample_images: 1000,
            iw_images: 100,
            iw_k: 100,
        }
    }
}

/// Rates of one measurement over its repetitions, items per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Median over repetitions.
    pub median: f64,
    /// Every repetition, in order.
    pub reps: Vec<f64>,
}

impl Rate {
    /// From per-repetition rates.
    pub fn new(reps: Vec<f64>) -> Rate {
        Rate {
            median: median(&reps),
            reps,
        }
    }
}

/// The median of `v` (mean of the middle two for an even count; 0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Everything `vaekit bench` measures for one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Training images per second (batches of the config's batch size).
    pub train_img_per_s: Rate,
    /// Prior samples decoded to mean images per second.
    pub sample_img_per_s: Rate,
    /// Importance samples (decoder passes of one image) per second of `eval --iw`.
    pub iw_samples_per_s: Rate,
    /// Peak resident memory of the process so far, MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
}

/// Times training, sampling and the IS estimate for the model of `cfg` on `train` and `test`.
/// `device` is the plain device (training uses its autodiff version).
pub fn bench_model(
    cfg: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    b: &BenchConfig,
    device: &Device,
) -> BenchReport {
    let ad = device.clone().autodiff();
    let mut method = build(cfg, &ad);
    let n = train.len();
    let batch = cfg.batch_size.min(n).max(1);
    let spe = steps_per_epoch(n, batch);
    let order = epoch_order(cfg.seed, 1, n);
    let mut step = 0usize;
    // Consecutive batches of one shuffled order, wrapping around.
    let mut run_steps = |method: &mut Box<dyn Method>, count: usize| {
        for _ in 0..count {
            let start = (step * batch) % (n - batch + 1);
            let idx = &order[start..start + batch];
            method.step(&Batch::new(cfg, train, idx, step, spe, &ad));
            step += 1;
        }
    };
    run_steps(&mut method, b.warmup);
    let mut train_rates = Vec::new();
    for _ in 0..b.reps {
        let t0 = Instant::now();
        run_steps(&mut method, b.steps);
        train_rates.push((b.steps * batch) as f64 / t0.elapsed().as_secs_f64());
    }
    let model = method.model();

    let chunk = 500.min(b.sample_images.max(1));
    let sample_rates = (0..b.reps)
        .map(|r| {
            let t0 = Instant::now();
            let mut done = 0;
            while done < b.sample_images {
                let m = chunk.min(b.sample_images - done);
                let x = sample_batch(
                    &model,
                    m,
                    cfg.seed,
                    (r * 1000 + done) as u64,
                    None,
                    1.0,
                    device,
                );
                let _ = x.into_data(); // wait for the result
                done += m;
            }
            b.sample_images as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();

    let mut few = test.clone();
    few.truncate(b.iw_images.min(test.len()));
    let iw_rates = (0..b.reps)
        .map(|r| {
            let t0 = Instant::now();
            evaluate_nll(
                &model,
                &few,
                cfg.model.likelihood,
                b.iw_k,
                r as u64,
                device,
                |_, _| {},
            );
            (few.len() * b.iw_k) as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    BenchReport {
        train_img_per_s: Rate::new(train_rates),
        sample_img_per_s: Rate::new(sample_rates),
        iw_samples_per_s: Rate::new(iw_rates),
        peak_rss_mib: peak_rss_mib(),
    }
}

/// The process's peak resident set size (`VmHWM` of `/proc/self/status`), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
