//! The models' layers (convolution, transposed convolution, dense) as a burn backend extension:
//! implemented on Flex (CPU) by the kernels of [`super::conv2d`] and [`super::linear`], and on
//! `Autodiff<Flex>` with a hand-written backward pass that calls the same kernels. Other
//! backends (wgpu, cuda) never reach this trait: the callers in [`super`] route them to burn's
//! own operations. The small Flex helpers at the top are shared with the other ops.

use burn::backend::autodiff::{
    Autodiff, NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension, tensor::FloatTensor};
use burn::tensor::TensorData;

use super::conv2d::{self, Activation, ConvGrads};
use super::geometry::ConvGeometry;
use super::linear;

/// Steps and padding of a convolution (`x [n, c_in, h, w]`, `weight [c_out, c_in, kh, kw]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dSpec {
    pub stride: [usize; 2],
    /// Top and left zero padding.
    pub pad_begin: [usize; 2],
    /// Bottom and right zero padding.
    pub pad_end: [usize; 2],
    pub dilation: [usize; 2],
    /// Applied to the output (bias included) in the same pass.
    pub activation: Activation,
}

/// Steps and padding of a transposed convolution (`x [n, c_in, h, w]`,
/// `weight [c_in, c_out, kh, kw]`), as PyTorch's `ConvTranspose2d` takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvTranspose2dSpec {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// Extra rows and columns at the bottom and right of the output.
    pub padding_out: [usize; 2],
    pub dilation: [usize; 2],
    /// Applied to the output (bias included) in the same pass.
    pub activation: Activation,
}

impl Conv2dSpec {
    /// The geometry for input `[_, c_in, h, w]` and weight `[_, c_in, kh, kw]`, or `None` if
    /// the kernel does not fit.
    pub fn geometry(&self, x: [usize; 4], weight: [usize; 4]) -> Option<ConvGeometry> {
        let in_size = [x[2], x[3]];
        let kernel = [weight[2], weight[3]];
        let out_size = ConvGeometry::output_size(
            in_size,
            kernel,
            self.stride,
            self.pad_begin,
            self.pad_end,
            self.dilation,
        )?;
        Some(ConvGeometry {
            channels: x[1],
            in_size,
            out_size,
            kernel,
            stride: self.stride,
            padding: self.pad_begin,
            dilation: self.dilation,
        })
    }
}

impl ConvTranspose2dSpec {
    /// Output height and width for input height and width `in_size` and kernel `kernel`:
    /// `(in - 1) * stride - 2 * padding + dilation * (k - 1) + padding_out + 1`, or `None`
    /// where that is not positive.
    pub fn output_size(&self, in_size: [usize; 2], kernel: [usize; 2]) -> Option<[usize; 2]> {
        let axis = |i: usize| {
            let full = (in_size[i].checked_sub(1)?) * self.stride[i]
                + self.dilation[i] * (kernel[i] - 1)
                + self.padding_out[i]
                + 1;
            full.checked_sub(2 * self.padding[i]).filter(|&s| s > 0)
        };
        Some([axis(0)?, axis(1)?])
    }

    /// The geometry of the convolution from the output `[_, c_out, oh, ow]` back to the input
    /// `[_, c_in, h, w]` (weight `[c_in, c_out, kh, kw]`).
    pub fn geometry(&self, x: [usize; 4], weight: [usize; 4]) -> Option<ConvGeometry> {
        let kernel = [weight[2], weight[3]];
        Some(ConvGeometry {
            channels: weight[1],
            in_size: self.output_size([x[2], x[3]], kernel)?,
            out_size: [x[2], x[3]],
            kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        })
    }
}

