//! An f32 matrix product on AVX-512 for the small products of the convolutions (one per image
//! and layer): an 8 x 48 register block (24 accumulators), the inner dimension cut into
//! cache-sized slices, and no packing where an operand has a unit stride.
//!
//! The `gemm` crate (burn Flex's product) packs both operands into a buffer it allocates and
//! zero-fills on every call. On the per-image products of the conv VAE (32 to 64 rows, a few
//! hundred columns and steps) that overhead is a large share: this kernel ran them 1.15-1.35x
//! faster on one thread of an Intel Xeon (AVX-512), and the conv VAE's training step ~8% faster.
//! On large products (the MLP's 128-row layers) the crate's cache blocking was as fast or
//! faster, so [`super::gemm`] sends only products up to a size here.
//!
//! # Operands
//! A register block is up to [`MR`] rows by [`NP`] panels of 16 columns: per step `p` of the
//! inner dimension it loads `NP` vectors of the right operand (masked to the real columns) and
//! broadcasts `MR` values of the left one, then stores (or adds) the block masked to the real
//! rows and columns. The left operand is read where it lies when either of its strides is 1
//! (a row-major matrix: `MR` row pointers; a transposed one: `MR` adjacent values per step);
//! the right one when its column stride is 1 (each step's 16 columns adjacent). Otherwise an
//! operand is packed into a buffer kept per thread: the left one in blocks of `MR` rows
//! (`a[(blk * k + p) * MR + r] = lhs(blk * MR + r, p)`, zero past the last row), the right one
//! in panels of 16 columns (`b[(q * k + p) * 16 + j] = rhs(p, 16 q + j)`, gathered).
//!
//! A last panel of at most [`MAX_NARROW`] columns (the conv VAE's 49-column products: 48 + 1)
//! would cost a full panel for a few useful lanes; where the left operand is read in place its
//! columns run as matrix-vector products instead: dot products along the inner dimension for a
//! row-major left operand, 16 rows per vector (four vectors at a time) for a transposed one. On
//! one core of an AMD EPYC the conv VAE's 49-column products went from 75-77% to 88-95% of the
//! rate of a 64^3 product.
//!
//! The sums are f32 fused multiply-adds in order of `p` within each slice of the inner
//! dimension (the narrow columns' in another order), so results differ from other f32 products
//! only by rounding (the tests compare with a float64 product, and require exact results on
//! integer operands).

use std::cell::RefCell;

use super::gemm::Mat;

/// Rows per register block (and per packed block of the left operand).
pub const MR: usize = 8;
/// Panels of 16 columns per register block.
pub const NP: usize = 3;
/// Columns per panel (one 512-bit register of f32).
const LANES: usize = 16;
/// The inner dimension is cut into slices of at most this many steps, so the panels of a
/// register block (`KC * NP * 64` bytes) stay in the L1 cache while every row block of the left
/// operand passes over them.
const KC: usize = 128;
/// A last panel of at most this many columns runs as matrix-vector products (see
/// `kernel::narrow_tail`).
pub const MAX_NARROW: usize = 4;

/// Whether this CPU has AVX-512F (the kernel's instructions).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A buffer of floats whose slices start on a 64-byte line (one vector).
#[derive(Default)]
struct Aligned(Vec<f32>);

impl Aligned {
    /// `len` floats starting at a 64-byte boundary; their values are unspecified.
    fn take(&mut self, len: usize) -> &mut [f32] {
        if self.0.len() < len + LANES {
            self.0.resize(len + LANES, 0.0);
        }
        let offset = self.0.as_ptr().align_offset(64).min(LANES - 1);
        &mut self.0[offset..offset + len]
    }
}

thread_local! {
    /// Packed operands, reused between calls on a thread.
    static PACKED: RefCell<(Aligned, Aligned)> = RefCell::new(Default::default());
}

/// The packed sizes: the left operand's rows rounded up to [`MR`], the right operand's panels.
fn packed_lens(m: usize, k: usize, n: usize) -> (usize, usize) {
    (m.next_multiple_of(MR) * k, n.div_ceil(LANES) * LANES * k)
}

