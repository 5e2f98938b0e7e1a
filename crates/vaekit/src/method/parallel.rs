//! Data parallelism over the devices of one process, as burn-train's multi-device strategy
//! does it: the batch is split into one contiguous shard per device, each device computes the
//! gradients of its shard on a fork of the model (its loss weighted by its share of the batch),
//! the gradients move to the main device (`GradientsParams::to_device`) and are summed
//! (`GradientsAccumulator`). The sum is the gradient of the whole batch's mean loss, so one
//! optimiser step then equals the single-device step on the whole batch, up to float rounding.
//!
//! Free bits are the one exception: the floor applies to each shard's batch-averaged KL, as in
//! PyTorch's DistributedDataParallel.

use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

use crate::collective::Collective;
use crate::config::TrainConfig;
use crate::model::Vae;
use crate::objective::training_terms;

/// The reported terms of one step (means over the batch) and the gradients of its loss.
pub struct StepGradients {
    /// The objective.
    pub loss: f64,
    /// The reconstruction term.
    pub recon: f64,
    /// The KL term.
    pub kl: f64,
    /// Gradients for the model's parameters on the main device; `None` when the loss was
    /// not finite (no backward pass was run).
    pub grads: Option<GradientsParams>,
}

/// Contiguous ranges splitting `n` rows over `parts` parts, sizes differing by at most one,
/// empty parts left out.
pub fn shard_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    (0..parts)
        .map(|p| (p * n / parts)..((p + 1) * n / parts))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The rows of sample-major noise (`k` blocks of `b` rows of width `width`) that belong to
/// images `r`, still sample-major.
fn noise_rows(eps: &[f32], k: usize, b: usize, width: usize, r: &Range<usize>) -> Vec<f32> {
    (0..k)
        .flat_map(|s| {
            eps[(s * b + r.start) * width..(s * b + r.end) * width]
                .iter()
                .copied()
        })
        .collect()
}

/// Which images of a step's whole batch this process holds: several processes (MPI ranks)
/// each hold a contiguous part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Portion {
    /// The part's rows within the whole batch.
    pub rows: Range<usize>,
    /// Images in the whole batch, over all processes.
    pub whole: usize,
}

impl Portion {
    /// All of a batch of `b` images.
    pub fn all(b: usize) -> Portion {
        Portion {
            rows: 0..b,
            whole: b,
        }
    }
}

