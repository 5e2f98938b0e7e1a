//! The article's convolutional encoder and decoder (kvfrans/variational-autoencoder),
//! parameterised by config.
//!
//! With the default config (channels [16, 32], 5x5 kernels, 28x28x1 images, z = 20):
//! encoder 28x28x1 -> conv s2 -> 14x14x16 -> conv s2 -> 7x7x32 -> dense heads to mean and
//! log-variance (20 each); decoder z -> dense -> 7x7x32 -> convT s2 -> 14x14x16 -> convT s2 ->
//! 28x28x1 logits. With [`Upsample::Resize`] each convT s2 is a nearest-neighbour doubling and
//! a stride-1 conv of the same kernel instead.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::label::LabelBiases;
use crate::config::{ImageShape, Upsample};
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
    /// How each layer doubles the side.
    pub upsample: Upsample,
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
        let mut resize = Vec::new();
        let mut c_in = bottleneck[0];
        let labels = LabelBiases::new(self.classes, &outs, self.label_every_layer, device);
        for c in outs {
            match self.upsample {
                Upsample::Transposed => convs.push(
                    ConvTranspose2dConfig::new([c_in, c], [self.kernel, self.kernel])
                        .with_stride([2, 2])
                        .with_padding([pad, pad])
                        .with_padding_out([1, 1])
                        .init(device),
                ),
                Upsample::Resize => resize.push(
                    Conv2dConfig::new([c_in, c], [self.kernel, self.kernel])
                        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                        .init(device),
                ),
            }
            c_in = c;
        }
        ConvDecoder {
            dense: LinearConfig::new(self.latent + self.classes, flat).init(device),
            convs,
            labels,
            resize,
            bottleneck,
        }
    }
}

/// A dense layer to the smallest feature map, then layers that each double the side (ReLU
/// between them) back to the image: stride-2 transposed convolutions, or nearest-neighbour
/// doubling and a stride-1 convolution.
#[derive(Module, Debug)]
pub struct ConvDecoder {
    dense: Linear,
    /// The transposed convolutions (empty with [`Upsample::Resize`]).
    convs: Vec<ConvTranspose2d>,
    /// The label's bias on every layer (empty unless the label enters every layer; after the
    /// convolutions, so that older models keep their parameter order).
    labels: LabelBiases,
    /// The stride-1 convolutions after each doubling (empty with [`Upsample::Transposed`];
    /// last, so that older models keep their parameter order).
    resize: Vec<Conv2d>,
    /// [channels, height, width] of the smallest feature map.
    bottleneck: [usize; 3],
}

/// Nearest-neighbour doubling of the side: every value becomes a 2x2 block.
///
/// # Shapes
/// `x`: `[batch, c, h, w]` -> `[batch, c, 2h, 2w]`
pub fn double_nearest(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}

impl ConvDecoder {
    /// The side of the images it makes: the bottleneck doubled by every layer.
    pub fn size(&self) -> [usize; 2] {
        let f = 1 << self.layers();
        [self.bottleneck[1] * f, self.bottleneck[2] * f]
    }

    /// Layers that double the side.
    fn layers(&self) -> usize {
        self.convs.len() + self.resize.len()
    }

    /// `act(layer i (x))`: `[batch, c_in, h, w] -> [batch, c_out, 2h, 2w]`.
    fn up(&self, i: usize, x: Tensor<4>, act: Activation) -> Tensor<4> {
        match self.convs.get(i) {
            Some(conv) => ops::conv_transpose2d(conv, x, act),
            None => ops::conv2d(&self.resize[i], double_nearest(x), act),
        }
    }

    /// The network's output maps: logits or means, then any log-scale maps.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, height, width]`
    pub fn forward(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        self.forward_to(z, y, Activation::Identity)
    }

