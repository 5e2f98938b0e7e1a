//! Adam's update of one parameter tensor as a single pass on CPU.
//!
//! burn's `Adam` builds the update from tensor operations: about a dozen passes over the
//! parameter, its gradient and the two moments, each allocating its result. On the MLP VAE's
//! 650k parameters that was a tenth of a training step. [`FusedAdam`] does the same arithmetic
//! (burn's formulas, in the same order) in one pass over the four buffers, in place where the
//! buffers are not shared, split over rayon's threads. It keeps burn's [`AdamState`], so the
//! optimiser state it saves is burn's and a checkpoint written by either optimiser resumes with
//! the other. Off Flex (wgpu, cuda) and for other float types it runs burn's `Adam`.

use burn::backend::flex::FlexTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension, tensor::FloatTensor};
use burn::optim::{Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::fastmath::simd_dispatch;
use super::kernels_apply;

/// The scalars of one Adam step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// The step's number, 1 for the first (the bias corrections use it).
    pub time: i32,
}

impl AdamStep {
    /// burn's bias corrections: `(sqrt(1 - beta2^t) / (1 - beta1^t), epsilon * sqrt(1 - beta2^t))`.
    fn factors(&self) -> (f32, f32) {
        let bc2_sqrt = (1.0 - self.beta2.powi(self.time)).sqrt();
        (
            bc2_sqrt / (1.0 - self.beta1.powi(self.time)),
            self.epsilon * bc2_sqrt,
        )
    }
}

/// Elements per task: small tensors (biases) run on the calling thread.
const CHUNK: usize = 1 << 14;

/// One Adam step in place: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `p -= lr * (m * c) / (sqrt(v) + eps')` with burn's bias corrections `c` and `eps'`.
/// All four slices have the same length.
pub fn adam_update(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
    assert!(
        grad.len() == param.len() && m.len() == param.len() && v.len() == param.len(),
        "adam_update: lengths differ"
    );
    let (factor, eps) = s.factors();
    let (b1, b2, lr) = (s.beta1, s.beta2, s.lr);
    let (c1, c2) = (1.0 - b1, 1.0 - b2);
    param
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| update_chunk(p, g, m, v, [b1, c1, b2, c2, factor, eps, lr]));
}

simd_dispatch! {
    /// [`adam_update`] on one chunk; `k` is `[b1, 1 - b1, b2, 1 - b2, factor, eps', lr]`.
    fn update_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 7]) -> () {
        let [b1, c1, b2, c2, factor, eps, lr] = k;
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *m = *m * b1 + g * c1;
            *v = *v * b2 + (g * g) * c2;
            *p -= (*m * factor) / (v.sqrt() + eps) * lr;
        }
    }
}