/// `lhs * rhs` written (or with `accumulate` added) to element `(i, j)` at
/// `dst + i * dst_row_stride + j`, on the calling thread. The caller checked the views and the
/// inner sizes, and that `m`, `k` and `n` are not zero.
///
/// # Safety
/// [`available`]; every such element is valid for reads (with `accumulate`) and writes,
/// initialised when `accumulate`, and not accessed by anything else during the call.
pub(crate) unsafe fn matmul_into(
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    debug_assert!(m > 0 && k > 0 && n > 0 && rhs.rows == k);
    // A view with one unit stride is read where it lies; the others are packed.
    let pack_a = lhs.row_stride != 1 && lhs.col_stride != 1;
    let pack_b = rhs.col_stride != 1;
    PACKED.with(|cell| {
        let (abuf, bbuf) = &mut *cell.borrow_mut();
        let (alen, blen) = packed_lens(m, k, n);
        let a = abuf.take(if pack_a { alen } else { 0 });
        let b = bbuf.take(if pack_b { blen } else { 0 });
        let (a_ptr, a_rs, a_cs, a_block) = if pack_a {
            (a.as_ptr(), 1, MR, k)
        } else {
            (
                lhs.data.as_ptr(),
                lhs.row_stride,
                lhs.col_stride,
                lhs.row_stride,
            )
        };
        let (b_ptr, b_panel, b_step) = if pack_b {
            (b.as_ptr(), k * LANES, LANES)
        } else {
            (rhs.data.as_ptr(), LANES, rhs.row_stride)
        };
        let ops = Operands {
            a: a_ptr,
            a_rs,
            a_cs,
            a_block,
            b: b_ptr,
            b_panel,
            b_step,
        };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the packed buffers hold the packed sizes, the views are in bounds (checked
        // by the caller), the CPU has AVX-512F; the caller vouches for `dst`.
        unsafe {
            if pack_a {
                pack_lhs(lhs, a);
            }
            if pack_b {
                kernel::pack_rhs(rhs, b);
            }
            kernel::product(&ops, m, k, n, dst, dst_row_stride, accumulate);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (ops, dst, dst_row_stride, accumulate);
    });
}

/// Where the kernel reads its operands: row `i`, step `p` of the left one at
/// `a + (i / MR * MR) * a_block + (i % MR) * a_rs + p * a_cs` (a view: `a_block = a_rs`, its row
/// stride; packed: `a_block = k`, `a_rs = 1`, `a_cs = MR`); step `p`, column `j` of the right
/// one at `b + (j / 16) * b_panel + p * b_step + j % 16`.
struct Operands {
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    a_block: usize,
    b: *const f32,
    b_panel: usize,
    b_step: usize,
}

/// The packed left operand (only views with neither stride 1 are packed; the others are read
/// where they lie).
fn pack_lhs(lhs: Mat, a: &mut [f32]) {
    let (m, k) = (lhs.rows, lhs.cols);
    for blk in 0..m.div_ceil(MR) {
        for p in 0..k {
            for r in 0..MR {
                let i = blk * MR + r;
                a[(blk * k + p) * MR + r] = if i < m {
                    lhs.data[i * lhs.row_stride + p * lhs.col_stride]
                } else {
                    0.0
                };
            }
        }
    }
}

/// The packed right operand in scalar code (the reference of the vector packer, and its path
/// for strides too large to gather).
fn pack_rhs_scalar(rhs: Mat, b: &mut [f32]) {
    let (k, n) = (rhs.rows, rhs.cols);
    for q in 0..n.div_ceil(LANES) {
        for p in 0..k {
            for jj in 0..LANES {
                let j = q * LANES + jj;
                b[(q * k + p) * LANES + jj] = if j < n {
                    rhs.data[p * rhs.row_stride + j * rhs.col_stride]
                } else {
                    0.0
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::super::lane_mask as mask;
    use super::{KC, LANES, MAX_NARROW, MR, Mat, NP, Operands, pack_rhs_scalar};

    /// Packs `rhs` as [`super::pack_rhs_scalar`] does (the views packed are those without unit
    /// column stride: a transposed weight or gradient): by 16 x 16 transposes where the steps
    /// are contiguous, else gathering each step's 16 values of a panel.
    ///
    /// # Safety
    /// `b.len() == ceil(n / 16) * 16 * k` and 64-byte aligned, the view is in bounds, the CPU
    /// has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_rhs(rhs: Mat, b: &mut [f32]) {
        let (k, n) = (rhs.rows, rhs.cols);
        if rhs.row_stride == 1 {
            // SAFETY: as this function's.
            unsafe { pack_rhs_transposing(rhs, b) };
            return;
        }
        if rhs.col_stride.saturating_mul(LANES) >= i32::MAX as usize {
            pack_rhs_scalar(rhs, b);
            return;
        }
        let idx = _mm512_mullo_epi32(
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            _mm512_set1_epi32(rhs.col_stride as i32),
        );
        let base = rhs.data.as_ptr();
        for q in 0..n.div_ceil(LANES) {
            let lanes = mask(n - q * LANES);
            let dst = b[q * k * LANES..].as_mut_ptr();
            let src = base.wrapping_add(q * LANES * rhs.col_stride);
            for p in 0..k {
                let v = unsafe {
                    _mm512_mask_i32gather_ps::<4>(
                        _mm512_setzero_ps(),
                        lanes,
                        idx,
                        src.wrapping_add(p * rhs.row_stride) as *const _,
                    )
                };
                unsafe { _mm512_store_ps(dst.add(p * LANES), v) };
            }
        }
    }

    /// [`pack_rhs`] for a view whose steps are contiguous (`row_stride == 1`: the transpose
    /// of a row-major matrix, such as a gradient `[channels, positions]` read as
    /// `[positions, channels]`): 16 x 16 tiles loaded a column (16 steps) at a time and
    /// transposed in registers, where a gather per step fetched 16 scattered values. The
    /// convolutions' weight-gradient products pack such views on every image; on an AMD EPYC
    /// (Zen 4) the packing took ~4% of a conv VAE training step with gathers.
    ///
    /// # Safety
    /// As [`pack_rhs`]'s, and `rhs.row_stride == 1`.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_rhs_transposing(rhs: Mat, b: &mut [f32]) {
        let (k, n) = (rhs.rows, rhs.cols);
        let base = rhs.data.as_ptr();
        for q in 0..n.div_ceil(LANES) {
            let cols = (n - q * LANES).min(LANES);
            let dst = b[q * k * LANES..].as_mut_ptr();
            for p0 in (0..k).step_by(LANES) {
                let steps = (k - p0).min(LANES);
                let m = mask(steps);
                let mut r = [_mm512_setzero_ps(); LANES];
                for (jj, r) in r.iter_mut().enumerate().take(cols) {
                    // SAFETY: elements (p0 .. p0 + steps, q * 16 + jj) of the view, in bounds.
                    *r = unsafe {
                        _mm512_maskz_loadu_ps(m, base.add((q * LANES + jj) * rhs.col_stride + p0))
                    };
                }
                let t = transpose16(r);
                for (pp, t) in t.iter().enumerate().take(steps) {
                    // SAFETY: step p0 + pp of panel q, inside `b`, 64-byte aligned.
                    unsafe { _mm512_store_ps(dst.add((p0 + pp) * LANES), *t) };
                }
            }
        }
    }

    /// The transpose of a 16 x 16 tile held as 16 rows: element `j` of result `i` is element
    /// `i` of row `j`. Pairs of rows interleaved by floats, then by pairs of floats, give
    /// 4 x 4 blocks in each 128-bit lane; two rounds of lane shuffles put the lanes in place.
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: [__m512; LANES]) -> [__m512; LANES] {
        let mut t = [_mm512_setzero_ps(); LANES];
        for a in 0..8 {
            t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
            t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
        }
        // u[4g + c], lane l: rows 4g .. 4g + 3 of column 4l + c.
        let mut u = [_mm512_setzero_ps(); LANES];
        let pd = _mm512_castps_pd;
        let ps = _mm512_castpd_ps;
        for g in 0..4 {
            let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            u[4 * g] = ps(_mm512_unpacklo_pd(pd(t0), pd(t2)));
            u[4 * g + 1] = ps(_mm512_unpackhi_pd(pd(t0), pd(t2)));
            u[4 * g + 2] = ps(_mm512_unpacklo_pd(pd(t1), pd(t3)));
            u[4 * g + 3] = ps(_mm512_unpackhi_pd(pd(t1), pd(t3)));
        }
        let mut out = [_mm512_setzero_ps(); LANES];
        for c in 0..4 {
            // Lanes 0 and 2 (0x88) or 1 and 3 (0xdd) of each operand.
            let v = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
            let w = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
            let v2 = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
            let w2 = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
            out[c] = _mm512_shuffle_f32x4::<0x88>(v, w);
            out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(v, w);
            out[4 + c] = _mm512_shuffle_f32x4::<0x88>(v2, w2);
            out[12 + c] = _mm512_shuffle_f32x4::<0xdd>(v2, w2);
        }
        out
    }

    /// The product into `c` (row stride `ldc`), slice by slice of the inner dimension; within a
    /// slice, register blocks of `NP` panels outside, row blocks inside.
    ///
    /// # Safety
    /// `ops` describes operands holding every element it addresses for these `m`, `k`, `n`,
    /// every element `(i, j)` of `c` is valid (initialised when `accumulate`), the CPU has
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product(
        ops: &Operands,
        m: usize,
        k: usize,
        n: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // A narrow last panel (the conv VAE's 49-column products: 48 + 1) would cost as much
        // as a full one for one useful lane in 16; its columns run as matrix-vector products
        // instead, where the left operand is a view (see `narrow_tail`).
        let tail = n % LANES;
        let view_a = ops.a_block == ops.a_rs && (ops.a_cs == 1 || ops.a_rs == 1);
        let narrow = n > LANES && (1..=MAX_NARROW).contains(&tail) && view_a;
        let n = if narrow { n - tail } else { n };
        if narrow {
            // SAFETY: passed on from the caller; columns n.. of the result are those.
            unsafe { narrow_tail(ops, m, k, n, n + tail, c, ldc, accumulate) };
        }
        let panels = n.div_ceil(LANES);
        let slices = k.div_ceil(KC);
        let kc = k.div_ceil(slices);
        let rows_major = ops.a_cs == 1 && ops.a_rs != 1;
        for s in 0..slices {
            let p0 = s * kc;
            let steps = (k - p0).min(kc);
            let add = accumulate || s > 0;
            let mut q = 0;
            while q < panels {
                let np = (panels - q).min(NP);
                let cols = (n - q * LANES).min(np * LANES);
                let bq = ops.b.wrapping_add(q * ops.b_panel + p0 * ops.b_step);
                let mut i = 0;
                while i < m {
                    let mr = (m - i).min(MR);
                    let args = Block {
                        a: ops.a.wrapping_add(i * ops.a_block + p0 * ops.a_cs),
                        a_rs: ops.a_rs,
                        a_cs: ops.a_cs,
                        b: bq,
                        b_panel: ops.b_panel,
                        b_step: ops.b_step,
                        steps,
                        c: unsafe { c.add(i * ldc + q * LANES) },
                        ldc,
                        cols,
                        accumulate: add,
                    };
                    // SAFETY: the block's rows i.. (mr of them), columns q * 16.. (cols of
                    // them) and steps p0.. lie inside the operands and the result.
                    unsafe {
                        if rows_major {
                            dispatch::<true>(mr, np, args)
                        } else {
                            dispatch::<false>(mr, np, args)
                        }
                    }
                    i += mr;
                }
                q += np;
            }
        }
    }

    /// Columns `j0..j1` (fewer than 16) of the product as matrix-vector products, for a left
    /// operand read where it lies: vectors along the inner dimension where its steps are
    /// adjacent (each result a horizontal sum of 16 lanes), along the rows where its rows are.
    ///
    /// # Safety
    /// As [`product`], with `ops.a_block == ops.a_rs` and one of `ops.a_rs`, `ops.a_cs` 1.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn narrow_tail(
        ops: &Operands,
        m: usize,
        k: usize,
        j0: usize,
        j1: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // rhs(p, j) for a view or a packed right operand.
        let b = |p: usize, j: usize| unsafe {
            *ops.b
                .add((j / LANES) * ops.b_panel + p * ops.b_step + j % LANES)
        };
        let out = |i: usize, j: usize, v: f32| unsafe {
            let d = c.add(i * ldc + j);
            *d = if accumulate { *d + v } else { v };
        };
        if ops.a_cs == 1 {
            // Rows of the left operand are contiguous: dot products with each column.
            let mut column = vec![0.0f32; k];
            for j in j0..j1 {
                for (p, v) in column.iter_mut().enumerate() {
                    *v = b(p, j);
                }
                for i in 0..m {
                    let row = unsafe { ops.a.add(i * ops.a_rs) };
                    let mut acc = _mm512_setzero_ps();
                    let mut p = 0;
                    while p < k {
                        let l = mask(k - p);
                        unsafe {
                            let x = _mm512_maskz_loadu_ps(l, column.as_ptr().add(p));
                            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(l, row.add(p)), x, acc);
                        }
                        p += LANES;
                    }
                    out(i, j, _mm512_reduce_add_ps(acc));
                }
            }
        } else {
            // Rows are adjacent: 16 rows per vector, GROUP vectors at a time (independent
            // chains of additions), the tail's columns side by side.
            const GROUP: usize = 4;
            let cols = j1 - j0;
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(GROUP * LANES);
                let mut l = [0 as __mmask16; GROUP];
                for (u, l) in l.iter_mut().enumerate() {
                    *l = mask(rows.saturating_sub(u * LANES));
                }
                let mut acc = [[_mm512_setzero_ps(); MAX_NARROW]; GROUP];
                for p in 0..k {
                    let mut bv = [_mm512_setzero_ps(); MAX_NARROW];
                    for (t, v) in bv[..cols].iter_mut().enumerate() {
                        *v = _mm512_set1_ps(b(p, j0 + t));
                    }
                    let row = unsafe { ops.a.add(i + p * ops.a_cs) };
                    for (u, acc) in acc.iter_mut().enumerate() {
                        if l[u] == 0 {
                            break;
                        }
                        let a = unsafe { _mm512_maskz_loadu_ps(l[u], row.add(u * LANES)) };
                        for (t, cell) in acc[..cols].iter_mut().enumerate() {
                            *cell = _mm512_fmadd_ps(a, bv[t], *cell);
                        }
                    }
                }
                for (u, acc) in acc.iter().enumerate() {
                    for (t, cell) in acc[..cols].iter().enumerate() {
                        let mut lanes = [0.0f32; LANES];
                        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *cell) };
                        let here = rows.saturating_sub(u * LANES).min(LANES);
                        for (r, &v) in lanes[..here].iter().enumerate() {
                            out(i + u * LANES + r, j0 + t, v);
                        }
                    }
                }
                i += rows;
            }
        }
    }

    /// [`block`] for `mr` rows and `np` panels.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dispatch<const RM: bool>(mr: usize, np: usize, args: Block) {
        unsafe {
            match (mr, np) {
                (8, 3) => block::<8, 3, RM>(args),
                (8, 2) => block::<8, 2, RM>(args),
                (8, _) => block::<8, 1, RM>(args),
                (7, 3) => block::<7, 3, RM>(args),
                (7, 2) => block::<7, 2, RM>(args),
                (7, _) => block::<7, 1, RM>(args),
                (6, 3) => block::<6, 3, RM>(args),
                (6, 2) => block::<6, 2, RM>(args),
                (6, _) => block::<6, 1, RM>(args),
                (5, 3) => block::<5, 3, RM>(args),
                (5, 2) => block::<5, 2, RM>(args),
                (5, _) => block::<5, 1, RM>(args),
                (4, 3) => block::<4, 3, RM>(args),
                (4, 2) => block::<4, 2, RM>(args),
                (4, _) => block::<4, 1, RM>(args),
                (3, 3) => block::<3, 3, RM>(args),
                (3, 2) => block::<3, 2, RM>(args),
                (3, _) => block::<3, 1, RM>(args),
                (2, 3) => block::<2, 3, RM>(args),
                (2, 2) => block::<2, 2, RM>(args),
                (2, _) => block::<2, 1, RM>(args),
                (_, 3) => block::<1, 3, RM>(args),
                (_, 2) => block::<1, 2, RM>(args),
                (_, _) => block::<1, 1, RM>(args),
            }
        }
    }

    /// One register block's operands: row `r`'s value at step `t` at
    /// `a + r * a_rs + t * a_cs`; panel `q`'s 16 values at step `t` at
    /// `b + q * b_panel + t * b_step`; the `R x cols` result at `c` (row stride `ldc`).
    struct Block {
        a: *const f32,
        a_rs: usize,
        a_cs: usize,
        b: *const f32,
        b_panel: usize,
        b_step: usize,
        steps: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    }

    /// One `R x 16 P` block of the result. `RM`: the left operand's rows are strided and its
    /// steps adjacent (a row-major view), else its rows adjacent (`a_rs` = 1).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const R: usize, const P: usize, const RM: bool>(x: Block) {
        let (rs, cs) = if RM { (x.a_rs, 1) } else { (1, x.a_cs) };
        let mut lanes = [0xffff as __mmask16; P];
        for (q, l) in lanes.iter_mut().enumerate() {
            *l = mask(x.cols.saturating_sub(q * LANES));
        }
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        let (mut a, mut b) = (x.a, x.b);
        for _ in 0..x.steps {
            let mut bv = [_mm512_setzero_ps(); P];
            for (q, v) in bv.iter_mut().enumerate() {
                *v = unsafe { _mm512_maskz_loadu_ps(lanes[q], b.add(q * x.b_panel)) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(unsafe { *a.add(r * rs) });
                for (q, cell) in row.iter_mut().enumerate() {
                    *cell = _mm512_fmadd_ps(av, bv[q], *cell);
                }
            }
            a = a.wrapping_add(cs);
            b = b.wrapping_add(x.b_step);
        }
        for (r, row) in acc.iter().enumerate() {
            for (q, &v) in row.iter().enumerate() {
                if x.cols <= q * LANES {
                    continue;
                }
                let ptr = unsafe { x.c.add(r * x.ldc + q * LANES) };
                let v = if x.accumulate {
                    _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps(lanes[q], ptr) })
                } else {
                    v
                };
                unsafe { _mm512_mask_storeu_ps(ptr, lanes[q], v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::lcg;

    /// Shapes around the blocks: single rows and columns, partial row blocks and panels, odd
    /// inner sizes, several slices of the inner dimension (`KC` = 128), the VAEs' layers,
    /// narrow last panels (1 to 4 columns) under 16, 64 and more rows.
    const SHAPES: [(usize, usize, usize); 14] = [
        (1, 1, 1),
        (1, 7, 1),
        (3, 5, 17),
        (7, 2, 15),
        (8, 3, 16),
        (9, 129, 47),
        (9, 1, 49),
        (16, 33, 96),
        (17, 257, 33),
        (5, 300, 65),
        (40, 20, 400),
        (128, 130, 40),
        (33, 784, 50),
        (100, 37, 49),
    ];

    /// Three views of an `r x c` matrix: row-major and column-major storage, each with a
    /// padded stride (read where they lie, or packed by transposes on the right), and one with
    /// neither stride 1 (packed; by gathers on the right).
    fn views(data: &[f32], r: usize, c: usize) -> Vec<Mat<'_>> {
        vec![
            Mat {
                data,
                rows: r,
                cols: c,
                row_stride: c + 3,
                col_stride: 1,
            },
            Mat {
                data,
                rows: r,
                cols: c,
                row_stride: 1,
                col_stride: r + 2,
            },
            Mat {
                data,
                rows: r,
                cols: c,
                row_stride: 2 * c + 1,
                col_stride: 2,
            },
        ]
    }

    /// The element `(i, j)` of a view.
    fn at(v: &Mat, i: usize, j: usize) -> f32 {
        v.data[i * v.row_stride + j * v.col_stride]
    }

    fn storage(r: usize, c: usize, seed: &mut u64, int: bool) -> Vec<f32> {
        (0..(2 * c + 1) * r + (r + 2) * c + 8)
            .map(|_| {
                let v = lcg(seed);
                if int { (v * 8.0).round() } else { v }
            })
            .collect()
    }

    /// The vector packer (16 x 16 transposes for the column-major views, gathers for the
    /// others) writes what the scalar one does, at every shape, padded panel and stride.
    #[test]
    fn vector_packing_equals_scalar_packing_for_every_view() {
        if !available() {
            return;
        }
        let mut s = 3;
        for (m, k, n) in SHAPES {
            let rdata = storage(k, n, &mut s, false);
            let (_, blen) = packed_lens(m, k, n);
            for rhs in views(&rdata, k, n) {
                let mut slow = vec![f32::NAN; blen];
                let mut fast = Aligned::default();
                let fast = fast.take(blen);
                fast.fill(f32::NAN);
                pack_rhs_scalar(rhs, &mut slow);
                // SAFETY: sized by packed_lens and 64-byte aligned, the view is in bounds, the
                // CPU has AVX-512F.
                unsafe { kernel::pack_rhs(rhs, fast) };
                assert_eq!(
                    fast,
                    &slow[..],
                    "rhs {k}x{n} strides {}, {}",
                    rhs.row_stride,
                    rhs.col_stride
                );
            }
        }
    }

    /// Runs the product into an `m x n` block at column 2 of a wider matrix (row stride
    /// `n + 5`) that starts as `init`, and returns that matrix.
    fn product_into_block(lhs: Mat, rhs: Mat, init: &[f32], accumulate: bool) -> Vec<f32> {
        let mut c = init.to_vec();
        // SAFETY: the block (rows < m, columns 2..n + 2 of rows n + 5 wide) lies inside `c`,
        // which is initialised; the CPU has AVX-512F.
        unsafe { matmul_into(c.as_mut_ptr().add(2), rhs.cols + 5, lhs, rhs, accumulate) };
        c
    }

    /// `init` with `(i, 2 + j)` replaced by (or increased by) the float64 product.
    fn reference(lhs: Mat, rhs: Mat, init: &[f32], accumulate: bool) -> Vec<f64> {
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        let mut c: Vec<f64> = init.iter().map(|&v| v as f64).collect();
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| at(&lhs, i, p) as f64 * at(&rhs, p, j) as f64)
                    .sum();
                let cell = &mut c[i * (n + 5) + 2 + j];
                *cell = if accumulate { *cell + dot } else { dot };
            }
        }
        c
    }

    #[test]
    fn integer_operands_give_the_exact_product_at_every_shape_and_view() {
        if !available() {
            return;
        }
        let mut s = 11;
        for (m, k, n) in SHAPES {
            let ldata = storage(m, k, &mut s, true);
            let rdata = storage(k, n, &mut s, true);
            let init: Vec<f32> = (0..m * (n + 5))
                .map(|_| (lcg(&mut s) * 8.0).round())
                .collect();
            for lhs in views(&ldata, m, k) {
                for rhs in views(&rdata, k, n) {
                    for accumulate in [false, true] {
                        let got = product_into_block(lhs, rhs, &init, accumulate);
                        let want = reference(lhs, rhs, &init, accumulate);
                        for (g, w) in got.iter().zip(&want) {
                            assert_eq!(*g as f64, *w, "{m}x{k}x{n} accumulate {accumulate}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn real_operands_are_within_f32_rounding_of_the_float64_product() {
        if !available() {
            return;
        }
        let mut s = 5;
        for (m, k, n) in SHAPES {
            let ldata = storage(m, k, &mut s, false);
            let rdata = storage(k, n, &mut s, false);
            let init: Vec<f32> = (0..m * (n + 5)).map(|_| lcg(&mut s)).collect();
            let (lhs, rhs) = (views(&ldata, m, k)[0], views(&rdata, k, n)[1]);
            for accumulate in [false, true] {
                let got = product_into_block(lhs, rhs, &init, accumulate);
                let want = reference(lhs, rhs, &init, accumulate);
                // Each of the k + 1 sums rounds once (relative 2^-24) on terms of size <= 1.
                let tol = (k + 1) as f64 * 2f64.powi(-23);
                for (g, w) in got.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() <= tol, "{m}x{k}x{n}: {g} vs {w}");
                }
            }
        }
    }
}
