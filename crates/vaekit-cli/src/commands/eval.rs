//! `vaekit eval`: the negative ELBO of a split.

use anyhow::Result;
use serde::Serialize;
use vaekit::checkpoint::load_model;
use vaekit::config::Binarize;
use vaekit::data::Split;
use vaekit::device::DeviceChoice;
use vaekit::eval::evaluate_elbo;
use vaekit::run::RunDir;

use crate::cli::EvalArgs;
use crate::progress::bar;

#[derive(Serialize)]
struct EvalJson<'a> {
    neg_elbo: f64,
    recon: f64,
    kl: f64,
    images: usize,
    split: &'a str,
    binarize: Binarize,
    seed: u64,
    epoch: usize,
    run: String,
}

pub fn run(a: EvalArgs, device: DeviceChoice) -> Result<()> {
    let device = device.device()?;
    let run = RunDir::open(&a.run)?;
    let cfg = run.config()?;
    let (model, model_cfg, meta) = load_model(&run, &device)?;
    let data = super::run_data(&cfg, a.data_dir)?;
    let ds = data.get(Split::from(a.split));
    let pb = bar(ds.len() as u64, "evaluating", a.json);
    let r = evaluate_elbo(&model, ds, model_cfg.likelihood, cfg.data.binarize, a.seed, &device, |done, _| {
        pb.set_position(done as u64)
    });
    pb.finish_and_clear();
    let split = match a.split {
        crate::cli::SplitArg::Train => "train",
        crate::cli::SplitArg::Test => "test",
    };
    if a.json {
        let j = EvalJson {
            neg_elbo: r.neg_elbo,
            recon: r.recon,
            kl: r.kl,
            images: r.images,
            split,
            binarize: cfg.data.binarize,
            seed: r.seed,
            epoch: meta.epoch,
            run: a.run.display().to_string(),
        };
        println!("{}", serde_json::to_string(&j)?);
    } else {
        println!(
            "{split} set, {} images, epoch {}: neg-ELBO {:.2} nats/image (reconstruction {:.2} + KL {:.2})",
            r.images, meta.epoch, r.neg_elbo, r.recon, r.kl
        );
    }
    Ok(())
}
