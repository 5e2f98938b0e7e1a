//! A bf16 matrix product with f32 accumulation: on AMX tiles (`TDPBF16PS`, 16 x 16 x 32
//! multiply-adds per instruction) where the CPU and OS have them, else on AVX512-BF16's
//! `VDPBF16PS` (two bf16 multiply-adds per f32 lane per instruction).
//!
//! Both operands are rounded to bf16 (nearest, ties to even; the vector conversion flushes
//! subnormals to zero) while they are packed: the left one into rows of k-pairs (one `u32` per
//! pair), the right one into panels of 16 columns whose k-pairs interleave
//! (`[b(2p, j), b(2p + 1, j)]` for the panel's 16 `j`): the layout both instructions read, an
//! AMX tile being 16 such rows of 16 pairs. Panels are padded with zeros (to 16 columns and an
//! even `k`; for AMX to whole tiles), so the kernels have no edge cases; stores are masked to
//! the real rows and columns. An AVX-512 register block is 8 rows by 32 columns (16
//! accumulators), an AMX block 32 by 32 (4 tiles of sums).
//!
//! Products of bf16 values are exact in f32, and the sums are f32 sums, so the result differs
//! from the f32 product only by the operands' rounding (relative 2^-8 each, bf16 having 8
//! significant bits): for operands that
//! are bf16 already (small integers, say) the two agree exactly, which the tests check for both
//! kernels.

use std::cell::RefCell;

use rayon::prelude::*;

use super::buffer::zeroed;

use super::gemm::Mat;

/// Whether this CPU has the instructions (AVX-512F, -BW and AVX512-BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `v` rounded to the nearest bf16 (ties to even), as its bit pattern; NaN stays NaN.
pub fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of a bf16 bit pattern.
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Elements of a shared operand from which its packing is spread over the threads.
const PARALLEL_PACK: usize = 1 << 16;

/// Columns per panel (one 512-bit register of f32).
const LANES: usize = 16;
/// Rows per register block.
const MR: usize = 8;

