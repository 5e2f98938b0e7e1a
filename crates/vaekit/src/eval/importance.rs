//! The importance-sampled estimate of log p(x) (Burda et al. 2016, the IWAE paper):
//!
//! log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),
//!
//! computed with a streaming log-sum-exp so that K = 5000 runs in bounded memory. For K = 1 it
//! is the single-sample ELBO estimate; it never decreases in expectation as K grows and converges
//! to log p(x).

use burn::tensor::{Device, Tensor, TensorData};

use crate::distribution::DiagonalGaussian;
use crate::model::Latents;
use crate::rng::{Stream, normals, stream_rng};
use crate::weights::{LogSumExp, log_weights};

/// The IS estimate of log p(x) for each image of a batch, with `k` samples drawn `chunk` at a
/// time from the generator seeded by (`seed`, `batch_index`); `latents` draws and scores the
/// latents (a [`crate::model::Vae`], or [`crate::model::StandardNormalPrior`]).
///
/// # Shapes
/// `posterior`: `[b, latent]`, `x`: `[b, c, h, w]` -> one value per image
#[allow(clippy::too_many_arguments)]
pub fn log_likelihood_batch(
    posterior: &DiagonalGaussian,
    x: &Tensor<4>,
    y: Option<&Tensor<2>>,
    k: usize,
    chunk: usize,
    seed: u64,
    batch_index: u64,
    device: &Device,
    latents: &dyn Latents,
    log_likelihood: &dyn Fn(Tensor<2>, Tensor<4>) -> Tensor<1>,
) -> Vec<f64> {
    let b = posterior.mean.dims()[0];
    let noise = latents.noise_dim();
    let mut acc = vec![LogSumExp::default(); b];
    let mut rng = stream_rng(seed, Stream::ImportanceNoise, batch_index);
    let mut done = 0;
    while done < k {
        let kk = chunk.max(1).min(k - done);
        let eps = Tensor::from_data(
            TensorData::new(normals(&mut rng, kk * b * noise), [kk * b, noise]),
            device,
        );
        let lw = log_weights(posterior, x, y, eps, kk, latents, log_likelihood)
            .0
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32");
        for (row, v) in lw.iter().enumerate() {
            acc[row % b].push(*v as f64);
        }
        done += kk;
    }
    acc.iter().map(LogSumExp::log_mean_exp).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::distribution::standard_normal_log_prob;
    use crate::model::StandardNormalPrior;
    use std::f64::consts::PI;

    /// p(z) = N(0, 1), p(x|z) = N(x; z, s^2): then p(x) = N(x; 0, 1 + s^2) in closed form.
    pub(crate) fn linear_gaussian(s: f64) -> impl Fn(Tensor<2>, Tensor<4>) -> Tensor<1> {
        move |z: Tensor<2>, x: Tensor<4>| {
            let n = x.dims()[0];
            let d = x.reshape([n, 1]) - z;
            (d.clone() * d)
                .div_scalar(s * s)
                .add_scalar((2.0 * PI * s * s).ln())
                .mul_scalar(-0.5)
                .reshape([n])
        }
    }

    #[test]
    fn estimate_converges_to_the_closed_form_and_improves_with_k() {
        let dev = Device::flex();
        let s = 0.5f64;
        let xs = [0.3f32, -1.2, 2.0];
        let x = Tensor::<1>::from_floats(xs, &dev).reshape([3, 1, 1, 1]);
        // The true posterior is N(0.8 x, 0.2); q is shifted from it (std 0.5, means off by
        // 0.14 to 0.4), so the ELBO is well below log p(x).
        let q = DiagonalGaussian::new(
            Tensor::<1>::from_floats([0.1f32, -0.7, 1.2], &dev).reshape([3, 1]),
            Tensor::<2>::zeros([3, 1], &dev).add_scalar(0.25f64.ln()),
        );
        let f = linear_gaussian(s);
        let exact: Vec<f64> = xs
            .iter()
            .map(|&v| -0.5 * ((v as f64).powi(2) / (1.0 + s * s) + (2.0 * PI * (1.0 + s * s)).ln()))
            .collect();
        let big = log_likelihood_batch(
            &q,
            &x,
            None,
            20_000,
            5_000,
            0,
            0,
            &dev,
            &StandardNormalPrior(1),
            &f,
        );
        for i in 0..3 {
            assert!(
                (big[i] - exact[i]).abs() < 0.03,
                "image {i}: {} vs exact {}",
                big[i],
                exact[i]
            );
        }
        // Averaged over seeds: K = 1 (the ELBO) is below log p(x), and K = 100 is better.
        let mean = |k: usize| -> f64 {
            (0..100)
                .map(|seed| {
                    log_likelihood_batch(
                        &q,
                        &x,
                        None,
                        k,
                        k,
                        seed,
                        0,
                        &dev,
                        &StandardNormalPrior(1),
                        &f,
                    )
                    .iter()
                    .sum::<f64>()
                })
                .sum::<f64>()
                / 100.0
        };
        let (m1, m100, total) = (mean(1), mean(100), exact.iter().sum::<f64>());
        assert!(m1 < total - 0.3, "K=1 {m1} vs log p(x) {total}");
        assert!(m100 > m1 + 0.2, "K=100 {m100} vs K=1 {m1}");
        assert!(
            (m100 - total).abs() < 0.1,
            "K=100 {m100} vs log p(x) {total}"
        );
    }

    #[test]
    fn one_sample_is_the_elbo_estimate_and_jensen_holds() {
        let dev = Device::flex();
        let f = linear_gaussian(0.7);
        let x = Tensor::<1>::from_floats([0.4f32, 1.5], &dev).reshape([2, 1, 1, 1]);
        let q = DiagonalGaussian::new(
            Tensor::<1>::from_floats([0.2f32, 0.9], &dev).reshape([2, 1]),
            Tensor::<1>::from_floats([-1.0f32, -0.5], &dev).reshape([2, 1]),
        );
        // K = 1: log p(x|z) + log p(z) - log q(z|x) at the same z.
        let est = log_likelihood_batch(&q, &x, None, 1, 1, 9, 0, &dev, &StandardNormalPrior(1), &f);
        let eps = normals(&mut stream_rng(9, Stream::ImportanceNoise, 0), 2);
        let z = q.rsample(Tensor::<1>::from_floats(eps.as_slice(), &dev).reshape([2, 1]));
        let elbo = (f(z.clone(), x.clone()) + standard_normal_log_prob(z.clone()) - q.log_prob(z))
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for i in 0..2 {
            assert!(
                (est[i] - elbo[i] as f64).abs() < 1e-5,
                "{} vs {}",
                est[i],
                elbo[i]
            );
        }
        // Same K samples: log of the mean weight >= mean of the log weights.
        let eps = Tensor::from_data(
            TensorData::new(
                normals(&mut stream_rng(1, Stream::ImportanceNoise, 5), 50 * 2),
                [100, 1],
            ),
            &dev,
        );
        let lw = log_weights(&q, &x, None, eps, 50, &StandardNormalPrior(1), &f)
            .0
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for i in 0..2 {
            let mut acc = LogSumExp::default();
            let mut mean = 0.0;
            for s in 0..50 {
                acc.push(lw[s * 2 + i] as f64);
                mean += lw[s * 2 + i] as f64 / 50.0;
            }
            assert!(acc.log_mean_exp() >= mean);
        }
    }
}
