//! VAE models: one file per variant, one [`Vae`] type that commands work with.

pub mod conv;
pub mod mlp;

use std::sync::Mutex;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Device, Tensor};

use crate::config::{Architecture, ModelConfig};
use crate::distribution::{DiagonalGaussian, standard_normal_log_prob};
pub mod global_scale;
pub mod top;

pub use conv::ConvVae;
pub use global_scale::GlobalLogStd;
pub use mlp::MlpVae;
pub use top::TopLatent;

/// Any vaekit model; built from a [`ModelConfig`] with [`Vae::init`].
#[derive(Module, Debug)]
pub enum Vae {
    /// The article's convolutional VAE.
    Conv(ConvVae),
    /// The pytorch/examples MLP VAE.
    Mlp(MlpVae),
}

/// The result of a forward pass.
///
/// # Shapes
/// `logits`: `[batch, channels, height, width]`, `z`: `[batch, latent]`
#[derive(Clone, Debug)]
pub struct VaeOutput {
    /// Logits of p(x|z) for the sampled z.
    pub logits: Tensor<4>,
    /// q(z|x).
    pub posterior: DiagonalGaussian,
    /// The reparameterised sample the logits were decoded from.
    pub z: Tensor<2>,
}

/// Latent variables drawn from the posterior for a batch, with the terms every objective and
/// estimate is built from.
///
/// # Shapes
/// `z`: `[n, latent]`, `log_ratio`: `[n]`, `kl_dims`: `[n, latent (+ top latent)]`
#[derive(Clone, Debug)]
pub struct LatentDraw {
    /// The decoder's latent (z1 of a hierarchical VAE), reparameterised.
    pub z: Tensor<2>,
    /// log p(z) - log q(z|x) at the draw; for a hierarchical VAE
    /// log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1). Added to log p(x|z) it is the
    /// log importance weight.
    pub log_ratio: Tensor<1>,
    /// The ELBO's KL term per item and dimension; summed over dimensions it is the KL the
    /// loss uses. One layer: KL(q(z_d|x) || N(0, 1)) in closed form. Two layers: for the z1
    /// dimensions the single-sample log q(z1_d|x) - log p(z1_d|z2), for the z2 dimensions
    /// KL(q(z2_d|z1) || N(0, 1)) in closed form: an unbiased estimate of KL(q(z1, z2|x) ||
    /// p(z1, z2)).
    pub kl_dims: Tensor<2>,
}

/// How latents are drawn from a posterior and scored against the prior: what the
/// importance-sampled estimate and the IWAE bound need of a model.
pub trait Latents {
    /// Standard normal values per draw (see [`Vae::noise_dim`]).
    fn noise_dim(&self) -> usize;
    /// The draw for noise `eps` (see [`Vae::draw`]).
    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>) -> LatentDraw;
}

/// One latent layer with prior N(0, I), of the given dimension.
#[derive(Clone, Copy, Debug)]
pub struct StandardNormalPrior(pub usize);

impl Latents for StandardNormalPrior {
    fn noise_dim(&self) -> usize {
        self.0
    }

    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>) -> LatentDraw {
        let z = q.rsample(eps);
        LatentDraw {
            log_ratio: standard_normal_log_prob(z.clone()) - q.log_prob(z.clone()),
            kl_dims: q.kl_terms_per_item(),
            z,
        }
    }
}

impl Latents for Vae {
    fn noise_dim(&self) -> usize {
        Vae::noise_dim(self)
    }

    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>) -> LatentDraw {
        Vae::draw(self, q, eps)
    }
}

/// Serialises seeding and initialisation: burn's CPU generator is process-wide, so two models
/// initialised at once from two threads would interleave their draws.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Gives every parameter an id from its position in the module (1, 2, 3, ...), so the ids, and
/// with them the optimiser state saved by burn, are the same in every process that builds the
/// same config.
struct PositionalIds(u64);

impl ModuleMapper for PositionalIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.0 += 1;
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(ParamId::from(self.0), value, mapper)
    }
}