thread_local! {
    /// Packed operands, reused between calls on a thread.
    static PACKED: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `dst = lhs * rhs` (or `dst += lhs * rhs` with `accumulate`) with bf16 operands and f32
/// accumulation, `dst` row-major `[lhs.rows, rhs.cols]`: on AMX tiles where the CPU has them,
/// else with AVX512-BF16. The caller checks the shapes and [`available`].
pub(crate) fn matmul_bf16(dst: &mut [f32], lhs: Mat, rhs: Mat, accumulate: bool) {
    matmul_bf16_on(dst, lhs, rhs, accumulate, amx::available());
}

/// Whether this process runs the bf16 products on AMX tiles (Intel Sapphire Rapids and later,
/// on Linux; `VAEKIT_AMX=0` turns them off) rather than AVX512-BF16.
pub fn amx_available() -> bool {
    amx::available()
}

/// The packed sizes of an `m x k` by `k x n` product: pairs per row (and per panel), rows of
/// the left operand, panels of the right one. AMX reads whole tiles: 16 k-pairs per tile row,
/// blocks of 32 rows and 2 panels, all padded with zeros.
fn layout(m: usize, k: usize, n: usize, amx: bool) -> (usize, usize, usize) {
    if amx {
        (
            k.div_ceil(2).next_multiple_of(amx::PAIRS),
            m.next_multiple_of(2 * amx::ROWS),
            n.div_ceil(LANES).next_multiple_of(2),
        )
    } else {
        (k.div_ceil(2), m, n.div_ceil(LANES))
    }
}

/// A left operand packed once for many products (a layer's weight, used for every image).
pub struct PackedLhs {
    a: Vec<u32>,
    rows: usize,
    cols: usize,
    kp: usize,
    amx: bool,
}

impl PackedLhs {
    /// Packs `lhs` for this process's kernel. Needs [`available`].
    pub fn new(lhs: Mat) -> Self {
        assert!(available(), "bf16 products need AVX512-BF16");
        let amx = amx::available();
        let (kp, rows, _) = layout(lhs.rows, lhs.cols, 0, amx);
        let mut a = zeroed(rows * kp);
        lhs.check("lhs");
        // Blocks of rows on the threads when the operand is large (a layer's weight is packed
        // while the other threads would wait).
        let block = if lhs.rows * lhs.cols >= PARALLEL_PACK {
            64
        } else {
            lhs.rows.max(1)
        };
        a[..lhs.rows * kp]
            .par_chunks_mut(block * kp)
            .enumerate()
            .for_each(|(t, a_t)| {
                let i0 = t * block;
                let view = Mat {
                    data: &lhs.data[i0 * lhs.row_stride..],
                    rows: a_t.len() / kp,
                    ..lhs
                };
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `a_t` holds the block's rows * kp zeroed pairs, the view (rows i0..
                // of a checked view) is in bounds, the CPU has the instructions.
                unsafe {
                    kernel::pack_lhs(view, kp, a_t)
                };
            });
        PackedLhs {
            a,
            rows: lhs.rows,
            cols: lhs.cols,
            kp,
            amx,
        }
    }
}

/// A right operand packed once for many products.
pub struct PackedRhs {
    b: Vec<u32>,
    rows: usize,
    cols: usize,
    kp: usize,
    amx: bool,
}

impl PackedRhs {
    /// Packs `rhs` for this process's kernel. Needs [`available`].
    pub fn new(rhs: Mat) -> Self {
        assert!(available(), "bf16 products need AVX512-BF16");
        let amx = amx::available();
        let (kp, _, panels) = layout(0, rhs.rows, rhs.cols, amx);
        let mut b = zeroed(panels * kp * LANES);
        rhs.check("rhs");
        // Groups of 4 panels on the threads when the operand is large.
        let group = if rhs.rows * rhs.cols >= PARALLEL_PACK {
            4
        } else {
            panels.max(1)
        };
        let real = rhs.cols.div_ceil(LANES);
        b[..real * kp * LANES]
            .par_chunks_mut(group * kp * LANES)
            .enumerate()
            .for_each(|(t, b_t)| {
                let j0 = t * group * LANES;
                let view = Mat {
                    data: &rhs.data[j0 * rhs.col_stride..],
                    cols: (rhs.cols - j0).min(group * LANES),
                    ..rhs
                };
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `b_t` holds the group's panels * kp * 16 zeroed pairs, the view
                // (columns j0.. of a checked view) is in bounds, the CPU has the instructions.
                unsafe {
                    kernel::pack_rhs(view, kp, b_t)
                };
            });
        PackedRhs {
            b,
            rows: rhs.rows,
            cols: rhs.cols,
            kp,
            amx,
        }
    }
}

/// The product of packed operands (same `kp` and kernel), written to `dst` `[m, n]`.
fn product(
    dst: &mut [f32],
    a: &[u32],
    b: &[u32],
    m: usize,
    n: usize,
    kp: usize,
    amx: bool,
    accumulate: bool,
) {
    assert!(dst.len() >= m * n, "gemm: output size");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `a` and `b` were packed with this `kp` and kernel's layout for m rows and n
    // columns (so they hold what the kernels read), `dst` holds m * n values and every store is
    // masked to rows below m and columns below n; packing checked the instructions.
    unsafe {
        if amx {
            amx::product(a, b, dst, m, n, kp, accumulate);
        } else {
            kernel::product(a, b, dst, m, n, kp, accumulate);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, a, b, m, n, kp, amx, accumulate);
}

/// `dst (+)= lhs * rhs` with a packed left operand; `rhs` is packed here.
pub(crate) fn matmul_bf16_lhs(dst: &mut [f32], lhs: &PackedLhs, rhs: Mat, accumulate: bool) {
    assert_eq!(rhs.rows, lhs.cols, "gemm: inner sizes");
    rhs.check("rhs");
    let (_, _, panels) = layout(0, rhs.rows, rhs.cols, lhs.amx);
    PACKED.with(|cell| {
        let (_, b) = &mut *cell.borrow_mut();
        pack_rhs_into(rhs, lhs.kp, panels, b);
        product(
            dst, &lhs.a, b, lhs.rows, rhs.cols, lhs.kp, lhs.amx, accumulate,
        );
    });
}

/// `dst (+)= lhs * rhs` with a packed right operand; `lhs` is packed here.
pub(crate) fn matmul_bf16_rhs(dst: &mut [f32], lhs: Mat, rhs: &PackedRhs, accumulate: bool) {
    assert_eq!(rhs.rows, lhs.cols, "gemm: inner sizes");
    lhs.check("lhs");
    let (_, rows, _) = layout(lhs.rows, lhs.cols, 0, rhs.amx);
    PACKED.with(|cell| {
        let (a, _) = &mut *cell.borrow_mut();
        pack_lhs_into(lhs, rhs.kp, rows, a);
        product(
            dst, a, &rhs.b, lhs.rows, rhs.cols, rhs.kp, rhs.amx, accumulate,
        );
    });
}

/// `a` = `lhs` packed on this thread: `rows` rows (the real ones, then zeros) of `kp` pairs.
/// The caller checked the view; [`available`].
fn pack_lhs_into(lhs: Mat, kp: usize, rows: usize, a: &mut Vec<u32>) {
    a.clear();
    a.resize(rows * kp, 0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `a` holds rows * kp zeroed pairs, rows >= lhs.rows, the view is in bounds, and the
    // CPU has the instructions.
    unsafe {
        kernel::pack_lhs(lhs, kp, a)
    };
}

/// `b` = `rhs` packed on this thread: `panels` panels (the real ones, then zeros) of `kp`
/// pairs by 16 columns. The caller checked the view; [`available`].
fn pack_rhs_into(rhs: Mat, kp: usize, panels: usize, b: &mut Vec<u32>) {
    b.clear();
    b.resize(panels * kp * LANES, 0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `b` holds panels * kp * 16 zeroed pairs, panels >= ceil(rhs.cols / 16), the view
    // is in bounds, and the CPU has the instructions.
    unsafe {
        kernel::pack_rhs(rhs, kp, b)
    };
}

/// [`matmul_bf16`] on AMX tiles (`amx`, which needs [`amx_available`]) or AVX512-BF16.
fn matmul_bf16_on(dst: &mut [f32], lhs: Mat, rhs: Mat, accumulate: bool, amx: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    debug_assert!(available() && (!amx || amx::available()));
    let (kp, rows, panels) = layout(m, k, n, amx);
    PACKED.with(|cell| {
        let (a, b) = &mut *cell.borrow_mut();
        pack_lhs_into(lhs, kp, rows, a);
        pack_rhs_into(rhs, kp, panels, b);
        product(dst, a, b, m, n, kp, amx, accumulate);
    });
}

/// Row `i`'s k-pairs at `a[i * kp + p]`: bf16 of `lhs(i, 2p)` in the low half, of
/// `lhs(i, 2p + 1)` (zero past `k`) in the high half; `kp >= ceil(k / 2)` is the row stride,
/// and what lies past the real pairs is left as it is (zero). (The scalar reference of the
/// vector packers, and the path for views with no unit stride.)
fn pack_lhs_scalar(lhs: Mat, kp: usize, a: &mut [u32]) {
    let (m, k) = (lhs.rows, lhs.cols);
    for i in 0..m {
        let row = &mut a[i * kp..i * kp + k.div_ceil(2)];
        let at = |j: usize| lhs.data[i * lhs.row_stride + j * lhs.col_stride];
        for (p, pair) in row.iter_mut().enumerate() {
            let lo = to_bf16(at(2 * p)) as u32;
            let hi = if 2 * p + 1 < k {
                to_bf16(at(2 * p + 1)) as u32
            } else {
                0
            };
            *pair = lo | (hi << 16);
        }
    }
}

/// Panel `q`'s k-pair `p` at `b[(q * kp + p) * 16 ..][..16]`: for its 16 columns `j`, bf16 of
/// `rhs(2p, j)` low and `rhs(2p + 1, j)` high, zero past `k` and past `n`; `kp >= ceil(k / 2)`
/// is the panel height. (`b` starts zeroed.)
fn pack_rhs_scalar(rhs: Mat, kp: usize, b: &mut [u32]) {
    let (k, n) = (rhs.rows, rhs.cols);
    let panels = n.div_ceil(LANES);
    for q in 0..panels {
        let j0 = q * LANES;
        let width = LANES.min(n - j0);
        let panel = &mut b[q * kp * LANES..(q + 1) * kp * LANES];
        for i in 0..k {
            let (p, shift) = (i / 2, 16 * (i % 2));
            let base = i * rhs.row_stride + j0 * rhs.col_stride;
            let out = &mut panel[p * LANES..p * LANES + width];
            if rhs.col_stride == 1 {
                for (o, &v) in out.iter_mut().zip(&rhs.data[base..base + width]) {
                    *o |= (to_bf16(v) as u32) << shift;
                }
            } else {
                for (jj, o) in out.iter_mut().enumerate() {
                    *o |= (to_bf16(rhs.data[base + jj * rhs.col_stride]) as u32) << shift;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::super::lane_mask as mask;
    use super::{LANES, MR, Mat, pack_lhs_scalar, pack_rhs_scalar};

    /// 16 u32 lanes holding the bf16 pairs `(lo[j], hi[j])`, rounded to nearest even.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    fn interleave(lo: __m512, hi: __m512) -> __m512i {
        // Words 0..16 are lo's, 16..32 hi's; word 2j of the result is lo[j], 2j + 1 hi[j].
        let words = as_i(_mm512_cvtne2ps_pbh(hi, lo));
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        _mm512_permutexvar_epi16(idx, words)
    }

    #[inline(always)]
    fn as_i(v: __m512bh) -> __m512i {
        // SAFETY: both are 512 bits of plain data.
        unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
    }

    /// 16 floats from `p` (the first `n` of them; the rest read as zero and not touched).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load(p: *const f32, n: usize) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(mask(n), p) }
    }

    /// [`super::pack_lhs_scalar`]'s layout, with vector conversion where a stride is 1.
    ///
    /// # Safety
    /// `a.len() == lhs.rows * kp`, the view is in bounds, the CPU has AVX512-BF16 and -BW.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_lhs(lhs: Mat, kp: usize, a: &mut [u32]) {
        let (m, k) = (lhs.rows, lhs.cols);
        let base = lhs.data.as_ptr();
        if lhs.col_stride == 1 {
            // Pairs are adjacent in the row: 32 floats become 16 pairs in place.
            for i in 0..m {
                let src = base.wrapping_add(i * lhs.row_stride);
                let dst = a[i * kp..].as_mut_ptr();
                let mut t = 0;
                while t < k {
                    let rem = k - t;
                    let lo = unsafe { load(src.wrapping_add(t), rem) };
                    let hi = unsafe { load(src.wrapping_add(t + 16), rem.saturating_sub(16)) };
                    let words = as_i(_mm512_cvtne2ps_pbh(hi, lo));
                    let pairs = rem.min(32).div_ceil(2);
                    unsafe {
                        _mm512_mask_storeu_epi32(dst.add(t / 2) as *mut _, mask(pairs), words)
                    };
                    t += 32;
                }
            }
        } else if lhs.row_stride == 1 {
            // Columns 2p and 2p + 1 are contiguous over 16 rows: interleave, then store with
            // stride kp.
            let offsets = _mm512_mullo_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                _mm512_set1_epi32(kp as i32),
            );
            for p in 0..k.div_ceil(2) {
                let c0 = base.wrapping_add(2 * p * lhs.col_stride);
                let c1 = base.wrapping_add((2 * p + 1) * lhs.col_stride);
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min(16);
                    let lo = unsafe { load(c0.wrapping_add(i), rows) };
                    let hi = if 2 * p + 1 < k {
                        unsafe { load(c1.wrapping_add(i), rows) }
                    } else {
                        _mm512_setzero_ps()
                    };
                    let pairs = interleave(lo, hi);
                    let dst = a[i * kp + p..].as_mut_ptr();
                    unsafe {
                        _mm512_mask_i32scatter_epi32::<4>(dst as *mut _, mask(rows), offsets, pairs)
                    };
                    i += 16;
                }
            }
        } else {
            pack_lhs_scalar(lhs, kp, a);
        }
    }

    /// [`super::pack_rhs_scalar`]'s layout, with vector conversion where a stride is 1.
    ///
    /// # Safety
    /// `b.len() == ceil(n / 16) * kp * 16` and zeroed, the view is in bounds, the CPU has
    /// AVX512-BF16 and -BW.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_rhs(rhs: Mat, kp: usize, b: &mut [u32]) {
        let (k, n) = (rhs.rows, rhs.cols);
        let panels = n.div_ceil(LANES);
        let base = rhs.data.as_ptr();
        if rhs.col_stride == 1 {
            // Rows 2p and 2p + 1 over the panel's 16 columns: interleave.
            for q in 0..panels {
                let j0 = q * LANES;
                let width = (n - j0).min(LANES);
                for p in 0..k.div_ceil(2) {
                    let r0 = base.wrapping_add(2 * p * rhs.row_stride + j0);
                    let lo = unsafe { load(r0, width) };
                    let hi = if 2 * p + 1 < k {
                        unsafe { load(r0.wrapping_add(rhs.row_stride), width) }
                    } else {
                        _mm512_setzero_ps()
                    };
                    let dst = b[(q * kp + p) * LANES..].as_mut_ptr();
                    unsafe { _mm512_storeu_si512(dst as *mut _, interleave(lo, hi)) };
                }
            }
        } else if rhs.row_stride == 1 {
            // Column j's pairs are adjacent: 32 floats become 16 pairs, stored with stride 16.
            let offsets = _mm512_mullo_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                _mm512_set1_epi32(LANES as i32),
            );
            for j in 0..n {
                let (q, jj) = (j / LANES, j % LANES);
                let src = base.wrapping_add(j * rhs.col_stride);
                let mut t = 0;
                while t < k {
                    let rem = k - t;
                    let lo = unsafe { load(src.wrapping_add(t), rem) };
                    let hi = unsafe { load(src.wrapping_add(t + 16), rem.saturating_sub(16)) };
                    let words = as_i(_mm512_cvtne2ps_pbh(hi, lo));
                    let pairs = rem.min(32).div_ceil(2);
                    let dst = b[(q * kp + t / 2) * LANES + jj..].as_mut_ptr();
                    unsafe {
                        _mm512_mask_i32scatter_epi32::<4>(
                            dst as *mut _,
                            mask(pairs),
                            offsets,
                            words,
                        )
                    };
                    t += 32;
                }
            }
        } else {
            pack_rhs_scalar(rhs, kp, b);
        }
    }

    /// The whole product from packed operands: blocks of up to 2 panels (32 columns) by up to
    /// `MR` rows.
    ///
    /// # Safety
    /// `a.len() >= m * kp`, `b.len() >= ceil(n / 16) * kp * 16`, `dst.len() >= m * n`, and the
    /// CPU has AVX-512F and AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn product(
        a: &[u32],
        b: &[u32],
        dst: &mut [f32],
        m: usize,
        n: usize,
        kp: usize,
        accumulate: bool,
    ) {
        let panels = n.div_ceil(LANES);
        let mut q = 0;
        while q < panels {
            let np = (panels - q).min(2);
            let cols = (n - q * LANES).min(np * LANES);
            let bq = unsafe { b.as_ptr().add(q * kp * LANES) };
            let mut i = 0;
            while i < m {
                let mr = (m - i).min(MR);
                let ai = unsafe { a.as_ptr().add(i * kp) };
                let c = unsafe { dst.as_mut_ptr().add(i * n + q * LANES) };
                let args = (ai, kp, bq, c, n, cols, accumulate);
                unsafe {
                    match (mr, np) {
                        (8, 2) => block::<8, 2>(args),
                        (8, _) => block::<8, 1>(args),
                        (7, 2) => block::<7, 2>(args),
                        (7, _) => block::<7, 1>(args),
                        (6, 2) => block::<6, 2>(args),
                        (6, _) => block::<6, 1>(args),
                        (5, 2) => block::<5, 2>(args),
                        (5, _) => block::<5, 1>(args),
                        (4, 2) => block::<4, 2>(args),
                        (4, _) => block::<4, 1>(args),
                        (3, 2) => block::<3, 2>(args),
                        (3, _) => block::<3, 1>(args),
                        (2, 2) => block::<2, 2>(args),
                        (2, _) => block::<2, 1>(args),
                        (_, 2) => block::<1, 2>(args),
                        (_, _) => block::<1, 1>(args),
                    }
                }
                i += mr;
            }
            q += np;
        }
    }

    type BlockArgs = (*const u32, usize, *const u32, *mut f32, usize, usize, bool);

    /// One `R x 16P` block of the result: `R` packed rows from `a` (stride `kp`), `P` panels
    /// from `b` (stride `kp * 16`), written to `c` (row stride `ldc`) for its first `cols`
    /// columns, added to what is there with `accumulate`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn block<const R: usize, const P: usize>(
        (a, kp, b, c, ldc, cols, accumulate): BlockArgs,
    ) {
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        for p in 0..kp {
            let mut bv = [_mm512_setzero_si512(); P];
            for (q, v) in bv.iter_mut().enumerate() {
                *v = unsafe { _mm512_loadu_si512(b.add((q * kp + p) * LANES) as *const _) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(unsafe { *a.add(r * kp + p) } as i32);
                for (q, cell) in row.iter_mut().enumerate() {
                    *cell = _mm512_dpbf16_ps(*cell, as_bh(av), as_bh(bv[q]));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (q, &v) in row.iter().enumerate() {
                let width = cols.saturating_sub(q * LANES).min(LANES);
                if width == 0 {
                    continue;
                }
                let mask: __mmask16 = super::super::lane_mask(width);
                let ptr = unsafe { c.add(r * ldc + q * LANES) };
                let v = if accumulate {
                    _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps(mask, ptr) })
                } else {
                    v
                };
                unsafe { _mm512_mask_storeu_ps(ptr, mask, v) };
            }
        }
    }

    #[inline(always)]
    fn as_bh(v: __m512i) -> __m512bh {
        // SAFETY: both are 512 bits of plain data.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::matmul_f32;
    use crate::ops::lcg;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(from_bf16(to_bf16(1.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(-3.5)), -3.5);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even 1.
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6.
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 200.0)), 1.0 + 1.0 / 128.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        let mut s = 7;
        for _ in 0..10_000 {
            let v = lcg(&mut s) * 1000.0;
            let r = from_bf16(to_bf16(v));
            assert!((r - v).abs() <= v.abs() / 256.0, "{v} -> {r}");
        }
    }

    /// Shapes around the kernel's blocks: single rows and columns, odd k, a partial panel,
    /// a partial row block, several of each.
    const SHAPES: [(usize, usize, usize); 12] = [
        (1, 1, 1),
        (1, 7, 1),
        (3, 5, 17),
        (8, 2, 32),
        (9, 3, 33),
        (17, 25, 49),
        (32, 400, 49),
        (100, 1568, 20),
        (5, 11, 70),
        (33, 65, 65),
        (70, 97, 3),
        (25, 16, 196),
    ];

    #[test]
    fn operands_packed_once_give_the_same_products_as_packing_per_call() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut s = 9;
        // Large enough to be packed on the threads, with partial blocks and panels.
        for (m, k, n) in [(300, 250, 70), (70, 250, 300), (5, 11, 70)] {
            let a: Vec<f32> = (0..m * k).map(|_| (lcg(&mut s) * 8.0).round()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| (lcg(&mut s) * 8.0).round()).collect();
            for transposed in [false, true] {
                let lhs = if transposed {
                    Mat::row_major(&a, k, m).t()
                } else {
                    Mat::row_major(&a, m, k)
                };
                let rhs = if transposed {
                    Mat::row_major(&b, n, k).t()
                } else {
                    Mat::row_major(&b, k, n)
                };
                let mut want = vec![0.0; m * n];
                matmul_f32(&mut want, lhs, rhs, false);
                let mut got = vec![0.0; m * n];
                matmul_bf16_lhs(&mut got, &PackedLhs::new(lhs), rhs, false);
                assert_eq!(got, want, "packed lhs {m}x{k}x{n} transposed {transposed}");
                let mut got = vec![0.0; m * n];
                matmul_bf16_rhs(&mut got, lhs, &PackedRhs::new(rhs), false);
                assert_eq!(got, want, "packed rhs {m}x{k}x{n} transposed {transposed}");
            }
        }
    }

    #[test]
    fn vector_packing_equals_scalar_packing_for_every_view() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut s = 5;
        for (m, k, n) in SHAPES {
            let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut s)).collect();
            for transposed in [false, true] {
                let lhs = if transposed {
                    Mat::row_major(&a, k, m).t()
                } else {
                    Mat::row_major(&a, m, k)
                };
                let rhs = if transposed {
                    Mat::row_major(&b, n, k).t()
                } else {
                    Mat::row_major(&b, k, n)
                };
                // A row stride (or panel height) with room to spare, as AMX packs.
                let kp = k.div_ceil(2) + 3;
                let (mut want, mut got) = (vec![0u32; m * kp], vec![0u32; m * kp]);
                pack_lhs_scalar(lhs, kp, &mut want);
                unsafe { kernel::pack_lhs(lhs, kp, &mut got) };
                assert_eq!(got, want, "lhs {m}x{k} transposed {transposed}");
                let len = n.div_ceil(LANES) * kp * LANES;
                let (mut want, mut got) = (vec![0u32; len], vec![0u32; len]);
                pack_rhs_scalar(rhs, kp, &mut want);
                unsafe { kernel::pack_rhs(rhs, kp, &mut got) };
                assert_eq!(got, want, "rhs {k}x{n} transposed {transposed}");
            }
        }
    }

    /// The kernels this CPU runs: AVX512-BF16 always (when [`available`]), AMX where it has it.
    fn kernels() -> Vec<bool> {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return vec![];
        }
        if amx::available() {
            vec![false, true]
        } else {
            eprintln!("AMX kernel not tested: this CPU or OS has no AMX");
            vec![false]
        }
    }

    #[test]
    fn integer_operands_give_the_exact_product_at_every_shape_and_view() {
        for amx in kernels() {
            integer_operands(amx);
        }
    }

    fn integer_operands(amx: bool) {
        let mut s = 1;
        for (m, k, n) in SHAPES {
            // Integers in -8..8 are exact in bf16, and so are their products and sums in f32.
            let a: Vec<f32> = (0..m * k).map(|_| (lcg(&mut s) * 8.0).round()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| (lcg(&mut s) * 8.0).round()).collect();
            let start: Vec<f32> = (0..m * n).map(|_| (lcg(&mut s) * 8.0).round()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let lhs = if ta {
                    Mat::row_major(&a, k, m).t()
                } else {
                    Mat::row_major(&a, m, k)
                };
                let rhs = if tb {
                    Mat::row_major(&b, n, k).t()
                } else {
                    Mat::row_major(&b, k, n)
                };
                for accumulate in [false, true] {
                    let mut want = start.clone();
                    let mut got = start.clone();
                    matmul_f32(&mut want, lhs, rhs, accumulate);
                    matmul_bf16_on(&mut got, lhs, rhs, accumulate, amx);
                    assert_eq!(
                        got, want,
                        "amx {amx}: {m}x{k}x{n} transposed {ta}/{tb} acc {accumulate}"
                    );
                }
            }
        }
    }

    #[test]
    fn real_operands_are_within_bf16_rounding_of_the_f32_product() {
        for amx in kernels() {
            real_operands(amx);
        }
    }

    fn real_operands(amx: bool) {
        let mut s = 3;
        for (m, k, n) in SHAPES {
            let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut s)).collect();
            let (lhs, rhs) = (Mat::row_major(&a, m, k), Mat::row_major(&b, k, n));
            let mut want = vec![0.0; m * n];
            let mut got = vec![0.0; m * n];
            matmul_f32(&mut want, lhs, rhs, false);
            matmul_bf16_on(&mut got, lhs, rhs, false, amx);
            for i in 0..m {
                for j in 0..n {
                    // Each operand is off by at most 2^-8 relative: a product by 2^-7 (and a
                    // little f32 rounding of the sums).
                    let scale: f32 = (0..k).map(|t| (a[i * k + t] * b[t * n + j]).abs()).sum();
                    let err = (got[i * n + j] - want[i * n + j]).abs();
                    assert!(
                        err <= scale / 128.0 + 1e-6,
                        "amx {amx}: {m}x{k}x{n} ({i}, {j}): {err} > {}",
                        scale / 128.0
                    );
                }
            }
            // And not the f32 product itself: the rounding is really there.
            if k > 10 {
                assert_ne!(got, want, "{m}x{k}x{n}");
            }
        }
    }
}

