//! The VAE-GAN's discriminator (Larsen et al. 2016, arXiv 1512.09300): as theirs, a stride-1
//! convolution with ReLU, then stride-2 convolutions with batch normalisation and ReLU, a dense
//! layer, and one logit of "real". The output of one
//! convolution, taken before its normalisation, is the feature map whose Gaussian
//! log-likelihood replaces the pixels' as the reconstruction term.
//!
//! With [`DiscNorm::Spectral`] (Miyato et al. 2018, arXiv 1802.05957) there is no batch
//! normalisation: every convolution and dense layer uses its weight divided by the weight's
//! largest singular value sigma, estimated by power iteration from a vector `u` per layer that
//! the discriminator keeps (a parameter without gradient, saved in checkpoints) and advances by
//! one iteration after each of its updates ([`Discriminator::advance_power_iteration`]).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::config::{DiscNorm, ImageShape};
use crate::ops::{self, Activation, Conv2dSpec};

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
    /// Batch or spectral normalisation.
    pub norm: DiscNorm,
}

impl DiscriminatorConfig {
    /// Builds the discriminator with burn's default initialisation.
    pub fn init(&self, device: &Device) -> Discriminator {
        let pad = self.kernel / 2;
        let spectral = self.norm == DiscNorm::Spectral;
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut c_in = self.image.channels;
        for (i, &c) in self.channels.iter().enumerate() {
            let s = if i == 0 { 1 } else { 2 };
            // A bias before a batch normalisation has no effect, and Adam would turn its
            // rounding-noise gradient into steps of the full learning rate.
            convs.push(
                Conv2dConfig::new([c_in, c], [self.kernel, self.kernel])
                    .with_bias(i == 0 || spectral)
                    .with_stride([s, s])
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .init(device),
            );
            if i > 0 && !spectral {
                norms.push(BatchNorm::new(c, device));
            }
            c_in = c;
        }
        let f = 1 << (self.channels.len() - 1);
        let flat = c_in * self.image.height.div_ceil(f) * self.image.width.div_ceil(f);
        let dense = LinearConfig::new(flat, self.hidden).init(device);
        let out = LinearConfig::new(self.hidden, 1).init(device);
        // One u per layer, of the weight matrix's output side, from burn's (seeded) generator.
        let power = match spectral {
            true => {
                let mut sides: Vec<usize> = self.channels.clone();
                sides.extend([self.hidden, 1]);
                sides
                    .into_iter()
                    .map(|n| {
                        let u = Tensor::<1>::random(
                            [n],
                            burn::tensor::Distribution::Normal(0.0, 1.0),
                            device,
                        );
                        Param::from_tensor(unit(u)).set_require_grad(false)
                    })
                    .collect()
            }
            false => Vec::new(),
        };
        Discriminator {
            convs,
            norms,
            dense,
            out,
            power,
            feature_layer: self.feature_layer,
        }
    }
}

/// `v / ||v||` (a zero vector stays zero).
fn unit<const D: usize>(v: Tensor<D>) -> Tensor<D> {
    let n = (v.clone() * v.clone()).sum().sqrt().add_scalar(1e-12);
    v / n.reshape([1; D])
}

/// One power iteration on the matrix `w` from `u`: the next `u` and `v` (unit vectors, no
/// gradient) of w's largest singular value.
///
/// # Shapes
/// `w`: `[out, in]`, `u`: `[out]` -> `u`: `[out]`, `v`: `[in]`
fn power_iteration(w: Tensor<2>, u: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
    let [o, i] = w.dims();
    let w = w.detach();
    let v = unit(
        w.clone()
            .transpose()
            .matmul(u.detach().reshape([o, 1]))
            .reshape([i]),
    );
    let u = unit(w.matmul(v.clone().reshape([i, 1])).reshape([o]));
    (u, v)
}