/// The layers as backend operations (bias required, one group, f32).
#[backend_extension(Flex, Autodiff)]
pub trait LayerBackend: Backend {
    /// `y [n, c_out, oh, ow]` from `x [n, c_in, h, w]`, `weight [c_out, c_in, kh, kw]`,
    /// `bias [c_out]`.
    fn vaekit_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: Conv2dSpec,
    ) -> FloatTensor<Self>;

    /// `y [n, c_out, oh, ow]` from `x [n, c_in, h, w]`, `weight [c_in, c_out, kh, kw]`,
    /// `bias [c_out]`.
    fn vaekit_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvTranspose2dSpec,
    ) -> FloatTensor<Self>;

    /// `y [m, n] = act(x weight + bias)` from `x [m, k]`, `weight [k, n]`, `bias [n]`.
    fn vaekit_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self>;
}

/// The gradients of [`LayerBackend`]'s operations on a concrete backend: `(dx if need_x, dweight
/// and dbias if need_w)` from `x`, `weight`, `grad = dL/dy` and the forward output `y` (needed
/// when the spec has an activation). A layer whose weights are constants (a network judged or
/// run with its weights frozen) computes no weight gradient.
pub trait LayerBackward: Backend {
    fn vaekit_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        y: Option<FloatTensor<Self>>,
        spec: Conv2dSpec,
        need_x: bool,
        need_w: bool,
    ) -> Grads<Self>;

    fn vaekit_conv_transpose2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        y: Option<FloatTensor<Self>>,
        spec: ConvTranspose2dSpec,
        need_x: bool,
        need_w: bool,
    ) -> Grads<Self>;

    fn vaekit_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        y: Option<FloatTensor<Self>>,
        activation: Activation,
        need_x: bool,
        need_w: bool,
    ) -> Grads<Self>;
}

/// `(dx, dweight, dbias)` as backend tensors, each where it was asked for.
pub type Grads<B> = (
    Option<FloatTensor<B>>,
    Option<FloatTensor<B>>,
    Option<FloatTensor<B>>,
);

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let dims = t.shape().to_vec();
    dims.try_into().expect("a 4-d tensor")
}

/// The tensor's values in row-major order (a copy only if it is a strided view).
pub(super) fn values(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// A contiguous f32 tensor's values (see [`values`]).
pub(super) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("vaekit conv kernels take contiguous f32 tensors")
}

/// A Flex tensor owning `data`, of shape `shape`.
pub(super) fn flex(data: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape.to_vec()))
}

fn flex_grads(grads: ConvGrads, x: &[usize], weight: &[usize], need_w: bool) -> Grads<Flex> {
    let bias_len = grads.bias.len();
    (
        grads.x.map(|gx| flex(gx, x)),
        need_w.then(|| flex(grads.weight, weight)),
        need_w.then(|| flex(grads.bias, &[bias_len])),
    )
}

pub(super) fn dims2(t: &FlexTensor) -> [usize; 2] {
    let dims = t.shape().to_vec();
    dims.try_into().expect("a 2-d tensor")
}

/// `(m, k, n)` of a dense layer's `x [m, k]` and `weight [k, n]`.
fn linear_sizes(x: &FlexTensor, weight: &FlexTensor) -> (usize, usize, usize) {
    let ([m, k], [kw, n]) = (dims2(x), dims2(weight));
    assert_eq!(k, kw, "linear: input features {k} vs weight [{kw}, {n}]");
    (m, k, n)
}

fn conv_geometry(spec: &Conv2dSpec, x: [usize; 4], w: [usize; 4]) -> ConvGeometry {
    assert_eq!(
        x[1], w[1],
        "conv2d: input channels {} vs weight {:?}",
        x[1], w
    );
    spec.geometry(x, w)
        .expect("conv2d: kernel larger than the padded input")
}

fn conv_transpose_geometry(
    spec: &ConvTranspose2dSpec,
    x: [usize; 4],
    w: [usize; 4],
) -> ConvGeometry {
    assert_eq!(
        x[1], w[0],
        "conv_transpose2d: input channels {} vs weight {:?}",
        x[1], w
    );
    spec.geometry(x, w).expect("conv_transpose2d: empty output")
}

