//! The decoder part: any network that maps z (and a condition) to the parameters of p(x|z).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::conv::{ConvDecoder, ConvDecoderConfig};
use super::cppn::{CppnDecoder, CppnDecoderConfig};
use super::mlp::{MlpDecoder, MlpDecoderConfig};
use crate::error::{Error, Result};
use crate::ops::{self, Activation};

/// Which decoder, with its settings (see [`crate::config::ModelConfig::decoder`]).
#[derive(Clone, Debug, PartialEq)]
pub enum DecoderConfig {
    /// Transposed convolutions mirroring the conv encoder.
    Conv(ConvDecoderConfig),
    /// Dense layers mirroring the MLP encoder.
    Mlp(MlpDecoderConfig),
    /// A function of pixel coordinates and z, at any resolution.
    Cppn(CppnDecoderConfig),
}

impl DecoderConfig {
    /// Builds the decoder on `device`.
    pub fn init(&self, device: &Device) -> Decoder {
        match self {
            DecoderConfig::Conv(c) => Decoder::Conv(c.init(device)),
            DecoderConfig::Mlp(c) => Decoder::Mlp(c.init(device)),
            DecoderConfig::Cppn(c) => Decoder::Cppn(c.init(device)),
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
    /// See [`CppnDecoder`].
    Cppn(CppnDecoder),
}

impl Decoder {
    /// [height, width] of the images it was trained on.
    pub fn size(&self) -> [usize; 2] {
        match self {
            Decoder::Conv(d) => d.size(),
            Decoder::Mlp(d) => d.size(),
            Decoder::Cppn(d) => d.size(),
        }
    }

    /// The network's maps at the training size.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, height, width]`
    pub fn forward(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        match self {
            Decoder::Conv(d) => d.forward(z, y),
            Decoder::Mlp(d) => d.forward(z, y),
            Decoder::Cppn(d) => d.forward(z, y),
        }
    }

    /// [`Decoder::forward`] with `out` applied to the maps, inside the last layer where the
    /// network has one kernel for it (conv, MLP).
    pub fn forward_to(&self, z: Tensor<2>, y: Option<Tensor<2>>, out: Activation) -> Tensor<4> {
        match self {
            Decoder::Conv(d) => d.forward_to(z, y, out),
            Decoder::Mlp(d) => d.forward_to(z, y, out),
            Decoder::Cppn(d) => ops::activate(d.forward(z, y), out),
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
        self.render_rows(z, y, size, 0, size[0], 1.0)
    }

    /// Rows `[first_row, first_row + rows)` of [`Decoder::render`], with the coordinate range
    /// times `zoom`: for rendering large images in tiles of bounded memory. A fixed-size
    /// decoder takes only its whole training size at zoom 1.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, rows, size[1]]`
    pub fn render_rows(
        &self,
        z: Tensor<2>,
        y: Option<Tensor<2>>,
        size: [usize; 2],
        first_row: usize,
        rows: usize,
        zoom: f64,
    ) -> Result<Tensor<4>> {
        if let Decoder::Cppn(d) = self {
            return Ok(d.render_rows(z, y, size, first_row, rows, zoom));
        }
        let [h, w] = self.size();
        if size != [h, w] || first_row != 0 || rows != h || zoom != 1.0 {
            return Err(Error::InvalidConfig(format!(
                "this decoder renders only its whole training size {w}x{h}, not {}x{}: train with --decoder cppn to render at any size",
                size[1], size[0]
            )));
        }
        Ok(self.forward(z, y))
    }
}
