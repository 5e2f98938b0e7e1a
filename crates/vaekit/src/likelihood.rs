//! Observation models p(x|z): the reconstruction term of every objective and estimate, from the
//! decoder's output (logits or means, then log-scales for two-parameter likelihoods).

use std::f64::consts::PI;

use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, sigmoid};

use crate::config::Likelihood;
use crate::ops;

/// -log p(x | decoder output) per image, summed over pixels.
///
/// Bernoulli: binary cross-entropy with logits, softplus(l) - x * l (see [`ops::softplus`]), stable
/// for any logit and valid for targets anywhere in [0, 1].
/// Gaussian with std s and mean sigmoid(l): 0.5 * ((x - mu) / s)^2 + log s + 0.5 * log 2pi;
/// `GaussianLearned` and `GaussianGlobal` take log s per pixel from the second half of the
/// channels (a map from the decoder, or the global parameter repeated).
/// Logistic: see [`discretized_logistic_nll`].
///
/// # Shapes
/// `params`: `[batch, channels * params_per_pixel, height, width]`, `x`: `[batch, channels,
/// height, width]` -> `[batch]`
pub fn reconstruction_nll(params: Tensor<4>, x: Tensor<4>, likelihood: Likelihood) -> Tensor<1> {
    let c = x.dims()[1];
    let per_pixel = match likelihood {
        Likelihood::Bernoulli => {
            // softplus(l) - x l summed per image (one pass each way on the CPU).
            let b = params.dims()[0] as i32;
            return ops::bce_with_logits(params.reshape([b, -1]), x.reshape([b, -1]));
        }
        Likelihood::Gaussian { std } => {
            let d = (x - ops::sigmoid(params)).div_scalar(std);
            (d.clone() * d)
                .mul_scalar(0.5)
                .add_scalar(std.ln() + 0.5 * (2.0 * PI).ln())
        }
        Likelihood::GaussianLearned | Likelihood::GaussianGlobal => {
            let log_s = params.clone().narrow(1, c, c).clamp(LOG_SCALE_MIN, 2.0);
            let d = (x - ops::sigmoid(params.narrow(1, 0, c))) * log_s.clone().neg().exp();
            (d.clone() * d).mul_scalar(0.5) + log_s.add_scalar(0.5 * (2.0 * PI).ln())
        }
        Likelihood::Logistic => {
            discretized_logistic_nll(params.clone().narrow(1, 0, c), params.narrow(1, c, c), x)
        }
    };
    let b = per_pixel.dims()[0];
    per_pixel
        .reshape([b as i32, -1])
        .sum_dim(1)
        .squeeze_dim::<1>(1)
}

/// Smallest log-scale of the learned likelihoods: keeps the density finite.
const LOG_SCALE_MIN: f64 = -7.0;

/// -log P(x) of 8-bit pixels under a logistic with mean `mean` and log-scale `log_scale` on the
/// [-1, 1] scale, discretised into 256 bins of width 2/255 centred on the levels (Salimans et al.
/// 2017, PixelCNN++): the bin's mass sigmoid((x' + 1/255 - m) / s) - sigmoid((x' - 1/255 - m) /
/// s), with the lowest bin open to -inf and the highest to +inf, so the 256 probabilities sum to
/// one. `x` in [0, 1] is mapped to x' = 2x - 1. Where a bin's mass underflows, the density at
/// its centre times its width stands in.
///
/// # Shapes
/// all `[batch, channels, height, width]` -> same
pub fn discretized_logistic_nll(mean: Tensor<4>, log_scale: Tensor<4>, x: Tensor<4>) -> Tensor<4> {
    let half_bin = 1.0 / 255.0;
    let xs = x.mul_scalar(2.0).sub_scalar(1.0);
    let log_s = log_scale.clamp_min(LOG_SCALE_MIN);
    let inv_s = log_s.clone().neg().exp();
    let centred = xs.clone() - mean;
    let plus = (centred.clone().add_scalar(half_bin)) * inv_s.clone();
    let minus = (centred.clone().sub_scalar(half_bin)) * inv_s.clone();
    // log sigmoid(plus) for the lowest level, log(1 - sigmoid(minus)) for the highest.
    let log_cdf_plus = log_sigmoid(plus.clone());
    let log_one_minus_cdf_min = log_sigmoid(minus.clone().neg());
    let delta = sigmoid(plus) - sigmoid(minus);
    let mid = centred * inv_s;
    // log density of the logistic at the bin centre, times the bin width 2/255.
    let log_pdf_mid = mid.clone() - log_s + log_sigmoid(mid.neg()).mul_scalar(2.0); // mid - log s - 2 softplus(mid)
    let log_mid = log_pdf_mid.add_scalar((2.0f64 / 255.0).ln());
    let log_delta = delta.clone().clamp_min(1e-12).log();
    let inner = log_mid.mask_where(delta.greater_elem(1e-5), log_delta);
    let low = xs.clone().lower_elem(-0.999);
    let high = xs.greater_elem(0.999);
    inner
        .mask_where(low, log_cdf_plus)
        .mask_where(high, log_one_minus_cdf_min)
        .neg()
}

