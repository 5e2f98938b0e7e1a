//! A CPPN decoder (hardmaru, "Generating large images from latent vectors", code
//! hardmaru/cppn-gan-vae-tensorflow): the image is a function of each pixel's coordinates and
//! z, f(x, y, r, z) -> intensity, so it trains at the data's resolution and renders at any
//! other.
//!
//! U = W_z (z_scale z) + b + W_x x + W_y y + W_r r (r = sqrt(x^2 + y^2)), then tanh layers,
//! then a linear layer to the likelihood's maps (logits; the sigmoid is the likelihood's).
//! Pixel (i, j) of an h x w image sits at the centre of its cell: y = s (2 (i + 1/2) / m - h / m),
//! x = s (2 (j + 1/2) / m - w / m) with m = min(h, w), so the shorter side spans [-s, s], the
//! longer one proportionally more (circles stay round), and a render at twice the size samples
//! each training pixel's cell at four symmetric points.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor, TensorData};

use super::label::LabelBiases;
use crate::config::ImageShape;
use crate::ops::{self, Activation};

/// The CPPN decoder's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct CppnDecoderConfig {
    /// The training images (their size is the default render size).
    pub image: ImageShape,
    /// Dimension of z.
    pub latent: usize,
    /// Width of every hidden layer.
    pub hidden: usize,
    /// tanh layers after the input layer.
    pub layers: usize,
    /// Half-width `s` of the coordinate range of the shorter side.
    pub scale: f64,
    /// Factor on z before its layer.
    pub z_scale: f64,
    /// Maps per image channel of the last layer (see [`crate::config::Likelihood::network_maps`]).
    pub maps: usize,
    /// Classes of the one-hot condition entering beside z (0: none).
    pub classes: usize,
    /// The label enters every tanh layer and the output too (see [`LabelBiases`]).
    pub label_every_layer: bool,
}

impl CppnDecoderConfig {
    /// Builds the decoder with burn's default initialisation.
    pub fn init(&self, device: &Device) -> CppnDecoder {
        let coord = || {
            LinearConfig::new(1, self.hidden)
                .with_bias(false)
                .init(device)
        };
        CppnDecoder {
            z: LinearConfig::new(self.latent + self.classes, self.hidden).init(device),
            x: coord(),
            y: coord(),
            r: coord(),
            hidden: (0..self.layers)
                .map(|_| LinearConfig::new(self.hidden, self.hidden).init(device))
                .collect(),
            out: LinearConfig::new(self.hidden, self.image.channels * self.maps).init(device),
            labels: LabelBiases::new(
                self.classes,
                &[
                    vec![self.hidden; self.layers],
                    vec![self.image.channels * self.maps],
                ]
                .concat(),
                self.label_every_layer,
                device,
            ),
            size: [self.image.height, self.image.width],
            scale: self.scale,
            z_scale: self.z_scale,
        }
    }
}

/// f(x, y, r, z): a small tanh network evaluated at every pixel.
#[derive(Module, Debug)]
pub struct CppnDecoder {
    z: Linear,
    x: Linear,
    y: Linear,
    r: Linear,
    hidden: Vec<Linear>,
    out: Linear,
    /// The label's bias on every tanh layer and the output (empty unless the label enters
    /// every layer).
    labels: LabelBiases,
    /// [height, width] of the training images.
    size: [usize; 2],
    scale: f64,
    z_scale: f64,
}

/// The coordinates of the pixels of an `h` x `w` image, rows `[first_row, first_row + rows)`,
/// row-major: (x, y, r) of each, with the shorter side spanning [-scale, scale].
pub fn coordinates(h: usize, w: usize, first_row: usize, rows: usize, scale: f64) -> Vec<[f32; 3]> {
    let m = h.min(w).max(1) as f64;
    let mut out = Vec::with_capacity(rows * w);
    for i in first_row..first_row + rows {
        let y = scale * (2.0 * (i as f64 + 0.5) - h as f64) / m;
        for j in 0..w {
            let x = scale * (2.0 * (j as f64 + 0.5) - w as f64) / m;
            out.push([x as f32, y as f32, (x * x + y * y).sqrt() as f32]);
        }
    }
    out
}

impl CppnDecoder {
    /// [height, width] of the training images.
    pub fn size(&self) -> [usize; 2] {
        self.size
    }

    /// The maps at the training size.
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, height, width]`
    pub fn forward(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<4> {
        let [h, w] = self.size;
        self.render_rows(z, y, [h, w], 0, h, 1.0)
    }

    /// Rows `[first_row, first_row + rows)` of the maps of an image of `size`, with the
    /// coordinate range times `zoom` (2 shows twice as much of the plane).
    ///
    /// # Shapes
    /// `z`: `[batch, latent]`, `y`: `[batch, classes]` -> `[batch, maps, rows, size[1]]`
    pub fn render_rows(
        &self,
        z: Tensor<2>,
        y: Option<Tensor<2>>,
        size: [usize; 2],
        first_row: usize,
        rows: usize,
        zoom: f64,
    ) -> Tensor<4> {
        let [h, w] = size;
        let (b, p, dev) = (z.dims()[0], rows * w, z.device());
        let c = coordinates(h, w, first_row, rows, self.scale * zoom);
        let coord = |k: usize| {
            let v: Vec<f32> = c.iter().map(|xyr| xyr[k]).collect();
            Tensor::<2>::from_data(TensorData::new(v, [p, 1]), &dev)
        };
        let zy = super::with_condition(z.mul_scalar(self.z_scale), y.clone());
        let hz = ops::linear(&self.z, zy, Activation::Identity); // [b, hidden]
        let hxy = ops::linear(&self.x, coord(0), Activation::Identity)
            + ops::linear(&self.y, coord(1), Activation::Identity)
            + ops::linear(&self.r, coord(2), Activation::Identity); // [p, hidden]
        let hidden = hz.dims()[1];
        let u = hz.reshape([b, 1, hidden]) + hxy.reshape([1, p, hidden]); // [b, p, hidden]
        let mut a = tanh(u.reshape([b * p, hidden]));
        // The label's bias of layer i, the same at every pixel of an image.
        let with_label = |i: usize, v: Tensor<2>| match self.labels.bias(i, y.as_ref()) {
            None => v,
            Some(bias) => {
                let n = v.dims()[1];
                (v.reshape([b, p, n]) + bias.reshape([b, 1, n])).reshape([b * p, n])
            }
        };
        for (i, l) in self.hidden.iter().enumerate() {
            a = tanh(with_label(i, ops::linear(l, a, Activation::Identity))); // [b * p, hidden]
        }
        let out = with_label(
            self.hidden.len(),
            ops::linear(&self.out, a, Activation::Identity),
        ); // [b * p, maps]
        let maps = out.dims()[1];
        out.reshape([b, rows, w, maps]).permute([0, 3, 1, 2])
    }
}
