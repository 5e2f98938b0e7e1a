//! Typed configuration: model, data, optimiser and training settings.
//!
//! A run's `config.json` is a serialised [`TrainConfig`], written before training starts;
//! every later command rebuilds the model from it. Unknown fields are rejected so a typo in a
//! config file is an error, not a silently ignored setting.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Shape of one image: channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageShape {
    /// 1 for gray, 3 for RGB.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// The MNIST / Fashion-MNIST shape, 1x28x28.
    pub const MNIST: ImageShape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };

    /// Values per image, `channels * height * width` (saturating: a corrupt header's shape
    /// becomes a count every bound refuses, not a wrapped small one).
    pub fn numel(&self) -> usize {
        self.channels
            .saturating_mul(self.height)
            .saturating_mul(self.width)
    }
}

/// `28x28 gray` or `32x32 RGB` (width x height), as messages show a shape.
impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.channels {
            1 => "gray".to_string(),
            3 => "RGB".to_string(),
            c => format!("{c}-channel"),
        };
        write!(f, "{}x{} {kind}", self.width, self.height)
    }
}

/// The observation model p(x|z) the decoder parameterises through its logits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Likelihood {
    /// Independent Bernoulli pixels; the decoder outputs logits (cross-entropy loss).
    Bernoulli,
    /// Independent Gaussians with mean sigmoid(logits) and a fixed standard deviation: the
    /// article's squared error, up to the constant that makes it a proper log-likelihood.
    Gaussian {
        /// The fixed standard deviation of every pixel.
        std: f64,
    },
    /// Independent Gaussians with mean sigmoid(a) and a learned standard deviation per pixel:
    /// the decoder outputs a log-std map beside the mean (clamped to [-7, 2]).
    #[serde(rename = "gaussian-learned")]
    GaussianLearned,
    /// Independent Gaussians with mean sigmoid(a) and one learned standard deviation per image
    /// channel, shared by all pixels (a model parameter, not a decoder output).
    #[serde(rename = "gaussian-global")]
    GaussianGlobal,
    /// The discretised logistic of PixelCNN++ (Salimans et al. 2017) over the 256 levels of
    /// 8-bit pixels: the decoder outputs a mean and a log-scale per pixel; the probability of a
    /// level is the logistic mass of its bin, with the end bins open. A proper probability, so
    /// the NLL is in nats of the 8-bit image and bits/dim follow directly.
    Logistic,
}

impl Likelihood {
    /// Standard deviation used by `--likelihood gaussian` when no config sets one.
    pub const DEFAULT_GAUSSIAN_STD: f64 = 0.1;

    /// Parameters per pixel and channel that [`crate::model::Vae::decode`] returns: 1 (logits
    /// or mean), or 2 (mean and log-scale).
    pub fn params_per_pixel(&self) -> usize {
        match self {
            Likelihood::Bernoulli | Likelihood::Gaussian { .. } => 1,
            Likelihood::GaussianLearned | Likelihood::GaussianGlobal | Likelihood::Logistic => 2,
        }
    }

    /// Maps per channel the network's last layer computes: the global scale is a parameter.
    pub fn network_maps(&self) -> usize {
        if *self == Likelihood::GaussianGlobal {
            1
        } else {
            self.params_per_pixel()
        }
    }

    /// Whether it is a probability of discrete (binary or 8-bit) pixels rather than a density.
    pub fn is_discrete(&self) -> bool {
        matches!(self, Likelihood::Bernoulli | Likelihood::Logistic)
    }
}

/// Layout of the encoder and decoder networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Architecture {
    /// The article's convolutional VAE (kvfrans/variational-autoencoder): each encoder layer is a
    /// stride-2 convolution with leaky ReLU, dense heads give mean and log-variance, a dense
    /// layer maps z back to the smallest feature map and stride-2 transposed convolutions
    /// (ReLU between them) return to the image.
    Conv {
        /// Output channels of each encoder convolution; the decoder mirrors them.
        /// Default `[16, 32]`: 28x28 -> 14x14x16 -> 7x7x32.
        channels: Vec<usize>,
        /// Square kernel size of every (transposed) convolution. Default 5.
        kernel: usize,
        /// Negative slope of the encoder's leaky ReLU. Default 0.2, as in the article's code.
        leaky_slope: f64,
        /// How each decoder layer doubles the side. Default (and absent from config.json):
        /// transposed convolutions, as the article's code.
        #[serde(default, skip_serializing_if = "Upsample::is_transposed")]
        upsample: Upsample,
    },
    /// Fully connected VAE as in pytorch/examples: input-400-z-400-input with ReLU.
    Mlp {
        /// Hidden layer widths of the encoder; the decoder mirrors them. Default `[400]`.
        hidden: Vec<usize>,
    },
}

