//! 2-D convolution and transposed convolution on CPU slices, forward and backward: im2col or
//! col2im per image plus one matrix product, images spread over rayon's threads, the weight
//! gradient summed per thread. (One product over the whole batch was tried and was slower: the
//! batch-wide gathers fall out of the first-level cache.)
//!
//! # Shapes (row-major, NCHW)
//! - convolution: `x [n, c_in, h, w]`, `weight [c_out, c_in, kh, kw]`, `y [n, c_out, oh, ow]`
//! - transposed convolution: `x [n, c_in, h, w]`, `weight [c_in, c_out, kh, kw]`,
//!   `y [n, c_out, oh, ow]`; it is the adjoint of the convolution from `y`'s size to `x`'s, so
//!   both take a [`ConvGeometry`] of that convolution (`channels = c_out`, `in_size = [oh, ow]`,
//!   `out_size = [h, w]`).

use rayon::prelude::*;

use super::buffer::{filled_rows_with, zeroed};
use super::fastmath::simd_dispatch;
use super::gemm::{Mat, SharedLhs, matmul, matmul_lhs};
use super::geometry::{ColumnMap, ConvGeometry};

/// An elementwise activation applied to a layer's output inside the same operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    /// `max(v, 0)`.
    Relu,
    /// `v` for `v > 0`, else `slope * v`, with `slope >= 0`: the output's sign is the input's,
    /// so the backward pass can work from the output.
    LeakyRelu {
        slope: f32,
    },
    /// `1 / (1 + e^-v)`: a decoder's mean image from its last layer (the derivative
    /// `y (1 - y)` is read off the output too).
    Sigmoid,
}

impl Activation {
    /// `v = f(v)`, elementwise, vectorised for the CPU.
    pub(crate) fn apply(self, v: &mut [f32]) {
        if self != Activation::Identity {
            activate_in_place(v, self)
        }
    }

    /// `v = f(v + bias)`, elementwise (`bias` as long as `v`), vectorised for the CPU.
    pub(crate) fn apply_biased(self, v: &mut [f32], bias: &[f32]) {
        add_bias_activate(v, bias, self)
    }

    /// `out = grad * f'(pre-activation)`, the derivative read off the output `y`.
    pub(crate) fn backward(self, y: &[f32], grad: &[f32], out: &mut Vec<f32>) {
        let slope = match self {
            Activation::Identity => 1.0,
            Activation::Relu => 0.0,
            Activation::LeakyRelu { slope } => slope,
            Activation::Sigmoid => {
                out.clear();
                out.resize(y.len().min(grad.len()), 0.0);
                super::sigmoid::sigmoid_grad_chunk(out, y, grad);
                return;
            }
        };
        out.clear();
        out.resize(y.len().min(grad.len()), 0.0);
        grad_by_sign(out, y, grad, slope);
    }
}

simd_dispatch! {
    /// [`Activation::apply`].
    fn activate_in_place(v: &mut [f32], act: Activation) -> () {
        match act {
            Activation::Identity => {}
            Activation::Relu => v.iter_mut().for_each(|e| *e = e.max(0.0)),
            Activation::LeakyRelu { slope } => v
                .iter_mut()
                .for_each(|e| *e = if *e > 0.0 { *e } else { *e * slope }),
            Activation::Sigmoid => v
                .iter_mut()
                .for_each(|e| *e = super::fastmath::sigmoid(*e)),
        }
    }
}

simd_dispatch! {
    /// `out = g` where the output `y > 0`, else `g * slope`.
    fn grad_by_sign(out: &mut [f32], y: &[f32], grad: &[f32], slope: f32) -> () {
        for ((o, &y), &g) in out.iter_mut().zip(y).zip(grad) {
            *o = if y > 0.0 { g } else { g * slope };
        }
    }
}

simd_dispatch! {
    /// [`Activation::apply_biased`].
    fn add_bias_activate(v: &mut [f32], bias: &[f32], act: Activation) -> () {
        let v = &mut v[..bias.len()];
        match act {
            Activation::Identity => v.iter_mut().zip(bias).for_each(|(e, b)| *e += b),
            Activation::Relu => v
                .iter_mut()
                .zip(bias)
                .for_each(|(e, b)| *e = (*e + b).max(0.0)),
            Activation::LeakyRelu { slope } => v.iter_mut().zip(bias).for_each(|(e, b)| {
                let t = *e + b;
                *e = if t > 0.0 { t } else { t * slope }
            }),
            Activation::Sigmoid => v
                .iter_mut()
                .zip(bias)
                .for_each(|(e, b)| *e = super::fastmath::sigmoid(*e + b)),
        }
    }
}

