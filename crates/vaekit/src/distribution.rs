//! The diagonal Gaussian posterior q(z|x) = N(mean, diag(exp(logvar))).

use std::f64::consts::PI;

use burn::tensor::Tensor;

/// A batch of diagonal Gaussians, parameterised by mean and log-variance.
///
/// # Shapes
/// `mean`, `logvar`: `[batch, latent]`
#[derive(Clone, Debug)]
pub struct DiagonalGaussian {
    /// Means.
    pub mean: Tensor<2>,
    /// Log-variances (log sigma^2): unconstrained, unlike a raw standard deviation.
    pub logvar: Tensor<2>,
}

impl DiagonalGaussian {
    /// Builds one from its parameters.
    pub fn new(mean: Tensor<2>, logvar: Tensor<2>) -> Self {
        DiagonalGaussian { mean, logvar }
    }

    /// Standard deviations, exp(logvar / 2).
    pub fn std(&self) -> Tensor<2> {
        self.logvar.clone().mul_scalar(0.5).exp()
    }

    /// The reparameterisation trick: z = mean + std * eps, differentiable in mean and logvar.
    ///
    /// # Shapes
    /// `eps`: `[batch, latent]`, standard normal noise -> `[batch, latent]`
    pub fn rsample(&self, eps: Tensor<2>) -> Tensor<2> {
        self.mean.clone() + self.std() * eps
    }

    /// KL(q || N(0, I)) per item, in closed form (Kingma & Welling 2014, Appendix B):
    /// 0.5 * sum_j (mean_j^2 + exp(logvar_j) - 1 - logvar_j).
    ///
    /// # Shapes
    /// returns `[batch]`
    pub fn kl_to_standard_normal(&self) -> Tensor<1> {
        self.kl_terms()
            .sum_dim(1)
            .squeeze_dim::<1>(1)
            .mul_scalar(0.5)
    }

    /// mean^2 + exp(logvar) - 1 - logvar, elementwise: twice the KL of each dimension.
    fn kl_terms(&self) -> Tensor<2> {
        let m = self.mean.clone();
        m.clone() * m + self.logvar.clone().exp() - self.logvar.clone() - 1.0
    }

    /// KL per latent dimension, averaged over the batch.
    ///
    /// # Shapes
    /// returns `[latent]`
    pub fn kl_per_dimension(&self) -> Tensor<1> {
        self.kl_terms()
            .mean_dim(0)
            .squeeze_dim::<1>(0)
            .mul_scalar(0.5)
    }

    /// KL(q || N(0, I)) of every item and dimension.
    ///
    /// # Shapes
    /// returns `[batch, latent]`
    pub fn kl_terms_per_item(&self) -> Tensor<2> {
        self.kl_terms().mul_scalar(0.5)
    }

    /// KL(self || p) of every item and dimension, in closed form for two diagonal Gaussians:
    /// 0.5 * (logvar_p - logvar_q + (exp(logvar_q) + (mean_q - mean_p)^2) / exp(logvar_p) - 1).
    /// With p = N(0, I) it is [`DiagonalGaussian::kl_terms_per_item`].
    ///
    /// # Shapes
    /// `p`: `[batch, latent]` (as self) -> `[batch, latent]`
    pub fn kl_terms_to(&self, p: &DiagonalGaussian) -> Tensor<2> {
        let d = self.mean.clone() - p.mean.clone();
        let inv_var_p = p.logvar.clone().neg().exp();
        ((self.logvar.clone().exp() + d.clone() * d) * inv_var_p + p.logvar.clone()
            - self.logvar.clone()
            - 1.0)
            .mul_scalar(0.5)
    }

    /// log q(z) per item, summed over dimensions.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]` -> `[batch]`
    pub fn log_prob(&self, z: Tensor<2>) -> Tensor<1> {
        self.log_prob_per_dim(z).sum_dim(1).squeeze_dim::<1>(1)
    }

    /// log q(z_d) of every item and dimension.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]` -> `[batch, latent]`
    pub fn log_prob_per_dim(&self, z: Tensor<2>) -> Tensor<2> {
        let d = z - self.mean.clone();
        let terms =
            d.clone() * d * self.logvar.clone().neg().exp() + self.logvar.clone() + (2.0 * PI).ln();
        terms.mul_scalar(-0.5)
    }
}

