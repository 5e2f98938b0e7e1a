//! The prior part: how the decoder's latent is distributed before seeing an image, and how a
//! posterior draw is scored against it.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::class_prior::ClassPrior;
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
    /// z ~ N(mean_y, diag exp(logvar_y)), learned per class (see [`ClassPrior`]).
    Class {
        /// Dimension of z.
        latent: usize,
        /// Classes of the one-hot label.
        classes: usize,
        /// Gaussians per class (1: one Gaussian).
        components: usize,
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
            PriorConfig::Class {
                latent,
                classes,
                components,
            } => Prior::Class(ClassPrior::new(*latent, *classes, *components, device)),
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
    /// A learned Gaussian per class (see [`ClassPrior`]).
    Class(ClassPrior),
}

impl Prior {
    /// The second stochastic layer, if any.
    pub fn top(&self) -> Option<&TopLatent> {
        match self {
            Prior::StandardNormal(_) | Prior::Class(_) => None,
            Prior::TwoLayer(t) => Some(t),
        }
    }

    /// Standard normal `noise` for [`Prior::sample`] at `temperature`: the Gaussian columns
    /// scaled (draws nearer the centre below 1), a mixture's component column kept, so that
    /// every component stays equally likely.
    ///
    /// # Shapes
    /// `noise`: `[n, noise_dim]` -> `[n, noise_dim]`
    pub fn temper(&self, noise: Tensor<2>, temperature: f64) -> Tensor<2> {
        if temperature == 1.0 {
            return noise;
        }
        match self {
            Prior::Class(p) if p.components() > 1 => {
                let l = p.latent();
                Tensor::cat(
                    vec![
                        noise.clone().narrow(1, 0, l).mul_scalar(temperature),
                        noise.narrow(1, l, 1),
                    ],
                    1,
                )
            }
            _ => noise.mul_scalar(temperature),
        }
    }

    /// p(z|y) of a learned class prior as one Gaussian (see [`ClassPrior::gaussian`]; none for
    /// the other priors).
    ///
    /// # Shapes
    /// `y`: `[n, classes]` -> `[n, latent]`
    pub fn class_gaussian(&self, y: Tensor<2>) -> Option<DiagonalGaussian> {
        match self {
            Prior::Class(p) => Some(p.gaussian(y)),
            _ => None,
        }
    }

    /// Dimension of the decoder's latent z.
    pub fn latent_dim(&self) -> usize {
        match self {
            Prior::StandardNormal(d) => *d,
            Prior::TwoLayer(t) => t.below(),
            Prior::Class(p) => p.latent(),
        }
    }

    /// Draws z from the prior with standard normal `noise` (see [`Latents::noise_dim`]): z =
    /// noise for N(0, I); for two layers z2 = the last columns, z1 = mean(z2) + std(z2) * the
    /// first columns; for a class prior z = mean_y + std_y * noise (N(0, I) without a label).
    ///
    /// # Shapes
    /// `noise`: `[n, noise_dim]`, `y`: `[n, classes]` -> `[n, latent]`
    pub fn sample(&self, noise: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<2> {
        match (self, y) {
            (Prior::StandardNormal(_), _) => noise,
            (Prior::Class(p), None) => noise.narrow(1, 0, p.latent()),
            (Prior::TwoLayer(t), _) => prior_two_layers(noise, t.below(), &|z2| t.prior(z2)),
            (Prior::Class(p), Some(y)) => p.sample(noise, y),
        }
    }
}

impl Latents for Prior {
    fn noise_dim(&self) -> usize {
        match self {
            Prior::Class(p) => p.noise_dim(),
            _ => self.latent_dim() + self.top().map_or(0, TopLatent::latent),
        }
    }

    fn draw(&self, q: &DiagonalGaussian, eps: Tensor<2>, y: Option<Tensor<2>>) -> LatentDraw {
        match (self, y) {
            (Prior::TwoLayer(t), _) => {
                draw_two_layers(q, eps, &|z1| t.encode(z1), &|z2| t.prior(z2))
            }
            (Prior::Class(p), Some(y)) => p.draw(q, eps, y),
            _ => {
                let l = self.latent_dim();
                StandardNormalPrior(l).draw(q, eps.narrow(1, 0, l), None)
            }
        }
    }
}