/// Image `n`'s output gradient (`len` elements) through the activation: `grad`'s own slice for
/// the identity, else `grad * f'` written to `buf`.
fn through_activation<'a>(
    act: Activation,
    y: Option<&[f32]>,
    grad: &'a [f32],
    n: usize,
    len: usize,
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    let g_n = &grad[n * len..(n + 1) * len];
    match (act, y) {
        (Activation::Identity, _) => g_n,
        (_, Some(y)) => {
            act.backward(&y[n * len..(n + 1) * len], g_n, buf);
            buf
        }
        (_, None) => panic!("the backward pass of an activated convolution needs its output"),
    }
}

/// Gradients of a convolution's loss with respect to its three inputs.
#[derive(Debug)]
pub struct ConvGrads {
    /// `[n, c_in, h, w]`, when asked for.
    pub x: Option<Vec<f32>>,
    /// The weight's shape.
    pub weight: Vec<f32>,
    /// `[c_out]`.
    pub bias: Vec<f32>,
}

/// Per-thread buffers: one image's column matrix, im2col's padded copy of the image, and
/// partial weight (transposed: see [`transposed`]) and bias gradients.
struct Work {
    cols: Vec<f32>,
    scratch: Vec<f32>,
    grad: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Work {
    fn new(map: &ColumnMap, weight: usize, bias: usize) -> Self {
        Work {
            cols: vec![0.0; map.cols_len()],
            scratch: Vec::new(),
            grad: Vec::new(),
            weight: vec![0.0; weight],
            bias: vec![0.0; bias],
        }
    }

    fn add(mut self, other: Work) -> Work {
        for (a, b) in self.weight.iter_mut().zip(&other.weight) {
            *a += b;
        }
        for (a, b) in self.bias.iter_mut().zip(&other.bias) {
            *a += b;
        }
        self
    }
}

/// Groups the images of a backward pass are split into, whatever the thread count: each
/// group sums its images' weight gradients in image order, and the groups are added in group
/// order, so the result does not depend on how threads stole work (runs are reproducible).
const BACKWARD_GROUPS: usize = 8;

/// Runs `step(work, image, x_grad_of_image)` for every image in parallel and sums the
/// partial weight and bias gradients in a fixed order; `x_grad` gets one chunk of `x_len` per
/// image when given.
fn backward_over_images(
    batch: usize,
    x_len: usize,
    x_grad: Option<&mut [f32]>,
    new: impl Fn() -> Work + Sync + Send,
    step: impl Fn(&mut Work, usize, Option<&mut [f32]>) + Sync + Send,
) -> Work {
    let per_group = batch.div_ceil(BACKWARD_GROUPS).max(1);
    let parts: Vec<Work> = match x_grad {
        Some(gx) if x_len > 0 => gx
            .par_chunks_mut(x_len * per_group)
            .enumerate()
            .map(|(g, gx_g)| {
                let mut work = new();
                for (i, gx_n) in gx_g.chunks_mut(x_len).enumerate() {
                    step(&mut work, g * per_group + i, Some(gx_n));
                }
                work
            })
            .collect(),
        _ => (0..batch.div_ceil(per_group))
            .into_par_iter()
            .map(|g| {
                let mut work = new();
                for n in g * per_group..((g + 1) * per_group).min(batch) {
                    step(&mut work, n, None);
                }
                work
            })
            .collect(),
    };
    parts.into_iter().reduce(Work::add).unwrap_or_else(new)
}

/// Adds each row's sum of `matrix` (`sums.len()` rows) to `sums` (the bias gradient).
fn add_row_sums(sums: &mut [f32], matrix: &[f32]) {
    let row_len = matrix.len() / sums.len().max(1);
    for (s, row) in sums.iter_mut().zip(matrix.chunks_exact(row_len.max(1))) {
        *s += lane_sum(row);
    }
}

simd_dispatch! {
    /// The sum of `v` in 16 running sums (`v[i]` into sum `i % 16`), then those added in
    /// order: independent additions the compiler turns into vector ones (at the CPU's vector
    /// width), where one running sum is a chain of dependent additions at one per 3-4 cycles
    /// (the bias gradients' sums took ~2.5% of a conv training step that way, on an AMD EPYC).
    fn lane_sum(v: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 16];
        let chunks = v.chunks_exact(16);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (l, x) in lanes.iter_mut().zip(chunk) {
                *l += x;
            }
        }
        for (l, x) in lanes.iter_mut().zip(tail) {
            *l += x;
        }
        lanes.iter().sum()
    }
}

