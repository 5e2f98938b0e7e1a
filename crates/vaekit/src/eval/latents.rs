//! What the encoder does with the latent space: active units, the KL of each dimension, and
//! how well images come back from their posterior means.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, batch_tensor};
use crate::model::{TopLatent, Vae};

/// Threshold on Cov_x(E_q[z_d | x]) above which dimension d counts as active (Burda et al. 2016).
pub const ACTIVE_THRESHOLD: f64 = 0.01;

/// Per-dimension statistics of q(z|x) over a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentReport {
    /// Dimensions whose posterior mean varies across the data: variance > [`ACTIVE_THRESHOLD`].
    pub active_units: usize,
    /// Variance across the data of each dimension's posterior mean.
    pub mean_variance: Vec<f64>,
    /// KL(q(z_d|x) || p(z_d)) of each dimension d, nats, averaged over images: in closed form
    /// against N(0, 1) or one class's Gaussian. For a hierarchical VAE the z1 dimensions then
    /// the z2 dimensions of the ELBO's KL term, and for a mixture class prior its share of each
    /// dimension, estimated with one draw per image (see [`crate::model::LatentDraw::kl_dims`]);
    /// they sum to the KL of [`super::evaluate_elbo`] with the same seed and batches.
    pub kl_per_dim: Vec<f64>,
    /// For a hierarchical VAE: active units of z2, from the means of q(z2|z1) at z1 = E[z1|x].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_active_units: Option<usize>,
    /// Squared error between the images and the decoder's mean image at the posterior mean,
    /// per pixel, pixels in [0, 1].
    pub recon_mse: f64,
    /// Images evaluated.
    pub images: usize,
}

/// Encodes every image of `ds` (in batches of `batch`) and gathers [`LatentReport`]; `seed`
/// drives the draws of a hierarchical VAE's KL estimate (a one-layer model needs none).
pub fn latent_statistics(
    model: &Vae,
    ds: &Dataset,
    batch: usize,
    seed: u64,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> LatentReport {
    let n = ds.len();
    let mut kl = vec![0.0f64; model.latent_dim() + model.top().map_or(0, TopLatent::latent)];
    let mut sq_err = 0.0f64;
    let (mut z, mut top) = (Moments::default(), Moments::default()); // of E[z|x], E[z2|E[z|x]]
    for (b, start) in (0..n).step_by(batch.max(1)).enumerate() {
        let idx: Vec<usize> = (start..(start + batch.max(1)).min(n)).collect();
        let x = batch_tensor(ds, &idx, None, device);
        let y = model.condition(&ds.labels_of(&idx), device);
        let q = model.encode(x.clone(), y.clone());
        if let Some(t) = model.top() {
            top.add(t.encode(q.mean.clone()).mean);
        }
        // One layer: the closed-form KL to the prior (p(z|y) with a class prior); two layers:
        // the single-draw estimate of [`crate::model::LatentDraw::kl_dims`].
        let draw = super::eval_draw(model, &q, y.clone(), seed, b, device);
        let kl_batch: Tensor<1> = draw.kl_dims.sum_dim(0).squeeze_dim::<1>(0); // [latent (+ top latent)], summed over images
        let recon = model.decode_mean(q.mean.clone(), y);
        let d = recon - x;
        let err: Tensor<1> = (d.clone() * d).sum();
        sq_err += err.into_scalar::<f32>() as f64;
        z.add(q.mean);
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
    let mean_variance = z.variances(nf);
    LatentReport {
        active_units: active(&mean_variance),
        top_active_units: model.top().map(|_| active(&top.variances(nf))),
        mean_variance,
        kl_per_dim: kl.iter().map(|v| v / nf).collect(),
        recon_mse: sq_err / (nf * ds.shape.numel() as f64),
        images: n,
    }
}

/// Sums and sums of squares of each column of posterior means.
#[derive(Default)]
struct Moments {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl Moments {
    fn add(&mut self, means: Tensor<2>) {
        let d = means.dims()[1];
        if self.sum.is_empty() {
            (self.sum, self.sum_sq) = (vec![0.0; d], vec![0.0; d]);
        }
        let v = means.into_data().try_into_vec::<f32>().expect("f32 means");
        for row in v.chunks(d) {
            for (j, &m) in row.iter().enumerate() {
                self.sum[j] += m as f64;
                self.sum_sq[j] += (m as f64) * (m as f64);
            }
        }
    }

    /// Variance of each column over `n` rows.
    fn variances(&self, n: f64) -> Vec<f64> {
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, s2)| (s2 / n - (s / n).powi(2)).max(0.0))
            .collect()
    }
}

/// Dimensions whose variance exceeds [`ACTIVE_THRESHOLD`].
fn active(variances: &[f64]) -> usize {
    variances.iter().filter(|&&v| v > ACTIVE_THRESHOLD).count()
}
