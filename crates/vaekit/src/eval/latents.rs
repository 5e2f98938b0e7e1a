//! What the encoder does with the latent space: active units, the KL of each dimension, and
//! how well images come back from their posterior means.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, batch_tensor};
use crate::model::Vae;

/// Threshold on Cov_x(E_q[z_d | x]) above which dimension d counts as active (Burda et al. 2016).
pub const ACTIVE_THRESHOLD: f64 = 0.01;

/// Per-dimension statistics of q(z|x) over a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentReport {
    /// Dimensions whose posterior mean varies across the data: variance > [`ACTIVE_THRESHOLD`].
    pub active_units: usize,
    /// Variance across the data of each dimension's posterior mean.
    pub mean_variance: Vec<f64>,
    /// KL(q(z_d|x) || N(0, 1)) of each dimension d, nats, averaged over images.
    pub kl_per_dim: Vec<f64>,
    /// Squared error between the images and the decoder's mean image at the posterior mean,
    /// per pixel, pixels in [0, 1].
    pub recon_mse: f64,
    /// Images evaluated.
    pub images: usize,
}

/// Encodes every image of `ds` (in batches of `batch`) and gathers [`LatentReport`].
pub fn latent_statistics(
    model: &Vae,
    ds: &Dataset,
    batch: usize,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> LatentReport {
    let n = ds.len();
    let mut sum: Vec<f64> = Vec::new();
    let mut sum_sq: Vec<f64> = Vec::new();
    let mut kl: Vec<f64> = Vec::new();
    let mut sq_err = 0.0f64;
    for start in (0..n).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch.max(1)).min(n)).collect();
        let x = batch_tensor(ds, &idx, None, device);
        let y = model.condition(&ds.labels_of(&idx), device);
        let q = model.encode(x.clone(), y.clone());
        let latent = q.mean.dims()[1];
        if sum.is_empty() {
            (sum, sum_sq, kl) = (vec![0.0; latent], vec![0.0; latent], vec![0.0; latent]);
        }
        let kl_batch = q.kl_per_dimension().mul_scalar(idx.len() as f64); // [latent], summed over images
        let recon = model.decode_mean(q.mean.clone(), y);
        let d = recon - x;
        let err: Tensor<1> = (d.clone() * d).sum();
        sq_err += err.into_scalar::<f32>() as f64;
        let means = q.mean.into_data().try_into_vec::<f32>().expect("f32 means");
        for row in means.chunks(latent) {
            for (j, &m) in row.iter().enumerate() {
                sum[j] += m as f64;
                sum_sq[j] += (m as f64) * (m as f64);
            }
        }
        for (j, v) in kl_batch
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 kl")
            .iter()
            .enumerate()
        {
            kl[j] += *v as f64;
        }
        progress(idx.len() + start, n);
    }
    let nf = n.max(1) as f64;
    let mean_variance: Vec<f64> = sum
        .iter()
        .zip(&sum_sq)
        .map(|(s, s2)| (s2 / nf - (s / nf).powi(2)).max(0.0))
        .collect();
    LatentReport {
        active_units: mean_variance
            .iter()
            .filter(|&&v| v > ACTIVE_THRESHOLD)
            .count(),
        mean_variance,
        kl_per_dim: kl.iter().map(|v| v / nf).collect(),
        recon_mse: sq_err / (nf * ds.shape.numel() as f64),
        images: n,
    }
}