/// How a conv decoder layer doubles the side of its feature map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsample {
    /// A stride-2 transposed convolution (the article's decoder). Where the kernel does not
    /// divide evenly by the stride, output pixels receive unequal numbers of contributions,
    /// which shows as a checkerboard when an adversarial loss sharpens the output.
    #[default]
    Transposed,
    /// Nearest-neighbour doubling, then a stride-1 convolution of the same kernel ("resize
    /// convolution", Odena et al. 2016, "Deconvolution and checkerboard artifacts"): every
    /// output pixel sees the same number of inputs, so no checkerboard. Four times the
    /// multiply-adds of the transposed layer.
    Resize,
}

impl Upsample {
    /// The default, which config.json leaves out.
    pub fn is_transposed(&self) -> bool {
        *self == Upsample::Transposed
    }
}

impl Architecture {
    /// The article's network: channels [16, 32], 5x5 kernels, leaky ReLU 0.2.
    pub fn default_conv() -> Self {
        Architecture::Conv {
            channels: vec![16, 32],
            kernel: 5,
            leaky_slope: 0.2,
            upsample: Upsample::Transposed,
        }
    }

    /// The pytorch/examples MLP: one hidden layer of 400.
    pub fn default_mlp() -> Self {
        Architecture::Mlp { hidden: vec![400] }
    }

    /// Short name, as `--model` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Conv { .. } => "conv",
            Architecture::Mlp { .. } => "mlp",
        }
    }
}

/// How a conditional VAE (`ModelConfig::classes` > 0) uses its label beyond the encoder's
/// input and the decoder's input beside z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditioning {
    /// The prior of z given the class.
    pub prior: ClassPriorKind,
    /// Where the label enters the decoder.
    pub decoder: LabelInput,
    /// Gaussians per class of a learned prior (1: one Gaussian; more: a mixture with learned
    /// weights that follows the shape of each class's codes more closely). Default 1 where a
    /// config names no `components`; `--model cvae` writes 10.
    #[serde(default = "one")]
    pub components: usize,
}

fn one() -> usize {
    1
}

impl Conditioning {
    /// vaekit 0.1's conditional VAE, what a config.json without `conditioning` describes: the
    /// label beside z only, N(0, I) for every class.
    pub const BESIDE_Z: Conditioning = Conditioning {
        prior: ClassPriorKind::Standard,
        decoder: LabelInput::BesideZ,
        components: 1,
    };
}

impl Default for Conditioning {
    /// What `--model cvae` trains: a learned mixture of 10 Gaussians per class, the label
    /// beside z (chosen by measurement: the share of `sample --class` images a classifier
    /// assigns to their class, see the README; the label at every layer did not raise it).
    fn default() -> Self {
        Conditioning {
            prior: ClassPriorKind::Learned,
            decoder: LabelInput::BesideZ,
            components: 10,
        }
    }
}

/// The prior p(z|y) of a conditional VAE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassPriorKind {
    /// N(0, I) for every class.
    Standard,
    /// A learned N(mean_y, diag exp(logvar_y)) per class (Sohn et al. 2015's prior network).
    Learned,
}

/// Where a conditional decoder takes its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelInput {
    /// Beside z at the decoder's input only.
    BesideZ,
    /// Beside z and at every layer (a learned bias per class on each layer).
    EveryLayer,
}

/// A decoder other than the mirror of the encoder (`ModelConfig::decoder`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DecoderArchitecture {
    /// hardmaru's CPPN: the image as a function of pixel coordinates and z (see
    /// [`crate::model::cppn`]), trained at the data's size and rendered at any other.
    Cppn {
        /// Width of the hidden layers. Default 32.
        hidden: usize,
        /// tanh layers after the input layer. Default 3, as hardmaru's.
        layers: usize,
        /// Half-width of the coordinate range of the shorter side. Default 8, as hardmaru's.
        scale: f64,
        /// Factor on z before its layer. Default 8, as hardmaru's.
        z_scale: f64,
    },
}

impl DecoderArchitecture {
    /// hardmaru's CPPN at a width that trains on a laptop CPU.
    pub fn default_cppn() -> Self {
        DecoderArchitecture::Cppn {
            hidden: 32,
            layers: 3,
            scale: 8.0,
            z_scale: 8.0,
        }
    }
}

/// The second stochastic layer of a hierarchical VAE (see [`crate::model::TopLatent`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopLatentConfig {
    /// Dimension of z2. Default 10.
    pub latent_dim: usize,
    /// Widths of the tanh layers between z1 and z2, each way. Default `[100, 100]`, as between
    /// the stochastic layers of the IWAE paper's two-layer models.
    pub hidden: Vec<usize>,
}

