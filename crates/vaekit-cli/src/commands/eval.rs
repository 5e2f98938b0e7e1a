//! `vaekit eval`: the ELBO, latent statistics, and optionally the importance-sampled
//! log-likelihood and the Frechet distance of a split.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use vaekit::classifier::ClassifierDir;
use vaekit::config::{Binarize, Likelihood};
use vaekit::data::Split;
use vaekit::device::DeviceChoice;
use vaekit::eval::{
    EVAL_BATCH, GenerationReport, NllReport, eval_set, evaluate_elbo, evaluate_generation,
    evaluate_nll, latent_statistics,
};

use crate::cli::EvalArgs;
use crate::progress::bar;

/// Every figure with the protocol that produced it.
#[derive(Serialize)]
struct EvalJson {
    run: String,
    epoch: usize,
    split: &'static str,
    images: usize,
    binarize: Binarize,
    seed: u64,
    /// Negative ELBO with one sampled z per image, and its two terms (nats per image).
    neg_elbo: f64,
    /// The likelihood the ELBO scores pixels with (a VAE-GAN was trained on discriminator
    /// features instead: its ELBO is still this pixel likelihood's).
    pixel_likelihood: Likelihood,
    /// "vae" or "vaegan": how the run was trained.
    method: &'static str,
    recon: f64,
    kl: f64,
    active_units: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_active_units: Option<usize>,
    kl_per_dim: Vec<f64>,
    mean_variance: Vec<f64>,
    recon_mse: f64,
    #[serde(flatten)]
    iw: Option<IwJson>,
    #[serde(flatten)]
    fid: Option<FidJson>,
}

#[derive(Serialize)]
struct IwJson {
    nll: f64,
    bits_per_dim: f64,
    iw_k: usize,
    iw_seconds: f64,
}

#[derive(Serialize)]
struct FidJson {
    fid: f64,
    fid_samples: usize,
    temperature: f64,
    fid_reference_images: usize,
    classifier: String,
    classifier_accuracy: f64,
    recon_accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    class_accuracy: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    real_class_accuracy: Option<Vec<f64>>,
    /// class_accuracy / real_class_accuracy per class.
    #[serde(skip_serializing_if = "Option::is_none")]
    relative_class_accuracy: Option<Vec<f64>>,
    sample_sharpness: f64,
    real_sharpness: f64,
}

/// How a run was trained, in one word.
fn method_name(cfg: &vaekit::config::TrainConfig) -> &'static str {
    match cfg.method {
        vaekit::config::MethodConfig::Vae => "vae",
        vaekit::config::MethodConfig::Vaegan(_) => "vaegan",
    }
}