impl LayerBackend for Flex {
    fn vaekit_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        spec: Conv2dSpec,
    ) -> FlexTensor {
        let (xd, wd) = (dims4(&x), dims4(&weight));
        let g = conv_geometry(&spec, xd, wd);
        let (x, weight, bias) = (values(&x), values(&weight), values(&bias));
        let y = conv2d::conv2d_forward(
            &g,
            xd[0],
            wd[0],
            f32s(&x),
            f32s(&weight),
            f32s(&bias),
            spec.activation,
        );
        flex(y, &[xd[0], wd[0], g.out_size[0], g.out_size[1]])
    }

    fn vaekit_conv_transpose2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        spec: ConvTranspose2dSpec,
    ) -> FlexTensor {
        let (xd, wd) = (dims4(&x), dims4(&weight));
        let g = conv_transpose_geometry(&spec, xd, wd);
        let (x, weight, bias) = (values(&x), values(&weight), values(&bias));
        let y = conv2d::conv_transpose2d_forward(
            &g,
            xd[0],
            xd[1],
            f32s(&x),
            f32s(&weight),
            f32s(&bias),
            spec.activation,
        );
        flex(y, &[xd[0], wd[1], g.in_size[0], g.in_size[1]])
    }

    fn vaekit_linear(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        activation: Activation,
    ) -> FlexTensor {
        let (m, k, n) = linear_sizes(&x, &weight);
        let (x, weight, bias) = (values(&x), values(&weight), values(&bias));
        let y = linear::linear_forward(f32s(&x), f32s(&weight), f32s(&bias), m, k, n, activation);
        flex(y, &[m, n])
    }
}

/// A backward kernel of [`conv2d`]: `(geometry, batch, channels, x, weight, grad, activation,
/// output, need_x, need_w)`, `channels` being the convolution's output channels or the transposed
/// convolution's input channels.
type BackwardKernel = fn(
    &ConvGeometry,
    usize,
    usize,
    &[f32],
    &[f32],
    &[f32],
    Activation,
    Option<&[f32]>,
    bool,
    bool,
) -> ConvGrads;

/// Runs a backward kernel on Flex tensors and wraps its gradients.
#[allow(clippy::too_many_arguments)]
fn flex_backward(
    kernel: BackwardKernel,
    g: &ConvGeometry,
    channels: usize,
    x: FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
    y: Option<FlexTensor>,
    activation: Activation,
    need_x: bool,
    need_w: bool,
) -> Grads<Flex> {
    let (xd, wd) = (dims4(&x), dims4(&weight));
    let (x, weight, grad) = (values(&x), values(&weight), values(&grad));
    let y = y.as_ref().map(values);
    let grads = kernel(
        g,
        xd[0],
        channels,
        f32s(&x),
        f32s(&weight),
        f32s(&grad),
        activation,
        y.as_ref().map(f32s),
        need_x,
        need_w,
    );
    flex_grads(grads, &xd, &wd, need_w)
}