/// Convolution forward: `y[n] = act(weight * im2col(x[n]) + bias)`.
pub fn conv2d_forward(
    g: &ConvGeometry,
    batch: usize,
    out_channels: usize,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    act: Activation,
) -> Vec<f32> {
    let (k, p, img) = (g.col_rows(), g.col_cols(), g.image_len());
    assert_eq!(x.len(), batch * img, "conv2d: input size");
    assert_eq!(weight.len(), out_channels * k, "conv2d: weight size");
    assert_eq!(bias.len(), out_channels, "conv2d: bias size");
    let map = ColumnMap::shared(g);
    let w = SharedLhs::new(Mat::row_major(weight, out_channels, k));
    // Each image's output starts as the bias of its channel; the product is added.
    filled_rows_with(
        batch * out_channels * p,
        out_channels * p,
        bias,
        || Work::new(&map, 0, 0),
        |work, n, y_n| {
            let Work { cols, scratch, .. } = work;
            let cols = &mut cols[..k * p];
            map.im2col(&x[n * img..(n + 1) * img], scratch, cols);
            matmul_lhs(y_n, &w, Mat::row_major(cols, k, p), true);
            act.apply(y_n);
        },
    )
}

/// Convolution backward from `grad = dL/dy`, first taken through the activation (`grad * act'`
/// read off the forward output `y`, which may be `None` for the identity): `dW = sum_n grad[n] im2col(x[n])^T`
/// and `db = sum_{n, positions} grad` (when `need_w`; else both empty), `dx[n] = col2im(W^T grad[n])`
/// (when `need_x`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    g: &ConvGeometry,
    batch: usize,
    out_channels: usize,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    act: Activation,
    y: Option<&[f32]>,
    need_x: bool,
    need_w: bool,
) -> ConvGrads {
    let (k, p, img) = (g.col_rows(), g.col_cols(), g.image_len());
    assert_eq!(x.len(), batch * img, "conv2d backward: input size");
    assert_eq!(
        weight.len(),
        out_channels * k,
        "conv2d backward: weight size"
    );
    assert_eq!(
        grad.len(),
        batch * out_channels * p,
        "conv2d backward: grad size"
    );
    let map = ColumnMap::shared(g);
    let w_t = need_x.then(|| SharedLhs::new(Mat::row_major(weight, out_channels, k).t()));
    let mut x_grad = need_x.then(|| zeroed(x.len()));
    let total = backward_over_images(
        batch,
        img,
        x_grad.as_deref_mut(),
        || match need_w {
            true => Work::new(&map, out_channels * k, out_channels),
            false => Work::new(&map, 0, 0),
        },
        |work, n, gx_n| {
            let Work {
                cols,
                scratch,
                grad: buf,
                weight,
                bias,
            } = work;
            let g_n = through_activation(act, y, grad, n, out_channels * p, buf);
            let g_mat = Mat::row_major(g_n, out_channels, p);
            let matrix = &mut cols[..k * p];
            if need_w {
                add_row_sums(bias, g_n);
                map.im2col(&x[n * img..(n + 1) * img], scratch, matrix);
                // dW^T += im2col(x[n]) grad[n]^T (see `transposed`).
                matmul(weight, Mat::row_major(matrix, k, p), g_mat.t(), true);
            }
            if let (Some(gx_n), Some(w_t)) = (gx_n, &w_t) {
                matmul_lhs(matrix, w_t, g_mat, false);
                map.col2im_add(cols, gx_n);
            }
        },
    );
    ConvGrads {
        x: x_grad,
        weight: match need_w {
            true => transposed(&total.weight, k, out_channels),
            false => Vec::new(),
        },
        bias: total.bias,
    }
}

