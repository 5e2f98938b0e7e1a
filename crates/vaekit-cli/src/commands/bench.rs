//! `vaekit bench`: throughput of training, sampling and the IS estimate, and peak memory.

use anyhow::{Result, bail};
use serde::Serialize;
use vaekit::bench::{BenchConfig, BenchReport, Rate, bench_model};
use vaekit::config::{Architecture, TrainConfig};
use vaekit::data::load_data;
use vaekit::device::DeviceChoice;

use crate::cli::{BenchArgs, BenchModel};

/// The JSON line: the protocol, then every figure.
#[derive(Serialize)]
struct BenchJson<'a> {
    model: &'static str,
    batch_size: usize,
    device: &'static str,
    /// The matrix products' precision in force (bf16 falls back to fp32 without AVX512-BF16).
    precision: String,
    threads: usize,
    bench: &'a BenchConfig,
    #[serde(flatten)]
    report: &'a BenchReport,
}

pub fn run(a: BenchArgs, device: DeviceChoice) -> Result<()> {
    if a.steps == 0 || a.reps == 0 {
        bail!("--steps and --reps must be at least 1");
    }
    let mut cfg = TrainConfig::default();
    let (name, batch) = match a.model {
        BenchModel::Conv => ("conv", 100),
        BenchModel::Mlp => {
            cfg.model.architecture = Architecture::default_mlp();
            ("mlp", 128)
        }
        BenchModel::Vaegan => {
            super::train::make_vaegan(&mut cfg);
            ("vaegan", 100)
        }
    };
    cfg.batch_size = a.batch_size.unwrap_or(batch);
    if cfg.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if let Some(d) = &a.dataset {
        cfg.data.dataset = d.clone();
    }
    cfg.data.dir = a.data_dir.clone();
    let data = load_data(&cfg.data, None, cfg.seed)?;
    cfg.model.image = data.train.shape;
    cfg.validate()?;
    if data.train.len() < cfg.batch_size {
        bail!(
            "{}: {} training images, fewer than one batch of {}",
            data.source,
            data.train.len(),
            cfg.batch_size
        );
    }
    let dev = device.device()?;
    let b = BenchConfig {
        steps: a.steps,
        reps: a.reps,
        warmup: a.warmup,
        ..BenchConfig::default()
    };
    if !a.json {
        crate::outln!(
            "timing the {name} model (batch {}, {} products) on {}: {} warm-up steps, then {} x {} steps; sampling {} images and IS with K = {} on {} test images, {} times",
            cfg.batch_size,
            vaekit::ops::precision(),
            data.source,
            b.warmup,
            b.reps,
            b.steps,
            b.sample_images,
            b.iw_k,
            b.iw_images,
            b.reps
        )?;
    }
    let r = bench_model(&cfg, &data.train, &data.test, &b, &dev);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.json {
        let j = BenchJson {
            model: name,
            batch_size: cfg.batch_size,
            device: device.burn_device_name(),
            precision: vaekit::ops::precision().to_string(),
            threads,
            bench: &b,
            report: &r,
        };
        crate::outln!("{}", serde_json::to_string(&j)?)?;
        return Ok(());
    }
    let show = |what: &str, unit: &str, rate: &Rate| {
        let lo = rate.reps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rate.reps.iter().copied().fold(0.0, f64::max);
        crate::outln!(
            "  {what:<10} {:>10.0} {unit}  (median of {}; {lo:.0} to {hi:.0})",
            rate.median,
            rate.reps.len()
        )
    };
    show("training", "img/s", &r.train_img_per_s)?;
    show("sampling", "img/s", &r.sample_img_per_s)?;
    show("IS (eval)", "samples/s", &r.iw_samples_per_s)?;
    if let Some(m) = r.peak_rss_mib {
        crate::outln!("  peak RSS   {m:>10.0} MiB")?;
    }
    crate::outln!("  ({threads} CPU threads available)")?;
    Ok(())
}
