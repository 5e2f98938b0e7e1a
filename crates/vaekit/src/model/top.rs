//! The second stochastic layer of a hierarchical VAE (`--model hvae`), as in the two-layer
//! models of the IWAE paper (Burda et al. 2016, section 5):
//!
//! generative: z2 ~ N(0, I), z1 ~ p(z1|z2) = N(mu(z2), diag exp(lv(z2))), x ~ p(x|z1);
//! inference:  z1 ~ q(z1|x), z2 ~ q(z2|z1) = N(m(z1), diag exp(l(z1))).
//!
//! The image network (conv or MLP) provides q(z1|x) and p(x|z1) exactly as in the one-layer
//! model; this module holds the two small tanh MLPs between z1 and z2, so the prior of z1 is a
//! learned mixture instead of N(0, I).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor};

use super::LatentDraw;
use super::mlp::stack;
use crate::distribution::{DiagonalGaussian, standard_normal_log_prob};

/// q(z2|z1) and p(z1|z2): tanh MLPs with Gaussian heads.
#[derive(Module, Debug)]
pub struct TopLatent {
    up: Vec<Linear>,
    up_mean: Linear,
    up_logvar: Linear,
    down: Vec<Linear>,
    down_mean: Linear,
    down_logvar: Linear,
    /// Dimension of z2.
    latent: usize,
}

/// Runs `x` through tanh layers, then the two heads of a diagonal Gaussian.
fn gaussian_head(
    layers: &[Linear],
    mean: &Linear,
    logvar: &Linear,
    x: Tensor<2>,
) -> DiagonalGaussian {
    let h = layers.iter().fold(x, |h, l| tanh(l.forward(h)));
    DiagonalGaussian::new(mean.forward(h.clone()), logvar.forward(h))
}

impl TopLatent {
    /// z1 of `below` dimensions, z2 of `latent`, hidden layers of `hidden` widths each way
    /// (the inference MLP goes up through them, the generative one down in reverse order).
    pub fn new(below: usize, latent: usize, hidden: &[usize], device: &Device) -> TopLatent {
        let (up, w_up) = stack(below, hidden.iter().copied(), device);
        let (down, w_down) = stack(latent, hidden.iter().rev().copied(), device);
        TopLatent {
            up,
            up_mean: LinearConfig::new(w_up, latent).init(device),
            up_logvar: LinearConfig::new(w_up, latent).init(device),
            down,
            down_mean: LinearConfig::new(w_down, below).init(device),
            down_logvar: LinearConfig::new(w_down, below).init(device),
            latent,
        }
    }

    /// Dimension of z2.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// Dimension of z1, the layer below.
    pub fn below(&self) -> usize {
        self.down_mean.weight.val().dims()[1]
    }

    /// q(z2|z1).
    ///
    /// # Shapes
    /// `z1`: `[batch, below]` -> `[batch, latent]`
    pub fn encode(&self, z1: Tensor<2>) -> DiagonalGaussian {
        gaussian_head(&self.up, &self.up_mean, &self.up_logvar, z1)
    }

    /// p(z1|z2).
    ///
    /// # Shapes
    /// `z2`: `[batch, latent]` -> `[batch, below]`
    pub fn prior(&self, z2: Tensor<2>) -> DiagonalGaussian {
        gaussian_head(&self.down, &self.down_mean, &self.down_logvar, z2)
    }
}

