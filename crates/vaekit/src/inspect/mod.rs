//! Looking at a model: samples from the prior, reconstructions, and paths through the latent
//! space (interpolations, traversals, the 2-D manifold), codes in and out, projections.

pub mod codes;
pub mod interpolate;
pub mod manifold;
pub mod pca;
pub mod render;
pub mod traverse;

pub use codes::{Codes, encode_dataset, read_codes_csv, read_label_column, write_codes_csv};
pub use interpolate::{interpolate, lerp, slerp};
pub use manifold::{manifold_codes, normal_quantiles};
pub use pca::Pca;
pub use render::{Rendered, render_image, save_gif};
pub use traverse::traverse;

use burn::tensor::{Device, Tensor, TensorData};

use crate::model::Vae;
use crate::rng::{Stream, normals, stream_rng};

/// z ~ N(0, I) drawn on the host from `seed`: the same seed gives the same z on any device.
///
/// # Shapes
/// returns `[n, latent]`
pub fn prior_z(n: usize, latent: usize, seed: u64, device: &Device) -> Tensor<2> {
    prior_z_at(n, latent, seed, 0, device)
}

/// Batch `index` of prior draws from `seed`: many batches from one seed never repeat.
///
/// # Shapes
/// returns `[n, latent]`
pub fn prior_z_at(n: usize, latent: usize, seed: u64, index: u64, device: &Device) -> Tensor<2> {
    let v = normals(&mut stream_rng(seed, Stream::Prior, index), n * latent);
    Tensor::from_data(TensorData::new(v, [n, latent]), device)
}

/// Decodes batch `index` of prior draws from `seed` (see [`prior_z_at`]) into mean images:
/// z ~ N(0, I), for a hierarchical VAE z2 ~ N(0, I), z ~ p(z|z2), for a class prior z ~ p(z|y)
/// (see [`Vae::prior_sample`]).
///
/// `temperature` scales the standard normal noise (1 samples the model; below 1 draws nearer
/// the prior's centre, more typical and less varied images, as in Kingma & Dhariwal 2018).
///
/// # Shapes
/// returns `[n, channels, height, width]`
pub fn sample_batch(
    model: &Vae,
    n: usize,
    seed: u64,
    index: u64,
    class: Option<u32>,
    temperature: f64,
    device: &Device,
) -> Tensor<4> {
    let labels = sample_labels(model, n, class, index as usize * n);
    sample_labelled(model, n, &labels, seed, index, temperature, device)
}

/// [`sample_batch`] for the given labels (one per sample for a conditional model, empty for
/// an unconditional one).
///
/// # Shapes
/// returns `[n, channels, height, width]`
pub fn sample_labelled(
    model: &Vae,
    n: usize,
    labels: &[u32],
    seed: u64,
    index: u64,
    temperature: f64,
    device: &Device,
) -> Tensor<4> {
    let noise = prior_z_at(n, model.noise_dim(), seed, index, device);
    let noise = model.prior.temper(noise, temperature);
    let y = model.condition(labels, device);
    let z = model.prior_sample(noise, y.clone());
    model.decode_mean(z, y)
}

/// Labels for `n` samples of a conditional model: all `class`, or the classes in turn starting
/// at `offset` (balanced); empty for an unconditional model.
pub fn sample_labels(model: &Vae, n: usize, class: Option<u32>, offset: usize) -> Vec<u32> {
    let c = model.classes();
    if c == 0 {
        return Vec::new();
    }
    (0..n)
        .map(|i| class.unwrap_or(((offset + i) % c) as u32))
        .collect()
}

/// Decodes latent codes given on the host (the model's latent dimension per code) into mean
/// images; a conditional model takes one label per code from `labels` (ignored otherwise).
///
/// # Shapes
/// `codes`: `n * latent` values -> `[n, channels, height, width]`
pub fn decode_codes(model: &Vae, codes: &[f32], labels: &[u32], device: &Device) -> Tensor<4> {
    decode_codes_soft(
        model,
        codes,
        &crate::data::one_hot(labels, model.classes()),
        device,
    )
}

/// Decodes codes under soft conditions (rows of class weights, e.g. a path between two one-hot
/// labels); the plain decoder for an unconditional model.
///
/// # Shapes
/// `codes`: `n * latent` values, `weights`: `n * classes` values -> `[n, channels, height, width]`
pub fn decode_codes_soft(
    model: &Vae,
    codes: &[f32],
    weights: &[f32],
    device: &Device,
) -> Tensor<4> {
    let latent = model.latent_dim();
    let n = codes.len() / latent;
    let z = Tensor::from_data(TensorData::new(codes.to_vec(), [n, latent]), device);
    let c = model.classes();
    let y = (c > 0).then(|| Tensor::from_data(TensorData::new(weights.to_vec(), [n, c]), device));
    model.decode_mean(z, y)
}

/// Decodes `n` draws from the prior into mean images in [0, 1] (batch 0 of [`sample_batch`]).
///
/// # Shapes
/// returns `[n, channels, height, width]`
///
/// A conditional model draws `class` only, or every class in turn when `class` is `None`.
pub fn sample(
    model: &Vae,
    n: usize,
    seed: u64,
    class: Option<u32>,
    temperature: f64,
    device: &Device,
) -> Tensor<4> {
    sample_batch(model, n, seed, 0, class, temperature, device)
}

/// Encodes images and decodes their posterior means: the model's reconstruction.
///
/// # Shapes
/// `x`: `[n, channels, height, width]` -> same
///
/// `labels` (one per image) condition a conditional model and are ignored otherwise.
pub fn reconstruct(model: &Vae, x: Tensor<4>, labels: &[u32]) -> Tensor<4> {
    let y = model.condition(labels, &x.device());
    model.decode_mean(model.encode(x, y.clone()).mean, y)
}
