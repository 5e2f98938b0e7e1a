//! The custom convolutions against burn's own (followed by burn's activation), values and
//! gradients, on random shapes.

use burn::tensor::activation::{leaky_relu, relu, sigmoid as burn_sigmoid};
use burn::tensor::module::{conv_transpose2d as burn_conv_transpose2d, conv2d as burn_conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn random(shape: [usize; 4], rng: &mut ChaCha8Rng, device: &Device) -> Tensor<4> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Identity, ReLU, leaky ReLU (slopes 0.2 and 0.01) or the sigmoid, in turn.
fn activation(case: usize) -> Activation {
    [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.2 },
        Activation::LeakyRelu { slope: 0.01 },
        Activation::Sigmoid,
    ][case % 5]
}

/// burn's own activation after burn's own layer: the reference.
fn burn_activation<const D: usize>(y: Tensor<D>, act: Activation) -> Tensor<D> {
    match act {
        Activation::Identity => y,
        Activation::Relu => relu(y),
        Activation::LeakyRelu { slope } => leaky_relu(y, slope as f64),
        Activation::Sigmoid => burn_sigmoid(y),
    }
}

fn random1(n: usize, rng: &mut ChaCha8Rng, device: &Device) -> Tensor<1> {
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// `|a - b| <= 1e-5 * max(1, max|b|)` element by element: float rounding of sums of up to a
/// few hundred products of values in [-1, 1].
fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: sizes");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{what}[{i}]: {x} vs burn {y} (scale {scale})"
        );
    }
}

/// Runs `op` (custom) and `reference` (burn) on the same leaves with gradients, pulls both back
/// with the same random upstream gradient, and compares output, dx, dweight and dbias.
fn check_against_burn(
    what: &str,
    rng: &mut ChaCha8Rng,
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    bias_len: usize,
    op: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
    reference: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
) {
    let dev = Device::flex().autodiff();
    let x = random(x_shape, rng, &dev);
    let w = random(w_shape, rng, &dev);
    let b = random1(bias_len, rng, &dev);
    let run = |f: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
               upstream: Option<Tensor<4>>| {
        let (x, w, b) = (
            x.clone().detach().require_grad(),
            w.clone().detach().require_grad(),
            b.clone().detach().require_grad(),
        );
        let y = f(x.clone(), w.clone(), b.clone());
        let upstream = upstream.unwrap_or_else(|| {
            let v: Vec<f32> = (0..y.shape().num_elements())
                .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
                .collect();
            Tensor::from_data(TensorData::new(v, y.dims()), &dev)
        });
        let grads = (y.clone() * upstream.clone()).sum().backward();
        let gx = values(x.grad(&grads).unwrap());
        let gw = values(w.grad(&grads).unwrap());
        let gb = values(b.grad(&grads).unwrap());
        (y.dims(), values(y), gx, gw, gb, upstream)
    };
    let (ref_dims, y_ref, gx_ref, gw_ref, gb_ref, upstream) = run(reference, None);
    let (dims, y, gx, gw, gb, _) = run(op, Some(upstream.clone()));
    assert_eq!(dims, ref_dims, "{what}: output shape");
    assert_close(&format!("{what} y"), &y, &y_ref);
    assert_close(&format!("{what} dx"), &gx, &gx_ref);
    assert_close(&format!("{what} dweight"), &gw, &gw_ref);
    assert_close(&format!("{what} dbias"), &gb, &gb_ref);
    // With the weight and bias as constants (a frozen network): the same dx, and no weight or
    // bias gradient computed.
    let (xc, wc, bc) = (
        x.clone().detach().require_grad(),
        w.clone().detach(),
        b.clone().detach(),
    );
    let y = op(xc.clone(), wc.clone(), bc.clone());
    let grads = (y * upstream.clone()).sum().backward();
    assert_eq!(
        values(xc.grad(&grads).unwrap()),
        gx,
        "{what}: dx with constant weights"
    );
    assert!(wc.grad(&grads).is_none() && bc.grad(&grads).is_none());
}