/// The decoder's mean image for its output `params` (`channels` means first): sigmoid of the
/// logits, or, for the discretised logistic (`logistic`), the mean moved from [-1, 1] to [0, 1].
///
/// # Shapes
/// `params`: `[batch, channels * k, height, width]` -> `[batch, channels, height, width]`
pub fn mean_image(params: Tensor<4>, channels: usize, logistic: bool) -> Tensor<4> {
    let m = params.narrow(1, 0, channels);
    if logistic {
        m.add_scalar(1.0).mul_scalar(0.5).clamp(0.0, 1.0)
    } else {
        ops::sigmoid(m)
    }
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
        let got = reconstruction_nll(
            img(&[2.0, -1.0, 0.0, 30.0, -30.0], &dev),
            img(&[1.0, 0.0, 0.3, 0.0, 1.0], &dev),
            Likelihood::Bernoulli,
        );
        let got = got.into_data().try_into_vec::<f32>().unwrap()[0] as f64;
        let want =
            (1.0 + (-2f64).exp()).ln() + (1.0 + (-1f64).exp()).ln() + 2f64.ln() + 30.0 + 30.0;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn bce_gradient_is_sigmoid_minus_target_everywhere() {
        // d/dl (softplus(l) - x l) = sigmoid(l) - x, also at the seams l = 0 and l = 30.
        let dev = Device::flex().autodiff();
        let ls = [-40.0f32, -17.0, -5.0, 0.0, 0.3, 5.0, 29.0, 30.0, 40.0];
        let xs = [0.0f32, 1.0, 0.2, 0.7, 1.0, 0.0, 0.5, 1.0, 0.3];
        let l = Tensor::<1>::from_floats(ls, &dev)
            .reshape([1, 1, 1, 9])
            .require_grad();
        let x = Tensor::<1>::from_floats(xs, &dev).reshape([1, 1, 1, 9]);
        let grads = reconstruction_nll(l.clone(), x, Likelihood::Bernoulli)
            .sum()
            .backward();
        let g = l
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for i in 0..9 {
            let want = 1.0 / (1.0 + (-(ls[i] as f64)).exp()) - xs[i] as f64;
            assert!(
                (g[i] as f64 - want).abs() < 1e-6,
                "l = {}: {} vs {want}",
                ls[i],
                g[i]
            );
        }
    }

    #[test]
    fn gaussian_nll_is_the_normal_density() {
        // logits 0 -> mean 0.5; x = 0.7, std 0.1: 0.5 * 4 + ln 0.1 + 0.5 ln 2pi per pixel.
        let dev = Device::flex();
        let got = reconstruction_nll(
            img(&[0.0, 0.0], &dev),
            img(&[0.7, 0.5], &dev),
            Likelihood::Gaussian { std: 0.1 },
        );
        let got = got.into_data().try_into_vec::<f32>().unwrap()[0] as f64;
        let c = 0.1f64.ln() + 0.5 * (2.0 * PI).ln();
        assert!((got - (2.0 + 2.0 * c)).abs() < 1e-4, "{got}");
    }

    #[test]
    fn discretised_logistic_is_a_distribution_over_the_256_levels() {
        let dev = Device::flex();
        for (m, ls) in [
            (0.0f32, -1.0f32),
            (0.3, -3.0),
            (-0.95, -2.0),
            (0.5, -6.5),
            (0.2, 1.0),
        ] {
            let nll = discretized_logistic_nll(
                Tensor::<4>::full([1, 1, 1, 256], m, &dev),
                Tensor::<4>::full([1, 1, 1, 256], ls, &dev),
                levels(&dev),
            );
            let p: f64 = nll
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
                .iter()
                .map(|&v| (-(v as f64)).exp())
                .sum();
            assert!(
                (p - 1.0).abs() < 2e-3,
                "mean {m}, log-scale {ls}: total probability {p}"
            );
        }
        // A middle level by hand: sigmoid((x' + 1/255 - m) / s) - sigmoid((x' - 1/255 - m) / s).
        let (x, m, s) = (100.0f64 / 255.0, 0.1f64, 0.2f64);
        let xs = 2.0 * x - 1.0;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want = -(sig((xs + 1.0 / 255.0 - m) / s) - sig((xs - 1.0 / 255.0 - m) / s)).ln();
        let one = |v: f64| Tensor::<4>::full([1, 1, 1, 1], v as f32, &dev);
        let got = discretized_logistic_nll(one(m), one(s.ln()), one(x)).into_scalar::<f32>() as f64;
        assert!((got - want).abs() < 1e-3, "{got} vs {want}");
    }

    #[test]
    fn learned_gaussian_with_log_std_of_0_1_is_the_fixed_gaussian() {
        let dev = Device::flex();
        let x = img(&[0.7, 0.5, 0.1], &dev);
        let logits = img(&[0.0, 1.0, -2.0], &dev);
        let params = Tensor::cat(
            vec![
                logits.clone(),
                Tensor::<4>::full([1, 1, 1, 3], 0.1f32.ln(), &dev),
            ],
            1,
        );
        let v = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let fixed = v(reconstruction_nll(
            logits,
            x.clone(),
            Likelihood::Gaussian { std: 0.1 },
        ));
        let learned = v(reconstruction_nll(params, x, Likelihood::GaussianLearned));
        assert!((fixed - learned).abs() < 1e-3, "{fixed} vs {learned}");
    }

    #[test]
    fn two_parameter_likelihoods_double_the_decoder_outputs() {
        use crate::config::{Architecture, ModelConfig};
        use crate::model::Vae;
        let dev = Device::flex();
        for arch in [Architecture::default_conv(), Architecture::default_mlp()] {
            let cfg = ModelConfig {
                likelihood: Likelihood::Logistic,
                architecture: arch,
                ..ModelConfig::default()
            };
            let m = Vae::init(&cfg, 0, &dev);
            let z = Tensor::<2>::ones([2, 20], &dev);
            assert_eq!(m.decode(z.clone(), None).dims(), [2, 2, 28, 28]);
            let mean = m
                .decode_mean(z, None)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            assert_eq!(mean.len(), 2 * 784);
            assert!(mean.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn the_global_scale_is_one_learned_parameter_per_channel() {
        use crate::config::{ModelConfig, OptimConfig};
        use crate::model::Vae;
        use burn::module::Module;
        use burn::optim::GradientsParams;
        let dev = Device::flex().autodiff();
        let cfg = ModelConfig {
            likelihood: Likelihood::GaussianGlobal,
            architecture: crate::config::Architecture::default_mlp(),
            ..ModelConfig::default()
        };
        let mut m = Vae::init(&cfg, 0, &dev);
        let z = Tensor::<2>::zeros([2, 20], &dev);
        let out = m.decode(z.clone(), None);
        assert_eq!(out.dims(), [2, 2, 28, 28]);
        let log_std = |m: &Vae| {
            m.decode(Tensor::<2>::zeros([1, 20], &dev), None)
                .narrow(1, 1, 1)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        };
        assert!(log_std(&m).iter().all(|&v| v == 0.0), "starts at sigma = 1");
        // Images at their decoded mean +- 0.05: the likelihood wants sigma near 0.05, far below 1,
        // and a few Adam steps move the one parameter down, the same at every pixel.
        let target = mean_image(out.clone(), 1, false)
            .add_scalar(0.05)
            .clamp(0.0, 1.0)
            .detach();
        let mut optim = crate::method::adam(&OptimConfig::default());
        for _ in 0..5 {
            let loss = reconstruction_nll(
                m.decode(z.clone(), None),
                target.clone(),
                Likelihood::GaussianGlobal,
            )
            .mean();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(0.05, m, grads);
        }
        let after = log_std(&m);
        assert!(
            after[0] < -0.1 && after.iter().all(|&v| v == after[0]),
            "{:?}",
            &after[..3]
        );
        assert_eq!(
            m.num_params(),
            Vae::init(
                &ModelConfig {
                    architecture: crate::config::Architecture::default_mlp(),
                    ..ModelConfig::default()
                },
                0,
                &Device::flex()
            )
            .num_params()
                + 1
        );
    }

    /// The 256 levels of an 8-bit pixel, in [0, 1], as a `[1, 1, 1, 256]` image.
    fn levels(dev: &Device) -> Tensor<4> {
        Tensor::<1>::from_floats(
            (0..256)
                .map(|v| v as f32 / 255.0)
                .collect::<Vec<_>>()
                .as_slice(),
            dev,
        )
        .reshape([1, 1, 1, 256])
    }
}
