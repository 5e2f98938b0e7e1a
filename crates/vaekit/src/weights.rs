//! Importance weights, shared by training (the IWAE bound, [`crate::objective`]) and evaluation
//! (the importance-sampled log-likelihood, [`crate::eval::importance`]):
//! log w = log p(x|z) + log p(z) - log q(z|x) for z ~ q(z|x) (Burda et al. 2016), and a
//! streaming log-sum-exp to average them in bounded memory.

use burn::tensor::Tensor;

use crate::distribution::DiagonalGaussian;
use crate::model::{LatentDraw, Latents};

/// Running log-sum-exp of one image's log weights, in f64.
#[derive(Clone, Copy, Debug)]
pub struct LogSumExp {
    max: f64,
    sum: f64,
    count: usize,
}

impl Default for LogSumExp {
    fn default() -> Self {
        LogSumExp {
            max: f64::NEG_INFINITY,
            sum: 0.0,
            count: 0,
        }
    }
}

impl LogSumExp {
    /// Adds one log weight.
    pub fn push(&mut self, v: f64) {
        self.count += 1;
        if v > self.max {
            self.sum = self.sum * (self.max - v).exp() + 1.0;
            self.max = v;
        } else {
            self.sum += (v - self.max).exp();
        }
    }

    /// log (1/n) sum exp(v_i) over the values pushed.
    pub fn log_mean_exp(&self) -> f64 {
        self.max + self.sum.ln() - (self.count as f64).ln()
    }
}

/// log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) for `k` samples per image (with both
/// layers of a hierarchical model, see [`LatentDraw::log_ratio`]), the log p(x|z_k) term alone,
/// and the draw. `y` is the one-hot condition of the `b` images (repeated here like them).
///
/// `log_likelihood(z, x)` returns log p(x|z) per row. Rows are sample-major: row `s * b + i` is
/// sample `s` of image `i`, which is how `repeat_dim(0, k)` tiles a batch (use it for anything
/// else that goes with the rows, such as labels).
///
/// # Shapes
/// `posterior`: `[b, latent]`, `x`: `[b, c, h, w]`, `y`: `[b, classes]`, `eps`: `[k * b, noise_dim]` -> log weights
/// and log-likelihoods `[k * b]`
pub fn log_weights(
    posterior: &DiagonalGaussian,
    x: &Tensor<4>,
    y: Option<&Tensor<2>>,
    eps: Tensor<2>,
    k: usize,
    latents: &dyn Latents,
    log_likelihood: &dyn Fn(Tensor<2>, Tensor<4>) -> Tensor<1>,
) -> (Tensor<1>, Tensor<1>, LatentDraw) {
    let q = DiagonalGaussian::new(
        posterior.mean.clone().repeat_dim(0, k),
        posterior.logvar.clone().repeat_dim(0, k),
    ); // [k * b, latent]
    let draw = latents.draw(&q, eps, y.map(|y| y.clone().repeat_dim(0, k)));
    let log_lik = log_likelihood(draw.z.clone(), x.clone().repeat_dim(0, k));
    (log_lik.clone() + draw.log_ratio.clone(), log_lik, draw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_log_mean_exp_matches_direct_formula() {
        let vals = [-1000.0, -1001.5, -999.2, -1003.0];
        let mut a = LogSumExp::default();
        vals.iter().for_each(|&v| a.push(v));
        let m = -999.2f64;
        let direct = m + (vals.iter().map(|v| (v - m).exp()).sum::<f64>() / 4.0).ln();
        assert!((a.log_mean_exp() - direct).abs() < 1e-12);
    }
}
