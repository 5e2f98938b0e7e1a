//! Fully connected VAE, as in pytorch/examples (784-400-20-400-784 by default).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::config::ImageShape;
use crate::distribution::DiagonalGaussian;
use crate::ops::{self, Activation};

/// MLP encoder and decoder with ReLU hidden layers.
#[derive(Module, Debug)]
pub struct MlpVae {
    enc_hidden: Vec<Linear>,
    enc_mean: Linear,
    enc_logvar: Linear,
    dec_hidden: Vec<Linear>,
    dec_out: Linear,
    /// [channels, height, width] of the images.
    image: [usize; 3],
    /// Decoder outputs per pixel and channel.
    params: usize,
    /// Whether the means are on the [-1, 1] scale of the discretised logistic (else logits).
    logistic: bool,
    /// The learned per-channel scale of the `gaussian-global` likelihood.
    global_scale: Option<super::GlobalLogStd>,
    /// Classes of the one-hot condition (0: unconditional).
    classes: usize,
    /// The second stochastic layer of a hierarchical VAE.
    top: Option<super::TopLatent>,
}

impl MlpVae {
    /// Builds the network with burn's default (PyTorch-like) initialisation.
    ///
    /// The decoder outputs `params` values per pixel and channel (means first).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        image: ImageShape,
        latent: usize,
        hidden: &[usize],
        params: usize,
        logistic: bool,
        global_scale: Option<super::GlobalLogStd>,
        classes: usize,
        device: &Device,
    ) -> Self {
        let d = image.numel();
        let mut enc_hidden = Vec::new();
        let mut w_in = d + classes;
        for &w in hidden {
            enc_hidden.push(LinearConfig::new(w_in, w).init(device));
            w_in = w;
        }
        let enc_mean = LinearConfig::new(w_in, latent).init(device);
        let enc_logvar = LinearConfig::new(w_in, latent).init(device);
        let mut dec_hidden = Vec::new();
        let mut w_in = latent + classes;
        for &w in hidden.iter().rev() {
            dec_hidden.push(LinearConfig::new(w_in, w).init(device));
            w_in = w;
        }
        let dec_out = LinearConfig::new(w_in, d * params).init(device);
        MlpVae {
            enc_hidden,
            enc_mean,
            enc_logvar,
            dec_hidden,
            dec_out,
            image: [image.channels, image.height, image.width],
            params,
            logistic,
            global_scale,
            classes,
            top: None,
        }
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
        let mut h = super::with_condition(x.flatten(1, 3), y); // [batch, c * h * w (+ classes)]
        for l in &self.enc_hidden {
            h = ops::linear(l, h, Activation::Relu); // [batch, 400]
        }
        DiagonalGaussian::new(
            ops::linear(&self.enc_mean, h.clone(), Activation::Identity),
            ops::linear(&self.enc_logvar, h, Activation::Identity),
        )
    }

    /// The decoder's mean image in [0, 1] (see [`crate::loss::mean_image`]).
    ///
    /// # Shapes
    /// `z`: `[batch, latent]` -> `[batch, channels, height, width]`
    pub fn decode_mean(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        crate::loss::mean_image(self.decode(z, y), self.image[0], self.logistic)
    }

    /// Parameters of p(x|z): logits or means, then any log-scales.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]` -> `[batch, channels * params, height, width]`
    pub fn decode(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        let b = z.dims()[0];
        let mut h = super::with_condition(z, y);
        for l in &self.dec_hidden {
            h = ops::linear(l, h, Activation::Relu); // [batch, 400]
        }
        let [c, hh, w] = self.image;
        let out = ops::linear(&self.dec_out, h, Activation::Identity);
        let out = out.reshape([b, c * self.params, hh, w]);
        match &self.global_scale {
            Some(g) => g.append_to(out),
            None => out,
        }
    }
}