/// The Adam step as a backend operation (Flex only; other backends never call it).
#[backend_extension(Flex)]
pub trait AdamBackend: Backend {
    /// `(param, m, v)` after one step, from the parameter, its gradient and the two moments
    /// (all the same shape).
    fn vaekit_adam_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The tensor with its own contiguous buffer and nothing else in it (copied only if it is a
/// view).
fn whole(t: FlexTensor) -> FlexTensor {
    let is_whole = t
        .as_slice::<f32>()
        .is_some_and(|s| s.len() == t.storage::<f32>().len());
    if is_whole { t } else { t.to_contiguous() }
}

impl AdamBackend for Flex {
    fn vaekit_adam_step(
        param: FlexTensor,
        grad: FlexTensor,
        m: FlexTensor,
        v: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (mut param, grad, mut m, mut v) = (whole(param), whole(grad), whole(m), whole(v));
        // storage_mut copies a buffer only when something else still holds it.
        adam_update(
            param.storage_mut::<f32>(),
            grad.storage::<f32>(),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
            &step,
        );
        (param, m, v)
    }
}

/// Adam (no weight decay, no AMSGrad) with the update of [`adam_update`] on the CPU and burn's
/// `Adam` elsewhere. Use it through burn's `ModuleOptimizer::from`.
#[derive(Clone)]
pub struct FusedAdam {
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    fallback: Adam,
}

impl FusedAdam {
    /// Adam with the given decay rates and epsilon (burn's `AdamConfig` names and meanings).
    pub fn new(beta1: f32, beta2: f32, epsilon: f32) -> Self {
        let fallback = AdamConfig::new()
            .with_beta_1(beta1)
            .with_beta_2(beta2)
            .with_epsilon(epsilon)
            .build();
        Self {
            beta1,
            beta2,
            epsilon,
            fallback,
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !kernels_apply(tensor.dtype(), &tensor.device()) {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let (m, v, time) = match state {
            Some(s) => (
                s.momentum.moment_1,
                s.momentum.moment_2,
                s.momentum.time + 1,
            ),
            None => (grad.zeros_like(), grad.zeros_like(), 1),
        };
        let step = AdamStep {
            lr: lr as f32,
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: self.epsilon,
            time: time as i32,
        };
        let (p, m, v) = <Dispatch as AdamBackend>::vaekit_adam_step(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            step,
        );
        let momentum =
            AdaptiveMomentumState::new(time, Tensor::from_dispatch(m), Tensor::from_dispatch(v));
        (Tensor::from_dispatch(p), Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, ModuleOptimizer};
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    fn net(device: &Device) -> Net {
        Net {
            a: LinearConfig::new(9, 33).init(device),
            b: LinearConfig::new(33, 5).init(device),
        }
    }

    fn grads(net: &Net, step: usize, device: &Device) -> GradientsParams {
        // A different batch each step, so the moments see different gradients.
        let v: Vec<f32> = (0..36).map(|i| ((i * 7 + step * 3) as f32).sin()).collect();
        let x = Tensor::<2>::from_data(TensorData::new(v, [4, 9]), device);
        let y = net.b.forward(net.a.forward(x).tanh());
        let loss = (y.clone() * y).sum();
        GradientsParams::from_grads(loss.backward(), net)
    }

    fn params(net: &Net) -> Vec<f32> {
        let mut out = Vec::new();
        for t in [
            net.a.weight.val().flatten::<1>(0, 1),
            net.b.weight.val().flatten(0, 1),
        ] {
            out.extend(t.into_data().try_into_vec::<f32>().unwrap());
        }
        for b in [&net.a.bias, &net.b.bias] {
            out.extend(
                b.as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap(),
            );
        }
        out
    }

    fn burn_adam() -> ModuleOptimizer {
        AdamConfig::new()
            .with_beta_1(0.8)
            .with_beta_2(0.99)
            .with_epsilon(1e-8)
            .init()
    }

    fn fused_adam() -> ModuleOptimizer {
        ModuleOptimizer::from(FusedAdam::new(0.8, 0.99, 1e-8))
    }

    /// Steps `optim` from `net` `steps` times from step number `from`.
    fn run(
        mut net: Net,
        optim: &mut ModuleOptimizer,
        from: usize,
        steps: usize,
        device: &Device,
    ) -> Net {
        for s in from..from + steps {
            let g = grads(&net, s, device);
            net = optim.step(1e-2, net, g);
        }
        net
    }

    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-6, "{what}[{i}]: fused {x} vs burn {y}");
        }
    }

    #[test]
    fn one_step_from_zero_moments_moves_each_weight_by_about_lr() {
        // First step: m = (1 - b1) g, v = (1 - b2) g^2, so the bias-corrected update is
        // lr * g / |g| (up to epsilon), whatever the gradient's size.
        let n = 3 * CHUNK + 17; // several tasks and a short last one
        let g: Vec<f32> = (0..n)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.37 + 0.01)
            .collect();
        let mut p = vec![1.0f32; n];
        let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
        let s = AdamStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            time: 1,
        };
        adam_update(&mut p, &g, &mut m, &mut v, &s);
        for i in 0..n {
            assert!((m[i] - 0.1 * g[i]).abs() <= 1e-7, "m[{i}]");
            assert!((v[i] - 0.001 * g[i] * g[i]).abs() <= 1e-7, "v[{i}]");
            let want = 1.0 - 0.1 * g[i].signum();
            assert!((p[i] - want).abs() <= 1e-5, "p[{i}] = {} want {want}", p[i]);
        }
    }

    #[test]
    fn matches_burns_adam_step_after_step() {
        let device = Device::flex().autodiff();
        let start = net(&device);
        assert!(
            kernels_apply(burn::tensor::DType::F32, &device),
            "the fused path runs"
        );
        let fused = run(start.clone(), &mut fused_adam(), 0, 6, &device);
        let reference = run(start, &mut burn_adam(), 0, 6, &device);
        assert_close("params", &params(&fused), &params(&reference));
    }

    #[test]
    fn resumes_from_burns_saved_state_and_burn_from_its_own() {
        let device = Device::flex().autodiff();
        let mut burn_optim = burn_adam();
        let mid = run(net(&device), &mut burn_optim, 0, 3, &device);
        let saved = burn_optim.into_bytes().unwrap();
        let reference = run(mid.clone(), &mut burn_optim, 3, 3, &device);

        let mut fused = fused_adam().from_bytes(saved).unwrap();
        let resumed = run(mid.clone(), &mut fused, 3, 3, &device);
        assert_close("burn -> fused", &params(&resumed), &params(&reference));

        // And the other way: the fused optimiser's state loads into burn's.
        let mut fused = fused_adam();
        let mid = run(net(&device), &mut fused, 0, 3, &device);
        let mut burn_optim = burn_adam().from_bytes(fused.into_bytes().unwrap()).unwrap();
        let resumed = run(mid.clone(), &mut burn_optim, 3, 3, &device);
        let reference = run(mid, &mut fused, 3, 3, &device);
        assert_close("fused -> burn", &params(&resumed), &params(&reference));
    }
}