/// log N(z; 0, I) per item.
///
/// # Shapes
/// `z`: `[batch, latent]` -> `[batch]`
pub fn standard_normal_log_prob(z: Tensor<2>) -> Tensor<1> {
    let terms = z.clone() * z + (2.0 * PI).ln();
    terms.sum_dim(1).squeeze_dim::<1>(1).mul_scalar(-0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn t2(v: &[f32], rows: usize, dev: &Device) -> Tensor<2> {
        Tensor::<1>::from_floats(v, dev).reshape([rows, v.len() / rows])
    }

    fn vec1(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn kl_between_gaussians_matches_closed_forms_and_monte_carlo() {
        let dev = Device::flex();
        let q = DiagonalGaussian::new(
            t2(&[0.5, -1.0, 2.0, 0.0], 2, &dev),
            t2(&[0.2, -0.7, 0.0, 1.1], 2, &dev),
        );
        // Against N(0, I) it is the standard closed form.
        let std = DiagonalGaussian::new(Tensor::zeros([2, 2], &dev), Tensor::zeros([2, 2], &dev));
        let a = q
            .kl_terms_to(&std)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let b = q
            .kl_terms_per_item()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
        // KL(q || q) = 0.
        assert!(
            q.kl_terms_to(&q)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
                .iter()
                .all(|k| k.abs() < 1e-6)
        );
        // Against another Gaussian: the mean of log q(z) - log p(z) over draws from q.
        let p = DiagonalGaussian::new(
            t2(&[1.0, 0.5, -1.0, 0.3], 2, &dev),
            t2(&[-0.5, 0.4, 0.9, 0.0], 2, &dev),
        );
        let exact: Vec<f32> = q
            .kl_terms_to(&p)
            .sum_dim(1)
            .into_data()
            .try_into_vec()
            .unwrap();
        let n = 200_000;
        let mut rng = crate::rng::stream_rng(5, crate::rng::Stream::EvalNoise, 0);
        let eps = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(crate::rng::normals(&mut rng, n * 4), [n * 2, 2]),
            &dev,
        );
        let rep = |g: &DiagonalGaussian| {
            DiagonalGaussian::new(
                g.mean.clone().repeat_dim(0, n),
                g.logvar.clone().repeat_dim(0, n),
            )
        };
        let (qn, pn) = (rep(&q), rep(&p));
        let z = qn.rsample(eps);
        let lr = (qn.log_prob(z.clone()) - pn.log_prob(z)).reshape([n, 2]);
        let mc: Vec<f32> = lr.mean_dim(0).into_data().try_into_vec().unwrap();
        for (e, m) in exact.iter().zip(&mc) {
            assert!((e - m).abs() < 0.03 * e.abs().max(1.0), "{e} vs {m}");
        }
    }

    #[test]
    fn kl_of_standard_normal_is_zero() {
        let dev = Device::flex();
        let q = DiagonalGaussian::new(Tensor::zeros([3, 5], &dev), Tensor::zeros([3, 5], &dev));
        assert!(
            vec1(q.kl_to_standard_normal())
                .iter()
                .all(|&k| k.abs() < 1e-7)
        );
    }

    #[test]
    fn kl_with_unit_mean_is_half_per_dimension() {
        let dev = Device::flex();
        let q = DiagonalGaussian::new(Tensor::ones([2, 4], &dev), Tensor::zeros([2, 4], &dev));
        for k in vec1(q.kl_to_standard_normal()) {
            assert!((k - 2.0).abs() < 1e-6, "{k}");
        }
        for k in vec1(q.kl_per_dimension()) {
            assert!((k - 0.5).abs() < 1e-6, "{k}");
        }
    }

    #[test]
    fn kl_matches_a_hand_computed_value_and_is_nonnegative() {
        // mean = 0.5, logvar = ln 2: 0.5 * (0.25 + 2 - 1 - ln 2) = 0.278426...
        let dev = Device::flex();
        let q = DiagonalGaussian::new(t2(&[0.5], 1, &dev), t2(&[2f32.ln()], 1, &dev));
        let k = vec1(q.kl_to_standard_normal())[0];
        assert!((k - 0.278_426_4).abs() < 1e-6, "{k}");
        let q = DiagonalGaussian::new(
            t2(&[-1.0, 0.1, 3.0, 0.0], 2, &dev),
            t2(&[-2.0, 1.5, 0.3, -0.7], 2, &dev),
        );
        assert!(vec1(q.kl_to_standard_normal()).iter().all(|&k| k >= 0.0));
    }

    #[test]
    fn kl_gradient_equals_closed_form() {
        // dKL/dmean = mean, dKL/dlogvar = (exp(logvar) - 1) / 2.
        let dev = Device::flex().autodiff();
        let m = [0.3f32, -1.2, 2.0, 0.0, 0.7, -0.4];
        let lv = [0.0f32, -1.0, 0.5, 1.3, -2.2, 0.1];
        let mean = t2(&m, 2, &dev).require_grad();
        let logvar = t2(&lv, 2, &dev).require_grad();
        let q = DiagonalGaussian::new(mean.clone(), logvar.clone());
        let grads = q.kl_to_standard_normal().sum().backward();
        let gm = mean
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let gl = logvar
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for i in 0..6 {
            assert!(
                (gm[i] - m[i]).abs() < 1e-5,
                "mean grad {i}: {} vs {}",
                gm[i],
                m[i]
            );
            let want = (lv[i].exp() - 1.0) / 2.0;
            assert!(
                (gl[i] - want).abs() < 1e-5,
                "logvar grad {i}: {} vs {want}",
                gl[i]
            );
        }
    }

    #[test]
    fn log_prob_matches_scalar_formula_and_rsample_is_reparameterised() {
        let dev = Device::flex();
        let q = DiagonalGaussian::new(t2(&[1.0, -2.0], 1, &dev), t2(&[0.0, 2f32.ln()], 1, &dev));
        let z = q.rsample(t2(&[0.5, -1.0], 1, &dev));
        let zv = z.clone().into_data().try_into_vec::<f32>().unwrap();
        assert!((zv[0] - 1.5).abs() < 1e-6 && (zv[1] - (-2.0 - 2f32.sqrt())).abs() < 1e-6);
        // log N(1.5; 1, 1) + log N(-2 - sqrt2; -2, 2) = -0.5(0.25 + ln 2pi) - 0.5(1 + ln 2 + ln 2pi)
        let want = -0.5 * (0.25 + (2.0 * PI).ln()) - 0.5 * (1.0 + 2f64.ln() + (2.0 * PI).ln());
        assert!((vec1(q.log_prob(z))[0] as f64 - want).abs() < 1e-5);
        let p = vec1(standard_normal_log_prob(t2(&[0.0, 1.0], 1, &dev)))[0] as f64;
        assert!((p - (-(2.0 * PI).ln() - 0.5)).abs() < 1e-5);
    }
}
