//! Generation quality with the dataset's own classifier: the Frechet distance between the
//! classifier features of model samples and of real test images, and the classifier's accuracy
//! on reconstructions; and the sharpness (variance of the Laplacian) of samples and real images.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::frechet::{FeatureStats, frechet_distance};
use crate::classifier::{Classifier, argmax_rows, predict};
use crate::data::{Dataset, batch_tensor};
use crate::inspect::{reconstruct, sample_batch, sample_labels};
use crate::model::Vae;

/// Images per batch of [`evaluate_generation`].
const BATCH: usize = 500;

/// Frechet distance and classifier accuracies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationReport {
    /// Frechet distance between the features of `samples` prior samples (decoder mean images)
    /// and of the real images.
    pub fid: f64,
    /// Model samples used.
    pub samples: usize,
    /// Real images used.
    pub reference_images: usize,
    /// The classifier's accuracy on the real images.
    pub classifier_accuracy: f64,
    /// Its accuracy on their reconstructions (decoder mean at the posterior mean).
    pub recon_accuracy: f64,
    /// For a conditional model: per class, the fraction of the samples drawn for that class
    /// that the classifier assigns to it (samples cycle through the classes).
    pub class_accuracy: Option<Vec<f64>>,
    /// For a conditional model: per class, the classifier's accuracy on the real images of that
    /// class (what `class_accuracy` can be compared with).
    pub real_class_accuracy: Option<Vec<f64>>,
    /// Mean variance of the Laplacian of the samples (see [`super::sharpness`]).
    pub sample_sharpness: f64,
    /// The same of the real images.
    pub real_sharpness: f64,
}

impl GenerationReport {
    /// For a conditional model: per class, the fraction of its samples classified as it over
    /// the classifier's accuracy on its real images (1: the samples are as recognisable as the
    /// real images). NaN for a class without real images or with none recognised.
    pub fn relative_class_accuracy(&self) -> Option<Vec<f64>> {
        let (s, r) = (
            self.class_accuracy.as_ref()?,
            self.real_class_accuracy.as_ref()?,
        );
        Some(
            s.iter()
                .zip(r)
                .map(|(s, r)| if *r > 0.0 { s / r } else { f64::NAN })
                .collect(),
        )
    }
}

/// Scores `model` against the real images `real` (gray values, as the classifier was trained)
/// with `samples` draws from the prior at `temperature` (see [`sample_batch`]), seeded by
/// `seed`. `progress(done, total)` counts images.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_generation(
    model: &Vae,
    classifier: &Classifier,
    real: &Dataset,
    samples: usize,
    temperature: f64,
    seed: u64,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> GenerationReport {
    let n = real.len();
    let total = n + samples;
    let (mut real_feats, mut fake_feats) = (Vec::new(), Vec::new());
    let (mut right, mut recon_right) = (0usize, 0usize);
    let mut dims = 0;
    let (mut real_sharp, mut fake_sharp) = (0.0, 0.0);
    let classes = model.classes();
    let (mut real_hits, mut real_seen) = (vec![0usize; classes], vec![0usize; classes]);
    for start in (0..n).step_by(BATCH) {
        let idx: Vec<usize> = (start..(start + BATCH).min(n)).collect();
        let x = batch_tensor(real, &idx, None, device);
        real_sharp += sharpness_sum(&x);
        let f = classifier.features(x.clone());
        dims = f.dims()[1];
        let labels = idx.iter().map(|&i| real.labels[i]);
        for (want, got) in labels
            .clone()
            .zip(argmax_rows(classifier.logits(f.clone())))
        {
            right += usize::from(want == got);
            if (want as usize) < classes {
                real_seen[want as usize] += 1;
                real_hits[want as usize] += usize::from(want == got);
            }
        }
        real_feats.extend(f.into_data().try_into_vec::<f32>().expect("f32 features"));
        recon_right += labels
            .zip(predict(
                classifier,
                reconstruct(model, x, &real.labels_of(&idx)),
            ))
            .filter(|(a, b)| a == b)
            .count();
        progress(start + idx.len(), total);
    }
    let (mut hits, mut drawn) = (vec![0usize; classes], vec![0usize; classes]);
    for (b, start) in (0..samples).step_by(BATCH).enumerate() {
        let m = BATCH.min(samples - start);
        let x = sample_batch(model, m, seed, b as u64, None, temperature, device);
        fake_sharp += sharpness_sum(&x);
        let f = classifier.features(x);
        if classes > 0 {
            let want = sample_labels(model, m, None, b * m);
            for (w, p) in want.iter().zip(argmax_rows(classifier.logits(f.clone()))) {
                drawn[*w as usize] += 1;
                hits[*w as usize] += usize::from(*w == p);
            }
        }
        fake_feats.extend(f.into_data().try_into_vec::<f32>().expect("f32 features"));
        progress(n + start + m, total);
    }
    let fid = frechet_distance(
        &FeatureStats::from_rows(&real_feats, dims),
        &FeatureStats::from_rows(&fake_feats, dims),
    );
    GenerationReport {
        fid,
        samples,
        reference_images: n,
        classifier_accuracy: right as f64 / n.max(1) as f64,
        recon_accuracy: recon_right as f64 / n.max(1) as f64,
        class_accuracy: (classes > 0).then(|| fractions(&hits, &drawn)),
        real_class_accuracy: (classes > 0).then(|| fractions(&real_hits, &real_seen)),
        sample_sharpness: fake_sharp / samples.max(1) as f64,
        real_sharpness: real_sharp / n.max(1) as f64,
    }
}

/// The sum over a batch of images of their Laplacian variance.
fn sharpness_sum(x: &burn::tensor::Tensor<4>) -> f64 {
    let shape = x.dims();
    let px = x
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 images");
    let (mean, n) = super::mean_laplacian_variance(&px, shape);
    mean * n as f64
}

/// hits / total for each class (0 where a class has none).
fn fractions(hits: &[usize], total: &[usize]) -> Vec<f64> {
    hits.iter()
        .zip(total)
        .map(|(h, t)| *h as f64 / (*t).max(1) as f64)
        .collect()
}
