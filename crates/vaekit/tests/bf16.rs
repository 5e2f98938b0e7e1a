//! `Precision::Bf16` (bf16 products, f32 accumulation) against f32, through the public kernels
//! (values and gradients) and through training. The precision is process-wide, so these tests
//! live in their own test binary and take turns through a lock.
//!
//! On a CPU without AVX512-BF16 `set_precision(Bf16)` falls back to f32, which one test checks;
//! the others then skip, saying so.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use burn::backend::Dispatch;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vaekit::config::{DataConfig, TrainConfig};
use vaekit::data::load_data;
use vaekit::data::synthetic::write_bars_idx;
use vaekit::ops::{
    Activation, Conv2dSpec, ConvTranspose2dSpec, LayerBackend, Precision, conv_transpose2d_with,
    conv2d_with, precision, set_precision,
};
use vaekit::run::RunDir;
use vaekit::train::{Silent, train};

static PRECISION: Mutex<()> = Mutex::new(());

/// Runs `f` at `p` and puts f32 back.
fn at<T>(p: Precision, f: impl FnOnce() -> T) -> T {
    set_precision(p);
    let out = f();
    set_precision(Precision::Fp32);
    out
}

fn bf16_or_skip() -> bool {
    let ok = vaekit::ops::precision::bf16_supported();
    if !ok {
        eprintln!("skipped: this CPU has no AVX512-BF16");
    }
    ok
}

fn random<const D: usize>(shape: [usize; D], rng: &mut ChaCha8Rng, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

type Op = dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>;

/// Output, dx, dweight and dbias of `op` on fixed leaves, pulled back with a fixed upstream
/// gradient, at the process's current precision.
fn run(op: &Op, x: &Tensor<4>, w: &Tensor<4>, b: &Tensor<1>) -> [Vec<f32>; 4] {
    let (x, w, b) = (
        x.clone().require_grad(),
        w.clone().require_grad(),
        b.clone().require_grad(),
    );
    let y = op(x.clone(), w.clone(), b.clone());
    let up: Vec<f32> = (0..y.shape().num_elements())
        .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
        .collect();
    let up = Tensor::from_data(TensorData::new(up, y.dims()), &y.device());
    let grads = (y.clone() * up).sum().backward();
    [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(w.grad(&grads).unwrap()),
        values(b.grad(&grads).unwrap()),
    ]
}

/// bf16 within 1% of the largest magnitude of each f32 result (each operand is rounded by at
/// most 2^-8 relative, a product by 2^-7, and sums of products with mixed signs stay well inside
/// that), and not equal to it (the products really ran in bf16).
fn compare(what: &str, op: &Op, x_shape: [usize; 4], w_shape: [usize; 4], bias: usize, seed: u64) {
    let dev = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random(x_shape, &mut rng, &dev);
    let w = random(w_shape, &mut rng, &dev);
    let b = random([bias], &mut rng, &dev);
    let f32s = at(Precision::Fp32, || run(op, &x, &w, &b));
    let bf16s = at(Precision::Bf16, || run(op, &x, &w, &b));
    for (name, (lo, hi)) in ["y", "dx", "dweight", "dbias"]
        .iter()
        .zip(bf16s.iter().zip(&f32s))
    {
        let scale = hi.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = lo
            .iter()
            .zip(hi)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= 1e-2 * scale,
            "{what} {name}: off by {worst} (scale {scale})"
        );
        if *name != "dbias" {
            assert!(worst > 0.0, "{what} {name}: bf16 equals f32 exactly");
        }
    }
}

#[test]
fn bf16_falls_back_to_f32_only_without_the_instructions() {
    let _g = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let got = at(Precision::Bf16, precision);
    let want = if vaekit::ops::precision::bf16_supported() {
        Precision::Bf16
    } else {
        Precision::Fp32
    };
    assert_eq!(got, want);
    assert_eq!(precision(), Precision::Fp32);
}