impl Default for TopLatentConfig {
    fn default() -> Self {
        TopLatentConfig {
            latent_dim: 10,
            hidden: vec![100, 100],
        }
    }
}

/// Everything needed to build a model: saved in `config.json` and read back by every command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Input and output image shape.
    pub image: ImageShape,
    /// Dimension of z. Default 20, as in the article.
    pub latent_dim: usize,
    /// Encoder/decoder layout.
    pub architecture: Architecture,
    /// A decoder of its own kind instead of the mirror of the encoder. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<DecoderArchitecture>,
    /// Observation model.
    pub likelihood: Likelihood,
    /// Classes the model is conditioned on (a conditional VAE: the one-hot label enters the
    /// encoder beside the image features and the decoder beside z). Default 0: unconditional.
    #[serde(default)]
    pub classes: usize,
    /// A second stochastic layer z2 above z (a hierarchical VAE): the prior of z becomes
    /// p(z|z2) with z2 ~ N(0, I). Default none: the one-layer VAE with z ~ N(0, I).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<TopLatentConfig>,
    /// How a conditional model uses its label (see [`ModelConfig::conditioning`]). None (and
    /// absent from config.json): [`Conditioning::BESIDE_Z`], vaekit 0.1's conditional VAE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditioning: Option<Conditioning>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            image: ImageShape::MNIST,
            latent_dim: 20,
            architecture: Architecture::default_conv(),
            decoder: None,
            likelihood: Likelihood::Bernoulli,
            classes: 0,
            top: None,
            conditioning: None,
        }
    }
}

/// Largest latent dimension, hidden width, channel count or class count a config may set.
pub const MAX_WIDTH: usize = 65_536;
/// Largest image side (height or width) a model may be trained at (`render` draws larger).
pub const MAX_SIDE: usize = 4096;
/// Most layers in a list (conv channels, MLP widths, CPPN layers).
pub const MAX_LAYERS: usize = 16;
/// Most images per training step.
pub const MAX_BATCH: usize = 65_536;
/// Most importance samples per image of the IWAE objective (Burda et al. evaluate with 5,000).
pub const MAX_IWAE_K: usize = 5000;
/// Largest learning rate.
pub const MAX_LR: f64 = 10.0;
/// Most weights in one layer: 2^28 values, 1 GiB of f32.
pub const MAX_LAYER_WEIGHTS: usize = 1 << 28;

impl ModelConfig {
    /// Checks every size against the bounds above before anything is allocated: each a
    /// documented limit, named in the message.
    fn check_sizes(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        let wide = |what: &str, v: usize| -> Result<()> {
            if v > MAX_WIDTH {
                return Err(Error::InvalidConfig(format!(
                    "{what} is {v}; the most vaekit allows is {MAX_WIDTH}"
                )));
            }
            Ok(())
        };
        wide("latent_dim", self.latent_dim)?;
        wide("classes", self.classes)?;
        if self.image.height > MAX_SIDE || self.image.width > MAX_SIDE {
            return bad(format!(
                "image is {}x{}; the largest side vaekit trains at is {MAX_SIDE}",
                self.image.height, self.image.width
            ));
        }
        // The largest layers: image -> first width, width -> width, width -> z, and back.
        let layer = |what: &str, a: usize, b: usize| -> Result<()> {
            if a.saturating_mul(b) > MAX_LAYER_WEIGHTS {
                return Err(Error::InvalidConfig(format!(
                    "{what} would have {a} x {b} weights; the most in one layer is {MAX_LAYER_WEIGHTS} (1 GiB)"
                )));
            }
            Ok(())
        };
        let numel = self.image.numel();
        match &self.architecture {
            Architecture::Conv {
                channels, kernel, ..
            } => {
                if channels.len() > MAX_LAYERS || *kernel > 31 {
                    return bad(format!(
                        "conv has {} layers of kernel {kernel}; the most is {MAX_LAYERS} layers, kernel 31",
                        channels.len()
                    ));
                }
                let mut c_in = self.image.channels;
                for &c in channels {
                    wide("a conv channel count", c)?;
                    layer("a convolution", c_in * kernel * kernel, c)?;
                    c_in = c;
                }
                let f = 1usize << channels.len();
                let flat = c_in * (self.image.height / f).max(1) * (self.image.width / f).max(1);
                layer(
                    "the dense layer between the convolutions and z",
                    flat,
                    self.latent_dim,
                )?;
            }
            Architecture::Mlp { hidden } => {
                if hidden.len() > MAX_LAYERS {
                    return bad(format!(
                        "mlp has {} hidden layers; the most is {MAX_LAYERS}",
                        hidden.len()
                    ));
                }
                let mut w_in = numel;
                for &h in hidden {
                    wide("an mlp hidden width", h)?;
                    layer("an mlp layer", w_in, h)?;
                    w_in = h;
                }
                layer("the mlp layer to z", w_in, self.latent_dim)?;
                layer("the mlp output layer", w_in, numel * 2)?;
            }
        }
        if let Some(top) = &self.top {
            wide("the top layer's latent_dim", top.latent_dim)?;
            if top.hidden.len() > MAX_LAYERS {
                return bad(format!(
                    "the top layer has more than {MAX_LAYERS} hidden layers"
                ));
            }
            for &h in &top.hidden {
                wide("a top-layer hidden width", h)?;
                layer("a top-layer MLP layer", h.max(self.latent_dim), h)?;
            }
        }
        if let Some(DecoderArchitecture::Cppn { hidden, layers, .. }) = &self.decoder {
            wide("the cppn hidden width", *hidden)?;
            if *layers > MAX_LAYERS {
                return bad(format!(
                    "the cppn has {layers} layers; the most is {MAX_LAYERS}"
                ));
            }
        }
        if let Some(c) = &self.conditioning {
            if c.components > 1000 {
                return bad(format!(
                    "conditioning.components is {}; the most is 1000",
                    c.components
                ));
            }
            layer(
                "the class prior",
                self.classes,
                c.components.saturating_mul(self.latent_dim),
            )?;
        }
        Ok(())
    }

