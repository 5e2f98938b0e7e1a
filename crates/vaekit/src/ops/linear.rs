//! A dense layer with its activation on CPU slices, forward and backward: one matrix product per
//! block of rows (or of weight rows), the blocks spread over rayon's threads.
//!
//! burn's linear layer is a matrix product, a bias add and the activation, three tensors
//! allocated and zero-filled (Flex zero-fills and then copies every new tensor); its backward
//! pass adds a transpose-and-sum per operation. Here the forward pass writes the product into
//! one buffer and adds the bias and applies the activation block by block while the block is
//! in cache (at bf16: the bias first, then the product added), and the backward pass reads the
//! gradient through the activation once and writes dW and dx without zeroing them first.
//!
//! # Shapes (row-major)
//! `x [m, k]`, `weight [k, n]` (burn's `Linear` layout), `bias [n]`, `y [m, n]`.

use rayon::prelude::*;

use super::buffer::filled;
use super::conv2d::{Activation, ConvGrads};
use super::gemm::{Mat, SharedRhs, matmul_f32_into, matmul_rhs};
use super::precision::{Precision, precision};

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 16;

/// Column blocks of [`forward_by_columns`] are multiples of this (one AVX-512 register).
const COLUMN_BLOCK: usize = 16;

/// Rows of one product in [`forward_by_columns`]: each block's product writes its outputs
/// (24 rows of a task's columns: ~37 KiB for 392 columns, within L1/L2) and the bias and the
/// activation are applied while they are still in cache, instead of writing the bias to the
/// whole output first and making three passes over it. A multiple of [`super::gemm_f32`]'s 8
/// rows, and small enough that the MLP's blocks (24 x 400 x 392, 24 x 784 x 200) run on our
/// kernel, which reads the weight in place. MLP VAE on an AMD EPYC (2 cores, alternated
/// `vaekit bench` runs): training +5%, sampling 281k -> 299k img/s, IS +5%; blocks of 16 to 64
/// rows were within ~2% of 24.
const ROW_BLOCK: usize = 24;

/// A raw pointer the tasks of [`forward_by_columns`] share; each writes only its own columns.
struct Output(*mut f32);
// SAFETY: the tasks write disjoint elements through it, and the owner waits for all of them.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

/// [`linear_forward`] by blocks of output columns, one per task: each task multiplies all of
/// `x` by its columns of the weight, so each packs a share of the weight (the larger operand)
/// instead of all of it, as splitting the rows made every task do (the training forward pass's
/// 128-row layers ran ~10% faster, interleaved A/B on an Intel Xeon). Each task goes down its
/// columns [`ROW_BLOCK`] rows at a time. f32 only (the bf16 product packs its weight once for
/// all tasks).
#[allow(clippy::too_many_arguments)]
fn forward_by_columns(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    m: usize,
    k: usize,
    n: usize,
    act: Activation,
    tasks: usize,
) -> Vec<f32> {
    let cols = n.div_ceil(tasks).next_multiple_of(COLUMN_BLOCK).min(n);
    let mut y: Vec<f32> = Vec::with_capacity(m * n);
    let out = Output(y.as_mut_ptr());
    (0..n.div_ceil(cols)).into_par_iter().for_each(|t| {
        let out = &out;
        let (c0, c1) = (t * cols, ((t + 1) * cols).min(n));
        let row = |i: usize| {
            // SAFETY: row i's columns c0..c1 lie inside y's m * n floats, only this task touches
            // them, and the product below initialises them before any slice is made.
            unsafe { std::slice::from_raw_parts_mut(out.0.add(i * n + c0), c1 - c0) }
        };
        for r0 in (0..m).step_by(ROW_BLOCK) {
            let r1 = (r0 + ROW_BLOCK).min(m);
            let w = Mat {
                data: &weight[c0..],
                rows: k,
                cols: c1 - c0,
                row_stride: n,
                col_stride: 1,
            };
            // SAFETY: the result's elements (i, c0 + j), r0 <= i < r1, are this task's; the
            // product overwrites them without reading.
            unsafe {
                matmul_f32_into(
                    out.0.add(r0 * n + c0),
                    n,
                    Mat::row_major(&x[r0 * k..r1 * k], r1 - r0, k),
                    w,
                    false,
                )
            };
            for i in r0..r1 {
                act.apply_biased(row(i), &bias[c0..c1]);
            }
        }
    });
    // SAFETY: the tasks wrote every row's columns 0..n.
    unsafe { y.set_len(m * n) };
    y
}