/// The product on AMX tiles (Intel Sapphire Rapids and later): `TDPBF16PS` multiplies a tile of
/// 16 rows x 16 k-pairs by one of 16 k-pairs x 16 columns (the packed panels' layout) into 16 x
/// 16 f32 sums. The instructions are written as inline assembly (Rust's AMX intrinsics are not
/// stable); the process asks Linux for the tile state once (`arch_prctl`).
#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::LANES;

    /// Rows of a tile, and k-pairs per tile row (64 bytes).
    pub(super) const ROWS: usize = 16;
    pub(super) const PAIRS: usize = 16;

    /// Whether the CPU has AMX-TILE and AMX-BF16 and Linux granted this process the tile state.
    pub(super) fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            if std::env::var("VAEKIT_AMX").is_ok_and(|v| v == "0") {
                return false;
            }
            let leaf = __cpuid_count(7, 0);
            let (bf16, tile) = ((leaf.edx >> 22) & 1 == 1, (leaf.edx >> 24) & 1 == 1);
            if !(bf16 && tile) {
                return false;
            }
            #[cfg(target_os = "linux")]
            {
                const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
                const XFEATURE_XTILEDATA: libc::c_long = 18;
                // SAFETY: a request for a permission; it touches no memory of ours.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_arch_prctl,
                        ARCH_REQ_XCOMP_PERM,
                        XFEATURE_XTILEDATA,
                    )
                };
                r == 0
            }
            #[cfg(not(target_os = "linux"))]
            false
        })
    }

    /// `LDTILECFG`'s 64 bytes: palette 1, then per tile its bytes per row and its rows.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// The whole product in blocks of 32 rows x 32 columns: tiles 0-3 the block's sums, 4-5
    /// its two row tiles of `a`, 6-7 its two column panels of `b`.
    ///
    /// # Safety
    /// `kp` is a multiple of 16; `a` holds `m.next_multiple_of(32) * kp` pairs and `b`
    /// `ceil(n / 16).next_multiple_of(2) * kp * 16`; `dst.len() >= m * n`; [`available`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(
        a: &[u32],
        b: &[u32],
        dst: &mut [f32],
        m: usize,
        n: usize,
        kp: usize,
        accumulate: bool,
    ) {
        let mut cfg = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            cfg.colsb[t] = 64;
            cfg.rows[t] = ROWS as u8;
        }
        let mut sums = [[0f32; ROWS * LANES]; 4];
        let a_stride = kp * 4;
        // SAFETY (every block below): the loads stay inside `a` and `b` (their padded sizes
        // above), the stores inside `sums`, and the tile configuration is loaded first and
        // released last.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly));
        }
        for i0 in (0..m).step_by(2 * ROWS) {
            for q0 in (0..n.div_ceil(LANES)).step_by(2) {
                unsafe {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                }
                for p0 in (0..kp).step_by(PAIRS) {
                    let a0 = a[i0 * kp + p0..].as_ptr();
                    let a1 = a[(i0 + ROWS) * kp + p0..].as_ptr();
                    let b0 = b[(q0 * kp + p0) * LANES..].as_ptr();
                    let b1 = b[((q0 + 1) * kp + p0) * LANES..].as_ptr();
                    unsafe {
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a0,
                            a1 = in(reg) a1,
                            b0 = in(reg) b0,
                            b1 = in(reg) b1,
                            sa = in(reg) a_stride,
                            sb = in(reg) LANES * 4,
                            options(nostack, readonly)
                        );
                    }
                }
                unsafe {
                    asm!(
                        "tilestored [{s0} + {st}*1], tmm0",
                        "tilestored [{s1} + {st}*1], tmm1",
                        "tilestored [{s2} + {st}*1], tmm2",
                        "tilestored [{s3} + {st}*1], tmm3",
                        s0 = in(reg) sums[0].as_mut_ptr(),
                        s1 = in(reg) sums[1].as_mut_ptr(),
                        s2 = in(reg) sums[2].as_mut_ptr(),
                        s3 = in(reg) sums[3].as_mut_ptr(),
                        st = in(reg) LANES * 4,
                        options(nostack)
                    );
                }
                // Tile t holds rows i0 + 16 * (t / 2) and columns 16 * (q0 + t % 2).
                for (t, tile) in sums.iter().enumerate() {
                    let (r0, c0) = (i0 + ROWS * (t / 2), LANES * (q0 + t % 2));
                    if r0 >= m || c0 >= n {
                        continue;
                    }
                    let width = (n - c0).min(LANES);
                    let mask: __mmask16 = super::super::lane_mask(width);
                    for r in 0..(m - r0).min(ROWS) {
                        let v = unsafe { _mm512_loadu_ps(tile[r * LANES..].as_ptr()) };
                        let out = dst[(r0 + r) * n + c0..].as_mut_ptr();
                        let v = if accumulate {
                            _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps(mask, out) })
                        } else {
                            v
                        };
                        unsafe { _mm512_mask_storeu_ps(out, mask, v) };
                    }
                }
            }
        }
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod amx {
    pub(super) const ROWS: usize = 16;
    pub(super) const PAIRS: usize = 16;
    pub(super) fn available() -> bool {
        false
    }
}
