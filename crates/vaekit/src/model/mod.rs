//! VAE models, composed of parts: an [`Encoder`] for q(z|x), a [`Decoder`] for the maps of
//! p(x|z), a [`Prior`] p(z) and a [`PixelLikelihood`] that reads the decoder's maps. Each part
//! has a typed config with `init(&device)` (from [`ModelConfig`]'s `encoder()`, `decoder()`,
//! `prior()`); a new network touches its own file and the part's enum, nothing else.

pub mod class_prior;
pub mod conv;
pub mod cppn;
pub mod decoder;
pub mod discriminator;
pub mod encoder;
pub mod global_scale;
pub mod label;
pub mod likelihood;
pub mod mlp;
pub mod prior;
pub mod top;

use std::sync::Mutex;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Device, Tensor};

use crate::config::{Architecture, ClassPriorKind, LabelInput, ModelConfig};
use crate::distribution::{DiagonalGaussian, standard_normal_log_prob};

pub use decoder::{Decoder, DecoderConfig};
pub use discriminator::{Discriminator, DiscriminatorConfig, Judgement};
pub use encoder::{Encoder, EncoderConfig};
pub use global_scale::GlobalLogStd;
pub use likelihood::PixelLikelihood;
pub use prior::{Prior, PriorConfig};
pub use top::TopLatent;

/// A VAE: encoder, decoder, prior and likelihood; built from a [`ModelConfig`] with
/// [`Vae::init`].
///
/// The fields' order is the order of the parameters (and so of their positional ids, see
/// [`Vae::init`]); it is the order of vaekit's first checkpoint format, whose optimiser state
/// therefore still loads.
#[derive(Module, Debug)]
pub struct Vae {
    /// q(z|x).
    pub encoder: Encoder,
    /// The maps of p(x|z).
    pub decoder: Decoder,
    /// p(x|z) from the decoder's maps.
    pub likelihood: PixelLikelihood,
    /// p(z).
    pub prior: Prior,
    /// Classes of the one-hot condition (0: unconditional).
    classes: usize,
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
    /// The draw for noise `eps` and the one-hot condition `y` of a conditional model (see
    /// [`Vae::draw`]).
    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>, y: Option<Tensor<2>>) -> LatentDraw;
}

/// One latent layer with prior N(0, I), of the given dimension.
#[derive(Clone, Copy, Debug)]
pub struct StandardNormalPrior(pub usize);

impl Latents for StandardNormalPrior {
    fn noise_dim(&self) -> usize {
        self.0
    }

    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>, _y: Option<Tensor<2>>) -> LatentDraw {
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

    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>, y: Option<Tensor<2>>) -> LatentDraw {
        Vae::draw(self, q, eps, y)
    }
}

/// Serialises seeding and initialisation: burn's CPU generator is process-wide, so two models
/// initialised at once from two threads would interleave their draws.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Gives every parameter an id from its position in the module (`first`, `first + 1`, ...), so
/// the ids, and with them the optimiser state saved by burn, are the same in every process that
/// builds the same config.
struct PositionalIds(u64);

impl ModuleMapper for PositionalIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        let id = ParamId::from(self.0);
        self.0 += 1;
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Whether every parameter of `module` is finite (no NaN or infinity).
pub fn params_finite<M: Module>(module: &M) -> bool {
    struct Check(bool);
    impl burn::module::ModuleVisitor for Check {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0 {
                // v - v is 0 where v is finite and NaN where it is NaN or infinite; its sum
                // cannot overflow (a sum of squares would for weights above about 1e19).
                let v = param.val();
                let s: f32 = (v.clone() - v).sum().into_scalar();
                self.0 = s == 0.0;
            }
        }
    }
    let mut c = Check(true);
    module.visit(&mut c);
    c.0
}

/// Builds a module with `build` after seeding `device` from `seed`, and numbers its parameters
/// from `first_id` (see [`PositionalIds`]); networks trained together take ranges apart.
pub fn init_seeded<M: Module>(
    seed: u64,
    first_id: u64,
    device: &Device,
    build: impl FnOnce() -> M,
) -> M {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    // Mapping materialises every lazily initialised parameter while the lock is held.
    build().map(&mut PositionalIds(first_id))
}