    /// How the label is used: the config's setting, or vaekit 0.1's ([`Conditioning::BESIDE_Z`])
    /// where it has none. Meaningless for an unconditional model.
    pub fn conditioning(&self) -> Conditioning {
        self.conditioning.unwrap_or(Conditioning::BESIDE_Z)
    }

    /// Checks sizes: positive widths, and for `conv`, image sides divisible by 2^depth.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.latent_dim == 0 {
            return bad("latent_dim must be at least 1".into());
        }
        self.check_sizes()?;
        if self.image.numel() == 0 || !matches!(self.image.channels, 1 | 3) {
            return bad(format!(
                "image must have 1 or 3 channels and a positive size, got {}x{}x{}",
                self.image.channels, self.image.height, self.image.width
            ));
        }
        if let Some(top) = &self.top {
            if top.latent_dim == 0 || top.hidden.contains(&0) {
                return bad(
                    "the top layer (hvae) needs a positive latent_dim and positive hidden widths"
                        .into(),
                );
            }
            if self.classes > 0 {
                return bad(
                    "a hierarchical VAE (top layer) cannot also be conditional (classes > 0)"
                        .into(),
                );
            }
        }
        if self.classes == 0 && self.conditioning.is_some() {
            return bad("conditioning is for conditional models (classes > 0)".into());
        }
        if let Some(c) = &self.conditioning
            && (c.components == 0 || (c.components > 1 && c.prior != ClassPriorKind::Learned))
        {
            return bad(
                "conditioning.components must be at least 1, and above 1 only with a learned prior"
                    .into(),
            );
        }
        if let Some(DecoderArchitecture::Cppn {
            hidden,
            layers: _,
            scale,
            z_scale,
        }) = &self.decoder
            && (*hidden == 0 || !(*scale > 0.0 && scale.is_finite()) || !z_scale.is_finite())
        {
            return bad(
                "a cppn decoder needs a positive hidden width and a positive, finite scale".into(),
            );
        }
        if let Likelihood::Gaussian { std } = self.likelihood
            && !(std > 0.0 && std.is_finite())
        {
            return bad(format!(
                "gaussian likelihood std must be positive, got {std}"
            ));
        }
        match &self.architecture {
            Architecture::Conv {
                channels,
                kernel,
                leaky_slope,
                ..
            } => {
                if channels.is_empty() || channels.contains(&0) {
                    return bad("conv channels must be a non-empty list of positive numbers".into());
                }
                if *kernel == 0 || kernel % 2 == 0 {
                    return bad(format!("conv kernel must be odd, got {kernel}"));
                }
                if !leaky_slope.is_finite() {
                    return bad("leaky_slope must be finite".into());
                }
                let f = 1usize << channels.len();
                if !self.image.height.is_multiple_of(f) || !self.image.width.is_multiple_of(f) {
                    return bad(format!(
                        "a conv model with {} stride-2 layers needs image sides divisible by {f}, got {}x{}",
                        channels.len(),
                        self.image.height,
                        self.image.width
                    ));
                }
            }
            Architecture::Mlp { hidden } => {
                if hidden.contains(&0) {
                    return bad("mlp hidden widths must be positive".into());
                }
            }
        }
        // The weights and one image's activations must fit at all.
        crate::memory::check_fits(self, 1, false, crate::memory::available())
    }
}