#[test]
fn conv2d_equals_burns_values_and_gradients_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // The VAE's two layers first, then random ones (odd sizes, strides 1-3, uneven padding,
    // dilation).
    let mut cases = vec![
        (
            [3, 1, 28, 28],
            [16, 1, 5, 5],
            [2, 2],
            [2, 2],
            [2, 2],
            [1, 1],
        ),
        (
            [2, 16, 14, 14],
            [32, 16, 5, 5],
            [2, 2],
            [2, 2],
            [2, 2],
            [1, 1],
        ),
    ];
    while cases.len() < 14 {
        let x = [
            rng.random_range(1..4),
            rng.random_range(1..5),
            rng.random_range(3..14),
            rng.random_range(3..14),
        ];
        let w = [
            rng.random_range(1..6),
            x[1],
            rng.random_range(1..6),
            rng.random_range(1..6),
        ];
        let stride = [rng.random_range(1..4), rng.random_range(1..4)];
        let begin = [rng.random_range(0..3), rng.random_range(0..3)];
        let end = [rng.random_range(0..3), rng.random_range(0..3)];
        let dilation = [rng.random_range(1..3), rng.random_range(1..3)];
        let act = Activation::Identity;
        let spec = Conv2dSpec {
            stride,
            pad_begin: begin,
            pad_end: end,
            dilation,
            activation: act,
        };
        if spec.geometry(x, w).is_some() {
            cases.push((x, w, stride, begin, end, dilation));
        }
    }
    for (case, (x, w, stride, begin, end, dilation)) in cases.into_iter().enumerate() {
        let act = activation(case);
        let spec = Conv2dSpec {
            stride,
            pad_begin: begin,
            pad_end: end,
            dilation,
            activation: act,
        };
        let options = ConvOptions::new_with_padding(
            stride,
            [(begin[0], end[0]), (begin[1], end[1])],
            dilation,
            1,
        );
        check_against_burn(
            &format!("conv2d x {x:?} w {w:?} {spec:?}"),
            &mut rng,
            x,
            w,
            w[0],
            &|x, w, b| conv2d_with(x, w, b, spec),
            &|x, w, b| burn_activation(burn_conv2d(x, w, Some(b), options.clone()), act),
        );
    }
}

#[test]
fn conv_transpose2d_equals_burns_values_and_gradients_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut cases = vec![
        // The VAE's decoder: 7 -> 14 -> 28 (stride 2, padding 2, output padding 1).
        (
            [3, 32, 7, 7],
            [32, 16, 5, 5],
            [2, 2],
            [2, 2],
            [1, 1],
            [1, 1],
        ),
        (
            [2, 16, 14, 14],
            [16, 1, 5, 5],
            [2, 2],
            [2, 2],
            [1, 1],
            [1, 1],
        ),
    ];
    while cases.len() < 14 {
        let x = [
            rng.random_range(1..4),
            rng.random_range(1..5),
            rng.random_range(1..9),
            rng.random_range(1..9),
        ];
        let w = [
            x[1],
            rng.random_range(1..5),
            rng.random_range(1..6),
            rng.random_range(1..6),
        ];
        let stride = [rng.random_range(1..4), rng.random_range(1..4)];
        let padding = [rng.random_range(0..3), rng.random_range(0..3)];
        // PyTorch and burn require output padding < stride (or < dilation).
        let padding_out = [
            rng.random_range(0..stride[0]),
            rng.random_range(0..stride[1]),
        ];
        let dilation = [1, rng.random_range(1..3)];
        let act = Activation::Identity;
        let spec = ConvTranspose2dSpec {
            stride,
            padding,
            padding_out,
            dilation,
            activation: act,
        };
        if spec.geometry(x, w).is_some() {
            cases.push((x, w, stride, padding, padding_out, dilation));
        }
    }
    for (case, (x, w, stride, padding, padding_out, dilation)) in cases.into_iter().enumerate() {
        let act = activation(case);
        let spec = ConvTranspose2dSpec {
            stride,
            padding,
            padding_out,
            dilation,
            activation: act,
        };
        let options = ConvTransposeOptions::new(stride, padding, padding_out, dilation, 1);
        check_against_burn(
            &format!("conv_transpose2d x {x:?} w {w:?} {spec:?}"),
            &mut rng,
            x,
            w,
            w[1],
            &|x, w, b| conv_transpose2d_with(x, w, b, spec),
            &|x, w, b| {
                let y = burn_conv_transpose2d(x, w, Some(b), options.clone());
                burn_activation(y, act)
            },
        );
    }
}

