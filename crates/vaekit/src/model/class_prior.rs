//! A learned class-conditional prior p(z|y) = N(mean_y, diag exp(logvar_y)) for a conditional
//! VAE: the prior network of Sohn et al. 2015 ("Learning structured output representation
//! using deep conditional generative models") in its simplest form for a one-hot y, one
//! Gaussian per class.
//!
//! With N(0, I) as the prior of every class, the KL term pulls each class's posterior to the
//! same place, yet the encoder still puts class information into z; `sample --class c` then
//! draws codes where other classes' images live. Here each class has its own region, and a
//! sample for class c is drawn from it.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::LatentDraw;
use crate::distribution::DiagonalGaussian;

/// A mixture of `components` diagonal Gaussians per class with learned weights, read off the
/// one-hot label by bias-free linear maps (a row of each weight matrix per class, holding
/// every component's parameters). One component: the means start at zero, a prior that starts
/// as N(0, I); several: equal weights, and means at random but close (N(0, 0.1^2)), so that every
/// component starts where the codes are and they part as they learn (measured: 0.5 left more
/// components stranded away from every code, drawing images of no class).
#[derive(Module, Debug)]
pub struct ClassPrior {
    mean: Linear,
    logvar: Linear,
    /// Logits of the mixture weights of each class (none for one component).
    weight: Option<Linear>,
    components: usize,
}

/// Phi(x), the standard normal CDF.
fn normal_cdf(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}

impl ClassPrior {
    /// The prior of a `latent`-dimensional z for `classes` classes, `components` Gaussians per
    /// class, to be learned.
    pub fn new(latent: usize, classes: usize, components: usize, device: &Device) -> ClassPrior {
        let k = components.max(1);
        let map = |init| {
            LinearConfig::new(classes, k * latent)
                .with_bias(false)
                .with_initializer(init)
                .init(device)
        };
        let spread = if k == 1 {
            Initializer::Zeros
        } else {
            Initializer::Normal {
                mean: 0.0,
                std: 0.1,
            }
        };
        ClassPrior {
            mean: map(spread),
            logvar: map(Initializer::Zeros),
            weight: (k > 1).then(|| {
                LinearConfig::new(classes, k)
                    .with_bias(false)
                    .with_initializer(Initializer::Zeros)
                    .init(device)
            }),
            components: k,
        }
    }

    /// Dimension of z.
    pub fn latent(&self) -> usize {
        self.mean.weight.val().dims()[1] / self.components
    }

    /// Gaussians per class.
    pub fn components(&self) -> usize {
        self.components
    }

    /// Standard normal values per draw: z's, and one more that picks the component of a
    /// mixture.
    pub fn noise_dim(&self) -> usize {
        self.latent() + usize::from(self.components > 1)
    }

    /// log of the mixture weights of every row's class (log 1 for one component).
    ///
    /// # Shapes
    /// `y`: `[n, classes]` -> `[n, components]`
    fn log_weights(&self, y: Tensor<2>) -> Tensor<2> {
        match &self.weight {
            Some(w) => burn::tensor::activation::log_softmax(w.forward(y), 1),
            None => Tensor::zeros([y.dims()[0], 1], &y.device()),
        }
    }

    /// Means and log-variances of every component of every row's class.
    ///
    /// # Shapes
    /// `y`: `[n, classes]` -> `[n, components, latent]` each
    fn parameters(&self, y: Tensor<2>) -> (Tensor<3>, Tensor<3>) {
        let (n, k, l) = (y.dims()[0], self.components, self.latent());
        (
            self.mean.forward(y.clone()).reshape([n, k, l]),
            self.logvar.forward(y).reshape([n, k, l]),
        )
    }

    /// Every component of every row's class: means and log-variances, and the log mixture
    /// weights (log 1 for one component): what a sampler outside vaekit needs.
    ///
    /// # Shapes
    /// `y`: `[n, classes]` -> `[n, components, latent]` twice, `[n, components]`
    pub fn mixture(&self, y: Tensor<2>) -> (Tensor<3>, Tensor<3>, Tensor<2>) {
        let (mean, logvar) = self.parameters(y.clone());
        (mean, logvar, self.log_weights(y))
    }

