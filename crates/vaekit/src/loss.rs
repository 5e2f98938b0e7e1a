//! The negative ELBO: reconstruction negative log-likelihood plus beta times the KL.
//!
//! All terms are summed over pixels and latent dimensions and reported in nats per image.

use std::f64::consts::PI;

use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::Tensor;

use crate::config::Likelihood;
use crate::distribution::DiagonalGaussian;

/// -log p(x | logits) per image, summed over pixels.
///
/// Bernoulli: binary cross-entropy with logits, softplus(l) - x * l = -log_sigmoid(-l) - x * l,
/// stable for any logit and valid for targets anywhere in [0, 1].
/// Gaussian with std s and mean sigmoid(l): 0.5 * ((x - mu) / s)^2 + log s + 0.5 * log 2pi.
///
/// # Shapes
/// `logits`, `x`: `[batch, channels, height, width]` -> `[batch]`
pub fn reconstruction_nll(logits: Tensor<4>, x: Tensor<4>, likelihood: Likelihood) -> Tensor<1> {
    let per_pixel = match likelihood {
        Likelihood::Bernoulli => log_sigmoid(logits.clone().neg()).neg() - x * logits,
        Likelihood::Gaussian { std } => {
            let d = (x - sigmoid(logits)).div_scalar(std);
            (d.clone() * d).mul_scalar(0.5).add_scalar(std.ln() + 0.5 * (2.0 * PI).ln())
        }
    };
    let b = per_pixel.dims()[0];
    per_pixel.reshape([b as i32, -1]).sum_dim(1).squeeze_dim::<1>(1)
}

/// The decoder's mean image for given logits: sigmoid for both likelihoods.
pub fn mean_image(logits: Tensor<4>) -> Tensor<4> {
    sigmoid(logits)
}

/// The terms of the negative ELBO, each averaged over the batch (nats per image).
///
/// # Shapes
/// every field: `[1]`
#[derive(Clone, Debug)]
pub struct NegElbo {
    /// recon + beta * kl: the training objective.
    pub loss: Tensor<1>,
    /// Mean reconstruction negative log-likelihood.
    pub recon: Tensor<1>,
    /// Mean KL(q(z|x) || N(0, I)).
    pub kl: Tensor<1>,
}