/// How pixel intensities in [0, 1] become training targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binarize {
    /// Use the gray values as they are.
    #[default]
    None,
    /// Resample x ~ Bernoulli(pixel) for every batch (training); evaluation uses a fixed draw.
    Dynamic,
    /// Binarise every image once, with a fixed seed, when the data is loaded.
    Static,
}

/// Where the images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A dataset name (`fashion-mnist`, `mnist`) looked up in the standard places, or a label
    /// for `dir`.
    pub dataset: String,
    /// A folder holding IDX files or an image folder; overrides the lookup by name.
    pub dir: Option<PathBuf>,
    /// Use only the first N training images.
    pub limit: Option<usize>,
    /// Binarisation of the pixels.
    pub binarize: Binarize,
    /// Threads that assemble training batches ahead of the step (0: on the training thread).
    /// How batches are read, not what they hold: any count trains identically.
    #[serde(
        default = "default_loader_threads",
        skip_serializing_if = "is_default_loader_threads"
    )]
    pub loader_threads: usize,
}

/// Most loader threads a run may ask for.
pub const MAX_LOADER_THREADS: usize = 64;

/// Loader threads unless told otherwise: two keep a step fed from a packed file on disk while
/// costing next to nothing when the data is in memory.
pub const DEFAULT_LOADER_THREADS: usize = 2;

fn default_loader_threads() -> usize {
    DEFAULT_LOADER_THREADS
}

fn is_default_loader_threads(n: &usize) -> bool {
    *n == DEFAULT_LOADER_THREADS
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: "fashion-mnist".into(),
            dir: None,
            limit: None,
            binarize: Binarize::None,
            loader_threads: DEFAULT_LOADER_THREADS,
        }
    }
}

/// Adam settings. PyTorch's defaults, including epsilon = 1e-8 (burn's own default is 1e-5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Learning rate. Default 1e-3.
    pub lr: f64,
    /// First moment decay. Default 0.9.
    pub beta1: f32,
    /// Second moment decay. Default 0.999.
    pub beta2: f32,
    /// Numerical epsilon. Default 1e-8.
    pub epsilon: f32,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// What training minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Objective {
    /// The negative ELBO, recon + beta * KL with the KL in closed form (a VAE or beta-VAE).
    #[default]
    Elbo,
    /// The importance-weighted bound of Burda et al. (2016) with `k` samples per image:
    /// -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x). k = 1 is the ELBO with a sampled KL.
    Iwae {
        /// Importance samples per image. Default 5.
        k: usize,
    },
}

impl Objective {
    /// Samples of z drawn per image and step.
    pub fn samples(&self) -> usize {
        match self {
            Objective::Elbo => 1,
            Objective::Iwae { k } => *k,
        }
    }

    /// "elbo" or "iwae-K", as written in metrics and folder names.
    pub fn label(&self) -> String {
        match self {
            Objective::Elbo => "elbo".into(),
            Objective::Iwae { k } => format!("iwae-{k}"),
        }
    }
}

/// How the networks are trained (see [`crate::method`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MethodConfig {
    /// One VAE and one Adam on [`TrainConfig::objective`].
    #[default]
    Vae,
    /// VAE-GAN (Larsen et al. 2016): a discriminator's features replace the pixels in the
    /// reconstruction term, with three networks and three optimisers.
    Vaegan(VaeGanConfig),
}