    /// The Gaussian of p(z|y) for a single component; for a mixture the Gaussian with its mean
    /// and variance (moment matching), e.g. to place a code relative to its class.
    ///
    /// # Shapes
    /// `y`: `[n, classes]` (one-hot) -> `[n, latent]`
    pub fn gaussian(&self, y: Tensor<2>) -> DiagonalGaussian {
        let (mean, logvar) = self.parameters(y.clone());
        if self.components == 1 {
            return DiagonalGaussian::new(mean.squeeze_dim(1), logvar.squeeze_dim(1));
        }
        let (n, k) = (mean.dims()[0], self.components);
        let w = self.log_weights(y).exp().reshape([n, k, 1]);
        let m = (mean.clone() * w.clone()).sum_dim(1); // [n, 1, latent]
        let second = ((logvar.exp() + mean.clone() * mean) * w).sum_dim(1);
        let var = second - m.clone() * m.clone();
        DiagonalGaussian::new(m.squeeze_dim(1), var.clamp_min(1e-12).log().squeeze_dim(1))
    }

    /// z = mean + std * noise of each row's component, the component of a mixture picked by the
    /// last noise column (Phi(u) in [0, 1) split in parts as large as the class's mixture
    /// weights), so that each component is drawn with its weight.
    ///
    /// # Shapes
    /// `noise`: `[n, noise_dim]`, `y`: `[n, classes]` -> `[n, latent]`
    pub fn sample(&self, noise: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
        let l = self.latent();
        let (mean, logvar) = self.parameters(y.clone());
        let eps = noise.clone().narrow(1, 0, l);
        if self.components == 1 {
            return DiagonalGaussian::new(mean.squeeze_dim(1), logvar.squeeze_dim(1)).rsample(eps);
        }
        let (n, k) = (eps.dims()[0], self.components);
        let u = noise
            .narrow(1, l, 1)
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 noise");
        let weights = self
            .log_weights(y)
            .exp()
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 weights");
        let mut pick = vec![0.0f32; n * k];
        for (i, v) in u.iter().enumerate() {
            let (target, mut acc, mut c) = (normal_cdf(*v as f64), 0.0f64, k - 1);
            for (j, w) in weights[i * k..(i + 1) * k].iter().enumerate() {
                acc += *w as f64;
                if target < acc {
                    c = j;
                    break;
                }
            }
            pick[i * k + c] = 1.0;
        }
        let pick = Tensor::<3>::from_data(TensorData::new(pick, [n, k, 1]), &eps.device());
        let choose = |t: Tensor<3>| (t * pick.clone()).sum_dim(1).reshape([n, l]);
        DiagonalGaussian::new(choose(mean), choose(logvar)).rsample(eps)
    }

