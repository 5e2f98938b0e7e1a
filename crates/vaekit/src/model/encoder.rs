//! The encoder part: any network that maps an image (and a condition) to q(z|x).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::conv::{ConvEncoder, ConvEncoderConfig};
use super::mlp::{MlpEncoder, MlpEncoderConfig};
use crate::distribution::DiagonalGaussian;

/// Which encoder, with its settings (see [`crate::config::ModelConfig::encoder`]).
#[derive(Clone, Debug, PartialEq)]
pub enum EncoderConfig {
    /// The article's stride-2 convolutions.
    Conv(ConvEncoderConfig),
    /// Dense layers.
    Mlp(MlpEncoderConfig),
}

impl EncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> Encoder {
        match self {
            EncoderConfig::Conv(c) => Encoder::Conv(c.init(device)),
            EncoderConfig::Mlp(c) => Encoder::Mlp(c.init(device)),
        }
    }
}

/// q(z|x): an image network with Gaussian heads.
#[derive(Module, Debug)]
pub enum Encoder {
    /// See [`ConvEncoder`].
    Conv(ConvEncoder),
    /// See [`MlpEncoder`].
    Mlp(MlpEncoder),
}

impl Encoder {
    /// Dimension of z.
    pub fn latent_dim(&self) -> usize {
        match self {
            Encoder::Conv(e) => e.latent_dim(),
            Encoder::Mlp(e) => e.latent_dim(),
        }
    }

    /// q(z|x) (q(z|x, y) for a conditional model, `y` one-hot).
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]`, `y`: `[batch, classes]` -> `[batch, latent]`
    pub fn forward(&self, x: Tensor<4>, y: Option<Tensor<2>>) -> DiagonalGaussian {
        match self {
            Encoder::Conv(e) => e.forward(x, y),
            Encoder::Mlp(e) => e.forward(x, y),
        }
    }
}
