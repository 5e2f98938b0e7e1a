//! The article's convolutional encoder and decoder (kvfrans/variational-autoencoder),
//! parameterised by config.
//!
//! With the default config (channels [16, 32], 5x5 kernels, 28x28x1 images, z = 20):
//! encoder 28x28x1 -> conv s2 -> 14x14x16 -> conv s2 -> 7x7x32 -> dense heads to mean and
//! log-variance (20 each); decoder z -> dense -> 7x7x32 -> convT s2 -> 14x14x16 -> convT s2 ->
//! 28x28x1 logits.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::label::LabelBiases;
use crate::config::ImageShape;
use crate::distribution::DiagonalGaussian;
use crate::ops::{self, Activation};

/// [channels, height, width] of the smallest feature map, after `channels.len()` stride-2
/// layers.
fn bottleneck(image: ImageShape, channels: &[usize]) -> [usize; 3] {
    let f = 1 << channels.len();
    let c = channels.last().copied().unwrap_or(image.channels);
    [c, image.height / f, image.width / f]
}

/// The convolutional encoder q(z|x) (q(z|x, y) with `classes` > 0).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvEncoderConfig {
    /// The input images.
    pub image: ImageShape,
    /// Dimension of z.
    pub latent: usize,
    /// Output channels of each stride-2 convolution.
    pub channels: Vec<usize>,
    /// Square kernel size (odd).
    pub kernel: usize,
    /// Negative slope of the leaky ReLU after each convolution.
    pub leaky_slope: f64,
    /// Classes of the one-hot condition entering the dense heads (0: none).
    pub classes: usize,
}

impl ConvEncoderConfig {
    /// Builds the encoder with burn's default (PyTorch-like) initialisation.
    pub fn init(&self, device: &Device) -> ConvEncoder {
        let pad = self.kernel / 2;
        let mut convs = Vec::new();
        let mut c_in = self.image.channels;
        for &c in &self.channels {
            convs.push(
                Conv2dConfig::new([c_in, c], [self.kernel, self.kernel])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .init(device),
            );
            c_in = c;
        }
        let flat: usize = bottleneck(self.image, &self.channels).iter().product();
        ConvEncoder {
            convs,
            mean: LinearConfig::new(flat + self.classes, self.latent).init(device),
            logvar: LinearConfig::new(flat + self.classes, self.latent).init(device),
            leaky_slope: self.leaky_slope,
        }
    }
}

/// Stride-2 convolutions with leaky ReLU, then dense heads to the mean and log-variance of z.
#[derive(Module, Debug)]
pub struct ConvEncoder {
    convs: Vec<Conv2d>,
    mean: Linear,
    logvar: Linear,
    leaky_slope: f64,
}

impl ConvEncoder {
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
        let leaky = Activation::LeakyRelu {
            slope: self.leaky_slope as f32,
        };
        let mut h = x;
        for conv in &self.convs {
            h = ops::conv2d(conv, h, leaky); // [batch, c_i, h / 2^i, w / 2^i]
        }
        let h = super::with_condition(h.flatten(1, 3), y); // [batch, c * h * w (+ classes)]
        DiagonalGaussian::new(
            ops::linear(&self.mean, h.clone(), Activation::Identity),
            ops::linear(&self.logvar, h, Activation::Identity),
        )
    }
}

/// The transposed-convolutional decoder p(x|z) (p(x|z, y) with `classes` > 0), mirroring
/// [`ConvEncoderConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConvDecoderConfig {
    /// The output images.
    pub image: ImageShape,
    /// Dimension of z.
    pub latent: usize,
    /// The encoder's channels; the decoder runs them in reverse.
    pub channels: Vec<usize>,
    /// Square kernel size (odd).
    pub kernel: usize,
    /// Maps per image channel of the last layer (see [`crate::config::Likelihood::network_maps`]).
    pub maps: usize,
    /// Classes of the one-hot condition entering beside z (0: none).
    pub classes: usize,
    /// The label enters every transposed convolution too (see [`LabelBiases`]).
    pub label_every_layer: bool,
}

impl ConvDecoderConfig {
    /// Builds the decoder with burn's default (PyTorch-like) initialisation.
    pub fn init(&self, device: &Device) -> ConvDecoder {
        let pad = self.kernel / 2;
        let bottleneck = bottleneck(self.image, &self.channels);
        let flat = bottleneck.iter().product();
        // Mirror: [32 -> 16], [16 -> image channels]. Each doubles the side exactly.
        let mut outs: Vec<usize> = self.channels.iter().rev().skip(1).copied().collect();
        outs.push(self.image.channels * self.maps);
        let mut convs = Vec::new();
        let mut c_in = bottleneck[0];
        let labels = LabelBiases::new(self.classes, &outs, self.label_every_layer, device);
        for c in outs {
            convs.push(
                ConvTranspose2dConfig::new([c_in, c], [self.kernel, self.kernel])
                    .with_stride([2, 2])
                    .with_padding([pad, pad])
                    .with_padding_out([1, 1])
                    .init(device),
            );
            c_in = c;
        }
        ConvDecoder {
            dense: LinearConfig::new(self.latent + self.classes, flat).init(device),
            convs,
            labels,
            bottleneck,
        }
    }
}

/// A dense layer to the smallest feature map, then stride-2 transposed convolutions (ReLU
/// between them) back to the image.
#[derive(Module, Debug)]
pub struct ConvDecoder {
    dense: Linear,
    convs: Vec<ConvTranspose2d>,
    /// The label's bias on every transposed convolution (empty unless the label enters every
    /// layer; after the convolutions, so that older models keep their parameter order).
    labels: LabelBiases,
    /// [channels, height, width] of the smallest feature map.
    bottleneck: [usize; 3],
}

impl ConvDecoder {
    /// The side of the images it makes: the bottleneck doubled by every layer.
    pub fn size(&self) -> [usize; 2] {
        let f = 1 << self.convs.len();
        [self.bottleneck[1] * f, self.bottleneck[2] * f]
    }

    /// The network's output maps: logits or means, then any log-scale maps.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, height, width]`
    pub fn forward(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        let b = z.dims()[0];
        let [c, h, w] = self.bottleneck;
        let zy = super::with_condition(z, y.clone());
        let x = ops::linear(&self.dense, zy, Activation::Relu);
        let mut x = x.reshape([b, c, h, w]); // [batch, 32, 7, 7]
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            let act = if i < last {
                Activation::Relu
            } else {
                Activation::Identity
            };
            x = match self.labels.bias(i, y.as_ref()) {
                None => ops::conv_transpose2d(conv, x, act), // side doubles
                Some(bias) => {
                    let x = ops::conv_transpose2d(conv, x, Activation::Identity);
                    let c = bias.dims()[1];
                    ops::activate(x + bias.reshape([b, c, 1, 1]), act)
                }
            };
        }
        x
    }
}