impl Vae {
    /// Builds the model `cfg` describes, initialised from `seed`, on `device`.
    pub fn init(cfg: &ModelConfig, seed: u64, device: &Device) -> Vae {
        let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        let p = cfg.likelihood.network_maps();
        let logistic = cfg.likelihood == crate::config::Likelihood::Logistic;
        let global = (cfg.likelihood == crate::config::Likelihood::GaussianGlobal)
            .then(|| GlobalLogStd::new(cfg.image.channels, device));
        let model = match &cfg.architecture {
            Architecture::Conv {
                channels,
                kernel,
                leaky_slope,
            } => Vae::Conv(ConvVae::new(
                cfg.image,
                cfg.latent_dim,
                channels,
                *kernel,
                *leaky_slope,
                p,
                logistic,
                global,
                cfg.classes,
                device,
            )),
            Architecture::Mlp { hidden } => Vae::Mlp(MlpVae::new(
                cfg.image,
                cfg.latent_dim,
                hidden,
                p,
                logistic,
                global,
                cfg.classes,
                device,
            )),
        };
        let top = cfg
            .top
            .as_ref()
            .map(|t| TopLatent::new(cfg.latent_dim, t.latent_dim, &t.hidden, device));
        let model = match model {
            Vae::Conv(m) => Vae::Conv(m.with_top(top)),
            Vae::Mlp(m) => Vae::Mlp(m.with_top(top)),
        };
        // Mapping materialises every lazily initialised parameter while the lock is held.
        model.map(&mut PositionalIds(0))
    }

    /// Classes of the condition: 0 for an unconditional model, else a conditional VAE.
    pub fn classes(&self) -> usize {
        match self {
            Vae::Conv(m) => m.classes(),
            Vae::Mlp(m) => m.classes(),
        }
    }

    /// The second stochastic layer of a hierarchical VAE, if any.
    pub fn top(&self) -> Option<&TopLatent> {
        match self {
            Vae::Conv(m) => m.top(),
            Vae::Mlp(m) => m.top(),
        }
    }

    /// Standard normal values per draw of the latents: z's dimension, plus z2's for a
    /// hierarchical VAE. Noise for [`Vae::draw`] and [`Vae::prior_sample`] has this many
    /// columns, z's first.
    pub fn noise_dim(&self) -> usize {
        self.latent_dim() + self.top().map_or(0, TopLatent::latent)
    }

    /// Dimension of z, the decoder's latent (z1 of a hierarchical VAE).
    pub fn latent_dim(&self) -> usize {
        match self {
            Vae::Conv(m) => m.latent_dim(),
            Vae::Mlp(m) => m.latent_dim(),
        }
    }

    /// Draws from the prior of the decoder's latent, from standard normal `noise`: z = noise
    /// for a one-layer model; for a hierarchical VAE z2 = the last columns, z1 = mean(z2) +
    /// std(z2) * the first columns.
    ///
    /// # Shapes
    /// `noise`: `[n, noise_dim]` -> `[n, latent]`
    pub fn prior_sample(&self, noise: Tensor<2>) -> Tensor<2> {
        match self.top() {
            None => noise,
            Some(top) => top::prior_two_layers(noise, self.latent_dim(), &|z2| top.prior(z2)),
        }
    }

    /// Draws the latents from the posterior `q` = q(z|x) (and q(z2|z1) above it) with the
    /// standard normal `eps`, and computes the terms of [`LatentDraw`].
    ///
    /// # Shapes
    /// `q`: `[n, latent]`, `eps`: `[n, noise_dim]`
    pub fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>) -> LatentDraw {
        match self.top() {
            None => StandardNormalPrior(q.mean.dims()[1]).draw(q, eps),
            Some(top) => top::draw_two_layers(q, eps, &|z1| top.encode(z1), &|z2| top.prior(z2)),
        }
    }

    /// The condition for images with these labels: one-hot rows for a conditional model, none
    /// for an unconditional one.
    ///
    /// # Shapes
    /// returns `[labels.len(), classes]`
    pub fn condition(&self, labels: &[u32], device: &Device) -> Option<Tensor<2>> {
        let c = self.classes();
        (c > 0).then(|| {
            Tensor::from_data(
                burn::tensor::TensorData::new(crate::data::one_hot(labels, c), [labels.len(), c]),
                device,
            )
        })
    }

    /// q(z|x) (q(z|x, y) for a conditional model, `y` one-hot).
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]`, `y`: `[batch, classes]` -> `[batch, latent]`
    pub fn encode(&self, x: Tensor<4>, y: Option<Tensor<2>>) -> DiagonalGaussian {
        match self {
            Vae::Conv(m) => m.encode(x, y),
            Vae::Mlp(m) => m.encode(x, y),
        }
    }

    /// Parameters of p(x|z) (p(x|z, y) for a conditional model; see
    /// [`crate::loss::reconstruction_nll`]): logits or means, then log-scales for likelihoods
    /// with two parameters per pixel.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, channels * params, height, width]`
    pub fn decode(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        match self {
            Vae::Conv(m) => m.decode(z, y),
            Vae::Mlp(m) => m.decode(z, y),
        }
    }

    /// The decoder's mean image, pixels in [0, 1].
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, channels, height, width]`
    pub fn decode_mean(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        match self {
            Vae::Conv(m) => m.decode_mean(z, y),
            Vae::Mlp(m) => m.decode_mean(z, y),
        }
    }

    /// Encodes, draws z = mean + std * eps, decodes.
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]`, `eps`: `[batch, latent]` or wider (the first
    /// `latent` columns are used)
    pub fn forward(&self, x: Tensor<4>, y: Option<Tensor<2>>, eps: Tensor<2>) -> VaeOutput {
        let posterior = self.encode(x, y.clone());
        let latent = posterior.mean.dims()[1];
        let z = posterior.rsample(eps.narrow(1, 0, latent));
        let logits = self.decode(z.clone(), y);
        VaeOutput {
            logits,
            posterior,
            z,
        }
    }
}

