//! The likelihood part: the observation model p(x|z) that reads the decoder's maps, with the
//! parameters it owns (the learned scale of `gaussian-global`).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::GlobalLogStd;
use crate::config::Likelihood;
use crate::ops::Activation;

/// p(x|z) of one kind, and its own parameters.
#[derive(Module, Debug)]
pub struct PixelLikelihood {
    /// The learned per-channel scale of the `gaussian-global` likelihood.
    scale: Option<GlobalLogStd>,
    #[module(skip)]
    kind: Likelihood,
    /// Channels of the images.
    channels: usize,
}

impl PixelLikelihood {
    /// The likelihood `kind` for images of `channels` channels.
    pub fn new(kind: Likelihood, channels: usize, device: &Device) -> PixelLikelihood {
        PixelLikelihood {
            scale: (kind == Likelihood::GaussianGlobal)
                .then(|| GlobalLogStd::new(channels, device)),
            kind,
            channels,
        }
    }

    /// Which observation model.
    pub fn kind(&self) -> Likelihood {
        self.kind
    }

    /// The distribution's parameters from the decoder's maps: the maps themselves, with the
    /// learned log-std maps appended for `gaussian-global` (see
    /// [`crate::likelihood::reconstruction_nll`]).
    ///
    /// # Shapes
    /// `maps`: `[batch, channels * network_maps, h, w]` -> `[batch, channels * params, h, w]`
    pub fn params(&self, maps: Tensor<4>) -> Tensor<4> {
        match &self.scale {
            Some(g) => g.append_to(maps),
            None => maps,
        }
    }

    /// -log p(x | params) per image.
    ///
    /// # Shapes
    /// `params`: `[batch, channels * params, h, w]`, `x`: `[batch, channels, h, w]` -> `[batch]`
    pub fn nll(&self, params: Tensor<4>, x: Tensor<4>) -> Tensor<1> {
        crate::likelihood::reconstruction_nll(params, x, self.kind)
    }

    /// The mean image in [0, 1] (see [`crate::likelihood::mean_image`]).
    ///
    /// # Shapes
    /// `params`: `[batch, channels * params, h, w]` -> `[batch, channels, h, w]`
    pub fn mean_image(&self, params: Tensor<4>) -> Tensor<4> {
        crate::likelihood::mean_image(params, self.channels, self.kind == Likelihood::Logistic)
    }

    /// The activation that turns every map the decoder computes into [`PixelLikelihood::mean_image`]
    /// (the sigmoid, where the network computes one map per channel and the mean is its
    /// sigmoid), so a decoder can apply it in its last layer; `None` where the mean reads only
    /// some of the maps or is not a sigmoid (logistic, learned per-pixel scales).
    pub fn mean_activation(&self) -> Option<Activation> {
        (self.kind != Likelihood::Logistic && self.kind.network_maps() == 1)
            .then_some(Activation::Sigmoid)
    }
}
