//! Evaluation: the ELBO, the importance-sampled log-likelihood, latent statistics and the
//! Frechet distance of generated images.
//!
//! Every function takes the dataset as it should be scored; [`eval_set`] prepares it the way the
//! literature does (a binarised test set is binarised once, with a fixed seed).

pub mod elbo;
pub mod frechet;
pub mod generation;
pub mod importance;
pub mod latents;
pub mod nll;
pub mod sharpness;

pub use elbo::{EVAL_BATCH, ElboReport, evaluate_elbo};
pub use frechet::{FeatureStats, frechet_distance};
pub use generation::{GenerationReport, evaluate_generation};
pub use latents::{ACTIVE_THRESHOLD, LatentReport, latent_statistics};
pub use nll::{IW_BATCH, IW_ROWS, NllReport, bits_per_dim, evaluate_nll};
pub use sharpness::{laplacian_variance, mean_laplacian_variance};

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::Binarize;
use crate::data::Dataset;
use crate::distribution::DiagonalGaussian;
use crate::model::{LatentDraw, Vae};
use crate::rng::{Stream, normals, stream_rng};

/// The latents of evaluation batch `batch` (of [`EVAL_BATCH`] images) drawn from `q` with the
/// noise of (`seed`, batch): the ELBO and the latent statistics of one seed see the same draws.
pub(crate) fn eval_draw(
    model: &Vae,
    q: &DiagonalGaussian,
    y: Option<Tensor<2>>,
    seed: u64,
    batch: usize,
    device: &Device,
) -> LatentDraw {
    let (n, noise) = (q.mean.dims()[0], model.noise_dim());
    let eps = normals(
        &mut stream_rng(seed, Stream::EvalNoise, batch as u64),
        n * noise,
    );
    model.draw(
        q,
        Tensor::from_data(TensorData::new(eps, [n, noise]), device),
        y,
    )
}

/// The evaluation copy of `ds`: as it is for `Binarize::None`; for `Dynamic` and `Static`,
/// every pixel binarised once (255 with probability pixel/255) from `seed`, so a model is
/// always scored on the same binary images (the standard MNIST protocol: train with dynamic
/// binarisation, test on one fixed draw). Pixels already 0 or 255 stay as they are.
pub fn eval_set(ds: &Dataset, binarize: Binarize, seed: u64) -> Dataset {
    let mut out = ds.clone();
    if binarize != Binarize::None {
        out.binarize_static(seed);
    }
    out
}
