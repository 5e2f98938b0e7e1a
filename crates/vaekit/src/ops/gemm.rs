//! A bounds-checked matrix product: f32 on our AVX-512 kernel for small products
//! ([`super::gemm_f32`]: the convolutions' per-image products) and on the `gemm` crate for
//! large ones and on CPUs without AVX-512 (the kernels burn's Flex uses; it picks AVX-512,
//! AVX2+FMA or scalar code at run time), or bf16 with f32 accumulation ([`super::gemm_bf16`])
//! when the process runs at [`Precision::Bf16`].

use super::gemm_bf16::{PackedLhs, PackedRhs, matmul_bf16_lhs, matmul_bf16_rhs};
use super::precision::{Precision, precision};

/// A strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    pub(crate) fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "gemm: {what} view out of bounds");
        }
    }
}

/// `dst = lhs * rhs` (or `dst += lhs * rhs` with `accumulate`), `dst` row-major
/// `[lhs.rows, rhs.cols]`, on the calling thread (callers spread images over threads), at the
/// process's [`precision`].
pub fn matmul(dst: &mut [f32], lhs: Mat, rhs: Mat, accumulate: bool) {
    match precision() {
        Precision::Fp32 => matmul_f32(dst, lhs, rhs, accumulate),
        Precision::Bf16 => {
            check_shapes(dst, lhs, rhs);
            if lhs.rows > 0 && rhs.cols > 0 && lhs.cols > 0 {
                super::gemm_bf16::matmul_bf16(dst, lhs, rhs, accumulate);
            } else if lhs.cols == 0 && !accumulate {
                dst.fill(0.0);
            }
        }
    }
}

/// A left operand of many products (a layer's weight, for every image of a batch): at bf16
/// it is converted and packed once here instead of in every product.
pub struct SharedLhs<'a> {
    view: Mat<'a>,
    packed: Option<PackedLhs>,
}

impl<'a> SharedLhs<'a> {
    pub fn new(view: Mat<'a>) -> Self {
        let bf16 = precision() == Precision::Bf16 && view.rows > 0 && view.cols > 0;
        SharedLhs {
            view,
            packed: bf16.then(|| PackedLhs::new(view)),
        }
    }
}

/// A right operand of many products, packed once at bf16 (see [`SharedLhs`]).
pub struct SharedRhs<'a> {
    view: Mat<'a>,
    packed: Option<PackedRhs>,
}

impl<'a> SharedRhs<'a> {
    pub fn new(view: Mat<'a>) -> Self {
        let bf16 = precision() == Precision::Bf16 && view.rows > 0 && view.cols > 0;
        SharedRhs {
            view,
            packed: bf16.then(|| PackedRhs::new(view)),
        }
    }
}

/// [`matmul`] with a shared left operand.
pub fn matmul_lhs(dst: &mut [f32], lhs: &SharedLhs, rhs: Mat, accumulate: bool) {
    match &lhs.packed {
        Some(packed) if rhs.cols > 0 => {
            check_shapes(dst, lhs.view, rhs);
            matmul_bf16_lhs(dst, packed, rhs, accumulate);
        }
        _ => matmul(dst, lhs.view, rhs, accumulate),
    }
}

/// [`matmul`] with a shared right operand.
pub fn matmul_rhs(dst: &mut [f32], lhs: Mat, rhs: &SharedRhs, accumulate: bool) {
    match &rhs.packed {
        Some(packed) if lhs.rows > 0 => {
            check_shapes(dst, lhs, rhs.view);
            matmul_bf16_rhs(dst, lhs, packed, accumulate);
        }
        _ => matmul(dst, lhs, rhs.view, accumulate),
    }
}

fn check_shapes(dst: &[f32], lhs: Mat, rhs: Mat) {
    assert_eq!(rhs.rows, lhs.cols, "gemm: inner sizes");
    assert_eq!(dst.len(), lhs.rows * rhs.cols, "gemm: output size");
    lhs.check("lhs");
    rhs.check("rhs");
}