pub fn run(a: EvalArgs, device: DeviceChoice) -> Result<()> {
    if a.iw == Some(0) || a.limit == Some(0) {
        bail!("--iw and --limit must be at least 1");
    }
    super::check_temperature(a.temperature)?;
    if a.fid && !(2..=1_000_000).contains(&a.fid_samples) {
        bail!("--fid-samples must be 2 to 1000000, got {}", a.fid_samples);
    }
    let l = super::load_run(&a.run, device)?;
    let model_cfg = &l.cfg.model;
    // Check the classifier before the long computations start.
    let classifier = if a.fid {
        let dir = a
            .classifier
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/classifier-{}", l.cfg.data.dataset)));
        let cdir = ClassifierDir::open(&dir)
            .with_context(|| "--fid needs a classifier: `vaekit classifier train` makes one")?;
        let (c, ccfg) = cdir.load(&l.device)?;
        if ccfg.image != model_cfg.image {
            bail!(
                "{}: the classifier takes {} images, the model makes {}",
                dir.display(),
                ccfg.image,
                model_cfg.image
            );
        }
        Some((c, dir))
    } else {
        None
    };
    let data = super::run_data(&l.cfg, a.data_dir.clone())?;
    let mut gray = data.get(Split::from(a.split)).clone();
    if let Some(n) = a.limit {
        gray.truncate(n);
    }
    if gray.is_empty() {
        bail!("the {} split has no images", super::split_name(a.split));
    }
    let binarize = a
        .binarize
        .map(Binarize::from)
        .unwrap_or(l.cfg.data.binarize);
    let ds = eval_set(&gray, binarize, a.seed);
    let n = ds.len() as u64;
    let (model, dev) = (&l.model, &l.device);

    let pb = bar(n, "ELBO", a.json);
    let elbo = evaluate_elbo(model, &ds, model_cfg.likelihood, a.seed, dev, |done, _| {
        pb.set_position(done as u64)
    });
    pb.finish_and_clear();
    let pb = bar(n, "latents", a.json);
    let lat = latent_statistics(model, &ds, EVAL_BATCH, a.seed, dev, |done, _| {
        pb.set_position(done as u64)
    });
    pb.finish_and_clear();
    let iw = a.iw.map(|k| {
        let pb = bar(n, &format!("log p(x), K = {k}"), a.json);
        let t0 = Instant::now();
        let r: NllReport = evaluate_nll(
            model,
            &ds,
            model_cfg.likelihood,
            k,
            a.seed,
            dev,
            |done, _| pb.set_position(done as u64),
        );
        pb.finish_and_clear();
        (r, t0.elapsed().as_secs_f64())
    });
    let generation = classifier.as_ref().map(|(c, _)| {
        let pb = bar(n + a.fid_samples as u64, "Frechet distance", a.json);
        let r: GenerationReport = evaluate_generation(
            model,
            c,
            &gray,
            a.fid_samples,
            a.temperature,
            a.seed,
            dev,
            |done, _| pb.set_position(done as u64),
        );
        pb.finish_and_clear();
        r
    });

    // Finite weights can still overflow (a weight of 3e38): no figure of such a model is a
    // result, so none is printed as one.
    let scores = [
        ("neg-ELBO", elbo.neg_elbo),
        ("recon", elbo.recon),
        ("KL", elbo.kl),
    ];
    let iw_nll = iw.as_ref().map(|(r, _)| ("IS NLL", r.nll));
    if let Some((what, v)) = scores
        .into_iter()
        .chain(iw_nll)
        .find(|(_, v)| !v.is_finite())
    {
        bail!(
            "{}: the model's {what} on the {} split is {v}: its weights overflow (the checkpoint {} is damaged or diverged); nothing to report",
            a.run.display(),
            super::split_name(a.split),
            l.meta.checkpoint
        );
    }
    let split = super::split_name(a.split);
    if a.json {
        let j = EvalJson {
            run: a.run.display().to_string(),
            epoch: l.meta.epoch,
            split,
            images: elbo.images,
            binarize,
            seed: a.seed,
            neg_elbo: elbo.neg_elbo,
            pixel_likelihood: model_cfg.likelihood,
            method: method_name(&l.cfg),
            recon: elbo.recon,
            kl: elbo.kl,
            active_units: lat.active_units,
            top_active_units: lat.top_active_units,
            kl_per_dim: lat.kl_per_dim.clone(),
            mean_variance: lat.mean_variance.clone(),
            recon_mse: lat.recon_mse,
            iw: iw.as_ref().map(|(r, secs)| IwJson {
                nll: r.nll,
                bits_per_dim: r.bits_per_dim,
                iw_k: r.k,
                iw_seconds: *secs,
            }),
            fid: generation
                .as_ref()
                .zip(classifier.as_ref())
                .map(|(g, (_, dir))| FidJson {
                    fid: g.fid,
                    fid_samples: g.samples,
                    temperature: a.temperature,
                    fid_reference_images: g.reference_images,
                    classifier: dir.display().to_string(),
                    classifier_accuracy: g.classifier_accuracy,
                    recon_accuracy: g.recon_accuracy,
                    class_accuracy: g.class_accuracy.clone(),
                    real_class_accuracy: g.real_class_accuracy.clone(),
                    relative_class_accuracy: g.relative_class_accuracy(),
                    sample_sharpness: g.sample_sharpness,
                    real_sharpness: g.real_sharpness,
                }),
        };
        crate::outln!("{}", serde_json::to_string(&j)?)?;
        return Ok(());
    }
    let bin = match binarize {
        Binarize::None => "gray values".to_string(),
        _ => format!("binarised once with seed {}", a.seed),
    };
    crate::outln!(
        "{split} set, {} images ({bin}), epoch {}, seed {}:",
        elbo.images,
        l.meta.epoch,
        a.seed
    )?;
    crate::outln!(
        "  neg-ELBO        {:>9.2} nats/image  (reconstruction {:.2} + KL {:.2}; one sampled z per image)",
        elbo.neg_elbo,
        elbo.recon,
        elbo.kl
    )?;
    if method_name(&l.cfg) == "vaegan" {
        crate::outln!(
            "                  (VAE-GAN: trained on discriminator features; this ELBO scores its decoder with the {} pixel likelihood)",
            serde_json::to_value(model_cfg.likelihood)?["kind"]
                .as_str()
                .unwrap_or("pixel")
        )?;
    }
    if let Some((r, secs)) = &iw {
        let show_bpd =
            model_cfg.image.channels > 1 || !matches!(model_cfg.likelihood, Likelihood::Bernoulli);
        let bpd = if show_bpd {
            format!(", {:.4} bits/dim", r.bits_per_dim)
        } else {
            String::new()
        };
        crate::outln!(
            "  -log p(x)       {:>9.2} nats/image  (importance-sampled, K = {}{bpd}; {:.1} s)",
            r.nll,
            r.k,
            secs
        )?;
    }
    let latent = lat.mean_variance.len();
    crate::outln!(
        "  active units    {:>9}  of {latent} (variance of the posterior mean across images > 0.01)",
        lat.active_units,
    )?;
    let kl = |v: &[f64]| {
        v.iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match lat.top_active_units {
        None => crate::outln!("  KL per dim      {}", kl(&lat.kl_per_dim))?,
        Some(top) => {
            crate::outln!(
                "  active units z2 {top:>9}  of {} (means of q(z2|z1) at the posterior mean of z1)",
                lat.kl_per_dim.len() - latent
            )?;
            crate::outln!(
                "  KL per dim z1   {}  (log q(z1|x) - log p(z1|z2), one draw)",
                kl(&lat.kl_per_dim[..latent])
            )?;
            crate::outln!("  KL per dim z2   {}", kl(&lat.kl_per_dim[latent..]))?;
        }
    }
    crate::outln!(
        "  recon MSE       {:>9.5} per pixel (decoder mean at the posterior mean)",
        lat.recon_mse
    )?;
    if let (Some(g), Some((_, dir))) = (&generation, &classifier) {
        crate::outln!(
            "  Frechet dist.   {:>9.3}  ({} samples at temperature {} vs {} images, features of {})",
            g.fid,
            g.samples,
            a.temperature,
            g.reference_images,
            dir.display()
        )?;
        crate::outln!(
            "  sharpness       {:>9.5}  (variance of the Laplacian: samples; {:.5} for the real images)",
            g.sample_sharpness,
            g.real_sharpness
        )?;
        crate::outln!(
            "  classifier acc. {:>8.2}%  on reconstructions ({:.2}% on the originals)",
            100.0 * g.recon_accuracy,
            100.0 * g.classifier_accuracy
        )?;
        let percent = |v: &[f64]| {
            v.iter()
                .map(|a| format!("{:5.1}", 100.0 * a))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if let (Some(acc), Some(real)) = (&g.class_accuracy, &g.real_class_accuracy) {
            crate::outln!(
                "  class samples   {}  (% of each class's samples classified as that class)",
                percent(acc)
            )?;
            crate::outln!(
                "  real images     {}  (% of each class's {split} images, for comparison)",
                percent(real)
            )?;
            if let Some(rel) = g.relative_class_accuracy() {
                let (worst, w) = rel.iter().enumerate().filter(|(_, v)| v.is_finite()).fold(
                    (0, f64::INFINITY),
                    |a, (i, &v)| if v < a.1 { (i, v) } else { a },
                );
                crate::outln!(
                    "  relative        {}  (samples / real images, %; worst: class {worst} at {:.1}%)",
                    percent(&rel),
                    100.0 * w
                )?;
            }
        }
    }
    Ok(())
}