/// Draws z1 ~ q(z1|x), z2 ~ q(z2|z1) from `eps` (z1's columns first) and scores them against
/// p(z1|z2) p(z2), with `q2` = q(z2|.) and `p1` = p(z1|.) (see [`LatentDraw`]).
///
/// # Shapes
/// `q`: `[n, latent]`, `eps`: `[n, latent + top]`
pub fn draw_two_layers(
    q: &DiagonalGaussian,
    eps: Tensor<2>,
    q2: &dyn Fn(Tensor<2>) -> DiagonalGaussian,
    p1: &dyn Fn(Tensor<2>) -> DiagonalGaussian,
) -> LatentDraw {
    let [_, latent] = q.mean.dims();
    let top = eps.dims()[1] - latent;
    let z = q.rsample(eps.clone().narrow(1, 0, latent)); // [n, latent]
    let q2 = q2(z.clone());
    let z2 = q2.rsample(eps.narrow(1, latent, top)); // [n, top]
    let p1 = p1(z2.clone());
    let log_q1 = q.log_prob_per_dim(z.clone());
    let log_p1 = p1.log_prob_per_dim(z.clone());
    let log_ratio = (log_p1.clone() - log_q1.clone())
        .sum_dim(1)
        .squeeze_dim::<1>(1)
        + standard_normal_log_prob(z2.clone())
        - q2.log_prob(z2);
    LatentDraw {
        z,
        log_ratio,
        kl_dims: Tensor::cat(vec![log_q1 - log_p1, q2.kl_terms_per_item()], 1),
    }
}

