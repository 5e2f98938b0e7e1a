//! `vaekit classifier train`: the evaluation classifier of a dataset.

use std::path::PathBuf;

use anyhow::Result;
use vaekit::classifier::{ClassifierConfig, ClassifierDir, train_classifier};
use vaekit::config::DataConfig;
use vaekit::data::load_data;
use vaekit::device::DeviceChoice;

use crate::cli::ClassifierTrainArgs;
use crate::progress::bar;

pub fn train(a: ClassifierTrainArgs, device: DeviceChoice) -> Result<()> {
    let mut data_cfg = DataConfig {
        limit: a.limit,
        ..DataConfig::default()
    };
    if let Some(name) = &a.dataset {
        data_cfg.dataset = name.clone();
    }
    data_cfg.dir = a.data_dir.clone();
    let device = device.device()?;
    let data = load_data(&data_cfg, None, a.seed)?;
    let name = match &a.data_dir {
        Some(d) => d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into()),
        None => data_cfg.dataset.clone(),
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/classifier-{name}")));
    let cfg = ClassifierConfig {
        image: data.train.shape,
        classes: data.train.classes.len().max(data.test.classes.len()),
        data: data_cfg,
        epochs: a.epochs,
        batch_size: a.batch_size,
        seed: a.seed,
        ..ClassifierConfig::default()
    };
    cfg.validate()?;
    let dir = ClassifierDir::create(&out, &cfg)?;
    crate::errln!(
        "training a classifier on {} ({} images, {} classes) into {}",
        data.source,
        data.train.len(),
        cfg.classes,
        out.display()
    );
    let steps = data.train.len().div_ceil(cfg.batch_size) as u64;
    let mut pb = bar(steps, "epoch 1", false);
    let mut current = 1;
    let last = train_classifier(
        &dir,
        &data,
        &device,
        |epoch, step, _, loss| {
            if epoch != current {
                current = epoch;
                pb = bar(steps, &format!("epoch {epoch}"), false);
            }
            pb.set_position(step as u64);
            pb.set_message(format!("loss {loss:.3}"));
        },
        |m| {
            crate::errln!(
                "epoch {}: train loss {:.4}, test accuracy {:.2}%",
                m.epoch,
                m.train_loss,
                100.0 * m.test_accuracy
            )
        },
    )?;
    crate::outln!(
        "classifier in {}: test accuracy {:.2}% after {} epochs",
        out.display(),
        100.0 * last.test_accuracy,
        last.epoch
    )?;
    Ok(())
}
