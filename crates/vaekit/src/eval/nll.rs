//! The importance-sampled negative log-likelihood of a dataset (Burda et al. 2016).

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::importance::log_likelihood_batch;
use crate::config::Likelihood;
use crate::data::{Dataset, batch_tensor};
use crate::likelihood::reconstruction_nll;
use crate::model::Vae;

/// An importance-sampled estimate of -log p(x), averaged over images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NllReport {
    /// -log p(x) estimated with `k` importance samples, nats per image.
    pub nll: f64,
    /// The same in bits per dimension (see [`bits_per_dim`]).
    pub bits_per_dim: f64,
    /// Importance samples per image.
    pub k: usize,
    /// Images evaluated.
    pub images: usize,
    /// Seed of the importance samples.
    pub seed: u64,
}

/// Image x sample rows decoded at once by [`evaluate_nll`]: bounds memory for any K.
pub const IW_ROWS: usize = 5000;
/// Images per batch of [`evaluate_nll`]; each batch is encoded once for all its K samples.
pub const IW_BATCH: usize = 100;

/// Nats per image to bits per dimension, `dims` values per image.
///
/// Bernoulli and discretised logistic: nll / (dims ln 2), the probability of the binary or
/// 8-bit image in bits. Gaussians: the density is of pixels scaled to [0, 1]; on the 8-bit scale
/// [0, 255] it is 255^dims times smaller, so bits/dim = nll / (dims ln 2) + log2 255, the
/// convention of the literature for continuous models of 8-bit images.
pub fn bits_per_dim(nll: f64, dims: usize, likelihood: Likelihood) -> f64 {
    let bits = nll / (dims as f64 * std::f64::consts::LN_2);
    if likelihood.is_discrete() {
        bits
    } else {
        bits + 255f64.log2()
    }
}

/// log p(x) of each image of the batch `x` (with one-hot conditions `y` for a conditional
/// model), estimated with `k` importance samples (see [`super::importance`]): batch
/// `batch_index` of the noise of `seed`, as [`evaluate_nll`] draws it for its batches of
/// [`IW_BATCH`] images. Samples are decoded [`IW_ROWS`] rows at a time.
///
/// # Shapes
/// `x`: `[n, channels, height, width]`, `y`: `[n, classes]` -> `n` values
#[allow(clippy::too_many_arguments)]
pub fn log_likelihood_images(
    model: &Vae,
    x: Tensor<4>,
    y: Option<Tensor<2>>,
    likelihood: Likelihood,
    k: usize,
    seed: u64,
    batch_index: u64,
    device: &Device,
) -> Vec<f64> {
    let posterior = model.encode(x.clone(), y.clone());
    let b_images = x.dims()[0];
    // Rows are sample-major, so the labels repeat once per sample (see `log_weights`).
    let log_lik = |z: Tensor<2>, xs: Tensor<4>| {
        let yk = y
            .as_ref()
            .map(|y| y.clone().repeat_dim(0, z.dims()[0] / b_images));
        reconstruction_nll(model.decode(z, yk), xs, likelihood).neg()
    };
    let chunk = (IW_ROWS / b_images.max(1)).max(1);
    log_likelihood_batch(
        &posterior,
        &x,
        y.as_ref(),
        k,
        chunk,
        seed,
        batch_index,
        device,
        model,
        &log_lik,
    )
}

/// -log p(x) of every image of `ds`, estimated with `k` importance samples per image (see
/// [`super::importance`]). Images go through the encoder once per batch of [`IW_BATCH`]; their
/// samples are decoded [`IW_ROWS`] rows at a time. Binarise `ds` first with [`super::eval_set`]
/// where the model expects it. `progress(done, total)` is called after every batch.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_nll(
    model: &Vae,
    ds: &Dataset,
    likelihood: Likelihood,
    k: usize,
    seed: u64,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> NllReport {
    let n = ds.len();
    let (mut total, mut done) = (0.0f64, 0usize);
    for (b, start) in (0..n).step_by(IW_BATCH).enumerate() {
        let idx: Vec<usize> = (start..(start + IW_BATCH).min(n)).collect();
        let x = batch_tensor(ds, &idx, None, device);
        let y = model.condition(&ds.labels_of(&idx), device);
        let lp = log_likelihood_images(model, x, y, likelihood, k, seed, b as u64, device);
        total -= lp.iter().sum::<f64>();
        done += idx.len();
        progress(done, n);
    }
    let nll = total / n.max(1) as f64;
    NllReport {
        nll,
        bits_per_dim: bits_per_dim(nll, ds.shape.numel(), likelihood),
        k,
        images: n,
        seed,
    }
}
