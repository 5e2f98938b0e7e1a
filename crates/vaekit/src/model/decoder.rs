//! The decoder part: any network that maps z (and a condition) to the parameters of p(x|z).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::conv::{ConvDecoder, ConvDecoderConfig};
use super::mlp::{MlpDecoder, MlpDecoderConfig};
use crate::error::{Error, Result};

/// Which decoder, with its settings (see [`crate::config::ModelConfig::decoder`]).
#[derive(Clone, Debug, PartialEq)]
pub enum DecoderConfig {
    /// Transposed convolutions mirroring the conv encoder.
    Conv(ConvDecoderConfig),
    /// Dense layers mirroring the MLP encoder.
    Mlp(MlpDecoderConfig),
}

impl DecoderConfig {
    /// Builds the decoder on `device`.
    pub fn init(&self, device: &Device) -> Decoder {
        match self {
            DecoderConfig::Conv(c) => Decoder::Conv(c.init(device)),
            DecoderConfig::Mlp(c) => Decoder::Mlp(c.init(device)),
        }
    }
}

/// p(x|z): a network from z to per-pixel maps (logits or means, then any log-scales).
#[derive(Module, Debug)]
pub enum Decoder {
    /// See [`ConvDecoder`].
    Conv(ConvDecoder),
    /// See [`MlpDecoder`].
    Mlp(MlpDecoder),
}

impl Decoder {
    /// [height, width] of the images it was trained on.
    pub fn size(&self) -> [usize; 2] {
        match self {
            Decoder::Conv(d) => d.size(),
            Decoder::Mlp(d) => d.size(),
        }
    }

    /// Whether [`Decoder::render`] takes sizes other than [`Decoder::size`].
    pub fn any_size(&self) -> bool {
        false
    }

    /// The network's maps at the training size.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, height, width]`
    pub fn forward(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        match self {
            Decoder::Conv(d) => d.forward(z, y),
            Decoder::Mlp(d) => d.forward(z, y),
        }
    }

    /// The network's maps at `[height, width]`: any size for a resolution-free decoder, the
    /// training size for the others (another size is an error that says so).
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, size[0], size[1]]`
    pub fn render(
        &self,
        z: Tensor<2>,
        y: Option<Tensor<2>>,
        size: [usize; 2],
    ) -> Result<Tensor<4>> {
        if size != self.size() && !self.any_size() {
            let [h, w] = self.size();
            return Err(Error::InvalidConfig(format!(
                "this decoder renders only at its training size {h}x{w}, not {}x{}",
                size[0], size[1]
            )));
        }
        Ok(self.forward(z, y))
    }
}