/// The VAE-GAN's settings (Larsen et al. 2016, arXiv 1512.09300, and their code,
/// andersbll/autoencoding_beyond_pixels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeGanConfig {
    /// Weight of the feature reconstruction term in the decoder's loss, gamma * feature - GAN
    /// (the encoder's is KL + feature). Default 0.05: the feature term (tens of nats per image)
    /// then weighs about as much as the GAN term (about 1), so prior samples, which only the GAN
    /// term reaches, are shaped by it.
    pub gamma: f64,
    /// Output channels of the discriminator's convolutions (the first stride 1, the others
    /// stride 2). Default `[16, 32, 64]`: on 28x28 images about the encoder's size (each step
    /// runs the discriminator on seven images per training image, forward and backward, so its
    /// size sets the speed).
    pub channels: Vec<usize>,
    /// The discriminator's square kernel size. Default 5.
    pub kernel: usize,
    /// Width of the discriminator's dense layer. Default 128.
    pub hidden: usize,
    /// The convolution (0-based) whose output before its normalisation gives the features of
    /// the reconstruction term. Default: the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_layer: Option<usize>,
    /// The equilibrium rule of Larsen et al.'s code: skip the discriminator's update while its
    /// cross-entropy on real or generated images is below `equilibrium - margin` (it wins), skip
    /// the decoder's while either is above `equilibrium + margin` (it loses badly); 0.68 and 0.35
    /// in their code. Default off: with a spectrally normalised discriminator every network
    /// steps every time (with batch normalisation the rule paused the discriminator in most
    /// steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equilibrium: Option<Equilibrium>,
    /// Steps in a row whose loss or gradients are not finite (skipped, no update) before the
    /// run stops. Default 5.
    pub max_skipped_steps: usize,
    /// Weight of the pixel likelihood's reconstruction term beside the feature term, for the
    /// encoder and the decoder (0: Larsen et al.'s VAE-GAN, features only). Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pixel_weight: f64,
    /// Share of the discriminator's loss on real images; the rest is on generated ones (half
    /// reconstructions, half prior samples), as `real_vs_gen_weight` in Larsen et al.'s code.
    /// Default 0.5, as theirs. A config.json without it (vaekit before this field) has 1/3:
    /// one real image weighed as each of the two generated ones.
    #[serde(default = "one_third")]
    pub real_weight: f64,
    /// How the discriminator's layers are kept in check: batch normalisation after each
    /// stride-2 convolution (Larsen et al.'s), or spectral normalisation of every layer's weight
    /// (Miyato et al. 2018). Default spectral. A config.json without it (vaekit before this
    /// field) has batch normalisation.
    #[serde(default)]
    pub norm: DiscNorm,
    /// Decay of an exponential moving average of the decoder's weights (Karras et al.'s
    /// generator average): after each decoder update, `ema = d * ema + (1 - d) * decoder`. The
    /// run's model (samples, `eval`, every command) then decodes with the average; training
    /// goes on with the decoder itself. Default none: the decoder as trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
}

/// The discriminator's normalisation (see [`VaeGanConfig::norm`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscNorm {
    /// Batch normalisation (batch statistics) after each stride-2 convolution.
    #[default]
    Batch,
    /// Every weight divided by its largest singular value, estimated by one power iteration
    /// per step: each layer's weight matrix has norm 1, which bounds how steep the logit can
    /// become, so the discriminator cannot win outright at once.
    Spectral,
}

fn one_third() -> f64 {
    1.0 / 3.0
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The equilibrium rule's two numbers (see [`VaeGanConfig::equilibrium`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equilibrium {
    /// The discriminator's cross-entropy (nats per image) at balance. Default 0.68.
    pub equilibrium: f64,
    /// How far from it before one side pauses. Default 0.35.
    pub margin: f64,
}

impl Default for Equilibrium {
    fn default() -> Self {
        Equilibrium {
            equilibrium: 0.68,
            margin: 0.35,
        }
    }
}

impl Default for VaeGanConfig {
    fn default() -> Self {
        VaeGanConfig {
            gamma: 0.05,
            channels: vec![16, 32, 64],
            kernel: 5,
            hidden: 128,
            feature_layer: None,
            equilibrium: None,
            max_skipped_steps: 5,
            pixel_weight: 0.0,
            real_weight: 0.5,
            norm: DiscNorm::Spectral,
            ema: None,
        }
    }
}

impl VaeGanConfig {
    /// The feature layer, 0-based (the last convolution unless set).
    pub fn feature_layer(&self) -> usize {
        self.feature_layer
            .unwrap_or(self.channels.len().saturating_sub(1))
    }

    /// Checks the sizes and weights.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if !(self.gamma >= 0.0 && self.gamma.is_finite()) {
            return bad(format!(
                "vaegan gamma must be a non-negative number, got {}",
                self.gamma
            ));
        }
        if !(self.pixel_weight >= 0.0 && self.pixel_weight.is_finite()) {
            return bad(format!(
                "vaegan pixel_weight must be a non-negative number, got {}",
                self.pixel_weight
            ));
        }
        if let Some(d) = self.ema
            && !(d > 0.0 && d < 1.0)
        {
            return bad(format!(
                "vaegan ema (the average's decay) must be between 0 and 1 (both excluded), got {d}"
            ));
        }
        if !(self.real_weight > 0.0 && self.real_weight < 1.0) {
            return bad(format!(
                "vaegan real_weight must be between 0 and 1 (both excluded), got {}",
                self.real_weight
            ));
        }
        if self.channels.is_empty() || self.channels.contains(&0) || self.hidden == 0 {
            return bad(
                "the discriminator needs positive channels and a positive hidden width".into(),
            );
        }
        if self.channels.len() > MAX_LAYERS
            || self.kernel > 31
            || self.hidden > MAX_WIDTH
            || self.channels.iter().any(|&c| c > MAX_WIDTH)
        {
            return bad(format!(
                "the discriminator is too large: at most {MAX_LAYERS} convolutions of {MAX_WIDTH} channels, kernel 31, hidden {MAX_WIDTH}"
            ));
        }
        if self.kernel == 0 || self.kernel % 2 == 0 {
            return bad(format!(
                "the discriminator's kernel must be odd, got {}",
                self.kernel
            ));
        }
        if self.feature_layer() >= self.channels.len() {
            return bad(format!(
                "feature_layer {} does not exist: the discriminator has {} convolutions (0..{})",
                self.feature_layer(),
                self.channels.len(),
                self.channels.len() - 1
            ));
        }
        if let Some(e) = self.equilibrium
            && !(e.equilibrium.is_finite() && e.margin >= 0.0 && e.margin.is_finite())
        {
            return bad("the equilibrium rule needs a finite equilibrium and margin >= 0".into());
        }
        Ok(())
    }
}