/// Draws z1 from its prior: z2 = the last columns of the standard normal `noise`, z1 = the
/// mean of `p1(z2)` + its std * the first `latent` columns.
///
/// # Shapes
/// `noise`: `[n, latent + top]` -> `[n, latent]`
pub fn prior_two_layers(
    noise: Tensor<2>,
    latent: usize,
    p1: &dyn Fn(Tensor<2>) -> DiagonalGaussian,
) -> Tensor<2> {
    let top = noise.dims()[1] - latent;
    p1(noise.clone().narrow(1, latent, top)).rsample(noise.narrow(1, 0, latent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::importance::log_likelihood_batch;
    use crate::eval::importance::tests::linear_gaussian;
    use crate::model::Latents;
    use crate::rng::{Stream, normals, stream_rng};
    use burn::tensor::TensorData;
    use std::f64::consts::PI;

    /// A linear-Gaussian chain: z2 ~ N(0, 1), z1 | z2 ~ N(A z2, S1^2), q(z2|z1) = N(C z1, V).
    /// With x | z1 ~ N(z1, S^2), p(x) = N(0, A^2 + S1^2 + S^2) in closed form.
    struct Chain;
    const A: f64 = 1.0;
    const S1: f64 = 0.6;
    const S: f64 = 0.5;
    const C: f64 = 0.6;
    const V: f64 = 0.3;

    fn gaussian(mean: Tensor<2>, var: f64) -> DiagonalGaussian {
        let logvar = mean.clone().mul_scalar(0.0).add_scalar(var.ln());
        DiagonalGaussian::new(mean, logvar)
    }

    impl Latents for Chain {
        fn noise_dim(&self) -> usize {
            2
        }
        fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>, _y: Option<Tensor<2>>) -> LatentDraw {
            draw_two_layers(q, eps, &|z1| gaussian(z1.mul_scalar(C), V), &|z2| {
                gaussian(z2.mul_scalar(A), S1 * S1)
            })
        }
    }

    #[test]
    fn two_layer_importance_estimate_converges_to_the_closed_form() {
        let dev = Device::flex();
        let xs = [0.4f32, -1.5, 2.2];
        let x = Tensor::<1>::from_floats(xs, &dev).reshape([3, 1, 1, 1]);
        // The true q(z1|x) is N(0.845 x, 0.211); this one is off in mean and variance.
        let q = gaussian(
            Tensor::<1>::from_floats(xs, &dev)
                .reshape([3, 1])
                .mul_scalar(0.7),
            0.25,
        );
        let var = A * A + S1 * S1 + S * S;
        let exact: Vec<f64> = xs
            .iter()
            .map(|&v| -0.5 * ((v as f64).powi(2) / var + (2.0 * PI * var).ln()))
            .collect();
        let big = log_likelihood_batch(
            &q,
            &x,
            None,
            40_000,
            10_000,
            0,
            0,
            &dev,
            &Chain,
            &linear_gaussian(S),
        );
        for i in 0..3 {
            assert!(
                (big[i] - exact[i]).abs() < 0.03,
                "image {i}: {} vs exact {}",
                big[i],
                exact[i]
            );
        }
        // One sample (the two-layer ELBO) is a bound, well below log p(x) on average.
        let one: f64 = (0..200)
            .map(|s| {
                log_likelihood_batch(&q, &x, None, 1, 1, s, 0, &dev, &Chain, &linear_gaussian(S))
                    .iter()
                    .sum::<f64>()
            })
            .sum::<f64>()
            / 200.0;
        assert!(
            one < exact.iter().sum::<f64>() - 0.2,
            "ELBO {one} vs log p(x) {}",
            exact.iter().sum::<f64>()
        );
    }

    #[test]
    fn kl_terms_and_log_ratio_estimate_the_same_kl() {
        // E[sum kl_dims] = KL(q(z1, z2|x) || p(z1, z2)) = -E[log_ratio]; the z2 part of kl_dims
        // is the closed form of what log_ratio samples.
        let dev = Device::flex();
        let n = 20_000;
        let q = gaussian(Tensor::<2>::ones([n, 1], &dev).mul_scalar(0.8), 0.25);
        let eps = Tensor::from_data(
            TensorData::new(
                normals(&mut stream_rng(3, Stream::EvalNoise, 0), n * 2),
                [n, 2],
            ),
            &dev,
        );
        let d = Chain.draw(&q, eps, None);
        assert_eq!(d.kl_dims.dims(), [n, 2]);
        let kl = d.kl_dims.sum_dim(1).mean().into_scalar::<f32>() as f64;
        let neg_ratio = d.log_ratio.mean().neg().into_scalar::<f32>() as f64;
        assert!(
            kl > 0.1 && (kl - neg_ratio).abs() < 0.03,
            "{kl} vs {neg_ratio}"
        );
    }

    #[test]
    fn prior_draws_have_the_marginal_variance() {
        // z1 = A z2 + S1 eps: variance A^2 + S1^2 = 1.36, mean 0.
        let dev = Device::flex();
        let n = 20_000;
        let noise = Tensor::from_data(
            TensorData::new(normals(&mut stream_rng(5, Stream::Prior, 0), n * 2), [n, 2]),
            &dev,
        );
        let z = prior_two_layers(noise, 1, &|z2| gaussian(z2.mul_scalar(A), S1 * S1))
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.36).abs() < 0.05,
            "mean {mean}, variance {var}"
        );
    }

    #[test]
    fn a_hierarchical_vae_draws_both_layers() {
        use crate::config::{ModelConfig, TopLatentConfig};
        use crate::model::Vae;
        let dev = Device::flex();
        let cfg = ModelConfig {
            top: Some(TopLatentConfig {
                latent_dim: 4,
                hidden: vec![16],
            }),
            ..ModelConfig::default()
        };
        let m = Vae::init(&cfg, 0, &dev);
        assert_eq!((m.latent_dim(), m.noise_dim()), (20, 24));
        let q = m.encode(
            Tensor::<4>::ones([3, 1, 28, 28], &dev).mul_scalar(0.5),
            None,
        );
        let eps = Tensor::<2>::ones([3, 24], &dev).mul_scalar(0.3);
        let d = m.draw(&q, eps.clone(), None);
        assert_eq!(
            (d.z.dims(), d.kl_dims.dims(), d.log_ratio.dims()),
            ([3, 20], [3, 24], [3])
        );
        // The z2 columns of the noise matter to the score but not to z.
        let eps2 = Tensor::cat(
            vec![
                eps.clone().narrow(1, 0, 20),
                Tensor::<2>::zeros([3, 4], &dev),
            ],
            1,
        );
        let d2 = m.draw(&q, eps2, None);
        assert_eq!(d.z.into_data(), d2.z.into_data());
        assert_ne!(d.log_ratio.into_data(), d2.log_ratio.into_data());
        // Prior draws: the z2 columns move z1 through p(z1|z2).
        let p = m.prior_sample(eps.clone(), None);
        assert_eq!(p.dims(), [3, 20]);
        assert_ne!(p.into_data(), eps.narrow(1, 0, 20).into_data());
    }
}
