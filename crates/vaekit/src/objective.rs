//! The training objectives of [`crate::config::Objective`]: the negative ELBO and the
//! importance-weighted bound (IWAE, Burda et al. 2016).

use burn::tensor::Tensor;

use crate::config::{Likelihood, Objective};
use crate::likelihood::reconstruction_nll;
use crate::loss::{NegElbo, neg_elbo};
use crate::model::Vae;
use crate::weights::log_weights;

/// -log (1/k) sum_i w_i per image, from log weights in sample-major rows (row `s * b + i` is
/// sample `s` of image `i`), averaged over the `b` images. Stable (log-sum-exp) and
/// differentiable: the gradient weights each sample by its normalised importance weight.
///
/// # Shapes
/// `log_weights`: `[k * b]` -> `[1]`
pub fn iwae_loss(log_weights: Tensor<1>, k: usize) -> Tensor<1> {
    let b = log_weights.dims()[0] / k;
    let lw = log_weights.reshape([k, b]);
    // The shift only keeps exp() in range; it cancels in value and gradient.
    let shift = lw.clone().max_dim(0).detach(); // [1, b]
    let lse = (lw - shift.clone()).exp().sum_dim(0).log() + shift; // [1, b]
    lse.sub_scalar((k as f64).ln()).mean().neg()
}

/// The terms of one training step for `objective`: the loss to minimise and, for reporting,
/// the mean reconstruction term and the KL term (see [`crate::model::LatentDraw::kl_dims`])
/// over all samples.
///
/// `eps` holds `objective.samples()` standard normal draws of width `model.noise_dim()` per
/// image, sample-major; `y` is the one-hot condition of a conditional model.
///
/// # Shapes
/// `x`: `[b, c, h, w]`, `y`: `[b, classes]`, `eps`: `[k * b, noise_dim]`
#[allow(clippy::too_many_arguments)]
pub fn training_terms(
    model: &Vae,
    x: Tensor<4>,
    y: Option<Tensor<2>>,
    eps: Tensor<2>,
    objective: Objective,
    likelihood: Likelihood,
    beta: f64,
    free_bits: f64,
) -> NegElbo {
    let posterior = model.encode(x.clone(), y.clone());
    match objective {
        Objective::Elbo => {
            let draw = model.draw(&posterior, eps, y.clone());
            let logits = model.decode(draw.z, y);
            neg_elbo(logits, x, draw.kl_dims, likelihood, beta, free_bits)
        }
        Objective::Iwae { k } => {
            let yk = y.clone().map(|y| y.repeat_dim(0, k)); // labels of the sample-major rows
            let log_lik = |z: Tensor<2>, xs: Tensor<4>| {
                reconstruction_nll(model.decode(z, yk.clone()), xs, likelihood).neg()
            };
            let (log_w, log_lik, draw) =
                log_weights(&posterior, &x, y.as_ref(), eps, k, model, &log_lik); // [k * b] each
            NegElbo {
                loss: iwae_loss(log_w, k),
                recon: log_lik.mean().neg(),
                kl: draw.kl_dims.sum_dim(1).mean(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::distribution::standard_normal_log_prob;
    use crate::rng::{Stream, normals, stream_rng};
    use crate::weights::LogSumExp;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn iwae_loss_is_the_negative_log_mean_weight() {
        let dev = Device::flex();
        // Two images, three samples each (sample-major).
        let lw = [-10.0f32, -200.0, -11.5, -201.0, -9.0, -199.0];
        let got = iwae_loss(Tensor::<1>::from_floats(lw, &dev), 3).into_scalar::<f32>() as f64;
        let per_image = |i: usize| {
            let mut a = LogSumExp::default();
            (0..3).for_each(|s| a.push(lw[s * 2 + i] as f64));
            a.log_mean_exp()
        };
        let want = -(per_image(0) + per_image(1)) / 2.0;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn one_sample_iwae_is_the_sampled_elbo_and_k_tightens_it() {
        let dev = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..2 * 784)
                    .map(|i| ((i * 37) % 11) as f32 / 10.0)
                    .collect::<Vec<_>>(),
                [2, 1, 28, 28],
            ),
            &dev,
        );
        let v = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let two_layers = ModelConfig {
            top: Some(crate::config::TopLatentConfig::default()),
            ..ModelConfig::default()
        };
        for cfg in [ModelConfig::default(), two_layers] {
            let model = Vae::init(&cfg, 3, &dev);
            let w = model.noise_dim();
            let eps = |n: usize, seed: u64| {
                Tensor::<2>::from_data(
                    TensorData::new(
                        normals(&mut stream_rng(seed, Stream::TrainNoise, 0), n * 2 * w),
                        [n * 2, w],
                    ),
                    &dev,
                )
            };
            // k = 1: recon + log q(z|x) - log p(z) at the same z, i.e. the ELBO with the KL sampled.
            let one = training_terms(
                &model,
                x.clone(),
                None,
                eps(1, 0),
                Objective::Iwae { k: 1 },
                Likelihood::Bernoulli,
                1.0,
                0.0,
            );
            let q = model.encode(x.clone(), None);
            let d = model.draw(&q, eps(1, 0), None);
            let sampled = reconstruction_nll(
                model.decode(d.z.clone(), None),
                x.clone(),
                Likelihood::Bernoulli,
            ) - d.log_ratio;
            assert!((v(one.loss) - v(sampled.mean())).abs() < 1e-3);
            if cfg.top.is_none() {
                let z = q.rsample(eps(1, 0));
                let by_hand = standard_normal_log_prob(z.clone()) - q.log_prob(z);
                assert!((v(by_hand.mean()) - d_ratio(&model, &q, eps(1, 0))).abs() < 1e-4);
            }
            // Averaged over noise, the k = 1 loss is the VAE objective (closed-form KL) ...
            let elbo = |seed| {
                v(training_terms(
                    &model,
                    x.clone(),
                    None,
                    eps(1, seed),
                    Objective::Elbo,
                    Likelihood::Bernoulli,
                    1.0,
                    0.0,
                )
                .loss)
            };
            let iw1 = |seed| {
                v(training_terms(
                    &model,
                    x.clone(),
                    None,
                    eps(1, seed),
                    Objective::Iwae { k: 1 },
                    Likelihood::Bernoulli,
                    1.0,
                    0.0,
                )
                .loss)
            };
            let iw20 = |seed| {
                v(training_terms(
                    &model,
                    x.clone(),
                    None,
                    eps(20, seed),
                    Objective::Iwae { k: 20 },
                    Likelihood::Bernoulli,
                    1.0,
                    0.0,
                )
                .loss)
            };
            let mean = |f: &dyn Fn(u64) -> f64| (0..200).map(f).sum::<f64>() / 200.0;
            let (m_elbo, m_iw1, m_iw20) = (mean(&elbo), mean(&iw1), mean(&iw20));
            assert!(
                (m_elbo - m_iw1).abs() < 0.02 * m_elbo.abs(),
                "{m_elbo} vs {m_iw1}"
            );
            // ... and more samples give a tighter (lower) bound.
            assert!(m_iw20 < m_iw1, "{m_iw20} vs {m_iw1}");
        }
    }

    /// The mean log p(z) - log q(z|x) of a draw.
    fn d_ratio(model: &Vae, q: &crate::distribution::DiagonalGaussian, eps: Tensor<2>) -> f64 {
        model
            .draw(q, eps, None)
            .log_ratio
            .mean()
            .into_scalar::<f32>() as f64
    }
}
