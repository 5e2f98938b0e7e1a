//! The prior part: how the decoder's latent is distributed before seeing an image, and how a
//! posterior draw is scored against it.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::top::{TopLatent, draw_two_layers, prior_two_layers};
use super::{LatentDraw, Latents, StandardNormalPrior};
use crate::config::TopLatentConfig;
use crate::distribution::DiagonalGaussian;

/// Which prior (see [`crate::config::ModelConfig::prior`]).
#[derive(Clone, Debug, PartialEq)]
pub enum PriorConfig {
    /// z ~ N(0, I) of this dimension.
    StandardNormal(usize),
    /// z1 ~ p(z1|z2), z2 ~ N(0, I): the hierarchical VAE's second layer above a z1 of
    /// dimension `below`.
    TwoLayer {
        /// Dimension of z1.
        below: usize,
        /// z2 and the MLPs between the layers.
        top: TopLatentConfig,
    },
}

impl PriorConfig {
    /// Builds the prior on `device`.
    pub fn init(&self, device: &Device) -> Prior {
        match self {
            PriorConfig::StandardNormal(d) => Prior::StandardNormal(*d),
            PriorConfig::TwoLayer { below, top } => {
                Prior::TwoLayer(TopLatent::new(*below, top.latent_dim, &top.hidden, device))
            }
        }
    }
}

/// p(z), with the posterior side of a second layer where there is one.
#[derive(Module, Debug)]
pub enum Prior {
    /// N(0, I) of this dimension (no parameters).
    StandardNormal(usize),
    /// A learned p(z1|z2) with z2 ~ N(0, I), and q(z2|z1) (see [`TopLatent`]).
    TwoLayer(TopLatent),
}

impl Prior {
    /// The second stochastic layer, if any.
    pub fn top(&self) -> Option<&TopLatent> {
        match self {
            Prior::StandardNormal(_) => None,
            Prior::TwoLayer(t) => Some(t),
        }
    }

    /// Dimension of the decoder's latent z.
    pub fn latent_dim(&self) -> usize {
        match self {
            Prior::StandardNormal(d) => *d,
            Prior::TwoLayer(t) => t.below(),
        }
    }

    /// Draws z from the prior with standard normal `noise` (see [`Latents::noise_dim`]): z =
    /// noise for N(0, I); for two layers z2 = the last columns, z1 = mean(z2) + std(z2) * the
    /// first columns.
    ///
    /// # Shapes
    /// `noise`: `[n, noise_dim]` -> `[n, latent]`
    pub fn sample(&self, noise: Tensor<2>) -> Tensor<2> {
        match self {
            Prior::StandardNormal(_) => noise,
            Prior::TwoLayer(t) => prior_two_layers(noise, t.below(), &|z2| t.prior(z2)),
        }
    }
}

impl Latents for Prior {
    fn noise_dim(&self) -> usize {
        self.latent_dim() + self.top().map_or(0, TopLatent::latent)
    }

    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>) -> LatentDraw {
        match self {
            Prior::StandardNormal(d) => StandardNormalPrior(*d).draw(q, eps),
            Prior::TwoLayer(t) => draw_two_layers(q, eps, &|z1| t.encode(z1), &|z2| t.prior(z2)),
        }
    }
}
