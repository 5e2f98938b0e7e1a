//! The negative ELBO of a dataset, in nats per image.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::Likelihood;
use crate::data::{Dataset, batch_tensor};
use crate::likelihood::reconstruction_nll;
use crate::model::Vae;

/// The test ELBO and its terms, averaged over images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElboReport {
    /// recon + KL: an upper bound on -log p(x), nats per image.
    pub neg_elbo: f64,
    /// Reconstruction negative log-likelihood, nats per image.
    pub recon: f64,
    /// KL(q(z|x) || N(0, I)), nats per image (for a hierarchical VAE the single-sample
    /// estimate of KL(q(z1, z2|x) || p(z1, z2)), see [`crate::model::LatentDraw::kl_dims`]).
    pub kl: f64,
    /// Images evaluated.
    pub images: usize,
    /// Seed of the noise.
    pub seed: u64,
}

/// Images per evaluation batch.
pub const EVAL_BATCH: usize = 500;

/// The terms of the negative ELBO of the batch `x` (with one-hot conditions `y` for a
/// conditional model) with one sampled z per image: the reconstruction term per image and the
/// KL per image and dimension (see [`crate::model::LatentDraw::kl_dims`]). The noise is batch
/// `batch` of `seed`'s, as [`evaluate_elbo`] draws it for its batches of [`EVAL_BATCH`] images.
///
/// # Shapes
/// `x`: `[n, channels, height, width]`, `y`: `[n, classes]` -> `[n]`, `[n, latent dims]`
pub fn elbo_terms(
    model: &Vae,
    x: Tensor<4>,
    y: Option<Tensor<2>>,
    likelihood: Likelihood,
    seed: u64,
    batch: usize,
    device: &Device,
) -> (Tensor<1>, Tensor<2>) {
    let posterior = model.encode(x.clone(), y.clone());
    let draw = super::eval_draw(model, &posterior, y.clone(), seed, batch, device);
    let logits = model.decode(draw.z, y);
    (reconstruction_nll(logits, x, likelihood), draw.kl_dims)
}

/// The negative ELBO of every image of `ds`, with one sampled z per image (with z = mean it
/// would not be a bound). The noise comes from `seed`, so the same model, data and seed always
/// give the same figure. Binarise `ds` first with [`super::eval_set`] where the model expects it.
pub fn evaluate_elbo(
    model: &Vae,
    ds: &Dataset,
    likelihood: Likelihood,
    seed: u64,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> ElboReport {
    let (mut recon, mut kl) = (0.0f64, 0.0f64);
    let n = ds.len();
    let mut done = 0;
    for (b, start) in (0..n).step_by(EVAL_BATCH).enumerate() {
        let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(n)).collect();
        let x = batch_tensor(ds, &idx, None, device);
        let y = model.condition(&ds.labels_of(&idx), device);
        let (recon_per_image, kl_dims) = elbo_terms(model, x, y, likelihood, seed, b, device);
        let r: Tensor<1> = recon_per_image.sum();
        let k: Tensor<1> = kl_dims.sum();
        recon += r.into_scalar::<f32>() as f64;
        kl += k.into_scalar::<f32>() as f64;
        done += idx.len();
        progress(done, n);
    }
    let images = n.max(1) as f64;
    ElboReport {
        neg_elbo: (recon + kl) / images,
        recon: recon / images,
        kl: kl / images,
        images: n,
        seed,
    }
}