impl Vae {
    /// Builds the model `cfg` describes, initialised from `seed`, on `device`.
    pub fn init(cfg: &ModelConfig, seed: u64, device: &Device) -> Vae {
        init_seeded(seed, 1, device, || Vae {
            encoder: cfg.encoder().init(device),
            decoder: cfg.decoder().init(device),
            likelihood: PixelLikelihood::new(cfg.likelihood, cfg.image.channels, device),
            prior: cfg.prior().init(device),
            classes: cfg.classes,
        })
    }

    /// Classes of the condition: 0 for an unconditional model, else a conditional VAE.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The second stochastic layer of a hierarchical VAE, if any.
    pub fn top(&self) -> Option<&TopLatent> {
        self.prior.top()
    }

    /// Standard normal values per draw of the latents: z's dimension, plus z2's for a
    /// hierarchical VAE. Noise for [`Vae::draw`] and [`Vae::prior_sample`] has this many
    /// columns, z's first.
    pub fn noise_dim(&self) -> usize {
        self.prior.noise_dim()
    }

    /// Dimension of z, the decoder's latent (z1 of a hierarchical VAE).
    pub fn latent_dim(&self) -> usize {
        self.encoder.latent_dim()
    }

    /// Draws from the prior of the decoder's latent, from standard normal `noise` (see
    /// [`Prior::sample`]); `y` is the one-hot condition of a conditional model.
    ///
    /// # Shapes
    /// `noise`: `[n, noise_dim]`, `y`: `[n, classes]` -> `[n, latent]`
    pub fn prior_sample(&self, noise: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<2> {
        self.prior.sample(noise, y)
    }

    /// Draws the latents from the posterior `q` = q(z|x) (and q(z2|z1) above it) with the
    /// standard normal `eps`, and computes the terms of [`LatentDraw`] against the prior
    /// (p(z|y) for a conditional model with a class prior, `y` one-hot).
    ///
    /// # Shapes
    /// `q`: `[n, latent]`, `eps`: `[n, noise_dim]`, `y`: `[n, classes]`
    pub fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>, y: Option<Tensor<2>>) -> LatentDraw {
        self.prior.draw(q, eps, y)
    }

