//! The article's convolutional VAE (kvfrans/variational-autoencoder), parameterised by config.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use crate::config::ImageShape;
use crate::distribution::DiagonalGaussian;
use crate::ops::Activation;

/// Convolutional encoder and transposed-convolutional decoder.
///
/// With the default config (channels [16, 32], 5x5 kernels, 28x28x1 images, z = 20):
/// encoder 28x28x1 -> conv s2 -> 14x14x16 -> conv s2 -> 7x7x32 -> dense heads to mean and
/// log-variance (20 each); decoder z -> dense -> 7x7x32 -> convT s2 -> 14x14x16 -> convT s2 ->
/// 28x28x1 logits.
#[derive(Module, Debug)]
pub struct ConvVae {
    enc_convs: Vec<Conv2d>,
    enc_mean: Linear,
    enc_logvar: Linear,
    dec_dense: Linear,
    dec_convs: Vec<ConvTranspose2d>,
    /// [channels, height, width] of the smallest feature map, between encoder and decoder.
    bottleneck: [usize; 3],
    leaky_slope: f64,
    /// Channels of the images; the decoder outputs `image_channels * params` maps.
    image_channels: usize,
    /// Whether the means are on the [-1, 1] scale of the discretised logistic (else logits).
    logistic: bool,
    /// The learned per-channel scale of the `gaussian-global` likelihood.
    global_scale: Option<super::GlobalLogStd>,
    /// Classes of the one-hot condition (0: unconditional).
    classes: usize,
    /// The second stochastic layer of a hierarchical VAE.
    top: Option<super::TopLatent>,
}

impl ConvVae {
    /// Builds the network with burn's default (PyTorch-like) initialisation.
    ///
    /// The decoder outputs `params` maps per image channel (see
    /// [`crate::config::Likelihood::params_per_pixel`]), the means first.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        image: ImageShape,
        latent: usize,
        channels: &[usize],
        kernel: usize,
        leaky_slope: f64,
        params: usize,
        logistic: bool,
        global_scale: Option<super::GlobalLogStd>,
        classes: usize,
        device: &Device,
    ) -> Self {
        let pad = kernel / 2;
        let mut enc_convs = Vec::new();
        let mut c_in = image.channels;
        for &c in channels {
            enc_convs.push(
                Conv2dConfig::new([c_in, c], [kernel, kernel])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .init(device),
            );
            c_in = c;
        }
        let f = 1 << channels.len();
        let bottleneck = [c_in, image.height / f, image.width / f];
        let flat = bottleneck.iter().product();
        let enc_mean = LinearConfig::new(flat + classes, latent).init(device);
        let enc_logvar = LinearConfig::new(flat + classes, latent).init(device);
        let dec_dense = LinearConfig::new(latent + classes, flat).init(device);
        // Mirror: [32 -> 16], [16 -> image channels]. Each doubles the side exactly.
        let mut outs: Vec<usize> = channels.iter().rev().skip(1).copied().collect();
        outs.push(image.channels * params);
        let mut dec_convs = Vec::new();
        let mut c_in = bottleneck[0];
        for c in outs {
            dec_convs.push(
                ConvTranspose2dConfig::new([c_in, c], [kernel, kernel])
                    .with_stride([2, 2])
                    .with_padding([pad, pad])
                    .with_padding_out([1, 1])
                    .init(device),
            );
            c_in = c;
        }
        ConvVae {
            enc_convs,
            enc_mean,
            enc_logvar,
            dec_dense,
            dec_convs,
            bottleneck,
            leaky_slope,
            image_channels: image.channels,
            logistic,
            global_scale,
            classes,
            top: None,
        }
    }

    /// The decoder's mean image in [0, 1] (see [`crate::loss::mean_image`]).
    ///
    /// # Shapes
    /// `z`: `[batch, latent]` -> `[batch, channels, height, width]`
    pub fn decode_mean(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        crate::loss::mean_image(self.decode(z, y), self.image_channels, self.logistic)
    }

    /// Classes of the one-hot condition (0: unconditional).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Puts a second stochastic layer above z (a hierarchical VAE).
    pub fn with_top(self, top: Option<super::TopLatent>) -> Self {
        Self { top, ..self }
    }

    /// Dimension of z.
    pub fn latent_dim(&self) -> usize {
        self.enc_mean.weight.val().dims()[1]
    }

    /// The second stochastic layer, if any.
    pub fn top(&self) -> Option<&super::TopLatent> {
        self.top.as_ref()
    }

    /// q(z|x).
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]` -> mean, logvar `[batch, latent]`
    pub fn encode(&self, x: Tensor<4>, y: Option<Tensor<2>>) -> DiagonalGaussian {
        let mut h = x;
        let leaky = Activation::LeakyRelu {
            slope: self.leaky_slope as f32,
        };
        for conv in &self.enc_convs {
            h = crate::ops::conv2d(conv, h, leaky); // [batch, c_i, h / 2^i, w / 2^i]
        }
        let h = super::with_condition(h.flatten(1, 3), y); // [batch, c * h * w (+ classes)]
        DiagonalGaussian::new(
            crate::ops::linear(&self.enc_mean, h.clone(), Activation::Identity),
            crate::ops::linear(&self.enc_logvar, h, Activation::Identity),
        )
    }

    /// Parameters of p(x|z): logits or means, then any log-scales.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]` -> `[batch, channels * params, height, width]`
    pub fn decode(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        let b = z.dims()[0];
        let [c, h, w] = self.bottleneck;
        let zy = super::with_condition(z, y);
        let x = crate::ops::linear(&self.dec_dense, zy, Activation::Relu);
        let mut x = x.reshape([b, c, h, w]); // [batch, 32, 7, 7]
        let last = self.dec_convs.len() - 1;
        for (i, conv) in self.dec_convs.iter().enumerate() {
            let act = if i < last {
                Activation::Relu
            } else {
                Activation::Identity
            };
            x = crate::ops::conv_transpose2d(conv, x, act); // side doubles
        }
        match &self.global_scale {
            Some(g) => g.append_to(x),
            None => x,
        }
    }
}