impl LayerBackward for Flex {
    fn vaekit_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        y: Option<FlexTensor>,
        spec: Conv2dSpec,
        need_x: bool,
        need_w: bool,
    ) -> Grads<Flex> {
        let (xd, wd) = (dims4(&x), dims4(&weight));
        let g = conv_geometry(&spec, xd, wd);
        let kernel = conv2d::conv2d_backward;
        flex_backward(
            kernel,
            &g,
            wd[0],
            x,
            weight,
            grad,
            y,
            spec.activation,
            need_x,
            need_w,
        )
    }

    fn vaekit_conv_transpose2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        y: Option<FlexTensor>,
        spec: ConvTranspose2dSpec,
        need_x: bool,
        need_w: bool,
    ) -> Grads<Flex> {
        let (xd, wd) = (dims4(&x), dims4(&weight));
        let g = conv_transpose_geometry(&spec, xd, wd);
        let kernel = conv2d::conv_transpose2d_backward;
        flex_backward(
            kernel,
            &g,
            xd[1],
            x,
            weight,
            grad,
            y,
            spec.activation,
            need_x,
            need_w,
        )
    }

    fn vaekit_linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        y: Option<FlexTensor>,
        activation: Activation,
        need_x: bool,
        need_w: bool,
    ) -> Grads<Flex> {
        let (m, k, n) = linear_sizes(&x, &weight);
        let (x, weight, grad) = (values(&x), values(&weight), values(&grad));
        let y = y.as_ref().map(values);
        let grads = linear::linear_backward(
            f32s(&x),
            f32s(&weight),
            f32s(&grad),
            y.as_ref().map(f32s),
            m,
            k,
            n,
            activation,
            need_x,
            need_w,
        );
        flex_grads(grads, &[m, k], &[k, n], need_w)
    }
}

/// Which of the two operations a backward node belongs to.
#[derive(Clone, Copy, Debug)]
enum Spec {
    Conv(Conv2dSpec),
    ConvTranspose(ConvTranspose2dSpec),
    Linear(Activation),
}

#[derive(Debug)]
struct LayerNode;

impl<B: LayerBackward> Backward<B, 3> for LayerNode {
    /// x, the weight, the operation, and its output when it has an activation.
    type State = (NodeId, NodeId, Spec, Option<B::FloatTensorPrimitive>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, spec, y) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let need_x = node_x.is_some();
        let need_w = node_weight.is_some() || node_bias.is_some();
        let (dx, dweight, dbias) = match spec {
            Spec::Conv(spec) => B::vaekit_conv2d_backward(x, weight, grad, y, spec, need_x, need_w),
            Spec::ConvTranspose(spec) => {
                B::vaekit_conv_transpose2d_backward(x, weight, grad, y, spec, need_x, need_w)
            }
            Spec::Linear(act) => B::vaekit_linear_backward(x, weight, grad, y, act, need_x, need_w),
        };
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_weight, dweight) {
            grads.register::<B>(node.id, dw);
        }
        if let (Some(node), Some(db)) = (node_bias, dbias) {
            grads.register::<B>(node.id, db);
        }
    }
}

impl Spec {
    fn activation(&self) -> Activation {
        match self {
            Spec::Conv(spec) => spec.activation,
            Spec::ConvTranspose(spec) => spec.activation,
            Spec::Linear(act) => *act,
        }
    }
}

/// Runs `forward` on the inner backend and, when any input is tracked, records a [`LayerNode`]
/// keeping x, the weight and (for an activation) the output for the backward pass.
fn record<B: LayerBackward, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    spec: Spec,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match LayerNode
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (x_state, weight_state) = (prep.checkpoint(&x), prep.checkpoint(&weight));
            let y = forward(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            );
            let keep_y = (spec.activation() != Activation::Identity).then(|| y.clone());
            prep.finish((x_state, weight_state, spec, keep_y), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        )),
    }
}

impl<B: LayerBackend + LayerBackward, C: CheckpointStrategy> LayerBackend for Autodiff<B, C> {
    fn vaekit_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: Conv2dSpec,
    ) -> FloatTensor<Self> {
        record::<B, C>(x, weight, bias, Spec::Conv(spec), |x, w, b| {
            B::vaekit_conv2d(x, w, b, spec)
        })
    }

    fn vaekit_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvTranspose2dSpec,
    ) -> FloatTensor<Self> {
        record::<B, C>(x, weight, bias, Spec::ConvTranspose(spec), |x, w, b| {
            B::vaekit_conv_transpose2d(x, w, b, spec)
        })
    }

    fn vaekit_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self> {
        record::<B, C>(x, weight, bias, Spec::Linear(activation), |x, w, b| {
            B::vaekit_linear(x, w, b, activation)
        })
    }
}