/// recon + beta * KL, averaged over the batch.
///
/// With `free_bits` > 0 the KL in the loss is sum_d max(free_bits, KL_d), KL_d being dimension
/// d's KL averaged over the batch (Kingma et al. 2016): dimensions under the floor add a constant
/// and no gradient. The reported `kl` is always the plain KL.
pub fn neg_elbo(
    logits: Tensor<4>,
    x: Tensor<4>,
    posterior: &DiagonalGaussian,
    likelihood: Likelihood,
    beta: f64,
    free_bits: f64,
) -> NegElbo {
    let recon = reconstruction_nll(logits, x, likelihood).mean();
    let kl = posterior.kl_to_standard_normal().mean();
    let kl_objective = if free_bits > 0.0 { posterior.kl_per_dimension().clamp_min(free_bits).sum() } else { kl.clone() };
    let loss = recon.clone() + kl_objective.mul_scalar(beta);
    NegElbo { loss, recon, kl }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn img(v: &[f32], dev: &Device) -> Tensor<4> {
        Tensor::<1>::from_floats(v, dev).reshape([1, 1, 1, v.len()])
    }

    #[test]
    fn bce_with_logits_equals_hand_computed_value() {
        // PyTorch: F.binary_cross_entropy_with_logits(torch.tensor([2., -1., 0., 30., -30.]),
        //   torch.tensor([1., 0., .3, 0., 1.]), reduction='sum')  ->  60.9413...
        // By hand: softplus(l) - x*l = 0.126928 + 0.313262 + 0.693147 + 30.0 + 30.0 (+ ~1e-13)
        let dev = Device::flex();
        let got = reconstruction_nll(img(&[2.0, -1.0, 0.0, 30.0, -30.0], &dev), img(&[1.0, 0.0, 0.3, 0.0, 1.0], &dev), Likelihood::Bernoulli);
        let got = got.into_data().try_into_vec::<f32>().unwrap()[0] as f64;
        let want = (1.0 + (-2f64).exp()).ln() + (1.0 + (-1f64).exp()).ln() + 2f64.ln() + 30.0 + 30.0;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn gaussian_nll_is_the_normal_density() {
        // logits 0 -> mean 0.5; x = 0.7, std 0.1: 0.5 * 4 + ln 0.1 + 0.5 ln 2pi per pixel.
        let dev = Device::flex();
        let got = reconstruction_nll(img(&[0.0, 0.0], &dev), img(&[0.7, 0.5], &dev), Likelihood::Gaussian { std: 0.1 });
        let got = got.into_data().try_into_vec::<f32>().unwrap()[0] as f64;
        let c = 0.1f64.ln() + 0.5 * (2.0 * PI).ln();
        assert!((got - (2.0 + 2.0 * c)).abs() < 1e-4, "{got}");
    }

    #[test]
    fn neg_elbo_adds_beta_times_kl() {
        let dev = Device::flex();
        let q = DiagonalGaussian::new(Tensor::ones([1, 3], &dev), Tensor::zeros([1, 3], &dev));
        let e = neg_elbo(img(&[0.0], &dev), img(&[1.0], &dev), &q, Likelihood::Bernoulli, 4.0, 0.0);
        let v = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().unwrap()[0] as f64;
        let (l, r, k) = (v(e.loss), v(e.recon), v(e.kl));
        assert!((r - 2f64.ln()).abs() < 1e-5 && (k - 1.5).abs() < 1e-6 && (l - (r + 6.0)).abs() < 1e-5);
    }

    /// Gradients of the loss with respect to the posterior mean, for a posterior whose two
    /// dimensions have KL 2.0 (mean 2) and 0.125 (mean 0.5) and logits that do not depend on it.
    fn mean_grad(beta: f64, free_bits: f64) -> (f64, Vec<f32>) {
        let dev = Device::flex().autodiff();
        let mean = Tensor::<1>::from_floats([2.0f32, 0.5], &dev).reshape([1, 2]).require_grad();
        let q = DiagonalGaussian::new(mean.clone(), Tensor::zeros([1, 2], &dev));
        let e = neg_elbo(img(&[0.3], &dev), img(&[1.0], &dev), &q, Likelihood::Bernoulli, beta, free_bits);
        let loss = e.loss.clone().into_scalar::<f32>() as f64;
        let grads = e.loss.backward();
        let g = mean.grad(&grads).map(|g| g.into_data().try_into_vec::<f32>().unwrap()).unwrap_or(vec![0.0, 0.0]);
        (loss, g)
    }

    #[test]
    fn beta_zero_removes_the_kl_from_the_gradient() {
        // d KL / d mean = mean: (2, 0.5) with beta = 1, nothing with beta = 0.
        assert_eq!(mean_grad(1.0, 0.0).1, vec![2.0, 0.5]);
        assert_eq!(mean_grad(0.0, 0.0).1, vec![0.0, 0.0]);
        assert_eq!(mean_grad(4.0, 0.0).1, vec![8.0, 2.0]);
    }

    #[test]
    fn free_bits_floor_only_the_dimensions_under_it() {
        // Floor 0.5: dimension 0 (KL 2.0) is untouched, dimension 1 (KL 0.125) counts as 0.5
        // and gets no gradient.
        let recon = (1.0 + 0.3f64.exp()).ln() - 0.3; // softplus(l) - x * l at l = 0.3, x = 1
        let (loss, g) = mean_grad(1.0, 0.5);
        assert_eq!(g, vec![2.0, 0.0]);
        assert!((loss - (recon + 2.0 + 0.5)).abs() < 1e-5, "{loss}");
        // A floor under every dimension's KL changes nothing.
        let (plain, g0) = mean_grad(1.0, 0.0);
        let (low, g1) = mean_grad(1.0, 0.1);
        assert_eq!(g0, g1);
        assert!((plain - low).abs() < 1e-6);
    }
}
