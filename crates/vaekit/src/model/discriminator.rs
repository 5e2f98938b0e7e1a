//! The VAE-GAN's discriminator (Larsen et al. 2016, arXiv 1512.09300): as theirs, a stride-1
//! convolution with ReLU, then stride-2 convolutions with batch normalisation and ReLU, a dense
//! layer, and one logit of "real". The output of one
//! convolution, taken before its normalisation, is the feature map whose Gaussian
//! log-likelihood replaces the pixels' as the reconstruction term.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::config::ImageShape;
use crate::ops::{self, Activation};

/// The discriminator's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscriminatorConfig {
    /// The images it judges.
    pub image: ImageShape,
    /// Output channels of each convolution: the first keeps the image's size and has no
    /// normalisation, the others halve it.
    pub channels: Vec<usize>,
    /// Square kernel size (odd).
    pub kernel: usize,
    /// Width of the dense layer before the logit.
    pub hidden: usize,
    /// The convolution (0-based) whose output, before its normalisation, is the feature map.
    pub feature_layer: usize,
}

impl DiscriminatorConfig {
    /// Builds the discriminator with burn's default initialisation.
    pub fn init(&self, device: &Device) -> Discriminator {
        let pad = self.kernel / 2;
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut c_in = self.image.channels;
        for (i, &c) in self.channels.iter().enumerate() {
            let s = if i == 0 { 1 } else { 2 };
            // A bias before a normalisation has no effect, and Adam would turn its rounding-noise
            // gradient into steps of the full learning rate.
            convs.push(
                Conv2dConfig::new([c_in, c], [self.kernel, self.kernel])
                    .with_bias(i == 0)
                    .with_stride([s, s])
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .init(device),
            );
            if i > 0 {
                norms.push(BatchNorm::new(c, device));
            }
            c_in = c;
        }
        let f = 1 << (self.channels.len() - 1);
        let flat = c_in * self.image.height.div_ceil(f) * self.image.width.div_ceil(f);
        Discriminator {
            convs,
            norms,
            dense: LinearConfig::new(flat, self.hidden).init(device),
            out: LinearConfig::new(self.hidden, 1).init(device),
            feature_layer: self.feature_layer,
        }
    }
}

/// Batch normalisation over (batch, height, width) with a learned scale and shift, always with
/// the batch's own statistics: the discriminator only ever judges training batches, so it keeps
/// no running averages (state that a skipped step would have to undo).
#[derive(Module, Debug)]
pub struct BatchNorm {
    gamma: Param<Tensor<1>>,
    beta: Param<Tensor<1>>,
}

impl BatchNorm {
    /// Scale 1 and shift 0 for `channels` channels.
    pub fn new(channels: usize, device: &Device) -> BatchNorm {
        BatchNorm {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    /// (x - mean) / sqrt(var + 1e-5) * gamma + beta, per channel.
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]` -> same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = x.dims()[1];
        let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3); // [1, c, 1, 1]
        let centred = x - mean;
        let var = (centred.clone() * centred.clone())
            .mean_dim(0)
            .mean_dim(2)
            .mean_dim(3);
        let norm = centred * var.add_scalar(1e-5).sqrt().recip();
        norm * self.gamma.val().reshape([1, c, 1, 1]) + self.beta.val().reshape([1, c, 1, 1])
    }
}

/// D(x): the logit that `x` is a real image, and the features of the chosen layer.
#[derive(Module, Debug)]
pub struct Discriminator {
    convs: Vec<Conv2d>,
    /// One per convolution after the first.
    norms: Vec<BatchNorm>,
    dense: Linear,
    out: Linear,
    feature_layer: usize,
}

/// What the discriminator computes for a batch.
///
/// # Shapes
/// `logits`: `[batch]`, `features`: `[batch, channels * h * w]` of the feature layer
#[derive(Clone, Debug)]
pub struct Judgement {
    /// Logit of "real" per image.
    pub logits: Tensor<1>,
    /// The feature layer's output before its normalisation, flattened.
    pub features: Tensor<2>,
}

impl Discriminator {
    /// Logits and features of a batch of images in [0, 1].
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Judgement {
        let b = x.dims()[0];
        let mut h = x;
        let mut features = None;
        for (i, conv) in self.convs.iter().enumerate() {
            let a = ops::conv2d(conv, h, Activation::Identity); // [batch, c_i, side / 2^i]
            if i == self.feature_layer {
                features = Some(a.clone().reshape([b as i32, -1]));
            }
            h = match i {
                0 => relu(a),
                _ => relu(self.norms[i - 1].forward(a)),
            };
        }
        let h = ops::linear(&self.dense, h.reshape([b as i32, -1]), Activation::Relu);
        let logits = ops::linear(&self.out, h, Activation::Identity).reshape([b]);
        Judgement {
            logits,
            features: features.expect("the feature layer is one of the convolutions"),
        }
    }
}
