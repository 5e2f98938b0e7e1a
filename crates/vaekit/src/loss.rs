//! The negative ELBO: reconstruction negative log-likelihood plus beta times the KL.
//!
//! All terms are summed over pixels and latent dimensions and reported in nats per image.

use burn::tensor::Tensor;

use crate::config::Likelihood;
use crate::likelihood::reconstruction_nll;

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

/// recon + beta * KL, averaged over the batch, from the KL of every item and latent dimension
/// (see [`crate::model::LatentDraw::kl_dims`]).
///
/// With `free_bits` > 0 the KL in the loss is sum_d max(free_bits, KL_d), KL_d being dimension
/// d's KL averaged over the batch (Kingma et al. 2016): dimensions under the floor add a constant
/// and no gradient. The reported `kl` is always the plain KL.
///
/// # Shapes
/// `logits`: `[b, c * params, h, w]`, `x`: `[b, c, h, w]`, `kl_dims`: `[b, dims]`
pub fn neg_elbo(
    logits: Tensor<4>,
    x: Tensor<4>,
    kl_dims: Tensor<2>,
    likelihood: Likelihood,
    beta: f64,
    free_bits: f64,
) -> NegElbo {
    let recon = reconstruction_nll(logits, x, likelihood).mean();
    let per_dim = kl_dims.mean_dim(0).squeeze_dim::<1>(0); // [dims]
    let kl = per_dim.clone().sum();
    let kl_objective = if free_bits > 0.0 {
        per_dim.clamp_min(free_bits).sum()
    } else {
        kl.clone()
    };
    let loss = recon.clone() + kl_objective.mul_scalar(beta);
    NegElbo { loss, recon, kl }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::DiagonalGaussian;
    use burn::tensor::Device;

    fn img(v: &[f32], dev: &Device) -> Tensor<4> {
        Tensor::<1>::from_floats(v, dev).reshape([1, 1, 1, v.len()])
    }

    #[test]
    fn neg_elbo_adds_beta_times_kl() {
        let dev = Device::flex();
        let q = DiagonalGaussian::new(Tensor::ones([1, 3], &dev), Tensor::zeros([1, 3], &dev));
        let e = neg_elbo(
            img(&[0.0], &dev),
            img(&[1.0], &dev),
            q.kl_terms_per_item(),
            Likelihood::Bernoulli,
            4.0,
            0.0,
        );
        let v = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().unwrap()[0] as f64;
        let (l, r, k) = (v(e.loss), v(e.recon), v(e.kl));
        assert!(
            (r - 2f64.ln()).abs() < 1e-5 && (k - 1.5).abs() < 1e-6 && (l - (r + 6.0)).abs() < 1e-5
        );
    }

    /// Gradients of the loss with respect to the posterior mean, for a posterior whose two
    /// dimensions have KL 2.0 (mean 2) and 0.125 (mean 0.5) and logits that do not depend on it.
    fn mean_grad(beta: f64, free_bits: f64) -> (f64, Vec<f32>) {
        let dev = Device::flex().autodiff();
        let mean = Tensor::<1>::from_floats([2.0f32, 0.5], &dev)
            .reshape([1, 2])
            .require_grad();
        let q = DiagonalGaussian::new(mean.clone(), Tensor::zeros([1, 2], &dev));
        let e = neg_elbo(
            img(&[0.3], &dev),
            img(&[1.0], &dev),
            q.kl_terms_per_item(),
            Likelihood::Bernoulli,
            beta,
            free_bits,
        );
        let loss = e.loss.clone().into_scalar::<f32>() as f64;
        let grads = e.loss.backward();
        let g = mean
            .grad(&grads)
            .map(|g| g.into_data().try_into_vec::<f32>().unwrap())
            .unwrap_or(vec![0.0, 0.0]);
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