/// The loss terms and gradients of `cfg`'s objective on images `x` with labels `labels`, rows
/// `portion.rows` of a step's whole batch, with the whole batch's noise `eps` (`k * whole`
/// sample-major rows of `model.noise_dim()`), at KL weight `beta`, computed on `devices`
/// (autodiff devices, the first the main one, where `model` lives and the gradients end). The
/// values and gradients are this part's share of the whole batch's means: summed over all parts
/// (processes) they are the whole batch's. One device computes it directly; several split the
/// part.
///
/// # Shapes
/// `x`: `[b, c, h, w]` with `b = portion.rows.len()`, `eps`: `k * portion.whole * noise_dim`
/// values
#[allow(clippy::too_many_arguments)]
pub fn step_gradients(
    model: &Vae,
    cfg: &TrainConfig,
    devices: &[Device],
    x: Tensor<4>,
    labels: &[u32],
    eps: &[f32],
    beta: f64,
    portion: &Portion,
) -> StepGradients {
    let b = labels.len();
    let (k, width) = (cfg.objective.samples(), model.noise_dim());
    let shard = |model: &Vae, device: &Device, x: Tensor<4>, r: &Range<usize>| {
        let rows = r.len();
        let y = model.condition(&labels[r.clone()], device);
        let global = (portion.rows.start + r.start)..(portion.rows.start + r.end);
        let eps = noise_rows(eps, k, portion.whole, width, &global);
        let eps = Tensor::from_data(TensorData::new(eps, [k * rows, width]), device);
        let terms = training_terms(
            model,
            x,
            y,
            eps,
            cfg.objective,
            cfg.model.likelihood,
            beta,
            cfg.free_bits,
        );
        let scalar = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let share = rows as f64 / portion.whole as f64;
        let values = [
            scalar(terms.loss.clone()),
            scalar(terms.recon),
            scalar(terms.kl),
        ];
        let grads = values[0]
            .is_finite()
            .then(|| GradientsParams::from_grads(terms.loss.mul_scalar(share).backward(), model));
        (values.map(|v| v * share), grads)
    };

    let ranges = shard_ranges(b, devices.len());
    if ranges.len() <= 1 {
        let ([loss, recon, kl], grads) = shard(model, &devices[0], x, &(0..b));
        return StepGradients {
            loss,
            recon,
            kl,
            grads,
        };
    }
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = ranges
            .iter()
            .zip(devices)
            .map(|(r, device)| {
                let replica = model.clone().fork(device);
                let xs = x.clone().slice([r.clone()]).to_device(device);
                let shard = &shard;
                s.spawn(move || {
                    let (values, grads) = shard(&replica, device, xs, r);
                    (values, grads.map(|g| g.to_device(&devices[0], &replica)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a device's share of the step panicked"))
            .collect::<Vec<_>>()
    });
    let mut sums = [0.0f64; 3];
    let mut accumulator = GradientsAccumulator::<Vae>::new();
    let mut finite = true;
    for (values, grads) in results {
        for (s, v) in sums.iter_mut().zip(values) {
            *s += v;
        }
        match grads {
            Some(g) => accumulator.accumulate(model, g),
            None => finite = false,
        }
    }
    StepGradients {
        loss: sums[0],
        recon: sums[1],
        kl: sums[2],
        grads: finite.then(|| accumulator.grads()),
    }
}

/// Sums a step's values and gradients over the processes of `ranks` (each holding its part's
/// share, see [`step_gradients`]), so every process ends with the whole batch's. A part whose
/// loss was not finite makes the step skipped on every process. `device` is the main autodiff
/// device; gradients travel as f64 in the order the model visits its parameters.
pub fn sum_over_ranks(
    model: &Vae,
    step: StepGradients,
    ranks: &dyn Collective,
    device: &Device,
) -> StepGradients {
    if ranks.size() <= 1 {
        return step;
    }
    let mut flat = vec![
        step.loss,
        step.recon,
        step.kl,
        if step.grads.is_some() { 0.0 } else { 1.0 },
    ];
    let mut shapes = Flatten {
        grads: step.grads.as_ref(),
        out: &mut flat,
        shapes: Vec::new(),
    };
    model.visit(&mut shapes);
    let shapes = shapes.shapes;
    ranks.all_reduce_sum(&mut flat);
    let (loss, recon, kl, failed) = (flat[0], flat[1], flat[2], flat[3]);
    if failed > 0.0 {
        return StepGradients {
            loss,
            recon,
            kl,
            grads: None,
        };
    }
    let mut rebuild = Rebuild {
        grads: GradientsParams::new(),
        flat: &flat[4..],
        shapes: shapes.into_iter(),
        device: device.clone().inner(),
    };
    model.visit(&mut rebuild);
    StepGradients {
        loss,
        recon,
        kl,
        grads: Some(rebuild.grads),
    }
}

/// Appends every trainable parameter's gradient (zeros where there is none) to `out`.
struct Flatten<'a> {
    grads: Option<&'a GradientsParams>,
    out: &'a mut Vec<f64>,
    shapes: Vec<Vec<usize>>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        let dims = param.val().dims();
        let n: usize = dims.iter().product();
        match self.grads.and_then(|g| g.get::<D>(param.id)) {
            Some(g) => self.out.extend(
                g.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32 gradients")
                    .into_iter()
                    .map(f64::from),
            ),
            None => self.out.extend(std::iter::repeat_n(0.0, n)),
        }
        self.shapes.push(dims.to_vec());
    }
}

/// Registers each trainable parameter's summed gradient from the flat values.
struct Rebuild<'a, I> {
    grads: GradientsParams,
    flat: &'a [f64],
    shapes: I,
    device: Device,
}

impl<I: Iterator<Item = Vec<usize>>> ModuleVisitor for Rebuild<'_, I> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        let dims = self
            .shapes
            .next()
            .expect("the same parameters as flattened");
        let n: usize = dims.iter().product();
        let (mine, rest) = self.flat.split_at(n);
        self.flat = rest;
        let values: Vec<f32> = mine.iter().map(|&v| v as f32).collect();
        let t = Tensor::<D>::from_data(TensorData::new(values, dims), &self.device);
        self.grads.register::<D>(param.id, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelConfig, Objective, TopLatentConfig};
    use crate::rng::{Stream, normals, stream_rng};

    #[test]
    fn shards_cover_the_batch_in_order() {
        assert_eq!(shard_ranges(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(shard_ranges(2, 4), vec![0..1, 1..2]);
        assert_eq!(shard_ranges(5, 1), vec![0..5]);
        let eps: Vec<f32> = (0..12).map(|v| v as f32).collect(); // k 2, b 3, width 2
        assert_eq!(
            noise_rows(&eps, 2, 3, 2, &(1..3)),
            vec![2., 3., 4., 5., 8., 9., 10., 11.]
        );
    }

    /// Largest |a - b| over every parameter's gradient, and the largest |a|.
    fn grad_gap(model: &Vae, a: &GradientsParams, b: &GradientsParams) -> (f32, f32) {
        struct Gap<'a>(&'a GradientsParams, &'a GradientsParams, f32, f32, usize);
        impl burn::module::ModuleVisitor for Gap<'_> {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                let (Some(a), Some(b)) = (self.0.get::<D>(p.id), self.1.get::<D>(p.id)) else {
                    return;
                };
                let a = a.into_data().try_into_vec::<f32>().unwrap();
                let b = b.into_data().try_into_vec::<f32>().unwrap();
                for (x, y) in a.iter().zip(&b) {
                    self.2 = self.2.max((x - y).abs());
                    self.3 = self.3.max(x.abs());
                }
                self.4 += 1;
            }
        }
        let mut g = Gap(a, b, 0.0, 0.0, 0);
        model.visit(&mut g);
        assert!(g.4 > 4, "{} parameters compared", g.4);
        (g.2, g.3)
    }

    #[test]
    fn two_and_three_devices_give_the_whole_batch_gradient() {
        let main = Device::flex().autodiff();
        let cases = [
            ("conv elbo", ModelConfig::default(), Objective::Elbo, 0),
            (
                "cvae iwae-3",
                ModelConfig {
                    classes: 10,
                    ..ModelConfig::default()
                },
                Objective::Iwae { k: 3 },
                10,
            ),
            (
                "hvae",
                ModelConfig {
                    top: Some(TopLatentConfig::default()),
                    ..ModelConfig::default()
                },
                Objective::Elbo,
                0,
            ),
        ];
        for (name, model_cfg, objective, classes) in cases {
            let cfg = TrainConfig {
                model: model_cfg,
                objective,
                ..TrainConfig::default()
            };
            let model = Vae::init(&cfg.model, 3, &main);
            let b = 7;
            let data = crate::data::synthetic::bars_splits(b, 1, 2).train;
            let idx: Vec<usize> = (0..b).collect();
            let x = crate::data::batch_tensor(&data, &idx, None, &main);
            let labels: Vec<u32> = data
                .labels
                .iter()
                .map(|&l| l % classes.max(1) as u32)
                .collect();
            let k = objective.samples();
            let eps = normals(
                &mut stream_rng(1, Stream::TrainNoise, 0),
                k * b * model.noise_dim(),
            );
            let all = Portion::all(b);
            let one = step_gradients(
                &model,
                &cfg,
                std::slice::from_ref(&main),
                x.clone(),
                &labels,
                &eps,
                0.7,
                &all,
            );
            for n in [2, 3] {
                let devices = vec![main.clone(); n];
                let many =
                    step_gradients(&model, &cfg, &devices, x.clone(), &labels, &eps, 0.7, &all);
                for (a, m) in [
                    (one.loss, many.loss),
                    (one.recon, many.recon),
                    (one.kl, many.kl),
                ] {
                    assert!(
                        (a - m).abs() <= 1e-4 * a.abs().max(1.0),
                        "{name} {n}: {a} vs {m}"
                    );
                }
                let (gap, scale) = grad_gap(
                    &model,
                    one.grads.as_ref().unwrap(),
                    many.grads.as_ref().unwrap(),
                );
                assert!(
                    scale > 0.0 && gap <= 2e-5 * scale,
                    "{name} on {n} devices: gap {gap}, largest {scale}"
                );
            }
        }
    }
}
