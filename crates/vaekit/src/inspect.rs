//! Looking at a model: samples from the prior and reconstructions of real images.

use burn::tensor::{Device, Tensor, TensorData};

use crate::loss::mean_image;
use crate::model::Vae;
use crate::rng::{normals, stream_rng, Stream};

/// z ~ N(0, I) drawn on the host from `seed`: the same seed gives the same z on any device.
///
/// # Shapes
/// returns `[n, latent]`
pub fn prior_z(n: usize, latent: usize, seed: u64, device: &Device) -> Tensor<2> {
    let v = normals(&mut stream_rng(seed, Stream::Prior, 0), n * latent);
    Tensor::from_data(TensorData::new(v, [n, latent]), device)
}

/// Decodes `n` draws from the prior into mean images in [0, 1].
///
/// # Shapes
/// returns `[n, channels, height, width]`
pub fn sample(model: &Vae, n: usize, latent: usize, seed: u64, device: &Device) -> Tensor<4> {
    mean_image(model.decode(prior_z(n, latent, seed, device)))
}

/// Encodes images and decodes their posterior means: the model's reconstruction.
///
/// # Shapes
/// `x`: `[n, channels, height, width]` -> same
pub fn reconstruct(model: &Vae, x: Tensor<4>) -> Tensor<4> {
    mean_image(model.decode(model.encode(x).mean))
}
