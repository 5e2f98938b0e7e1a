//! Custom backend operations for the CPU: the models' convolutions and dense layers, the
//! Bernoulli likelihood's cross-entropy, the sigmoid, and Adam's update.
//!
//! burn's Flex backend runs a direct convolution and a direct transposed convolution, and
//! computes their gradients with further direct convolutions; on the VAE's small layers these
//! took most of a training step. Here each is one im2col/col2im per image plus one matrix
//! product (our AVX-512 kernel for the small ones, else the `gemm` crate; see [`gemm`]),
//! forward and backward, the images of a batch spread over the threads, the weight gradient
//! summed per thread. The result equals burn's operation to float rounding (tests below,
//! values and gradients).
//!
//! [`conv2d`] and [`conv_transpose2d`] take burn's layer modules, so checkpoints and configs are
//! unchanged, and the activation that follows (ReLU or leaky ReLU), which they apply in the
//! same pass (and take back out of the gradient in the same pass). They use the kernels on the
//! Flex device (with or without autodiff) for f32 layers with a bias and one group, and burn's
//! own operations everywhere else (wgpu, cuda, other layouts).
//!
//! [`linear`] does the same for dense layers (bias and activation fused, see [`linear`]'s
//! module). [`bce_with_logits`] (see [`bce`]), [`sigmoid()`] (see [`sigmoid`](mod@sigmoid)) and
//! [`FusedAdam`] (see [`adam`]) replace chains of elementwise tensor operations by one pass
//! each.
//!
//! Every matrix product goes through [`gemm::matmul`], which runs in f32 or, after
//! [`set_precision`]`(Precision::Bf16)` on a CPU with AVX512-BF16, with bf16 operands and f32
//! accumulation (see [`precision`](mod@precision) and [`gemm_bf16`]).
//!
//! Setting the environment variable `VAEKIT_KERNELS=burn` sends every call to burn's own
//! operations, to compare the two.

pub mod adam;
mod backend;
pub mod bce;
mod buffer;
pub mod conv2d;
pub mod fastmath;
pub mod gemm;
pub mod gemm_bf16;
pub mod gemm_f32;
pub mod geometry;
pub mod linear;
pub mod pool;
pub mod precision;
pub mod sigmoid;

use std::sync::OnceLock;

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::{DType, Device, Tensor};

pub use adam::FusedAdam;
pub use backend::{Conv2dSpec, ConvTranspose2dSpec, LayerBackend, LayerBackward};
pub use bce::{BceBackend, BceBackward, softplus};
pub use conv2d::Activation;
pub use precision::{Precision, precision, set_precision};
pub use sigmoid::{SigmoidBackend, SigmoidBackward};

/// The AVX-512 lane mask of the first `n` of 16 lanes (all 16 for `n >= 16`): what the
/// kernels' masked loads and stores use for a partial vector.
pub(crate) const fn lane_mask(n: usize) -> u16 {
    if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
}

/// The kernels' tests' operands: a 64-bit linear congruential generator, values in [-1, 1).
#[cfg(test)]
pub(crate) fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Whether tensors on `device` run on Flex, the CPU backend these kernels are written for.
pub fn on_flex(device: &Device) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(**inner, DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// False when `VAEKIT_KERNELS=burn` asks for burn's own operations.
fn kernels_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("VAEKIT_KERNELS").map_or(true, |v| v != "burn"))
}

/// Whether this module's CPU kernels take an f32 tensor on `device`: on Flex, unless
/// `VAEKIT_KERNELS=burn`.
pub fn kernels_apply(dtype: DType, device: &Device) -> bool {
    kernels_enabled() && dtype == DType::F32 && on_flex(device)
}

fn use_kernels<const D: usize>(x: &Tensor<D>, groups: usize, act: Activation) -> bool {
    // A negative or NaN slope would break reading the derivative off the output's sign.
    let act_ok = !matches!(act, Activation::LeakyRelu { slope } if slope.is_nan() || slope < 0.0);
    groups == 1 && act_ok && kernels_apply(x.dtype(), &x.device())
}

/// The activation with burn's operations (the path for other devices, and for layers that add
/// something between the product and the activation).
pub fn activate<const D: usize>(x: Tensor<D>, act: Activation) -> Tensor<D> {
    match act {
        Activation::Identity => x,
        Activation::Relu => relu(x),
        Activation::LeakyRelu { slope } => leaky_relu(x, slope as f64),
        Activation::Sigmoid => sigmoid(x),
    }
}