/// Without autodiff (sampling, evaluation) the layer wrappers give the module's own output
/// followed by the activation.
#[test]
fn layer_wrappers_equal_the_modules_forward_on_the_plain_device() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let conv = Conv2dConfig::new([3, 8], [3, 5])
        .with_stride([2, 1])
        .with_padding(PaddingConfig2d::Explicit(1, 2, 0, 1))
        .init(&dev);
    let x = random([4, 3, 11, 9], &mut rng, &dev);
    assert_close(
        "conv layer",
        &values(conv2d(
            &conv,
            x.clone(),
            Activation::LeakyRelu { slope: 0.2 },
        )),
        &values(leaky_relu(conv.forward(x), 0.2)),
    );
    let convt = ConvTranspose2dConfig::new([3, 5], [5, 5])
        .with_stride([2, 2])
        .with_padding([2, 2])
        .with_padding_out([1, 1])
        .init(&dev);
    let x = random([4, 3, 7, 6], &mut rng, &dev);
    let ours = conv_transpose2d(&convt, x.clone(), Activation::Relu);
    assert_eq!(ours.dims(), [4, 5, 14, 12]);
    assert_close(
        "conv_transpose layer",
        &values(ours),
        &values(relu(convt.forward(x))),
    );
    // A convolution without a bias (the VAE-GAN discriminator's, before a normalisation) runs
    // on the kernel with a zero bias, forward and backward.
    let ad = Device::flex().autodiff();
    let plain = Conv2dConfig::new([3, 4], [3, 3])
        .with_bias(false)
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&ad);
    let x = random([2, 3, 9, 8], &mut rng, &ad).require_grad();
    let ours = conv2d(&plain, x.clone(), Activation::Identity);
    let theirs = plain.forward(x.clone());
    assert_close(
        "conv without bias",
        &values(ours.clone()),
        &values(theirs.clone()),
    );
    let (g1, g2) = (ours.sum().backward(), theirs.sum().backward());
    assert_close(
        "conv without bias dx",
        &values(x.grad(&g1).unwrap()),
        &values(x.grad(&g2).unwrap()),
    );
    assert_close(
        "conv without bias dw",
        &values(plain.weight.val().grad(&g1).unwrap()),
        &values(plain.weight.val().grad(&g2).unwrap()),
    );
}

#[test]
fn flex_devices_are_recognised() {
    assert!(on_flex(&Device::flex()));
    assert!(on_flex(&Device::flex().autodiff()));
}

/// The fused dense layer against burn's `Linear::forward` followed by burn's activation:
/// output and the gradients of x, weight and bias, on odd sizes, one row, one feature, and
/// products large enough to be split over threads.
#[test]
fn linear_equals_burns_values_and_gradients_on_random_shapes() {
    use burn::nn::LinearConfig;
    let dev = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut cases = vec![
        (128, 784, 400),
        (128, 400, 20),
        (100, 20, 1568),
        (61, 33, 100),
        (1, 1, 1),
        (1, 9, 3),
        (7, 1, 5),
    ];
    while cases.len() < 14 {
        cases.push((
            rng.random_range(1..150),
            rng.random_range(1..300),
            rng.random_range(1..90),
        ));
    }
    for (case, (m, k, n)) in cases.into_iter().enumerate() {
        let act = activation(case);
        let layer = LinearConfig::new(k, n).init(&dev);
        let v: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = Tensor::<2>::from_data(TensorData::new(v, [m, k]), &dev);
        let up: Vec<f32> = (0..m * n)
            .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let upstream = Tensor::<2>::from_data(TensorData::new(up, [m, n]), &dev);
        let run = |f: &dyn Fn(Tensor<2>) -> Tensor<2>| {
            let x = x.clone().require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let gw = values(layer.weight.grad(&grads).unwrap());
            let gb = values(layer.bias.as_ref().unwrap().grad(&grads).unwrap());
            (values(y), values(x.grad(&grads).unwrap()), gw, gb)
        };
        let (y, gx, gw, gb) = run(&|x| linear(&layer, x, act));
        let (y_ref, gx_ref, gw_ref, gb_ref) = run(&|x| burn_activation(layer.forward(x), act));
        let what = format!("linear {m}x{k} -> {n} {act:?}");
        assert_close(&format!("{what} y"), &y, &y_ref);
        assert_close(&format!("{what} dx"), &gx, &gx_ref);
        assert_close(&format!("{what} dweight"), &gw, &gw_ref);
        assert_close(&format!("{what} dbias"), &gb, &gb_ref);
        // Without x's gradient (a first layer) the weight gradient takes the other path.
        let weight_only = |f: &dyn Fn(Tensor<2>) -> Tensor<2>| {
            let grads = (f(x.clone()) * upstream.clone()).sum().backward();
            values(layer.weight.grad(&grads).unwrap())
        };
        assert_close(
            &format!("{what} dweight without dx"),
            &weight_only(&|x| linear(&layer, x, act)),
            &gw_ref,
        );
        // With the layer frozen: the same dx, no weight or bias gradient.
        let frozen = burn::module::Module::no_grad(layer.clone());
        let xc = x.clone().require_grad();
        let grads = (linear(&frozen, xc.clone(), act) * upstream.clone())
            .sum()
            .backward();
        // (Split over the threads by rows instead of run whole beside dW: float rounding.)
        assert_close(
            &format!("{what} dx, frozen"),
            &values(xc.grad(&grads).unwrap()),
            &gx,
        );
        assert!(frozen.weight.grad(&grads).is_none() && layer.weight.grad(&grads).is_none());
    }
}