#[test]
fn bf16_convolutions_are_within_rounding_of_f32_values_and_gradients() {
    let _g = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    if !bf16_or_skip() {
        return;
    }
    let conv = |stride, pad, act| {
        move |x, w, b| {
            let spec = Conv2dSpec {
                stride: [stride; 2],
                pad_begin: [pad; 2],
                pad_end: [pad; 2],
                dilation: [1, 1],
                activation: act,
            };
            conv2d_with(x, w, b, spec)
        }
    };
    let convt = |stride, pad, out_pad, act| {
        move |x, w, b| {
            let spec = ConvTranspose2dSpec {
                stride: [stride; 2],
                padding: [pad; 2],
                padding_out: [out_pad; 2],
                dilation: [1, 1],
                activation: act,
            };
            conv_transpose2d_with(x, w, b, spec)
        }
    };
    // Without activations: a kink turns bf16's rounding of a pre-activation near zero into a
    // jump of the gradient (the slope flips), which is not what this compares. The activations
    // are the same code at both precisions.
    let id = Activation::Identity;
    // The conv VAE's four layers, then odd sizes (k, channels, images not multiples of the
    // kernels' 16 columns, 8 or 32 rows, or 32 k values).
    compare(
        "conv1",
        &conv(2, 2, id),
        [3, 1, 28, 28],
        [16, 1, 5, 5],
        16,
        1,
    );
    compare(
        "conv2",
        &conv(2, 2, id),
        [2, 16, 14, 14],
        [32, 16, 5, 5],
        32,
        2,
    );
    compare(
        "convT1",
        &convt(2, 2, 1, id),
        [2, 32, 7, 7],
        [32, 16, 5, 5],
        16,
        3,
    );
    compare(
        "convT2",
        &convt(2, 2, 1, id),
        [3, 16, 14, 14],
        [16, 1, 5, 5],
        1,
        4,
    );
    compare(
        "odd conv",
        &conv(1, 1, id),
        [5, 3, 9, 11],
        [7, 3, 3, 3],
        7,
        5,
    );
    compare(
        "odd convT",
        &convt(3, 1, 2, id),
        [3, 5, 4, 6],
        [5, 9, 4, 3],
        9,
        6,
    );
}

#[test]
fn bf16_dense_layers_are_within_rounding_of_f32_values_and_gradients() {
    let _g = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    if !bf16_or_skip() {
        return;
    }
    // A dense layer `x [m, k] -> [m, n]` as a 1x1 "image" of k channels, through the kernel
    // burn's Linear layers take in vaekit::ops::linear.
    for (i, &(m, k, n)) in [(100, 784, 400), (128, 400, 20), (7, 13, 33)]
        .iter()
        .enumerate()
    {
        let op = move |x: Tensor<4>, w: Tensor<4>, b: Tensor<1>| {
            let y: Tensor<2> = Tensor::from_dispatch(<Dispatch as LayerBackend>::vaekit_linear(
                x.reshape([m, k]).into_dispatch(),
                w.reshape([k, n]).into_dispatch(),
                b.into_dispatch(),
                Activation::Identity,
            ));
            y.reshape([m, n, 1, 1])
        };
        let what = format!("dense {m}x{k}x{n}");
        compare(&what, &op, [m, k, 1, 1], [k, n, 1, 1], n, 10 + i as u64);
    }
}

#[test]
fn bf16_training_follows_f32_training() {
    let _g = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    if !bf16_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    write_bars_idx(&tmp.path().join("bars"), 256, 64, 1).unwrap();
    let data = DataConfig {
        dataset: "bars".into(),
        dir: Some(tmp.path().join("bars")),
        ..DataConfig::default()
    };
    let splits = load_data(&data, None, 0).unwrap();
    let cfg = TrainConfig {
        data,
        epochs: 6,
        batch_size: 32,
        preview_images: 4,
        sample_images: 4,
        ..TrainConfig::default()
    };
    let losses = |p: Precision, name: &str| {
        at(p, || {
            let run = RunDir::create(&tmp.path().join(name), &cfg).unwrap();
            let stop = AtomicBool::new(false);
            train(&run, &cfg, &splits, &Device::flex(), &stop, &mut Silent).unwrap();
            run.metrics()
                .unwrap()
                .iter()
                .map(|e| e.get("test_neg_elbo").unwrap())
                .collect::<Vec<f64>>()
        })
    };
    let f32s = losses(Precision::Fp32, "f32");
    let bf16s = losses(Precision::Bf16, "bf16");
    // Both learn (the first epoch ends near 400 nats, from ~543 for 784 pixels) and stay within
    // 1% of each other per epoch.
    assert!(f32s[5] < 0.9 * f32s[0], "f32 did not learn: {f32s:?}");
    for (e, (a, b)) in bf16s.iter().zip(&f32s).enumerate() {
        assert!(
            (a - b).abs() <= 0.01 * b,
            "epoch {}: bf16 {a} vs f32 {b}",
            e + 1
        );
    }
    assert_ne!(bf16s, f32s, "bf16 training equals f32 exactly");
}