/// `w / sigma(w)`, sigma = u^T w v after one power iteration from the stored `u`; the gradient
/// flows through `w` in both places, as in Miyato et al.
///
/// # Shapes
/// `w`: `[out, in]`, `u`: `[out]` -> `[out, in]`
fn spectral_normalised(w: Tensor<2>, u: Tensor<1>) -> Tensor<2> {
    let [o, i] = w.dims();
    let (u, v) = power_iteration(w.clone(), u);
    let sigma = u
        .reshape([1, o])
        .matmul(w.clone())
        .matmul(v.reshape([i, 1])); // [1, 1]
    w / sigma
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
    /// Spectral normalisation's power-iteration vectors, one per convolution, then the dense
    /// layer and the logit (no gradient); empty with batch normalisation.
    power: Vec<Param<Tensor<1>>>,
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
        let spectral = !self.power.is_empty();
        let mut h = x;
        let mut features = None;
        for (i, conv) in self.convs.iter().enumerate() {
            let a = match spectral {
                true => self.spectral_conv(i, h),
                false => ops::conv2d(conv, h, Activation::Identity),
            }; // [batch, c_i, side / 2^i]
            if i == self.feature_layer {
                features = Some(a.clone().reshape([b as i32, -1]));
            }
            h = match i {
                _ if spectral => relu(a),
                0 => relu(a),
                _ => relu(self.norms[i - 1].forward(a)),
            };
        }
        let h = h.reshape([b as i32, -1]);
        let logits = match spectral {
            true => {
                let n = self.convs.len();
                let h = relu(self.spectral_linear(&self.dense, n, h));
                self.spectral_linear(&self.out, n + 1, h)
            }
            false => {
                let h = ops::linear(&self.dense, h, Activation::Relu);
                ops::linear(&self.out, h, Activation::Identity)
            }
        }
        .reshape([b]);
        Judgement {
            logits,
            features: features.expect("the feature layer is one of the convolutions"),
        }
    }

    /// Whether each image's judgement depends on that image alone (spectral normalisation);
    /// with batch normalisation it depends on the whole batch's statistics.
    pub fn judges_each_image_alone(&self) -> bool {
        !self.power.is_empty()
    }

    /// Convolution `i` with its spectrally normalised weight.
    ///
    /// # Shapes
    /// `x`: `[batch, c_in, h, w]` -> `[batch, c_out, h', w']`
    fn spectral_conv(&self, i: usize, x: Tensor<4>) -> Tensor<4> {
        let conv = &self.convs[i];
        let dims = conv.weight.dims();
        let w = spectral_normalised(self.weight_matrix(i), self.power[i].val()).reshape(dims);
        let bias = conv
            .bias
            .as_ref()
            .expect("spectral convolutions have a bias")
            .val();
        let pad = dims[2] / 2;
        if ops::kernels_apply(x.dtype(), &x.device()) {
            let spec = Conv2dSpec {
                stride: conv.stride,
                pad_begin: [pad, pad],
                pad_end: [pad, pad],
                dilation: [1, 1],
                activation: Activation::Identity,
            };
            ops::conv2d_with(x, w, bias, spec)
        } else {
            let options = burn::tensor::ops::ConvOptions::new(conv.stride, [pad, pad], [1, 1], 1);
            burn::tensor::module::conv2d(x, w, Some(bias), options)
        }
    }

    /// Dense layer `layer` (power vector `k`) with its spectrally normalised weight.
    ///
    /// # Shapes
    /// `x`: `[batch, in]` -> `[batch, out]`
    fn spectral_linear(&self, layer: &Linear, k: usize, x: Tensor<2>) -> Tensor<2> {
        let w = spectral_normalised(self.weight_matrix(k), self.power[k].val()).transpose();
        let y = x.matmul(w);
        match &layer.bias {
            Some(b) => y + b.val().unsqueeze_dim(0),
            None => y,
        }
    }

    /// Layer `k`'s weight as the matrix spectral normalisation divides: convolutions (in
    /// order) as `[c_out, c_in * k * k]`, then the dense layer and the logit as `[out, in]`.
    fn weight_matrix(&self, k: usize) -> Tensor<2> {
        let n = self.convs.len();
        match k {
            _ if k < n => {
                let w = self.convs[k].weight.val();
                let o = w.dims()[0];
                w.reshape([o as i32, -1])
            }
            // burn's Linear stores `[in, out]`.
            _ if k == n => self.dense.weight.val().transpose(),
            _ => self.out.weight.val().transpose(),
        }
    }

    /// Advances each layer's power iteration by one step at the current weights (after an update
    /// of the discriminator); nothing with batch normalisation.
    pub fn advance_power_iteration(mut self) -> Discriminator {
        let power = std::mem::take(&mut self.power);
        self.power = power
            .into_iter()
            .enumerate()
            .map(|(k, u)| {
                let (next, _) = power_iteration(self.weight_matrix(k), u.val());
                u.map(|_| next.detach())
            })
            .collect();
        self
    }

    /// sigma of each normalised layer's weight as the forward pass divides by it (empty with
    /// batch normalisation).
    pub fn spectral_norms(&self) -> Vec<f64> {
        (0..self.power.len())
            .map(|k| {
                let w = self.weight_matrix(k).detach();
                let [o, i] = w.dims();
                let (u, v) = power_iteration(w.clone(), self.power[k].val());
                let s = u.reshape([1, o]).matmul(w).matmul(v.reshape([i, 1]));
                s.into_scalar::<f32>() as f64
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn config(norm: DiscNorm) -> DiscriminatorConfig {
        DiscriminatorConfig {
            image: ImageShape {
                channels: 1,
                height: 12,
                width: 12,
            },
            channels: vec![3, 5],
            kernel: 3,
            hidden: 7,
            feature_layer: 1,
            norm,
        }
    }

    #[test]
    fn power_iteration_finds_the_largest_singular_value() {
        // w = diag(3, 2, 0.5) between two rotations: singular values 3, 2, 0.5.
        let dev = Device::flex();
        let (c, s) = (0.6f32, 0.8f32);
        let left = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let right = [[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]];
        let d = [3.0f32, 2.0, 0.5];
        let mut w = vec![0f32; 9];
        for i in 0..3 {
            for j in 0..3 {
                w[i * 3 + j] = (0..3).map(|k| left[i][k] * d[k] * right[k][j]).sum();
            }
        }
        let w = Tensor::<2>::from_data(TensorData::new(w, [3, 3]), &dev);
        let mut u = Tensor::<1>::from_data([0.2f32, 0.3, -0.9], &dev);
        for _ in 0..40 {
            u = power_iteration(w.clone(), u).0;
        }
        let (u1, v) = power_iteration(w.clone(), u.clone());
        let sigma = u1
            .reshape([1, 3])
            .matmul(w.clone())
            .matmul(v.clone().reshape([3, 1]))
            .into_scalar::<f32>();
        assert!((sigma - 3.0).abs() < 1e-4, "sigma {sigma}");
        // With the converged vector the normalised matrix maps unit vectors to at most unit
        // length, and its top right singular vector to a unit one.
        let n = spectral_normalised(w, u);
        for x in [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]] {
            let y = n
                .clone()
                .matmul(Tensor::<1>::from_data(x, &dev).reshape([3, 1]));
            let len = (y.clone() * y).sum().sqrt().into_scalar::<f32>();
            assert!(len <= 1.0 + 1e-5, "{len}");
        }
        let y = n.matmul(v.reshape([3, 1]));
        let len = (y.clone() * y).sum().sqrt().into_scalar::<f32>();
        assert!((len - 1.0).abs() < 1e-4, "{len}");
    }

    #[test]
    fn spectral_discriminator_converges_to_unit_norm_layers_and_keeps_its_vectors() {
        let dev = Device::flex();
        let mut d = config(DiscNorm::Spectral).init(&dev);
        assert_eq!(
            d.power.len(),
            4,
            "two convolutions, the dense layer, the logit"
        );
        assert!(d.norms.is_empty());
        for _ in 0..200 {
            d = d.advance_power_iteration();
        }
        // Each layer's estimate approaches the true largest singular value: a further iteration
        // changes it by little, and the normalised weight's estimate is 1.
        let a = d.spectral_norms();
        let b = d.clone().advance_power_iteration().spectral_norms();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-3 * x, "{a:?} vs {b:?}");
        }
        let x = Tensor::<4>::random([4, 1, 12, 12], burn::tensor::Distribution::Default, &dev);
        let j = d.forward(x.clone());
        assert_eq!(j.logits.dims(), [4]);
        assert_eq!(j.features.dims(), [4, 5 * 6 * 6]);
        // The vectors are part of the record: a copy through bytes judges alike.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        crate::checkpoint::save_weights(&d, &path).unwrap();
        let fresh = config(DiscNorm::Spectral).init(&dev);
        let loaded = crate::checkpoint::load_weights(fresh, &path).unwrap();
        assert_eq!(
            loaded.forward(x).logits.into_data(),
            j.logits.into_data(),
            "the loaded discriminator judges differently"
        );
    }

    #[test]
    fn the_spectral_logit_is_lipschitz_in_the_image() {
        // Every layer 1-Lipschitz (after convergence), ReLU too: |D(x) - D(x')| <= ||x - x'||
        // times the convolutions' overlap factor (a k x k kernel at stride s touches each pixel
        // at most ceil(k/s)^2 times; the matrix norm above is of the unrolled kernel). The
        // weights are first made 10 times larger, which an unnormalised network would pass on.
        let dev = Device::flex();
        let mut d = config(DiscNorm::Spectral)
            .init(&dev)
            .map(&mut ScaleWeights(10.0, vec![]));
        for _ in 0..200 {
            d = d.advance_power_iteration();
        }
        let x = Tensor::<4>::random([8, 1, 12, 12], burn::tensor::Distribution::Default, &dev);
        let dx = Tensor::<4>::random(
            [8, 1, 12, 12],
            burn::tensor::Distribution::Normal(0.0, 0.1),
            &dev,
        );
        let a = d.forward(x.clone()).logits;
        let b = d.forward(x + dx.clone()).logits;
        let diff = (a - b).abs().into_data().try_to_vec::<f32>().unwrap();
        let norms = (dx.clone() * dx)
            .sum_dim(1)
            .sum_dim(2)
            .sum_dim(3)
            .sqrt()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let bound = (9.0f32 * 4.0).sqrt(); // ceil(3/1)^2 and ceil(3/2)^2 overlaps
        for (d, n) in diff.iter().zip(&norms) {
            assert!(*d <= bound * n, "|dD| {d} > {bound} * {n}");
        }
    }

    /// Multiplies every weight (not the biases, not the power vectors) by a factor.
    struct ScaleWeights(f32, Vec<String>);

    impl burn::module::ModuleMapper for ScaleWeights {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.1.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let f = self.0;
            match self.1.last().map(String::as_str) {
                Some("weight") => param.map(|t| t.mul_scalar(f)),
                _ => param,
            }
        }
    }

    #[test]
    fn a_spectral_discriminator_ignores_the_scale_of_its_weights() {
        // w / sigma(w) does not change when w is multiplied by c > 0: the logits stay; a batch
        // normalised discriminator's do not (its first convolution and dense layers are not
        // normalised).
        let dev = Device::flex();
        let x = Tensor::<4>::random([4, 1, 12, 12], burn::tensor::Distribution::Default, &dev);
        for (norm, invariant) in [(DiscNorm::Spectral, true), (DiscNorm::Batch, false)] {
            let logits = |d: &Discriminator| {
                let l = d.forward(x.clone()).logits.into_data();
                l.try_to_vec::<f32>().unwrap()
            };
            let d = config(norm).init(&dev);
            let a = logits(&d);
            let b = logits(&d.map(&mut ScaleWeights(10.0, vec![])));
            let same = a
                .iter()
                .zip(&b)
                .all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + p.abs()));
            assert_eq!(same, invariant, "{norm:?}: {a:?} vs {b:?}");
        }
    }
}