/// Products of at most this many multiply-adds run on [`super::gemm_f32`] (where the CPU has
/// AVX-512F), larger ones on the `gemm` crate. The convolutions' per-image products (up to
/// ~2.5M) ran 1.2-1.3x faster on our kernel, which needs no packing for them, and the conv
/// VAE's training step ~10% faster; on the MLP's 128-row products (10M and more per thread)
/// the crate's cache blocking was as fast or up to ~10% faster (`vaekit bench`, runs
/// alternated, Intel Xeon with AVX-512).
const OWN_KERNEL_MAX: usize = 1 << 22;

/// Whether an `m x k` by `k x n` product runs on [`super::gemm_f32`] rather than the `gemm`
/// crate; `VAEKIT_GEMM=crate` sends every product to the crate, `VAEKIT_GEMM=own` every one to
/// ours, to compare the two.
fn own_kernel(m: usize, k: usize, n: usize) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Choice {
        Crate,
        Own,
        BySize,
    }
    static CHOICE: std::sync::OnceLock<Choice> = std::sync::OnceLock::new();
    let choice = *CHOICE.get_or_init(|| {
        if !super::gemm_f32::available() {
            return Choice::Crate;
        }
        match std::env::var("VAEKIT_GEMM").as_deref() {
            Ok("crate") => Choice::Crate,
            Ok("own") => Choice::Own,
            _ => Choice::BySize,
        }
    });
    match choice {
        Choice::Crate => false,
        Choice::Own => true,
        Choice::BySize => m.saturating_mul(k).saturating_mul(n) <= OWN_KERNEL_MAX,
    }
}

/// [`matmul`] in f32 whatever the process's precision.
pub fn matmul_f32(dst: &mut [f32], lhs: Mat, rhs: Mat, accumulate: bool) {
    check_shapes(dst, lhs, rhs);
    if lhs.cols == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: `dst` holds the `lhs.rows x rhs.cols` row-major result (checked above), and it is
    // borrowed mutably, so it does not alias `lhs` or `rhs`.
    unsafe { matmul_f32_into(dst.as_mut_ptr(), rhs.cols, lhs, rhs, accumulate) }
}

/// [`matmul_f32`] into a block of a larger row-major matrix: element `(i, j)` of the result at
/// `dst + i * dst_row_stride + j` (several threads writing column blocks of one output). An
/// empty inner dimension leaves `dst` as it is.
///
/// # Safety
/// Every such element must be valid for reads (with `accumulate`) and writes, initialised when
/// `accumulate`, and not accessed by anything else during the call.
pub unsafe fn matmul_f32_into(
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "gemm: inner sizes");
    lhs.check("lhs");
    rhs.check("rhs");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    if own_kernel(m, k, n) {
        // SAFETY: the views are checked and the sizes not zero; the CPU has AVX-512F; the
        // caller vouches for `dst`.
        unsafe { super::gemm_f32::matmul_into(dst, dst_row_stride, lhs, rhs, accumulate) };
        return;
    }
    // SAFETY: every index the product reads lies inside `lhs` and `rhs` (checked above); the
    // caller vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_the_definition_with_transposed_views() {
        // lhs 2x3, rhs 3x2 stored transposed.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bt = [1.0, 0.0, -1.0, 2.0, 1.0, 0.5];
        let mut c = [10.0; 4];
        matmul(
            &mut c,
            Mat::row_major(&a, 2, 3),
            Mat::row_major(&bt, 2, 3).t(),
            false,
        );
        assert_eq!(c, [-2.0, 5.5, -2.0, 16.0]);
        matmul(
            &mut c,
            Mat::row_major(&a, 2, 3),
            Mat::row_major(&bt, 2, 3).t(),
            true,
        );
        assert_eq!(c, [-4.0, 11.0, -4.0, 32.0]);
    }
}