    /// z ~ q with noise `eps` (its first `latent` columns), scored against p(z|y): log p(z|y) -
    /// log q(z|x, y), and the KL per dimension. One component: the closed-form KL(q || p(z|y)).
    /// A mixture: the single-draw estimate log q(z_d|x) - sum_k r_k log N_k(z_d) - sum_k r_k
    /// log(w_k / r_k) / latent with r the components' responsibilities for z (held fixed): it
    /// sums over dimensions to log q(z|x) - log p(z|y) exactly, and its gradient is that of
    /// log p(z|y) (the bound log p(z) >= sum_k r_k log(w_k N_k(z) / r_k) is tight at these r).
    ///
    /// # Shapes
    /// `q`: `[n, latent]`, `eps`: `[n, >= latent]`, `y`: `[n, classes]`
    pub fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>, y: Tensor<2>) -> LatentDraw {
        let l = self.latent();
        let z = q.rsample(eps.narrow(1, 0, l));
        if self.components == 1 {
            let p = self.gaussian(y);
            return LatentDraw {
                log_ratio: p.log_prob(z.clone()) - q.log_prob(z.clone()),
                kl_dims: q.kl_terms_to(&p),
                z,
            };
        }
        let (n, k) = (z.dims()[0], self.components);
        let (mean, logvar) = self.parameters(y.clone());
        let log_w = self.log_weights(y); // [n, k]
        let d = z.clone().reshape([n, 1, l]) - mean;
        let log_n = (d.clone() * d * logvar.clone().neg().exp()
            + logvar
            + (2.0 * std::f64::consts::PI).ln())
        .mul_scalar(-0.5); // [n, k, latent]: log N_k(z_d)
        let per_comp = log_n.clone().sum_dim(2).reshape([n, k]) + log_w.clone(); // log w_k N_k(z)
        let shift = per_comp.clone().max_dim(1).detach(); // [n, 1]
        let log_p = (per_comp.clone() - shift.clone()).exp().sum_dim(1).log() + shift; // log p(z|y), [n, 1]
        let r = (per_comp - log_p.clone()).exp().detach(); // responsibilities, [n, k]
        let expected = (log_n * r.clone().reshape([n, k, 1]))
            .sum_dim(1)
            .reshape([n, l]);
        // sum_k r_k log(w_k / r_k), spread evenly over the dimensions.
        let rest = ((log_w - r.clone().clamp_min(1e-30).log()) * r)
            .sum_dim(1)
            .div_scalar(l as f64); // [n, 1]
        let kl_dims = q.log_prob_per_dim(z.clone()) - expected - rest;
        LatentDraw {
            log_ratio: log_p.reshape([n]) - q.log_prob(z.clone()),
            kl_dims,
            z,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn starts_as_the_standard_normal_and_reads_each_class_off_its_row() {
        let dev = Device::flex();
        let p = ClassPrior::new(3, 4, 1, &dev);
        let y = |labels: &[u32]| {
            Tensor::<2>::from_data(
                TensorData::new(crate::data::one_hot(labels, 4), [labels.len(), 4]),
                &dev,
            )
        };
        let g = p.gaussian(y(&[0, 3]));
        let zeros = |t: Tensor<2>| {
            t.into_data()
                .try_into_vec::<f32>()
                .unwrap()
                .iter()
                .all(|v| *v == 0.0)
        };
        assert!(zeros(g.mean) && zeros(g.logvar));
        // With set rows, class c's Gaussian is row c's.
        let set = |rows: Vec<f32>| Tensor::<2>::from_data(TensorData::new(rows, [4, 3]), &dev);
        let p = ClassPrior {
            mean: Linear {
                weight: burn::module::Param::from_tensor(set((0..12).map(|v| v as f32).collect())),
                bias: None,
            },
            logvar: Linear {
                weight: burn::module::Param::from_tensor(set(vec![0.0; 12])),
                bias: None,
            },
            weight: None,
            components: 1,
        };
        let m: Vec<f32> = p.gaussian(y(&[2])).mean.into_data().try_into_vec().unwrap();
        assert_eq!(m, vec![6.0, 7.0, 8.0]);
        // Samples at zero noise are the class means; a draw's KL is the KL to that class.
        let z: Vec<f32> = p
            .sample(Tensor::zeros([1, 3], &dev), y(&[1]))
            .into_data()
            .try_into_vec()
            .unwrap();
        assert_eq!(z, vec![3.0, 4.0, 5.0]);
        let q = DiagonalGaussian::new(
            Tensor::from_floats([[3.0, 4.0, 5.0]], &dev),
            Tensor::zeros([1, 3], &dev),
        );
        let d = p.draw(&q, Tensor::zeros([1, 3], &dev), y(&[1]));
        let kl: f32 = d.kl_dims.sum().into_scalar();
        assert!(kl.abs() < 1e-6, "{kl}");
        let d = p.draw(&q, Tensor::zeros([1, 3], &dev), y(&[0]));
        let kl: f32 = d.kl_dims.sum().into_scalar();
        assert!((kl - 0.5 * 3.0 * 9.0).abs() < 1e-4, "{kl}");
    }

    /// A 1-D, 2-component prior of one class with these means and log-variances.
    fn mixture(means: [f32; 2], logvars: [f32; 2], dev: &Device) -> ClassPrior {
        let w = |v: [f32; 2]| Linear {
            weight: burn::module::Param::from_tensor(Tensor::<2>::from_data(
                TensorData::new(v.to_vec(), [1, 2]),
                dev,
            )),
            bias: None,
        };
        ClassPrior {
            mean: w(means),
            logvar: w(logvars),
            weight: Some(Linear {
                weight: burn::module::Param::from_tensor(Tensor::<2>::zeros([1, 2], dev)),
                bias: None,
            }),
            components: 2,
        }
    }

    fn normal_pdf(z: f64, mean: f64, logvar: f64) -> f64 {
        let var = logvar.exp();
        (-(z - mean).powi(2) / (2.0 * var)).exp() / (2.0 * std::f64::consts::PI * var).sqrt()
    }

    #[test]
    fn a_mixture_scores_with_its_density_and_its_kl_terms_sum_to_the_draws_ratio() {
        let dev = Device::flex();
        let p = mixture([-1.0, 2.0], [0.0, (0.25f32).ln()], &dev);
        assert_eq!((p.latent(), p.noise_dim()), (1, 2));
        let zs = [-2.0f32, -0.3, 0.8, 2.1, 3.5];
        let n = zs.len();
        // q with a tiny variance at zero noise: z = the mean, log q known.
        let q = DiagonalGaussian::new(
            Tensor::<1>::from_floats(zs, &dev).reshape([n, 1]),
            Tensor::<2>::zeros([n, 1], &dev).add_scalar(-2.0),
        );
        let y = Tensor::<2>::ones([n, 1], &dev);
        let d = p.draw(&q, Tensor::zeros([n, 2], &dev), y);
        let ratio: Vec<f32> = d.log_ratio.into_data().try_into_vec().unwrap();
        let kl: Vec<f32> = d.kl_dims.sum_dim(1).into_data().try_into_vec().unwrap();
        for (i, &z) in zs.iter().enumerate() {
            let z = z as f64;
            let log_p =
                (0.5 * normal_pdf(z, -1.0, 0.0) + 0.5 * normal_pdf(z, 2.0, 0.25f64.ln())).ln();
            let log_q = normal_pdf(z, z, -2.0).ln();
            assert!(
                (ratio[i] as f64 - (log_p - log_q)).abs() < 1e-4,
                "{} vs {}",
                ratio[i],
                log_p - log_q
            );
            assert!(
                (kl[i] + ratio[i]).abs() < 1e-4,
                "kl {} vs ratio {}",
                kl[i],
                ratio[i]
            );
        }
    }

    #[test]
    fn the_kl_terms_have_the_gradient_of_the_exact_log_density() {
        let dev = Device::flex().autodiff();
        let p = mixture([-1.0, 2.0], [0.3, -0.5], &dev);
        let q = DiagonalGaussian::new(
            Tensor::<2>::from_floats([[0.2], [1.4], [-2.5]], &dev).require_grad(),
            Tensor::<2>::from_floats([[-1.0], [0.1], [-0.4]], &dev),
        );
        let eps = Tensor::<2>::from_floats([[0.3, 0.0], [-1.1, 0.0], [0.7, 0.0]], &dev);
        let y = Tensor::<2>::ones([3, 1], &dev);
        let grads = |use_terms: bool| {
            let d = p.draw(&q, eps.clone(), y.clone());
            let loss = if use_terms {
                d.kl_dims.sum()
            } else {
                d.log_ratio.sum().neg()
            };
            let g = loss.backward();
            let v = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
            (
                v(p.mean.weight.val().grad(&g).unwrap()),
                v(p.logvar.weight.val().grad(&g).unwrap()),
                v(q.mean.grad(&g).unwrap()),
            )
        };
        let (a, b) = (grads(true), grads(false));
        for (x, y) in
            a.0.iter()
                .chain(&a.1)
                .chain(&a.2)
                .zip(b.0.iter().chain(&b.1).chain(&b.2))
        {
            assert!((x - y).abs() < 1e-4 * y.abs().max(1.0), "{x} vs {y}");
        }
    }

    #[test]
    fn a_mixture_picks_every_component_equally_often_and_tempering_keeps_that() {
        let dev = Device::flex();
        let p = mixture([-1.0, 2.0], [0.0, 0.0], &dev);
        let n = 4000;
        let noise = Tensor::<2>::from_data(
            TensorData::new(
                crate::rng::normals(
                    &mut crate::rng::stream_rng(1, crate::rng::Stream::EvalNoise, 0),
                    n * 2,
                ),
                [n, 2],
            ),
            &dev,
        );
        // With the Gaussian part at zero, each draw is its component's mean.
        let prior = super::super::Prior::Class(p);
        let picked = |noise: Tensor<2>| -> f64 {
            let zero_gauss =
                Tensor::cat(vec![Tensor::zeros([n, 1], &dev), noise.narrow(1, 1, 1)], 1);
            let z: Vec<f32> = prior
                .sample(zero_gauss, Some(Tensor::ones([n, 1], &dev)))
                .into_data()
                .try_into_vec()
                .unwrap();
            assert!(z.iter().all(|v| *v == -1.0 || *v == 2.0));
            z.iter().filter(|v| **v == 2.0).count() as f64 / n as f64
        };
        let share = picked(noise.clone());
        assert!((share - 0.5).abs() < 0.03, "{share}");
        assert_eq!(picked(prior.temper(noise.clone(), 0.3)), share);
        // Phi itself.
        for (x, want) in [(0.0, 0.5), (1.0, 0.841_344_75), (-1.96, 0.024_997_9)] {
            assert!((normal_cdf(x) - want).abs() < 1e-8, "{x}");
        }
    }
}
