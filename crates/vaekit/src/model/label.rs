//! The label at every layer of a conditional decoder: a learned bias per class on each layer's
//! pre-activation. For a dense layer that is exactly the one-hot label concatenated to the
//! layer's input; for a convolution it is the label as constant extra input maps away from the
//! border. Decoders that only see the label beside z can learn to ignore it; with it at every
//! stage each layer is told the class again.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// One bias-free `classes -> width` map per layer (none when not used).
#[derive(Module, Debug)]
pub struct LabelBiases {
    layers: Vec<Linear>,
}

impl LabelBiases {
    /// Maps for layers of these output `widths`; none when `classes` is 0 or `every_layer` is
    /// false.
    pub fn new(classes: usize, widths: &[usize], every_layer: bool, device: &Device) -> Self {
        let on = classes > 0 && every_layer;
        LabelBiases {
            layers: widths
                .iter()
                .filter(|_| on)
                .map(|&w| LinearConfig::new(classes, w).with_bias(false).init(device))
                .collect(),
        }
    }

    /// The bias of layer `i` for labels `y`, if the decoder takes the label at every layer.
    ///
    /// # Shapes
    /// `y`: `[batch, classes]` -> `[batch, width_i]`
    pub fn bias(&self, i: usize, y: Option<&Tensor<2>>) -> Option<Tensor<2>> {
        Some(self.layers.get(i)?.forward(y?.clone()))
    }
}