    /// Codes of images of the classes `from` moved to the classes `to` (one-hot or mixed rows),
    /// keeping their place relative to the class: with a learned class prior z' = mean_to +
    /// std_to * (z - mean_from) / std_from, otherwise z itself (every class has N(0, I)).
    ///
    /// # Shapes
    /// `z`: `[n, latent]`, `from`, `to`: `[n, classes]` -> `[n, latent]`
    pub fn move_code(&self, z: Tensor<2>, from: Tensor<2>, to: Tensor<2>) -> Tensor<2> {
        match (
            self.prior.class_gaussian(from),
            self.prior.class_gaussian(to),
        ) {
            (Some(a), Some(b)) => b.rsample((z - a.mean.clone()) / a.std()),
            _ => z,
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
        self.encoder.forward(x, y)
    }

    /// Parameters of p(x|z) (p(x|z, y) for a conditional model; see
    /// [`crate::likelihood::reconstruction_nll`]): logits or means, then log-scales for
    /// likelihoods with two parameters per pixel.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, channels * params, height, width]`
    pub fn decode(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        self.likelihood.params(self.decoder.forward(z, y))
    }

    /// [`Vae::decode`] at `[height, width]` (see [`Decoder::render`]).
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, channels * params, size[0], size[1]]`
    pub fn render(
        &self,
        z: Tensor<2>,
        y: Option<Tensor<2>>,
        size: [usize; 2],
    ) -> crate::Result<Tensor<4>> {
        Ok(self.likelihood.params(self.decoder.render(z, y, size)?))
    }

    /// The decoder's mean image, pixels in [0, 1].
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, channels, height, width]`
    pub fn decode_mean(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        match self.likelihood.mean_activation() {
            // Applied in the decoder's last layer while the maps are in cache, not in a pass of
            // its own (MLP sampling ~2% faster on an AMD EPYC).
            Some(act) => self.decoder.forward_to(z, y, act),
            None => self.likelihood.mean_image(self.decode(z, y)),
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

/// The typed config of each part that a [`ModelConfig`] (the serialised form, in a run's
/// `config.json`) describes.
impl ModelConfig {
    /// The encoder: the `architecture`'s network.
    pub fn encoder(&self) -> EncoderConfig {
        match &self.architecture {
            Architecture::Conv {
                channels,
                kernel,
                leaky_slope,
                ..
            } => EncoderConfig::Conv(conv::ConvEncoderConfig {
                image: self.image,
                latent: self.latent_dim,
                channels: channels.clone(),
                kernel: *kernel,
                leaky_slope: *leaky_slope,
                classes: self.classes,
            }),
            Architecture::Mlp { hidden } => EncoderConfig::Mlp(mlp::MlpEncoderConfig {
                image: self.image,
                latent: self.latent_dim,
                hidden: hidden.clone(),
                classes: self.classes,
            }),
        }
    }

    /// The decoder: the `decoder` setting's network, or else the mirror of the
    /// `architecture`'s, with as many output maps per channel as the likelihood needs.
    pub fn decoder(&self) -> DecoderConfig {
        let maps = self.likelihood.network_maps();
        let label_every_layer =
            self.classes > 0 && self.conditioning().decoder == LabelInput::EveryLayer;
        if let Some(crate::config::DecoderArchitecture::Cppn {
            hidden,
            layers,
            scale,
            z_scale,
        }) = &self.decoder
        {
            return DecoderConfig::Cppn(cppn::CppnDecoderConfig {
                image: self.image,
                latent: self.latent_dim,
                hidden: *hidden,
                layers: *layers,
                scale: *scale,
                z_scale: *z_scale,
                maps,
                classes: self.classes,
                label_every_layer,
            });
        }
        match &self.architecture {
            Architecture::Conv {
                channels,
                kernel,
                upsample,
                ..
            } => DecoderConfig::Conv(conv::ConvDecoderConfig {
                image: self.image,
                latent: self.latent_dim,
                channels: channels.clone(),
                kernel: *kernel,
                upsample: *upsample,
                maps,
                classes: self.classes,
                label_every_layer,
            }),
            Architecture::Mlp { hidden } => DecoderConfig::Mlp(mlp::MlpDecoderConfig {
                image: self.image,
                latent: self.latent_dim,
                hidden: hidden.clone(),
                maps,
                classes: self.classes,
                label_every_layer,
            }),
        }
    }

    /// The prior: N(0, I), the learned two-layer prior of a hierarchical VAE, or a conditional
    /// model's learned Gaussian per class.
    pub fn prior(&self) -> PriorConfig {
        match &self.top {
            None if self.classes > 0 && self.conditioning().prior == ClassPriorKind::Learned => {
                PriorConfig::Class {
                    latent: self.latent_dim,
                    classes: self.classes,
                    components: self.conditioning().components,
                }
            }
            None => PriorConfig::StandardNormal(self.latent_dim),
            Some(top) => PriorConfig::TwoLayer {
                below: self.latent_dim,
                top: top.clone(),
            },
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
    use crate::config::{DecoderArchitecture, ImageShape, Likelihood, Upsample};
    use burn::tensor::TensorData;

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
            upsample: Upsample::Transposed,
        };
        cfg.latent_dim = 7;
        assert_eq!(dims_of(&cfg), ([3, 7], [3, 3, 32, 32]));
        cfg.architecture = Architecture::Conv {
            channels: vec![8, 16, 32],
            kernel: 3,
            leaky_slope: 0.2,
            upsample: Upsample::Resize,
        };
        assert_eq!(dims_of(&cfg), ([3, 7], [3, 3, 32, 32]));
        cfg.architecture = Architecture::Mlp {
            hidden: vec![64, 32],
        };
        assert_eq!(dims_of(&cfg), ([3, 7], [3, 3, 32, 32]));
    }

    /// `decode_mean` applies the sigmoid inside the decoder's last layer where the mean is the
    /// sigmoid of every map; it equals the sigmoid of `decode`'s maps for each decoder, with
    /// one or two maps per channel, conditional or not.
    #[test]
    fn decode_mean_is_the_sigmoid_of_the_decoded_maps() {
        let dev = Device::flex();
        let mut rng = 1u64;
        let mut cases = Vec::new();
        for likelihood in [
            Likelihood::Bernoulli,
            Likelihood::GaussianGlobal,
            Likelihood::GaussianLearned,
            Likelihood::Logistic,
        ] {
            for (architecture, decoder) in [
                (Architecture::default_conv(), None),
                (Architecture::default_mlp(), None),
                (
                    Architecture::default_mlp(),
                    Some(DecoderArchitecture::default_cppn()),
                ),
            ] {
                cases.push(ModelConfig {
                    architecture,
                    decoder,
                    likelihood,
                    ..ModelConfig::default()
                });
            }
        }
        let mut labelled = cases[1].clone();
        labelled.classes = 10;
        cases.push(labelled);
        for cfg in cases {
            let m = Vae::init(&cfg, 3, &dev);
            let z: Vec<f32> = (0..5 * cfg.latent_dim)
                .map(|_| crate::ops::lcg(&mut rng) * 3.0)
                .collect();
            let z = Tensor::<2>::from_data(TensorData::new(z, [5, cfg.latent_dim]), &dev);
            let y = m.condition(&[0, 3, 9, 1, 2], &dev);
            let want = m.likelihood.mean_image(m.decode(z.clone(), y.clone()));
            let got = m.decode_mean(z, y);
            assert_eq!(got.dims(), want.dims());
            let (got, want) = (
                got.into_data().try_into_vec::<f32>().unwrap(),
                want.into_data().try_into_vec::<f32>().unwrap(),
            );
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-5,
                "{:?} {:?} {:?}: differs by {worst}",
                cfg.architecture,
                cfg.decoder,
                cfg.likelihood
            );
        }
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

    #[test]
    fn conditioning_adds_a_class_prior_and_label_maps_and_none_keeps_the_old_layout() {
        use crate::config::{Conditioning, LabelInput};
        let dev = Device::flex();
        let cvae = |conditioning| ModelConfig {
            classes: 10,
            conditioning,
            ..ModelConfig::default()
        };
        let base = Vae::init(&cvae(None), 0, &dev);
        // vaekit 0.1's conditional VAE: the label beside z (in the encoder's heads and the
        // decoder's dense layer), no other parameters.
        let unconditional = Vae::init(&ModelConfig::default(), 0, &dev).num_params();
        assert_eq!(base.num_params(), unconditional + 2 * 10 * 20 + 10 * 1568);
        assert!(matches!(base.prior, Prior::StandardNormal(20)));
        // A learned Gaussian per class (mean and log-variance rows) and a bias per class on
        // each transposed convolution's outputs (16 maps, then 1).
        let full = Vae::init(
            &cvae(Some(Conditioning {
                components: 1,
                decoder: LabelInput::EveryLayer,
                ..Conditioning::default()
            })),
            0,
            &dev,
        );
        assert_eq!(
            full.num_params(),
            base.num_params() + 2 * 10 * 20 + 10 * (16 + 1)
        );
        // The default: ten components, ten means and log-variances per class and their weights.
        let mix = Vae::init(&cvae(Some(Conditioning::default())), 0, &dev);
        assert_eq!(mix.num_params(), base.num_params() + 2 * 10 * 200 + 10 * 10);
        assert_eq!(mix.noise_dim(), 21);
        // The one-Gaussian prior starts as N(0, I): its KL is the standard closed form.
        let x = Tensor::<4>::ones([2, 1, 28, 28], &dev).mul_scalar(0.4);
        let y = full.condition(&[2, 5], &dev);
        let q = full.encode(x, y.clone());
        let eps = Tensor::<2>::zeros([2, 20], &dev);
        let a: Vec<f32> = full
            .draw(&q, eps, y)
            .kl_dims
            .into_data()
            .try_into_vec()
            .unwrap();
        let b: Vec<f32> = q.kl_terms_per_item().into_data().try_into_vec().unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Moving a code from a class to itself keeps it.
        let z = Tensor::<2>::ones([1, 20], &dev);
        let c = full.condition(&[4], &dev).unwrap();
        let moved: Vec<f32> = full
            .move_code(z.clone(), c.clone(), c)
            .into_data()
            .try_into_vec()
            .unwrap();
        assert!(moved.iter().all(|v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn params_finite_finds_nan_and_infinity_but_not_large_weights() {
        use burn::module::ModuleMapper;
        struct Set(f32);
        impl ModuleMapper for Set {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let v = self.0;
                p.map(|t| t.mul_scalar(0.0).add_scalar(v))
            }
        }
        let m = || Vae::init(&ModelConfig::default(), 0, &Device::flex());
        assert!(params_finite(&m()));
        assert!(params_finite(&m().map(&mut Set(1e30))));
        assert!(!params_finite(&m().map(&mut Set(f32::NAN))));
        assert!(!params_finite(&m().map(&mut Set(f32::INFINITY))));
    }
}