/// The `[cols, rows]` transpose of a row-major `[rows, cols]` matrix.
///
/// The backward passes sum the weight gradient transposed, `dW^T = sum_n cols[n] other[n]^T`
/// with `cols[n]` the `[k, positions]` column matrix and `other[n]` the `[channels, positions]`
/// gradient or input: the kernel reads `cols[n]` where it lies and packs only the smaller
/// `other[n]` (16 to 32 channels against 25 to 400 rows in the article's network), where
/// `dW = other[n] cols[n]^T` packed the column matrix on every image. The one transpose per
/// batch is small.
fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(m.len(), rows * cols);
    let mut t = vec![0.0; m.len()];
    for (r, row) in m.chunks_exact(cols.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// Transposed convolution forward: `y[n] = act(col2im(W^T x[n]) + bias)`, with `g` the geometry of
/// the convolution from `y`'s size to `x`'s (see the module docs).
pub fn conv_transpose2d_forward(
    g: &ConvGeometry,
    batch: usize,
    in_channels: usize,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    act: Activation,
) -> Vec<f32> {
    let (k, p, img) = (g.col_rows(), g.col_cols(), g.image_len());
    assert_eq!(
        x.len(),
        batch * in_channels * p,
        "conv_transpose2d: input size"
    );
    assert_eq!(
        weight.len(),
        in_channels * k,
        "conv_transpose2d: weight size"
    );
    assert_eq!(bias.len(), g.channels, "conv_transpose2d: bias size");
    let map = ColumnMap::shared(g);
    let w_t = SharedLhs::new(Mat::row_major(weight, in_channels, k).t());
    // Each image's output starts as the bias of its channel; the columns are added.
    filled_rows_with(
        batch * img,
        img,
        bias,
        || Work::new(&map, 0, 0),
        |work, n, y_n| {
            let x_n = &x[n * in_channels * p..(n + 1) * in_channels * p];
            matmul_lhs(
                &mut work.cols,
                &w_t,
                Mat::row_major(x_n, in_channels, p),
                false,
            );
            map.col2im_add(&work.cols, y_n);
            act.apply(y_n);
        },
    )
}

/// Transposed convolution backward from `grad = dL/dy`, through the activation as in
/// [`conv2d_backward`]: `dW = sum_n x[n] im2col(grad[n])^T`,
/// `db = sum_{n, pixels} grad` (when `need_w`; else both empty), `dx[n] = W im2col(grad[n])`
/// (when `need_x`).
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_backward(
    g: &ConvGeometry,
    batch: usize,
    in_channels: usize,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    act: Activation,
    y: Option<&[f32]>,
    need_x: bool,
    need_w: bool,
) -> ConvGrads {
    let (k, p, img) = (g.col_rows(), g.col_cols(), g.image_len());
    assert_eq!(
        x.len(),
        batch * in_channels * p,
        "conv_transpose2d backward: input size"
    );
    assert_eq!(
        weight.len(),
        in_channels * k,
        "conv_transpose2d backward: weight size"
    );
    assert_eq!(
        grad.len(),
        batch * img,
        "conv_transpose2d backward: grad size"
    );
    let map = ColumnMap::shared(g);
    let w = need_x.then(|| SharedLhs::new(Mat::row_major(weight, in_channels, k)));
    let mut x_grad = need_x.then(|| zeroed(x.len()));
    let total = backward_over_images(
        batch,
        in_channels * p,
        x_grad.as_deref_mut(),
        || match need_w {
            true => Work::new(&map, in_channels * k, g.channels),
            false => Work::new(&map, 0, 0),
        },
        |work, n, gx_n| {
            let Work {
                cols,
                scratch,
                grad: buf,
                weight,
                bias,
            } = work;
            let g_n = through_activation(act, y, grad, n, img, buf);
            let matrix = &mut cols[..k * p];
            map.im2col(g_n, scratch, matrix);
            let cols = Mat::row_major(matrix, k, p);
            if need_w {
                add_row_sums(bias, g_n);
                let x_n = &x[n * in_channels * p..(n + 1) * in_channels * p];
                // dW^T += im2col(grad[n]) x[n]^T (see `transposed`).
                matmul(weight, cols, Mat::row_major(x_n, in_channels, p).t(), true);
            }
            if let (Some(gx_n), Some(w)) = (gx_n, &w) {
                matmul_lhs(gx_n, w, cols, false);
            }
        },
    );
    ConvGrads {
        x: x_grad,
        weight: match need_w {
            true => transposed(&total.weight, k, in_channels),
            false => Vec::new(),
        },
        bias: total.bias,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-lane sum equals the float64 sum to f32 rounding at every length, including
    /// the empty slice and lengths that are not multiples of 16; row sums land per row.
    #[test]
    fn lane_sums_are_the_sums() {
        for len in 0..70 {
            let v: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.37)
                .collect();
            let want: f64 = v.iter().map(|&x| x as f64).sum();
            assert!((lane_sum(&v) as f64 - want).abs() < 1e-4, "length {len}");
        }
        let matrix: Vec<f32> = (0..3 * 21).map(|i| i as f32).collect();
        let mut sums = vec![1.0; 3];
        add_row_sums(&mut sums, &matrix);
        let row = |r: usize| 1.0 + (21 * r..21 * (r + 1)).sum::<usize>() as f32;
        assert_eq!(sums, vec![row(0), row(1), row(2)]);
    }
}