/// The layer's padding as (top, left) and (bottom, right), where it does not depend on the input.
fn explicit_padding(padding: &PaddingConfig2d) -> Option<([usize; 2], [usize; 2])> {
    match *padding {
        PaddingConfig2d::Valid => Some(([0, 0], [0, 0])),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some(([top, left], [bottom, right])),
        PaddingConfig2d::Same => None,
    }
}

/// `act(layer.forward(x))`: `x [batch, c_in, h, w] -> [batch, c_out, oh, ow]`, the activation
/// fused into the convolution on the CPU kernels.
pub fn conv2d(layer: &Conv2d, x: Tensor<4>, act: Activation) -> Tensor<4> {
    match explicit_padding(&layer.padding) {
        Some((pad_begin, pad_end)) if use_kernels(&x, layer.groups, act) => {
            let spec = Conv2dSpec {
                stride: layer.stride,
                pad_begin,
                pad_end,
                dilation: layer.dilation,
                activation: act,
            };
            // A layer without a bias (before a normalisation) adds a constant zero one.
            let bias = match &layer.bias {
                Some(b) => b.val(),
                None => Tensor::zeros([layer.weight.dims()[0]], &x.device()),
            };
            conv2d_with(x, layer.weight.val(), bias, spec)
        }
        _ => activate(layer.forward(x), act),
    }
}

/// `act(layer.forward(x))`: `x [batch, c_in, h, w] -> [batch, c_out, oh, ow]`, the activation
/// fused into the transposed convolution on the CPU kernels.
pub fn conv_transpose2d(layer: &ConvTranspose2d, x: Tensor<4>, act: Activation) -> Tensor<4> {
    match &layer.bias {
        Some(bias) if use_kernels(&x, layer.groups, act) => {
            let spec = ConvTranspose2dSpec {
                stride: layer.stride,
                padding: layer.padding,
                padding_out: layer.padding_out,
                dilation: layer.dilation,
                activation: act,
            };
            conv_transpose2d_with(x, layer.weight.val(), bias.val(), spec)
        }
        _ => activate(layer.forward(x), act),
    }
}

/// `act(layer.forward(x))`: `x [batch, d_input] -> [batch, d_output]`, the bias and the
/// activation in the same pass on the CPU kernels.
pub fn linear(layer: &Linear, x: Tensor<2>, act: Activation) -> Tensor<2> {
    match &layer.bias {
        Some(bias) if use_kernels(&x, 1, act) => {
            Tensor::from_dispatch(<Dispatch as LayerBackend>::vaekit_linear(
                x.into_dispatch(),
                layer.weight.val().into_dispatch(),
                bias.val().into_dispatch(),
                act,
            ))
        }
        _ => activate(layer.forward(x), act),
    }
}

/// The custom convolution on tensors (Flex device, f32): `x [n, c_in, h, w]`,
/// `weight [c_out, c_in, kh, kw]`, `bias [c_out]` -> `[n, c_out, oh, ow]`.
pub fn conv2d_with(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    spec: Conv2dSpec,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::vaekit_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        spec,
    ))
}

/// The custom transposed convolution on tensors (Flex device, f32): `x [n, c_in, h, w]`,
/// `weight [c_in, c_out, kh, kw]`, `bias [c_out]` -> `[n, c_out, oh, ow]`.
pub fn conv_transpose2d_with(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    spec: ConvTranspose2dSpec,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as LayerBackend>::vaekit_conv_transpose2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        spec,
    ))
}

/// Binary cross-entropy with logits summed per row, `softplus(l) - x l` over the columns:
/// `logits`, `x` `[rows, cols]` -> `[rows]`. The CPU kernel of the [`bce`] module where
/// [`kernels_apply`], burn's operations (with [`softplus`]) elsewhere.
pub fn bce_with_logits(logits: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
    if kernels_apply(logits.dtype(), &logits.device()) {
        Tensor::from_dispatch(<Dispatch as BceBackend>::vaekit_bce_with_logits(
            logits.into_dispatch(),
            x.into_dispatch(),
        ))
    } else {
        (softplus(logits.clone()) - x * logits)
            .sum_dim(1)
            .squeeze_dim::<1>(1)
    }
}

/// The logistic sigmoid of every element: the vectorised CPU kernel of the [`sigmoid`](mod@sigmoid)
/// module where [`kernels_apply`], burn's `sigmoid` elsewhere.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if kernels_apply(x.dtype(), &x.device()) {
        Tensor::from_dispatch(<Dispatch as SigmoidBackend>::vaekit_sigmoid(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::sigmoid(x)
    }
}

#[cfg(test)]
mod tests;