/// Appends the one-hot condition to a batch of feature rows (nothing without one).
///
/// # Shapes
/// `h`: `[batch, features]`, `y`: `[batch, classes]` -> `[batch, features + classes]`
pub(crate) fn with_condition(h: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<2> {
    match y {
        Some(y) => Tensor::cat(vec![h, y], 1),
        None => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageShape;

    fn dims_of(cfg: &ModelConfig) -> ([usize; 2], [usize; 4]) {
        let dev = Device::flex();
        let m = Vae::init(cfg, 0, &dev);
        let s = cfg.image;
        let x = Tensor::zeros([3, s.channels, s.height, s.width], &dev);
        let out = m.forward(x, None, Tensor::zeros([3, cfg.latent_dim], &dev));
        (out.z.dims(), out.logits.dims())
    }

    #[test]
    fn conv_and_mlp_map_images_to_latents_and_back() {
        let mut cfg = ModelConfig::default();
        assert_eq!(dims_of(&cfg), ([3, 20], [3, 1, 28, 28]));
        cfg.image = ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        };
        cfg.architecture = Architecture::Conv {
            channels: vec![8, 16, 32],
            kernel: 3,
            leaky_slope: 0.2,
        };
        cfg.latent_dim = 7;
        assert_eq!(dims_of(&cfg), ([3, 7], [3, 3, 32, 32]));
        cfg.architecture = Architecture::Mlp {
            hidden: vec![64, 32],
        };
        assert_eq!(dims_of(&cfg), ([3, 7], [3, 3, 32, 32]));
    }

    #[test]
    fn default_conv_has_the_articles_parameter_count() {
        // conv1 16*1*25+16, conv2 32*16*25+32, two heads 2*(1568*20+20),
        // dense 20*1568+1568, convT1 32*16*25+16, convT2 16*1*25+1.
        let want = 416 + 12832 + 2 * 31380 + 32928 + 12816 + 401;
        let m = Vae::init(&ModelConfig::default(), 0, &Device::flex());
        assert_eq!(m.num_params(), want);
        let mlp = ModelConfig {
            architecture: Architecture::default_mlp(),
            ..ModelConfig::default()
        };
        // 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784
        assert_eq!(
            Vae::init(&mlp, 0, &Device::flex()).num_params(),
            314_000 + 16_040 + 8_400 + 314_384
        );
    }

    #[test]
    fn same_seed_same_weights() {
        let cfg = ModelConfig::default();
        let dev = Device::flex();
        let z = Tensor::<2>::ones([2, 20], &dev);
        let a = Vae::init(&cfg, 7, &dev).decode(z.clone(), None).into_data();
        let b = Vae::init(&cfg, 7, &dev).decode(z.clone(), None).into_data();
        let c = Vae::init(&cfg, 8, &dev).decode(z, None).into_data();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_conditional_decoder_changes_with_the_label_for_a_fixed_z() {
        let dev = Device::flex();
        for arch in [Architecture::default_conv(), Architecture::default_mlp()] {
            let cfg = ModelConfig {
                classes: 10,
                architecture: arch,
                ..ModelConfig::default()
            };
            let m = Vae::init(&cfg, 0, &dev);
            assert_eq!(m.classes(), 10);
            let z = Tensor::<2>::ones([2, 20], &dev);
            let a = m.decode(z.clone(), m.condition(&[3, 3], &dev)).into_data();
            let b = m.decode(z.clone(), m.condition(&[7, 7], &dev)).into_data();
            let a2 = m.decode(z, m.condition(&[3, 3], &dev)).into_data();
            assert_ne!(a, b);
            assert_eq!(a, a2);
            // The encoder sees the label too.
            let x = Tensor::<4>::ones([1, 1, 28, 28], &dev);
            let qa = m
                .encode(x.clone(), m.condition(&[0], &dev))
                .mean
                .into_data();
            let qb = m.encode(x, m.condition(&[9], &dev)).mean.into_data();
            assert_ne!(qa, qb);
        }
        // An unconditional model takes no condition.
        assert!(
            Vae::init(&ModelConfig::default(), 0, &dev)
                .condition(&[1], &dev)
                .is_none()
        );
    }
}
