//! Fully connected encoder and decoder, as in pytorch/examples (784-400-20-400-784 by default).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::label::LabelBiases;
use crate::config::ImageShape;
use crate::distribution::DiagonalGaussian;
use crate::ops::{self, Activation};

/// Dense layers of the given widths, each from the previous width (the first from `from`),
/// and the last width.
pub(crate) fn stack(
    from: usize,
    widths: impl Iterator<Item = usize>,
    device: &Device,
) -> (Vec<Linear>, usize) {
    let mut w_in = from;
    let layers = widths
        .map(|w| {
            let l = LinearConfig::new(w_in, w).init(device);
            w_in = w;
            l
        })
        .collect();
    (layers, w_in)
}

/// The MLP encoder q(z|x) (q(z|x, y) with `classes` > 0).
#[derive(Clone, Debug, PartialEq)]
pub struct MlpEncoderConfig {
    /// The input images (flattened).
    pub image: ImageShape,
    /// Dimension of z.
    pub latent: usize,
    /// Hidden layer widths, ReLU after each.
    pub hidden: Vec<usize>,
    /// Classes of the one-hot condition entering beside the pixels (0: none).
    pub classes: usize,
}

impl MlpEncoderConfig {
    /// Builds the encoder with burn's default (PyTorch-like) initialisation.
    pub fn init(&self, device: &Device) -> MlpEncoder {
        let (hidden, w) = stack(
            self.image.numel() + self.classes,
            self.hidden.iter().copied(),
            device,
        );
        MlpEncoder {
            hidden,
            mean: LinearConfig::new(w, self.latent).init(device),
            logvar: LinearConfig::new(w, self.latent).init(device),
        }
    }
}

/// ReLU hidden layers, then dense heads to the mean and log-variance of z.
#[derive(Module, Debug)]
pub struct MlpEncoder {
    hidden: Vec<Linear>,
    mean: Linear,
    logvar: Linear,
}

impl MlpEncoder {
    /// Dimension of z.
    pub fn latent_dim(&self) -> usize {
        self.mean.weight.val().dims()[1]
    }

    /// q(z|x) (q(z|x, y) with the one-hot `y`).
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]`, `y`: `[batch, classes]` -> mean, logvar
    /// `[batch, latent]`
    pub fn forward(&self, x: Tensor<4>, y: Option<Tensor<2>>) -> DiagonalGaussian {
        let mut h = super::with_condition(x.flatten(1, 3), y); // [batch, c * h * w (+ classes)]
        for l in &self.hidden {
            h = ops::linear(l, h, Activation::Relu); // [batch, 400]
        }
        DiagonalGaussian::new(
            ops::linear(&self.mean, h.clone(), Activation::Identity),
            ops::linear(&self.logvar, h, Activation::Identity),
        )
    }
}

/// The MLP decoder p(x|z) (p(x|z, y) with `classes` > 0): the encoder's widths in reverse.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpDecoderConfig {
    /// The output images.
    pub image: ImageShape,
    /// Dimension of z.
    pub latent: usize,
    /// The encoder's hidden widths; the decoder runs them in reverse.
    pub hidden: Vec<usize>,
    /// Maps per image channel of the last layer (see [`crate::config::Likelihood::network_maps`]).
    pub maps: usize,
    /// Classes of the one-hot condition entering beside z (0: none).
    pub classes: usize,
    /// The label enters every layer too (see [`LabelBiases`]).
    pub label_every_layer: bool,
}

impl MlpDecoderConfig {
    /// Builds the decoder with burn's default (PyTorch-like) initialisation.
    pub fn init(&self, device: &Device) -> MlpDecoder {
        let (hidden, w) = stack(
            self.latent + self.classes,
            self.hidden.iter().rev().copied(),
            device,
        );
        let mut widths: Vec<usize> = self.hidden.iter().rev().copied().collect();
        widths.push(self.image.numel() * self.maps);
        MlpDecoder {
            hidden,
            out: LinearConfig::new(w, self.image.numel() * self.maps).init(device),
            labels: LabelBiases::new(self.classes, &widths, self.label_every_layer, device),
            image: [self.image.channels, self.image.height, self.image.width],
            maps: self.maps,
        }
    }
}

/// ReLU hidden layers, then one dense layer to every output map of every pixel.
#[derive(Module, Debug)]
pub struct MlpDecoder {
    hidden: Vec<Linear>,
    out: Linear,
    /// The label's bias on every layer (empty unless the label enters every layer).
    labels: LabelBiases,
    /// [channels, height, width] of the images.
    image: [usize; 3],
    /// Outputs per pixel and channel.
    maps: usize,
}

impl MlpDecoder {
    /// The side of the images it makes.
    pub fn size(&self) -> [usize; 2] {
        [self.image[1], self.image[2]]
    }

    /// The network's output maps: logits or means, then any log-scale maps.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, channels * maps, height, width]`
    pub fn forward(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        self.forward_to(z, y, Activation::Identity)
    }

    /// [`MlpDecoder::forward`] with `out` applied to the maps inside the last layer.
    pub fn forward_to(&self, z: Tensor<2>, y: Option<Tensor<2>>, out: Activation) -> Tensor<4> {
        let b = z.dims()[0];
        let mut h = super::with_condition(z, y.clone());
        let layer = |i: usize, l: &Linear, h: Tensor<2>, act: Activation| match self
            .labels
            .bias(i, y.as_ref())
        {
            None => ops::linear(l, h, act),
            Some(bias) => ops::activate(ops::linear(l, h, Activation::Identity) + bias, act),
        };
        for (i, l) in self.hidden.iter().enumerate() {
            h = layer(i, l, h, Activation::Relu); // [batch, 400]
        }
        let [c, hh, w] = self.image;
        let out = layer(self.hidden.len(), &self.out, h, out);
        out.reshape([b, c * self.maps, hh, w])
    }
}