/// A whole training run. Serialised as the run's `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The network.
    pub model: ModelConfig,
    /// The data.
    pub data: DataConfig,
    /// The optimiser.
    pub optim: OptimConfig,
    /// Passes over the training set. Default 10.
    pub epochs: usize,
    /// Images per optimisation step. Default 100 (the article's).
    pub batch_size: usize,
    /// Seeds initialisation, shuffling, noise and binarisation. Default 0.
    pub seed: u64,
    /// The training objective. Default the ELBO.
    #[serde(default)]
    pub objective: Objective,
    /// The training method. Default a plain VAE.
    #[serde(default, skip_serializing_if = "is_vae")]
    pub method: MethodConfig,
    /// Weight of the KL term (1 is the ELBO; above 1 a beta-VAE). Default 1.
    pub beta: f64,
    /// Linear KL warm-up: the KL weight grows step by step from 0 to `beta` over this many
    /// epochs, reaching `beta` at the last step of epoch N. Default 0 (no warm-up).
    #[serde(default)]
    pub kl_warmup_epochs: usize,
    /// Free bits (Kingma et al. 2016): a floor, in nats, on the KL of each latent dimension
    /// averaged over the batch; dimensions under it get no KL gradient, which keeps them from
    /// collapsing to the prior. Default 0 (off).
    #[serde(default)]
    pub free_bits: f64,
    /// Test images shown in the per-epoch reconstruction grid. Default 16.
    pub preview_images: usize,
    /// Prior samples drawn each epoch. Default 64.
    pub sample_images: usize,
}

fn is_vae(m: &MethodConfig) -> bool {
    *m == MethodConfig::Vae
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelConfig::default(),
            data: DataConfig::default(),
            optim: OptimConfig::default(),
            epochs: 10,
            batch_size: 100,
            seed: 0,
            objective: Objective::Elbo,
            method: MethodConfig::Vae,
            beta: 1.0,
            kl_warmup_epochs: 0,
            free_bits: 0.0,
            preview_images: 16,
            sample_images: 64,
        }
    }
}

