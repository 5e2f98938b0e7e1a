//! A learned log standard deviation per image channel, shared by all pixels: the scale of the
//! `gaussian-global` likelihood.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

/// log sigma for each image channel, initialised to 0 (sigma = 1).
#[derive(Module, Debug)]
pub struct GlobalLogStd {
    log_std: Param<Tensor<1>>,
}

impl GlobalLogStd {
    /// One parameter per channel.
    pub fn new(channels: usize, device: &Device) -> GlobalLogStd {
        GlobalLogStd {
            log_std: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    /// Appends the log-std maps to the decoder's mean logits, as [`crate::likelihood::reconstruction_nll`]
    /// expects for two-parameter likelihoods.
    ///
    /// # Shapes
    /// `means`: `[batch, channels, height, width]` -> `[batch, 2 * channels, height, width]`
    pub fn append_to(&self, means: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = means.dims();
        let maps = self
            .log_std
            .val()
            .reshape([1, c, 1, 1])
            .repeat_dim(0, b)
            .repeat_dim(2, h)
            .repeat_dim(3, w);
        Tensor::cat(vec![means, maps], 1)
    }
}