    /// [`ConvDecoder::forward`] with `out` applied to the maps inside the last layer.
    pub fn forward_to(&self, z: Tensor<2>, y: Option<Tensor<2>>, out: Activation) -> Tensor<4> {
        let b = z.dims()[0];
        let [c, h, w] = self.bottleneck;
        let zy = super::with_condition(z, y.clone());
        let x = ops::linear(&self.dense, zy, Activation::Relu);
        let mut x = x.reshape([b, c, h, w]); // [batch, 32, 7, 7]
        let last = self.layers() - 1;
        for i in 0..=last {
            let act = if i < last { Activation::Relu } else { out };
            x = match self.labels.bias(i, y.as_ref()) {
                None => self.up(i, x, act), // side doubles
                Some(bias) => {
                    let x = self.up(i, x, Activation::Identity);
                    let c = bias.dims()[1];
                    ops::activate(x + bias.reshape([b, c, 1, 1]), act)
                }
            };
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn double_nearest_copies_each_value_into_a_2x2_block_and_sums_its_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [1, 2, 2, 3]),
            &device,
        )
        .require_grad();
        let y = double_nearest(x.clone());
        assert_eq!(y.dims(), [1, 2, 4, 6]);
        let v = values(y.clone());
        for c in 0..2 {
            for i in 0..4 {
                for j in 0..6 {
                    let want = (c * 6 + (i / 2) * 3 + j / 2) as f32;
                    assert_eq!(v[c * 24 + i * 6 + j], want, "c {c} row {i} col {j}");
                }
            }
        }
        // d/dx sum(y * u) is the sum of u over each value's block.
        let u: Vec<f32> = (0..48).map(|k| ((k * 7) % 11) as f32).collect();
        let ut = Tensor::<4>::from_data(TensorData::new(u.clone(), [1, 2, 4, 6]), &device);
        let g = values(x.grad(&(y * ut).sum().backward()).unwrap());
        for c in 0..2 {
            for i in 0..2 {
                for j in 0..3 {
                    let at = |di: usize, dj: usize| u[c * 24 + (2 * i + di) * 6 + 2 * j + dj];
                    let want = at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1);
                    assert_eq!(g[c * 6 + i * 3 + j], want, "c {c} row {i} col {j}");
                }
            }
        }
    }

    /// A 5x5 all-ones kernel on a constant map: what each layer type makes of a flat input.
    fn flat_input_through(upsample: Upsample) -> Vec<f32> {
        let device = Device::flex();
        let x = Tensor::<4>::ones([1, 1, 6, 6], &device);
        let ones = Tensor::<4>::ones([1, 1, 5, 5], &device);
        let zero = Tensor::<1>::zeros([1], &device);
        let y = match upsample {
            Upsample::Transposed => {
                let mut t = ConvTranspose2dConfig::new([1, 1], [5, 5])
                    .with_stride([2, 2])
                    .with_padding([2, 2])
                    .with_padding_out([1, 1])
                    .init(&device);
                t.weight = Param::from_tensor(ones);
                t.bias = Some(Param::from_tensor(zero));
                ops::conv_transpose2d(&t, x, Activation::Identity)
            }
            Upsample::Resize => {
                let mut c = Conv2dConfig::new([1, 1], [5, 5])
                    .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                    .init(&device);
                c.weight = Param::from_tensor(ones);
                c.bias = Some(Param::from_tensor(zero));
                ops::conv2d(&c, double_nearest(x), Activation::Identity)
            }
        };
        assert_eq!(y.dims(), [1, 1, 12, 12]);
        // The interior, away from the zero padding.
        let v = values(y);
        (4..8)
            .flat_map(|i| (4..8).map(move |j| (i, j)))
            .map(|(i, j)| v[i * 12 + j])
            .collect()
    }

    #[test]
    fn resize_upsampling_keeps_a_flat_map_flat_where_a_transposed_conv_makes_a_checkerboard() {
        // Stride 2 with a 5x5 kernel: output pixels receive 9, 6 or 4 of the input's values.
        let t = flat_input_through(Upsample::Transposed);
        let (lo, hi) = t
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        assert_eq!((lo, hi), (4.0, 9.0));
        // Every output pixel sees all 25 taps of a doubled constant.
        assert!(
            flat_input_through(Upsample::Resize)
                .iter()
                .all(|v| *v == 25.0)
        );
    }

    #[test]
    fn a_resize_decoder_doubles_with_stride_1_convolutions_and_trains_every_layer() {
        let device = Device::flex().autodiff();
        let cfg = ConvDecoderConfig {
            image: ImageShape {
                channels: 1,
                height: 16,
                width: 16,
            },
            latent: 3,
            channels: vec![4, 8],
            kernel: 3,
            upsample: Upsample::Resize,
            maps: 1,
            classes: 2,
            label_every_layer: true,
        };
        let dec = cfg.init(&device);
        assert!(dec.convs.is_empty());
        assert_eq!(dec.resize.len(), 2);
        assert_eq!(dec.resize[0].weight.dims(), [4, 8, 3, 3]);
        assert_eq!(dec.resize[1].weight.dims(), [1, 4, 3, 3]);
        assert_eq!(dec.resize[0].stride, [1, 1]);
        assert_eq!(dec.size(), [16, 16]);
        let z = Tensor::<2>::ones([2, 3], &device);
        let y = Tensor::<2>::from_data(TensorData::new(vec![1f32, 0., 0., 1.], [2, 2]), &device);
        let out = dec.forward(z, Some(y));
        assert_eq!(out.dims(), [2, 1, 16, 16]);
        let grads = out.powi_scalar(2).sum().backward();
        for conv in &dec.resize {
            let g = values(
                conv.weight
                    .val()
                    .grad(&grads)
                    .expect("a gradient on every layer"),
            );
            assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
        }
    }
}
