//! The evaluation classifier: a small CNN whose penultimate layer is the feature space of the
//! Frechet distance.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::ClassifierConfig;
use crate::ops::Activation;

/// Two stride-2 5x5 convolutions (ReLU), a dense feature layer (ReLU), and a linear read-out.
///
/// 28x28x1 -> 14x14x32 -> 7x7x64 -> 128 features -> classes.
#[derive(Module, Debug)]
pub struct Classifier {
    convs: Vec<Conv2d>,
    features: Linear,
    out: Linear,
}

impl Classifier {
    /// Builds the network `cfg` describes with burn's default initialisation.
    pub fn new(cfg: &ClassifierConfig, device: &Device) -> Classifier {
        let mut convs = Vec::new();
        let mut c_in = cfg.image.channels;
        for &c in &cfg.channels {
            convs.push(
                Conv2dConfig::new([c_in, c], [5, 5])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                    .init(device),
            );
            c_in = c;
        }
        let (mut h, mut w) = (cfg.image.height, cfg.image.width);
        for _ in &cfg.channels {
            (h, w) = (h.div_ceil(2), w.div_ceil(2));
        }
        let features = LinearConfig::new(c_in * h * w, cfg.features).init(device);
        let out = LinearConfig::new(cfg.features, cfg.classes).init(device);
        Classifier {
            convs,
            features,
            out,
        }
    }

    /// The penultimate layer's activations.
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]`, pixels in [0, 1] -> `[batch, features]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = x;
        for conv in &self.convs {
            h = crate::ops::conv2d(conv, h, Activation::Relu); // side halves
        }
        relu(self.features.forward(h.flatten(1, 3)))
    }

    /// Class logits.
    ///
    /// # Shapes
    /// `x`: `[batch, channels, height, width]` -> `[batch, classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.logits(self.features(x))
    }

    /// Class logits from already computed features.
    ///
    /// # Shapes
    /// `features`: `[batch, features]` -> `[batch, classes]`
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.out.forward(features)
    }
}