/// `y = act(x weight + bias)`.
pub fn linear_forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    m: usize,
    k: usize,
    n: usize,
    act: Activation,
) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "linear: input size");
    assert_eq!(weight.len(), k * n, "linear: weight size");
    assert_eq!(bias.len(), n, "linear: bias size");
    if n == 0 {
        return Vec::new();
    }
    let tasks = if m * k * n < PARALLEL_WORK {
        1
    } else {
        rayon::current_num_threads().max(1)
    };
    if tasks > 1 && n >= 2 * COLUMN_BLOCK && precision() == Precision::Fp32 {
        return forward_by_columns(x, weight, bias, m, k, n, act, tasks);
    }
    // Every row starts as the bias (written by the task that owns it); the product is added.
    let w = SharedRhs::new(Mat::row_major(weight, k, n));
    let rows = m.div_ceil(tasks).max(1);
    filled(m * n, rows * n, |t, y_t| {
        let r0 = t * rows;
        let r = y_t.len() / n;
        for row in y_t.chunks_exact_mut(n) {
            row.copy_from_slice(bias);
        }
        matmul_rhs(
            y_t,
            Mat::row_major(&x[r0 * k..(r0 + r) * k], r, k),
            &w,
            true,
        );
        act.apply(y_t);
    })
}

/// Backward from `grad = dL/dy`, first taken through the activation (read off the forward
/// output `y`, which may be `None` for the identity): `dW = x^T g`, `db = sum_rows g`, and
/// `dx = g W^T` when `need_x`; the weight and bias gradients only when `need_w` (else empty).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    y: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    act: Activation,
    need_x: bool,
    need_w: bool,
) -> ConvGrads {
    assert_eq!(grad.len(), m * n, "linear: gradient size");
    let mut through = Vec::new();
    let g: &[f32] = match (act, y) {
        (Activation::Identity, _) => grad,
        (_, Some(y)) => {
            act.backward(y, grad, &mut through);
            &through
        }
        (_, None) => panic!("the backward pass of an activated linear layer needs its output"),
    };
    if !need_w {
        let tasks = if m * k * n >= PARALLEL_WORK {
            rayon::current_num_threads()
        } else {
            1
        };
        return ConvGrads {
            x: need_x.then(|| input_grad(g, weight, m, k, n, tasks)),
            weight: Vec::new(),
            bias: Vec::new(),
        };
    }
    let mut bias = vec![0.0f32; n];
    if n > 0 {
        for row in g.chunks_exact(n) {
            for (b, &v) in bias.iter_mut().zip(row) {
                *b += v;
            }
        }
    }
    // dW [k, n] = x^T [k, m] g [m, n] and dx [m, k] = g [m, n] W^T [n, k] take the same
    // multiply-adds: with both asked for, each runs whole on one thread (no operand packed
    // twice, one hand-over); dW alone is split by blocks of its rows.
    let big = m * k * n >= PARALLEL_WORK;
    let (dw, dx) = if need_x && big && rayon::current_num_threads() > 1 {
        rayon::join(
            || weight_grad(x, g, m, k, n, 1),
            || Some(input_grad(g, weight, m, k, n, 1)),
        )
    } else {
        let tasks = if big { rayon::current_num_threads() } else { 1 };
        (
            weight_grad(x, g, m, k, n, tasks),
            need_x.then(|| input_grad(g, weight, m, k, n, tasks)),
        )
    };
    ConvGrads {
        x: dx,
        weight: dw,
        bias,
    }
}

