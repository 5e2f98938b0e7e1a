//! Training the evaluation classifier, and using it: predictions, accuracy, features.

use std::io::Write;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Classifier, ClassifierDir, WEIGHTS_FILE};
use crate::checkpoint::save_weights;
use crate::data::{Dataset, Splits, batch_tensor, epoch_order, one_hot};
use crate::error::{Error, Result};

/// Images per batch when only predicting.
const PREDICT_BATCH: usize = 500;

/// One line of a classifier's `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierEpoch {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's steps, nats.
    pub train_loss: f64,
    /// Fraction of the test set classified correctly after the epoch.
    pub test_accuracy: f64,
}

/// Trains the classifier `dir` was created with on `data.train` (gray values), writing its
/// weights and a `metrics.jsonl` line after every epoch. `progress(epoch, step, steps, loss)`
/// is called after every step.
pub fn train_classifier(
    dir: &ClassifierDir,
    data: &Splits,
    device: &Device,
    mut progress: impl FnMut(usize, usize, usize, f64),
    mut epoch_done: impl FnMut(&ClassifierEpoch),
) -> Result<ClassifierEpoch> {
    let cfg = dir.config()?;
    cfg.validate()?;
    if let Some(&bad) = data
        .train
        .labels
        .iter()
        .chain(&data.test.labels)
        .find(|&&l| l as usize >= cfg.classes)
    {
        return Err(Error::BadDataset {
            path: data.source.clone().into(),
            reason: format!(
                "label {bad} is outside the classifier's {} classes",
                cfg.classes
            ),
        });
    }
    if data.train.shape != cfg.image {
        return Err(Error::InvalidConfig(format!(
            "the data's images are {}, the classifier expects {}",
            data.train.shape, cfg.image
        )));
    }
    let ad = device.clone().autodiff();
    ad.seed(cfg.seed);
    let mut model = Classifier::new(&cfg, &ad);
    let mut optim = crate::method::adam(&cfg.optim);
    let n = data.train.len();
    let steps = n.div_ceil(cfg.batch_size);
    let metrics_path = dir.root().join("metrics.jsonl");
    let mut last = None;
    for epoch in 1..=cfg.epochs {
        let order = epoch_order(cfg.seed, epoch, n);
        let mut sum = 0.0;
        for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
            let x = batch_tensor(&data.train, idx, None, &ad);
            let labels: Vec<u32> = idx.iter().map(|&i| data.train.labels[i]).collect();
            let target = Tensor::from_data(
                TensorData::new(one_hot(&labels, cfg.classes), [labels.len(), cfg.classes]),
                &ad,
            );
            let loss = (log_softmax(model.forward(x), 1) * target)
                .sum_dim(1)
                .mean()
                .neg(); // [1]
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    value,
                    epoch,
                    step: step + 1,
                    kept: "no classifier was saved".into(),
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.optim.lr, model, grads);
            sum += value;
            progress(epoch, step + 1, steps, value);
        }
        let valid = model.valid();
        save_weights(&valid, &dir.root().join(WEIGHTS_FILE))?;
        let m = ClassifierEpoch {
            epoch,
            train_loss: sum / steps as f64,
            test_accuracy: accuracy(&valid, &data.test, device),
        };
        let mut line = serde_json::to_string(&m).expect("serialisable");
        line.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(Error::io(&metrics_path))?;
        epoch_done(&m);
        last = Some(m);
    }
    Ok(last.expect("epochs >= 1"))
}

/// The most likely class of every image in `images` (values in [0, 1]).
///
/// # Shapes
/// `images`: `[n, channels, height, width]`
pub fn predict(model: &Classifier, images: Tensor<4>) -> Vec<u32> {
    argmax_rows(model.forward(images))
}

/// The index of the largest value of each row.
///
/// # Shapes
/// `logits`: `[n, classes]`
pub fn argmax_rows(logits: Tensor<2>) -> Vec<u32> {
    let classes = logits.dims()[1];
    let v = logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 logits");
    v.chunks(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &x)| if x > b.1 { (i, x) } else { b },
                )
                .0 as u32
        })
        .collect()
}

/// Fraction of `ds` classified as its label.
pub fn accuracy(model: &Classifier, ds: &Dataset, device: &Device) -> f64 {
    let n = ds.len();
    let mut right = 0;
    for start in (0..n).step_by(PREDICT_BATCH) {
        let idx: Vec<usize> = (start..(start + PREDICT_BATCH).min(n)).collect();
        let pred = predict(model, batch_tensor(ds, &idx, None, device));
        right += idx
            .iter()
            .zip(pred)
            .filter(|&(&i, p)| ds.labels[i] == p)
            .count();
    }
    right as f64 / n.max(1) as f64
}

/// Penultimate-layer features of images, row-major.
///
/// # Shapes
/// `images`: `[n, channels, height, width]` -> `n * features` values
pub fn features(model: &Classifier, images: Tensor<4>) -> Vec<f32> {
    model
        .features(images)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 features")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::ClassifierConfig;
    use crate::config::DataConfig;
    use crate::data::synthetic;

    #[test]
    fn learns_to_tell_synthetic_classes_apart_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let data = synthetic::bars_splits(400, 100, 0);
        let cfg = ClassifierConfig {
            image: data.train.shape,
            classes: data.train.classes.len(),
            channels: vec![8, 16],
            features: 32,
            data: DataConfig::default(),
            epochs: 3,
            batch_size: 32,
            ..ClassifierConfig::default()
        };
        let cdir = ClassifierDir::create(&dir.path().join("c"), &cfg).unwrap();
        let dev = Device::flex();
        let mut epochs = Vec::new();
        let m = train_classifier(
            &cdir,
            &data,
            &dev,
            |_, _, _, _| {},
            |e| epochs.push(e.clone()),
        )
        .unwrap();
        // Neighbouring classes' bars overlap in one of three positions, so about 85% is the
        // best possible; chance is 10%.
        assert!(m.test_accuracy > 0.6, "accuracy {}", m.test_accuracy);
        assert!(
            epochs[2].train_loss < 0.7 * epochs[0].train_loss,
            "{epochs:?}"
        );
        assert!(cdir.root().join("metrics.jsonl").exists());
        let (loaded, _) = ClassifierDir::open(cdir.root())
            .unwrap()
            .load(&dev)
            .unwrap();
        assert_eq!(accuracy(&loaded, &data.test, &dev), m.test_accuracy);
    }
}
