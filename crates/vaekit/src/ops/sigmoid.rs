//! The logistic sigmoid as one backend operation on CPU: the decoder's mean image.
//!
//! burn's Flex sigmoid calls the C library's `expf` once per element; decoding a batch of MLP
//! samples spent most of its time there. Here it is [`fastmath::sigmoid`] in a loop compiled for
//! the CPU's vector width, forward, and `g y (1 - y)` backward from the saved output.

use super::buffer::filled;
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension, tensor::FloatTensor};

use super::backend::{f32s, flex, values};
use super::fastmath::{self, simd_dispatch};

/// Elements per task.
const CHUNK: usize = 1 << 14;

simd_dispatch! {
    /// `y = 1 / (1 + e^-x)`.
    fn sigmoid_chunk(y: &mut [f32], x: &[f32]) -> () {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = fastmath::sigmoid(x);
        }
    }
}

simd_dispatch! {
    /// `d = g y (1 - y)`.
    pub(crate) fn sigmoid_grad_chunk(d: &mut [f32], y: &[f32], g: &[f32]) -> () {
        for ((d, &y), &g) in d.iter_mut().zip(y).zip(g) {
            *d = g * y * (1.0 - y);
        }
    }
}

/// The sigmoid of every element.
pub fn sigmoid_forward(x: &[f32]) -> Vec<f32> {
    filled(x.len(), CHUNK, |i, y| {
        sigmoid_chunk(y, &x[i * CHUNK..i * CHUNK + y.len()])
    })
}

/// The gradient of [`sigmoid_forward`] from its output `y` and `grad = dL/dy`.
pub fn sigmoid_backward(y: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(y.len(), grad.len(), "sigmoid: gradient size");
    filled(y.len(), CHUNK, |i, d| {
        let r = i * CHUNK..i * CHUNK + d.len();
        sigmoid_grad_chunk(d, &y[r.clone()], &grad[r])
    })
}

/// The sigmoid as a backend operation (Flex and `Autodiff<Flex>`).
#[backend_extension(Flex, Autodiff)]
pub trait SigmoidBackend: Backend {
    /// Elementwise, any shape.
    fn vaekit_sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The gradient of [`SigmoidBackend`]'s operation from its output and `dL/dy`.
pub trait SigmoidBackward: Backend {
    fn vaekit_sigmoid_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SigmoidBackend for Flex {
    fn vaekit_sigmoid(x: FlexTensor) -> FlexTensor {
        let x = values(&x);
        flex(sigmoid_forward(f32s(&x)), &x.shape().to_vec())
    }
}

impl SigmoidBackward for Flex {
    fn vaekit_sigmoid_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (y, grad) = (values(&y), values(&grad));
        flex(sigmoid_backward(f32s(&y), f32s(&grad)), &y.shape().to_vec())
    }
}

#[derive(Debug)]
struct SigmoidNode;

impl<B: SigmoidBackward> Backward<B, 1> for SigmoidNode {
    /// The output.
    type State = B::FloatTensorPrimitive;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::vaekit_sigmoid_backward(ops.state, grad));
        }
    }
}

impl<B: SigmoidBackend + SigmoidBackward, C: CheckpointStrategy> SigmoidBackend for Autodiff<B, C> {
    fn vaekit_sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SigmoidNode
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::vaekit_sigmoid(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::vaekit_sigmoid(x.into_primitive())),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::sigmoid as burn_sigmoid;
    use burn::tensor::{Device, Tensor, TensorData};

    use crate::ops::sigmoid;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// Values and gradient against burn's sigmoid, on a 4-d tensor spanning [-50, 50] (several
    /// tasks and a short last one), with a non-uniform upstream gradient; and a strided view.
    #[test]
    fn equals_burns_sigmoid_values_and_gradient() {
        let device = Device::flex().autodiff();
        let n = 3 * 5 * 41 * 67; // 41,205 elements
        let on = crate::ops::kernels_apply(burn::tensor::DType::F32, &device);
        assert!(on, "the kernel runs");
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 10_001) as f32 / 100.0 - 50.0)
            .collect();
        let up: Vec<f32> = (0..n).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
        let upstream = Tensor::<4>::from_data(TensorData::new(up, [3, 5, 41, 67]), &device);
        let run = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [3, 5, 41, 67]), &device)
                .require_grad();
            let y = f(x.clone());
            let g = (y.clone() * upstream.clone()).sum().backward();
            (values(y), values(x.grad(&g).unwrap()))
        };
        let (y, dx) = run(&|x| sigmoid(x));
        let (y_ref, dx_ref) = run(&|x| burn_sigmoid(x));
        for i in 0..n {
            assert!(
                (y[i] - y_ref[i]).abs() <= 1e-6,
                "y[{i}]: {} vs {}",
                y[i],
                y_ref[i]
            );
            assert!(
                (dx[i] - dx_ref[i]).abs() <= 1e-6,
                "dx[{i}]: {} vs {}",
                dx[i],
                dx_ref[i]
            );
        }
        // A transposed (non-contiguous) input.
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![-2.0, 0.0, 1.0, 3.0, -1.0, 5.0], [2, 3]),
            &device,
        );
        let (a, b) = (
            values(sigmoid(x.clone().transpose())),
            values(burn_sigmoid(x.transpose())),
        );
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }
}
