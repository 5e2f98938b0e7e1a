//! Looking at a model: samples from the prior, reconstructions, and paths through the latent
//! space (interpolations, traversals, the 2-D manifold), codes in and out, projections.

pub mod codes;
pub mod interpolate;
pub mod manifold;
pub mod pca;
pub mod traverse;

pub use codes::{encode_dataset, read_codes_csv, write_codes_csv, Codes};
pub use interpolate::{interpolate, lerp, slerp};
pub use manifold::{manifold_codes, normal_quantiles};
pub use pca::Pca;
pub use traverse::traverse;

use burn::tensor::{Device, Tensor, TensorData};

use crate::model::Vae;
use crate::rng::{normals, stream_rng, Stream};

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

/// Decodes batch `index` of prior draws from `seed` (see [`prior_z_at`]) into mean images.
///
/// # Shapes
/// returns `[n, channels, height, width]`
pub fn sample_batch(model: &Vae, n: usize, latent: usize, seed: u64, index: u64, device: &Device) -> Tensor<4> {
    model.decode_mean(prior_z_at(n, latent, seed, index, device))
}

/// Decodes latent codes given on the host, `latent` values per code, into mean images.
///
/// # Shapes
/// `codes`: `n * latent` values -> `[n, channels, height, width]`
pub fn decode_codes(model: &Vae, codes: &[f32], latent: usize, device: &Device) -> Tensor<4> {
    let n = codes.len() / latent.max(1);
    model.decode_mean(Tensor::from_data(TensorData::new(codes.to_vec(), [n, latent]), device))
}

/// Decodes `n` draws from the prior into mean images in [0, 1].
///
/// # Shapes
/// returns `[n, channels, height, width]`
pub fn sample(model: &Vae, n: usize, latent: usize, seed: u64, device: &Device) -> Tensor<4> {
    model.decode_mean(prior_z(n, latent, seed, device))
}

/// Encodes images and decodes their posterior means: the model's reconstruction.
///
/// # Shapes
/// `x`: `[n, channels, height, width]` -> same
pub fn reconstruct(model: &Vae, x: Tensor<4>) -> Tensor<4> {
    model.decode_mean(model.encode(x).mean)
}