/// `dW [k, n] = x^T [k, m] g [m, n]`, by blocks of dW's rows (x's columns) over `tasks` tasks.
fn weight_grad(x: &[f32], g: &[f32], m: usize, k: usize, n: usize, tasks: usize) -> Vec<f32> {
    if n == 0 {
        return Vec::new();
    }
    let rows = k.div_ceil(tasks.max(1)).max(1);
    // Columns r0..r0 + r of x, transposed: element (i, j) is x[j * k + r0 + i].
    let xt = |r0: usize, r: usize| Mat {
        data: &x[r0..],
        rows: r,
        cols: m,
        row_stride: 1,
        col_stride: k,
    };
    if precision() == Precision::Fp32 && m > 0 {
        // SAFETY: each task's product overwrites its rows of dW (inner size m > 0), and only
        // them.
        return unsafe {
            written_by_rows(k, n, rows, |r0, r, dst| {
                matmul_f32_into(dst, n, xt(r0, r), Mat::row_major(g, m, n), false)
            })
        };
    }
    let g_shared = SharedRhs::new(Mat::row_major(g, m, n));
    filled(k * n, rows * n, |t, dw_t| {
        let r0 = t * rows;
        let r = dw_t.len() / n;
        matmul_rhs(dw_t, xt(r0, r), &g_shared, false);
    })
}

/// `dx [m, k] = g [m, n] W^T [n, k]`, by blocks of rows over `tasks` tasks.
fn input_grad(g: &[f32], weight: &[f32], m: usize, k: usize, n: usize, tasks: usize) -> Vec<f32> {
    if k == 0 {
        return vec![0.0; m * k];
    }
    let rows = m.div_ceil(tasks.max(1)).max(1);
    if precision() == Precision::Fp32 && n > 0 {
        let wt = Mat::row_major(weight, k, n).t();
        // SAFETY: each task's product overwrites its rows of dx (inner size n > 0), and only
        // them.
        return unsafe {
            written_by_rows(m, k, rows, |r0, r, dst| {
                let g_r = Mat::row_major(&g[r0 * n..(r0 + r) * n], r, n);
                matmul_f32_into(dst, k, g_r, wt, false)
            })
        };
    }
    let wt = SharedRhs::new(Mat::row_major(weight, k, n).t());
    filled(m * k, rows * k, |t, dx_t| {
        let r0 = t * rows;
        let r = dx_t.len() / k;
        matmul_rhs(
            dx_t,
            Mat::row_major(&g[r0 * n..(r0 + r) * n], r, n),
            &wt,
            false,
        );
    })
}

/// A row-major `rows x cols` matrix whose blocks of `block` rows are written, one task each
/// over rayon's threads, by `write(r0, r, dst)`: rows `r0..r0 + r` at `dst` (row stride
/// `cols`). For products that write their whole output, where zeroing it first was a pass of
/// its own (~1% of an MLP training step).
///
/// # Safety
/// `write` must write every element of its rows (they start uninitialised) and nothing else.
unsafe fn written_by_rows(
    rows: usize,
    cols: usize,
    block: usize,
    write: impl Fn(usize, usize, *mut f32) + Sync + Send,
) -> Vec<f32> {
    let block = block.max(1);
    let mut v: Vec<f32> = Vec::with_capacity(rows * cols);
    let out = Output(v.as_mut_ptr());
    (0..rows.div_ceil(block)).into_par_iter().for_each(|t| {
        let out = &out;
        let (r0, r1) = (t * block, ((t + 1) * block).min(rows));
        // SAFETY: rows r0..r1 lie inside the allocation of rows * cols floats and no other
        // task touches them.
        write(r0, r1 - r0, unsafe { out.0.add(r0 * cols) });
    });
    // SAFETY: the tasks wrote every row (the caller's contract).
    unsafe { v.set_len(rows * cols) };
    v
}