impl TrainConfig {
    /// Checks every value before any work starts.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let bad = |m: &str| Err(Error::InvalidConfig(m.into()));
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return bad("batch_size must be 1 to 65536");
        }
        if self.preview_images > 1000 || self.sample_images > 10_000 {
            return bad("preview_images must be at most 1000 and sample_images at most 10000");
        }
        // Adam's step is about lr per weight: beyond MAX_LR every weight leaves any useful
        // range at the first step (3e38 overflowed f32 at the second).
        if !(self.optim.lr > 0.0 && self.optim.lr <= MAX_LR) {
            return bad(&format!(
                "lr must be a positive number of at most {MAX_LR} (Adam moves each weight by about lr a step), got {}",
                self.optim.lr
            ));
        }
        let o = &self.optim;
        if !((0.0..1.0).contains(&o.beta1) && (0.0..1.0).contains(&o.beta2)) {
            return bad("Adam's beta1 and beta2 must be in [0, 1)");
        }
        if !(o.epsilon > 0.0 && o.epsilon.is_finite()) {
            return bad("Adam's epsilon must be a positive number");
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad("beta must be a non-negative number");
        }
        if !(self.free_bits >= 0.0 && self.free_bits.is_finite()) {
            return bad("free_bits must be a non-negative number");
        }
        if let Objective::Iwae { k } = self.objective {
            if k == 0 || k > MAX_IWAE_K {
                return bad(&format!(
                    "the IWAE objective needs 1 to {MAX_IWAE_K} importance samples (k), got {k}"
                ));
            }
            if self.beta != 1.0 || self.kl_warmup_epochs > 0 || self.free_bits > 0.0 {
                return bad(
                    "beta, KL warm-up and free bits weight the ELBO's KL term; the IWAE bound has none",
                );
            }
        }
        if self.data.limit == Some(0) {
            return bad("limit must be at least 1");
        }
        if self.data.loader_threads > MAX_LOADER_THREADS {
            return bad(&format!(
                "loader_threads must be at most {MAX_LOADER_THREADS} (0 reads batches on the training thread)"
            ));
        }
        if let MethodConfig::Vaegan(g) = &self.method {
            g.validate()?;
            if self.objective != Objective::Elbo || self.model.top.is_some() {
                return bad(
                    "a VAE-GAN trains a one-layer VAE on the ELBO (no IWAE objective, no top layer)",
                );
            }
            if self.model.classes > 0 && self.model.conditioning().prior == ClassPriorKind::Learned
            {
                return bad(
                    "a conditional VAE-GAN trains with the N(0, I) prior: set conditioning.prior = \"standard\"",
                );
            }
        }
        Ok(())
    }

    /// [`TrainConfig::validate`], and that the model fits in the memory this process may use
    /// while training on batches of `batch_size` x `k` images (see [`crate::memory`]).
    pub fn validate_training(&self) -> Result<()> {
        self.validate()?;
        let images = (self.batch_size as u64).saturating_mul(self.objective.samples() as u64);
        crate::memory::check_fits(&self.model, images, true, crate::memory::available())
    }

    /// The KL weight of optimisation step `step` (1-based, counted over the whole run) with
    /// `steps_per_epoch` steps per epoch: `beta * min(1, step / (kl_warmup_epochs *
    /// steps_per_epoch))`, or `beta` without warm-up.
    pub fn beta_at(&self, step: usize, steps_per_epoch: usize) -> f64 {
        let ramp = self.kl_warmup_epochs * steps_per_epoch;
        if ramp == 0 {
            self.beta
        } else {
            self.beta * (step as f64 / ramp as f64).min(1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_warmup_reaches_beta_at_the_end_of_its_last_epoch() {
        let cfg = TrainConfig {
            beta: 4.0,
            kl_warmup_epochs: 2,
            ..TrainConfig::default()
        };
        // 10 steps per epoch: the weight reaches 4 at step 20, the last step of epoch 2.
        assert_eq!(cfg.beta_at(1, 10), 0.2);
        assert_eq!(cfg.beta_at(10, 10), 2.0);
        assert!(cfg.beta_at(19, 10) < 4.0);
        assert_eq!(cfg.beta_at(20, 10), 4.0);
        assert_eq!(cfg.beta_at(35, 10), 4.0);
        let plain = TrainConfig {
            beta: 0.5,
            ..TrainConfig::default()
        };
        assert_eq!(plain.beta_at(1, 10), 0.5);
        // Older config.json files without the new fields still load, with the schedules off.
        let mut v = serde_json::to_value(TrainConfig::default()).unwrap();
        v.as_object_mut().unwrap().remove("kl_warmup_epochs");
        v.as_object_mut().unwrap().remove("free_bits");
        let back: TrainConfig = serde_json::from_value(v).unwrap();
        assert_eq!((back.kl_warmup_epochs, back.free_bits), (0, 0.0));
        assert!(
            TrainConfig {
                free_bits: -1.0,
                ..TrainConfig::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn the_default_upsampling_is_left_out_of_config_json_and_resize_round_trips() {
        // A vaekit 0.1 architecture (no `upsample`) reads as transposed convolutions, and a
        // transposed one is written without the field, so old and new files stay identical.
        let old = r#"{"kind":"conv","channels":[16,32],"kernel":5,"leaky_slope":0.2}"#;
        let a: Architecture = serde_json::from_str(old).unwrap();
        assert_eq!(a, Architecture::default_conv());
        assert_eq!(serde_json::to_string(&a).unwrap(), old);
        let resize = Architecture::Conv {
            channels: vec![16, 32],
            kernel: 5,
            leaky_slope: 0.2,
            upsample: Upsample::Resize,
        };
        let text = serde_json::to_string(&resize).unwrap();
        assert!(text.contains(r#""upsample":"resize""#), "{text}");
        assert_eq!(serde_json::from_str::<Architecture>(&text).unwrap(), resize);
        let bad = old.replace("}", r#","upsample":"bilinear"}"#);
        assert!(serde_json::from_str::<Architecture>(&bad).is_err());
    }

    #[test]
    fn a_vaegan_config_without_real_weight_keeps_the_old_one_third() {
        let mut v = serde_json::to_value(VaeGanConfig::default()).unwrap();
        assert_eq!(v["real_weight"], 0.5);
        v.as_object_mut().unwrap().remove("real_weight");
        let old: VaeGanConfig = serde_json::from_value(v).unwrap();
        assert!((old.real_weight - 1.0 / 3.0).abs() < 1e-15);
        for w in [0.0, 1.0, f64::NAN] {
            let c = VaeGanConfig {
                real_weight: w,
                ..VaeGanConfig::default()
            };
            assert!(
                c.validate()
                    .unwrap_err()
                    .to_string()
                    .contains("real_weight")
            );
        }
    }
}
