//! The index map of a 2-D convolution, and its two gathers: im2col and col2im.
//!
//! A convolution from an image `[channels, in_h, in_w]` to an output of `out_h x out_w` positions
//! reads input pixel `(c, oh * stride - pad + kh * dilation, ow * stride - pad + kw * dilation)`
//! for kernel tap `(c, kh, kw)`. im2col lays those reads out as a matrix
//! `[channels * kh * kw, out_h * out_w]` (zero where the tap falls in the padding), so the
//! convolution is one matrix product with the weight `[out_channels, channels * kh * kw]`.
//! col2im is its adjoint: it adds a column matrix back into the image, which is what a
//! transposed convolution and the input gradient of a convolution need.

use std::collections::HashMap;

use super::fastmath::simd_dispatch;
use std::sync::{Arc, Mutex, OnceLock};

/// Sizes and steps of one 2-D convolution (the same for every image of a batch).
///
/// `padding` is the top and left padding; the bottom and right ones follow from the sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Input channels of the convolution.
    pub channels: usize,
    /// Input height and width.
    pub in_size: [usize; 2],
    /// Output height and width.
    pub out_size: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Step between output positions, in input pixels.
    pub stride: [usize; 2],
    /// Zero rows above and zero columns left of the input.
    pub padding: [usize; 2],
    /// Step between kernel taps, in input pixels.
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// Output size of a convolution: `(in + pad_begin + pad_end - dilation * (k - 1) - 1) / stride + 1`
    /// per axis, or `None` where the kernel does not fit.
    pub fn output_size(
        in_size: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad_begin: [usize; 2],
        pad_end: [usize; 2],
        dilation: [usize; 2],
    ) -> Option<[usize; 2]> {
        let axis = |i: usize| {
            let padded = in_size[i] + pad_begin[i] + pad_end[i];
            let span = dilation[i] * (kernel[i] - 1) + 1;
            (padded >= span && stride[i] > 0).then(|| (padded - span) / stride[i] + 1)
        };
        Some([axis(0)?, axis(1)?])
    }

    /// Rows of the column matrix: `channels * kernel_h * kernel_w`.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Columns of the column matrix: output positions `out_h * out_w`.
    pub fn col_cols(&self) -> usize {
        self.out_size[0] * self.out_size[1]
    }

    /// Elements of one input image: `channels * in_h * in_w`.
    pub fn image_len(&self) -> usize {
        self.channels * self.in_size[0] * self.in_size[1]
    }
}

/// Zero slots appended to an image for the taps that fall in the padding.
const PAD_SLOTS: usize = 16;

/// Column maps [`ColumnMap::shared`] keeps (a model has a handful of geometries; a program
/// that runs many different ones rebuilds them).
pub const CACHED_MAPS: usize = 64;

/// Where each element of one image's column matrix comes from: the image's flat index, or one of
/// the zero slots past its end for a tap in the padding, so im2col is a branch-free table walk.
/// Built once per geometry and shared by the images of every batch (each image's gathers stay
/// in the first-level cache).
///
/// col2im runs the other way, as a gather too: for each image element, the column-matrix
/// elements that read it, summed and added once, instead of scattering read-modify-writes.
/// Pixels are grouped by how many elements read them (a stride-2 layer with 5x5 taps has
/// pixels read 9, 6 and 4 times), so each group's loop runs a fixed number of loads per pixel
/// and none is spent on padding. (Padding every pixel to the largest count with a zero slot,
/// as an earlier version did, loaded a third more.)
///
/// On CPUs with AVX-512F both have faster paths that use the table only where they cannot run
/// (see [`ColumnMap::im2col`] and [`ColumnMap::col2im_add`]).
#[derive(Clone, Debug)]
pub struct ColumnMap {
    geometry: ConvGeometry,
    source: Vec<u32>,
    /// The pixels read by the column matrix, grouped by how many elements read them.
    readers: Vec<Readers>,
    /// For [`ColumnMap::col2im_add`] on AVX-512 (rows of at most 16 output positions, images
    /// at most 64 wide): per kernel column `kw` and 16-pixel chunk of an image row, which
    /// position of the tap's row each pixel reads (a permutation) and which pixels read one.
    spreads: Vec<([i32; 16], u16)>,
}

/// The pixels that `count` column-matrix elements read, and those elements: pixel
/// `pixels[i]` is read by `elements[i * count..(i + 1) * count]`.
#[derive(Clone, Debug)]
struct Readers {
    count: usize,
    pixels: Vec<u32>,
    elements: Vec<u32>,
}

impl ColumnMap {
    /// The map of `g`, built once per process and geometry (a training step asks for the same
    /// few maps in every layer call; building one took as long as a layer's im2col) and kept
    /// for the next call. At most [`CACHED_MAPS`] are kept.
    pub fn shared(g: &ConvGeometry) -> Arc<ColumnMap> {
        static MAPS: OnceLock<Mutex<HashMap<ConvGeometry, Arc<ColumnMap>>>> = OnceLock::new();
        let maps = MAPS.get_or_init(Default::default);
        if let Some(map) = maps.lock().unwrap_or_else(|e| e.into_inner()).get(g) {
            return map.clone();
        }
        let map = Arc::new(ColumnMap::new(g));
        let mut maps = maps.lock().unwrap_or_else(|e| e.into_inner());
        if maps.len() >= CACHED_MAPS {
            maps.clear();
        }
        maps.insert(*g, map.clone());
        map
    }

    pub fn new(g: &ConvGeometry) -> Self {
        let [in_h, in_w] = g.in_size;
        let [out_h, out_w] = g.out_size;
        let len = g.image_len();
        let cols = g.col_rows() * g.col_cols();
        assert!(
            len + PAD_SLOTS < u32::MAX as usize && cols < u32::MAX as usize,
            "image too large for a column map"
        );
        let mut source = Vec::with_capacity(cols);
        for c in 0..g.channels {
            for kh in 0..g.kernel[0] {
                for kw in 0..g.kernel[1] {
                    for oh in 0..out_h {
                        let ih = (oh * g.stride[0] + kh * g.dilation[0]).checked_sub(g.padding[0]);
                        for ow in 0..out_w {
                            let iw =
                                (ow * g.stride[1] + kw * g.dilation[1]).checked_sub(g.padding[1]);
                            let index = match (ih, iw) {
                                (Some(ih), Some(iw)) if ih < in_h && iw < in_w => {
                                    (c * in_h + ih) * in_w + iw
                                }
                                _ => len + source.len() % PAD_SLOTS,
                            };
                            source.push(index as u32);
                        }
                    }
                }
            }
        }
        // For each image element, the column elements that read it, grouped by their count.
        let mut counts = vec![0usize; len];
        for &i in source.iter().filter(|&&i| (i as usize) < len) {
            counts[i as usize] += 1;
        }
        let mut first = vec![0usize; len + 1]; // each pixel's first slot in `flat`
        for i in 0..len {
            first[i + 1] = first[i] + counts[i];
        }
        let mut flat = vec![0u32; first[len]];
        let mut filled = first.clone();
        for (j, &i) in source.iter().enumerate() {
            let i = i as usize;
            if i < len {
                flat[filled[i]] = j as u32;
                filled[i] += 1;
            }
        }
        let fan_in = counts.iter().copied().max().unwrap_or(0);
        let readers = (1..=fan_in)
            .filter_map(|count| {
                let pixels: Vec<u32> = (0..len)
                    .filter(|&i| counts[i] == count)
                    .map(|i| i as u32)
                    .collect();
                let elements = pixels
                    .iter()
                    .flat_map(|&i| {
                        flat[first[i as usize]..first[i as usize + 1]]
                            .iter()
                            .copied()
                    })
                    .collect();
                (!pixels.is_empty()).then_some(Readers {
                    count,
                    pixels,
                    elements,
                })
            })
            .collect();
        let [out_w, chunks] = [g.out_size[1], g.in_size[1].div_ceil(16)];
        let mut spreads = Vec::new();
        if out_w <= 16 && chunks <= MAX_CHUNKS {
            for kw in 0..g.kernel[1] {
                for chunk in 0..chunks {
                    let (mut lanes, mut mask) = ([0i32; 16], 0u16);
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        // Pixel iw = ow * stride + kw * dilation - pad reads position ow.
                        let iw = chunk * 16 + l;
                        let Some(t) = (iw + g.padding[1]).checked_sub(kw * g.dilation[1]) else {
                            continue;
                        };
                        if iw < in_w && t % g.stride[1] == 0 && t / g.stride[1] < out_w {
                            *lane = (t / g.stride[1]) as i32;
                            mask |= 1 << l;
                        }
                    }
                    spreads.push((lanes, mask));
                }
            }
        }
        ColumnMap {
            geometry: *g,
            source,
            readers,
            spreads,
        }
    }

    /// Elements of one image's column matrix `[channels * kh * kw, out_h * out_w]`.
    pub fn cols_len(&self) -> usize {
        self.source.len()
    }

    /// Gathers one image `[channels, in_h, in_w]` into its column matrix
    /// `[channels * kh * kw, out_h * out_w]` (row-major), zeros where a tap reads padding.
    /// `scratch` is reused between calls.
    ///
    /// With a horizontal stride of 1 or 2 on a CPU with AVX-512F this copies the image once into
    /// `scratch` with its padding written out as zeros, and then every row of output positions
    /// for a tap is one or two vector loads from a padded image row (and, for stride 2, one
    /// permutation keeping the even lanes) per 16 positions: no index table and no branches.
    /// Elsewhere, or with `VAEKIT_IM2COL=table`, it walks [`ColumnMap`]'s index table one
    /// element at a time. Both give the same matrix.
    pub fn im2col(&self, image: &[f32], scratch: &mut Vec<f32>, cols: &mut [f32]) {
        assert_eq!(image.len(), self.geometry.image_len(), "im2col: image size");
        assert_eq!(cols.len(), self.source.len(), "im2col: column size");
        if self.rows_available() {
            self.im2col_rows(image, scratch, cols);
        } else if table_asked() {
            self.im2col_table(image, scratch, cols);
        } else {
            self.im2col_portable(image, scratch, cols);
        }
    }

    /// Whether [`ColumnMap::im2col`] copies rows of a padded image (see there).
    fn rows_available(&self) -> bool {
        self.rows_cpu() && matches!(self.geometry.stride[1], 1 | 2)
    }

    /// Whether the CPU has AVX-512F and `VAEKIT_IM2COL=table` does not ask for the tables.
    fn rows_cpu(&self) -> bool {
        static ROWS: OnceLock<bool> = OnceLock::new();
        *ROWS.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx512f") && !table_asked()
            }
            #[cfg(not(target_arch = "x86_64"))]
            false
        })
    }

    /// The walk over this geometry's padded image (see [`ColumnMap::im2col_rows`]), with
    /// `scratch` zeroed to its size.
    fn padded_rows(&self, scratch: &mut Vec<f32>) -> Rows {
        let g = &self.geometry;
        let [in_h, in_w] = g.in_size;
        let [out_h, out_w] = g.out_size;
        let [pt, pl] = g.padding;
        let ph = (in_h + pt).max((out_h - 1) * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1);
        let pw = (in_w + pl).max((out_w - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1);
        scratch.clear();
        scratch.resize(g.channels * ph * pw + 32, 0.0);
        Rows {
            channels: g.channels,
            kernel: g.kernel,
            out: g.out_size,
            row_step: g.stride[0] * pw,
            tap_step: [g.dilation[0] * pw, g.dilation[1]],
            channel_step: ph * pw,
            width: pw,
            stride2: g.stride[1] == 2,
        }
    }

    /// [`ColumnMap::im2col`] copying rows of the padded image (laid out as
    /// [`ColumnMap::im2col_rows`] says) in plain Rust, at any stride: every row of output
    /// positions of a tap is one slice copy (stride 1) or one strided copy. On CPUs without
    /// AVX-512 this replaced the table walk, which loads each element through its index (the
    /// VAE-GAN discriminator's 5x5 convolutions spent ~27% of a training step there on an AMD
    /// EPYC with AVX2).
    fn im2col_portable(&self, image: &[f32], scratch: &mut Vec<f32>, cols: &mut [f32]) {
        let rows = self.padded_rows(scratch);
        for (padded, row) in rows.image_rows(&self.geometry, scratch, image) {
            padded.copy_from_slice(row);
        }
        gather_tap_rows(&rows, self.geometry.stride[1], scratch, cols);
    }

    /// [`ColumnMap::col2im_add`] in plain Rust, the adjoint of [`ColumnMap::im2col_portable`]:
    /// each row of output positions of a tap added into a zeroed padded image, whose image part
    /// is then added to `image`. Each pixel sums the elements that read it in the table's order
    /// (ascending column-matrix index) from zero, so the sums equal the table walk's exactly.
    fn col2im_portable(&self, cols: &[f32], image: &mut [f32]) {
        thread_local! {
            static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        PADDED.with(|padded| {
            let mut padded = padded.borrow_mut();
            let rows = self.padded_rows(&mut padded);
            scatter_tap_rows(&rows, self.geometry.stride[1], cols, &mut padded);
            let g = &self.geometry;
            let ([pt, pl], [in_h, in_w]) = (g.padding, g.in_size);
            for (r, img_row) in image.chunks_exact_mut(in_w).enumerate() {
                let (c, ih) = (r / in_h, r % in_h);
                let at = c * rows.channel_step + (ih + pt) * rows.width + pl;
                for (d, s) in img_row.iter_mut().zip(&padded[at..at + in_w]) {
                    *d += s;
                }
            }
        });
    }

    /// [`ColumnMap::im2col`] walking the index table.
    fn im2col_table(&self, image: &[f32], scratch: &mut Vec<f32>, cols: &mut [f32]) {
        scratch.clear();
        scratch.extend_from_slice(image);
        scratch.resize(image.len() + PAD_SLOTS, 0.0);
        for (c, &i) in cols.iter_mut().zip(&self.source) {
            // SAFETY: `new` only stores indices below image_len + PAD_SLOTS = scratch.len().
            *c = unsafe { *scratch.get_unchecked(i as usize) };
        }
    }

    /// [`ColumnMap::im2col`] copying rows of the padded image (stride 1 or 2, AVX-512F).
    ///
    /// The padded image has `ph` rows of `pw` values per channel, image pixel `(c, ih, iw)` at
    /// `(c * ph + ih + pad_top) * pw + iw + pad_left`, and 32 values of slack after the last
    /// row; tap `(kh, kw)` at output `(oh, ow)` reads `(c * ph + oh * sh + kh * dh) * pw +
    /// ow * sw + kw * dw`. Every lane a kept output reads lies inside its padded row; the
    /// others (past a row's last output) may read the next row or the slack, and are written
    /// past the row's end, where the next row's values overwrite them (the matrix's last row
    /// stores only its own lanes).
    fn im2col_rows(&self, image: &[f32], scratch: &mut Vec<f32>, cols: &mut [f32]) {
        let rows = self.padded_rows(scratch);
        for (padded, row) in rows.image_rows(&self.geometry, scratch, image) {
            padded.copy_from_slice(row);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `rows_available` checked AVX-512F and the stride; the reads stay inside
        // `scratch` (its slack covers the last row's 32 lanes) and the writes inside `cols`.
        unsafe {
            rows_avx512::im2col(&rows, scratch, cols)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (rows, cols);
    }

    /// Adds a column matrix `[channels * kh * kw, out_h * out_w]` back into an image
    /// `[channels, in_h, in_w]` (the adjoint of [`ColumnMap::im2col`]); taps in the padding are
    /// dropped.
    ///
    /// On a CPU with AVX-512F, where a row of output positions fits one vector (at most 16)
    /// and an image row four (at most 64 pixels), each image row is summed in registers: for
    /// every tap that reaches it, one load of the tap's row of output positions and one
    /// permutation per 16 pixels moving each position to the pixel it read (see `spreads`),
    /// then one addition to the image. Elsewhere, or with `VAEKIT_IM2COL=table`, each pixel
    /// sums the elements that read it. Both add the same values in the same order.
    pub fn col2im_add(&self, cols: &[f32], image: &mut [f32]) {
        assert_eq!(cols.len(), self.source.len(), "col2im: column size");
        assert_eq!(image.len(), self.geometry.image_len(), "col2im: image size");
        #[cfg(target_arch = "x86_64")]
        if self.rows_cpu() && !self.spreads.is_empty() {
            let chunks = self.geometry.in_size[1].div_ceil(16);
            // SAFETY: the CPU has AVX-512F; `spreads` was built for this geometry, with
            // `chunks` entries per kernel column; the sizes are checked above.
            unsafe {
                match chunks {
                    1 => rows_avx512::col2im::<1>(&self.geometry, &self.spreads, cols, image),
                    2 => rows_avx512::col2im::<2>(&self.geometry, &self.spreads, cols, image),
                    3 => rows_avx512::col2im::<3>(&self.geometry, &self.spreads, cols, image),
                    _ => rows_avx512::col2im::<4>(&self.geometry, &self.spreads, cols, image),
                }
            }
            return;
        }
        // Without AVX-512: rows added into a padded image where a row is contiguous (stride 1,
        // vector additions: the VAE-GAN discriminator's full-resolution layer); the table's
        // per-pixel sums at larger strides, where adding rows was slower (conv VAE training
        // ~5,600 against ~4,750 img/s on an AMD EPYC with AVX2).
        if self.geometry.stride[1] == 1 && !table_asked() {
            self.col2im_portable(cols, image);
        } else {
            self.col2im_table(cols, image);
        }
    }

    /// [`ColumnMap::col2im_add`] summing each pixel's readers from the table.
    fn col2im_table(&self, cols: &[f32], image: &mut [f32]) {
        for group in &self.readers {
            let elements = group.elements.chunks_exact(group.count);
            for (&i, elements) in group.pixels.iter().zip(elements) {
                // SAFETY: `new` stores pixels below image_len and elements below the column
                // matrix's length, both checked by the caller.
                unsafe {
                    *image.get_unchecked_mut(i as usize) += elements
                        .iter()
                        .map(|&j| *cols.get_unchecked(j as usize))
                        .sum::<f32>();
                }
            }
        }
    }
}

/// Most 16-pixel chunks per image row for the vector col2im.
const MAX_CHUNKS: usize = 4;

/// The steps of [`ColumnMap::im2col_rows`]'s walk over a padded image (see there).
struct Rows {
    channels: usize,
    kernel: [usize; 2],
    out: [usize; 2],
    /// Padded values between output rows `oh` and `oh + 1`.
    row_step: usize,
    /// Padded values between taps `kh` and `kh + 1`, and between `kw` and `kw + 1`.
    tap_step: [usize; 2],
    /// Padded values per channel.
    channel_step: usize,
    /// Values per padded row.
    width: usize,
    /// Horizontal stride 2 (else 1).
    stride2: bool,
}

simd_dispatch! {
    /// Copies each row of output positions of each tap from the padded image `padded` into the
    /// column matrix `cols` (horizontal stride `stride`).
    fn gather_tap_rows(rows: &Rows, stride: usize, padded: &[f32], cols: &mut [f32]) -> () {
        let out_w = rows.out[1];
        let span = (out_w - 1) * stride + 1;
        let mut at = 0;
        rows.for_each_tap_row(|start| {
            let (src, dst) = (&padded[start..start + span], &mut cols[at..at + out_w]);
            match stride {
                1 => dst.copy_from_slice(src),
                2 => copy_strided::<2>(src, dst),
                _ => {
                    for (ow, d) in dst.iter_mut().enumerate() {
                        *d = src[ow * stride];
                    }
                }
            }
            at += out_w;
        });
    }
}

simd_dispatch! {
    /// The adjoint of [`gather_tap_rows`]: adds each row of the column matrix `cols` into the
    /// padded image `padded` where it was read.
    fn scatter_tap_rows(rows: &Rows, stride: usize, cols: &[f32], padded: &mut [f32]) -> () {
        let out_w = rows.out[1];
        let span = (out_w - 1) * stride + 1;
        let mut at = 0;
        rows.for_each_tap_row(|start| {
            let (src, dst) = (&cols[at..at + out_w], &mut padded[start..start + span]);
            match stride {
                1 => {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
                2 => add_strided::<2>(src, dst),
                _ => {
                    for (ow, s) in src.iter().enumerate() {
                        dst[ow * stride] += s;
                    }
                }
            }
            at += out_w;
        });
    }
}

/// `dst[i] = src[i * S]` (`src` holds `(dst.len() - 1) * S + 1` values).
#[inline(always)]
fn copy_strided<const S: usize>(src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    let src = &src[..(n - 1) * S + 1];
    for i in 0..n {
        dst[i] = src[i * S];
    }
}

/// `dst[i * S] += src[i]` (`dst` holds `(src.len() - 1) * S + 1` values).
#[inline(always)]
fn add_strided<const S: usize>(src: &[f32], dst: &mut [f32]) {
    let n = src.len();
    let dst = &mut dst[..(n - 1) * S + 1];
    for i in 0..n {
        dst[i * S] += src[i];
    }
}

/// Whether `VAEKIT_IM2COL=table` asks for the index tables' walks (to compare).
fn table_asked() -> bool {
    static TABLE: OnceLock<bool> = OnceLock::new();
    *TABLE.get_or_init(|| std::env::var("VAEKIT_IM2COL").as_deref() == Ok("table"))
}

impl Rows {
    /// Calls `f` with where each row of output positions of each tap starts in the padded
    /// image, in the column matrix's row order (channel, kernel row, kernel column, output row).
    #[inline(always)]
    fn for_each_tap_row(&self, mut f: impl FnMut(usize)) {
        for c in 0..self.channels {
            for kh in 0..self.kernel[0] {
                for kw in 0..self.kernel[1] {
                    let tap = c * self.channel_step + kh * self.tap_step[0] + kw * self.tap_step[1];
                    for oh in 0..self.out[0] {
                        f(tap + oh * self.row_step);
                    }
                }
            }
        }
    }

    /// Each image row `(c, ih)` beside the part of the padded image that holds it.
    fn image_rows<'a, 'b>(
        &self,
        g: &ConvGeometry,
        padded: &'a mut [f32],
        image: &'b [f32],
    ) -> impl Iterator<Item = (&'a mut [f32], &'b [f32])> {
        let [pt, pl] = g.padding;
        let [in_h, in_w] = g.in_size;
        let ph = self.channel_step / self.width;
        padded[..self.channels * self.channel_step]
            .chunks_exact_mut(self.width)
            .enumerate()
            .filter(move |(r, _)| (pt..pt + in_h).contains(&(r % ph)))
            .map(move |(_, row)| &mut row[pl..pl + in_w])
            .zip(image.chunks_exact(in_w))
    }
}

#[cfg(target_arch = "x86_64")]
mod rows_avx512 {
    use std::arch::x86_64::*;

    use super::super::lane_mask;
    use super::{ConvGeometry, Rows};

    /// Fills `cols` from the padded image `src`, 16 output positions per store, or two rows of
    /// at most 8 per store.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `src` is laid out as [`super::ColumnMap::im2col_rows`] says, with
    /// its 32 values of slack; `cols` is the column matrix of `r`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn im2col(r: &Rows, src: &[f32], cols: &mut [f32]) {
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let [out_h, out_w] = r.out;
        let lane_step = if r.stride2 { 32 } else { 16 };
        let (s, d, end) = (src.as_ptr(), cols.as_mut_ptr(), cols.len());
        // Lane t < out_w of a pair is lane t * stride of the first row's vector, lane
        // out_w + t lane t * stride of the second row's (index 16 + ...).
        let pairs = out_w <= 8;
        let step = if r.stride2 { 2 } else { 1 };
        let mut lanes = [0i32; 16];
        for (t, l) in lanes.iter_mut().enumerate() {
            *l = if t < out_w {
                (t * step) as i32
            } else if t < 2 * out_w {
                (16 + (t - out_w) * step) as i32
            } else {
                0
            };
        }
        // SAFETY: reads 16 values of `lanes`.
        let pair = unsafe { _mm512_loadu_si512(lanes.as_ptr() as *const _) };
        let mut at = 0; // next element of `cols`
        for c in 0..r.channels {
            for kh in 0..r.kernel[0] {
                for kw in 0..r.kernel[1] {
                    let tap = c * r.channel_step + kh * r.tap_step[0] + kw * r.tap_step[1];
                    let mut oh = 0;
                    // Rows of at most 8 positions two at a time: one vector from each input
                    // row, one permutation, one store of both output rows.
                    while pairs && oh + 1 < out_h {
                        // SAFETY: as below; both rows' vectors lie inside `src`.
                        unsafe {
                            let p = s.add(tap + oh * r.row_step);
                            let v = _mm512_permutex2var_ps(
                                _mm512_loadu_ps(p),
                                pair,
                                _mm512_loadu_ps(p.add(r.row_step)),
                            );
                            if at + 16 <= end {
                                _mm512_storeu_ps(d.add(at), v);
                            } else {
                                _mm512_mask_storeu_ps(d.add(at), lane_mask(end - at), v);
                            }
                        }
                        at += 2 * out_w;
                        oh += 2;
                    }
                    for oh in oh..out_h {
                        let row = tap + oh * r.row_step;
                        let mut ow = 0;
                        while ow < out_w {
                            // SAFETY: the loads stay inside `src` (the caller's layout and
                            // slack); the store inside `cols` (masked where it would not).
                            unsafe {
                                let p = s.add(row + ow / 16 * lane_step);
                                let lo = _mm512_loadu_ps(p);
                                let v = if r.stride2 {
                                    _mm512_permutex2var_ps(lo, even, _mm512_loadu_ps(p.add(16)))
                                } else {
                                    lo
                                };
                                let o = at + ow;
                                if o + 16 <= end {
                                    _mm512_storeu_ps(d.add(o), v);
                                } else {
                                    _mm512_mask_storeu_ps(d.add(o), lane_mask(end - o), v);
                                }
                            }
                            ow += 16;
                        }
                        at += out_w;
                    }
                }
            }
        }
    }

    /// [`super::ColumnMap::col2im_add`] on image rows of `CHUNKS` vectors (see there).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `spreads` holds `CHUNKS` entries per kernel column, built for
    /// `g`; `cols` is `g`'s column matrix and `image` one image of `g`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn col2im<const CHUNKS: usize>(
        g: &ConvGeometry,
        spreads: &[([i32; 16], u16)],
        cols: &[f32],
        image: &mut [f32],
    ) {
        let [in_h, in_w] = g.in_size;
        let [out_h, out_w] = g.out_size;
        let [kh_n, kw_n] = g.kernel;
        let (c, end) = (cols.as_ptr(), cols.len());
        // The permutations as vectors once per call (loading them at each use in the loop below
        // gave col2im a slightly larger share of the profile, on an AMD EPYC).
        let spreads: Vec<(__m512i, __mmask16)> = spreads
            .iter()
            // SAFETY: reads the 16 lanes of each entry.
            .map(|(l, m)| (unsafe { _mm512_loadu_si512(l.as_ptr() as *const _) }, *m))
            .collect();
        for ch in 0..g.channels {
            for ih in 0..in_h {
                let mut acc = [_mm512_setzero_ps(); CHUNKS];
                for kh in 0..kh_n {
                    // Output row oh reaches image row ih through kernel row kh when
                    // ih = oh * stride + kh * dilation - pad.
                    let Some(t) = (ih + g.padding[0]).checked_sub(kh * g.dilation[0]) else {
                        continue;
                    };
                    let oh = t / g.stride[0];
                    if t % g.stride[0] != 0 || oh >= out_h {
                        continue;
                    }
                    for kw in 0..kw_n {
                        let at = (((ch * kh_n + kh) * kw_n + kw) * out_h + oh) * out_w;
                        // SAFETY: lanes past the end of `cols` are masked off.
                        let v = unsafe {
                            if at + 16 <= end {
                                _mm512_loadu_ps(c.add(at))
                            } else {
                                _mm512_maskz_loadu_ps(lane_mask(end - at), c.add(at))
                            }
                        };
                        for (j, a) in acc.iter_mut().enumerate() {
                            let (idx, mask) = spreads[kw * CHUNKS + j];
                            *a = _mm512_add_ps(*a, _mm512_maskz_permutexvar_ps(mask, idx, v));
                        }
                    }
                }
                let row = (ch * in_h + ih) * in_w;
                for (j, a) in acc.iter().enumerate() {
                    let n = (in_w - j * 16).min(16);
                    let m = lane_mask(n);
                    // SAFETY: the pixels j * 16.. (n of them) of image row (ch, ih).
                    unsafe {
                        let p = image.as_mut_ptr().add(row + j * 16);
                        _mm512_mask_storeu_ps(p, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), *a));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The definition, one tap at a time.
    fn im2col_naive(g: &ConvGeometry, image: &[f32]) -> Vec<f32> {
        let [in_h, in_w] = g.in_size;
        let [out_h, out_w] = g.out_size;
        let mut cols = vec![f32::NAN; g.col_rows() * g.col_cols()];
        for c in 0..g.channels {
            for kh in 0..g.kernel[0] {
                for kw in 0..g.kernel[1] {
                    let row = (c * g.kernel[0] + kh) * g.kernel[1] + kw;
                    for oh in 0..out_h {
                        for ow in 0..out_w {
                            let ih = (oh * g.stride[0] + kh * g.dilation[0]) as isize
                                - g.padding[0] as isize;
                            let iw = (ow * g.stride[1] + kw * g.dilation[1]) as isize
                                - g.padding[1] as isize;
                            let inside = (0..in_h as isize).contains(&ih)
                                && (0..in_w as isize).contains(&iw);
                            cols[row * g.col_cols() + oh * out_w + ow] = if inside {
                                image[(c * in_h + ih as usize) * in_w + iw as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
        cols
    }

    fn random_geometries(rng: &mut ChaCha8Rng, n: usize) -> Vec<ConvGeometry> {
        let mut out = Vec::new();
        while out.len() < n {
            let in_size = [rng.random_range(1..12), rng.random_range(1..12)];
            let kernel = [rng.random_range(1..6), rng.random_range(1..6)];
            let stride = [rng.random_range(1..4), rng.random_range(1..4)];
            let dilation = [rng.random_range(1..3), rng.random_range(1..3)];
            let padding = [rng.random_range(0..4), rng.random_range(0..4)];
            let pad_end = [rng.random_range(0..4), rng.random_range(0..4)];
            if let Some(out_size) =
                ConvGeometry::output_size(in_size, kernel, stride, padding, pad_end, dilation)
            {
                let channels = rng.random_range(1..4);
                out.push(ConvGeometry {
                    channels,
                    in_size,
                    out_size,
                    kernel,
                    stride,
                    padding,
                    dilation,
                });
            }
        }
        out
    }

    #[test]
    fn im2col_matches_the_definition_on_random_geometries() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut scratch = Vec::new();
        for g in random_geometries(&mut rng, 300) {
            let map = ColumnMap::new(&g);
            // Two images through the same map and scratch.
            for _ in 0..2 {
                let image: Vec<f32> = (0..g.image_len()).map(|_| rng.random()).collect();
                let mut cols = vec![f32::NAN; map.cols_len()];
                map.im2col(&image, &mut scratch, &mut cols);
                assert_eq!(cols, im2col_naive(&g, &image), "{g:?}");
            }
        }
    }

    /// The padded-row walks give exactly the table walk's matrix at every geometry, including
    /// rows longer than 16 positions and rows of at most 8 (which the AVX-512 walk takes two at
    /// a time), and their col2im exactly the table's sums. The portable walk is checked on
    /// every CPU; the AVX-512 one where the CPU has it (at horizontal stride 1 or 2).
    #[test]
    fn padded_rows_equal_the_table_walk() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut gs = random_geometries(&mut rng, 400);
        for (in_size, kernel, stride, pad) in [
            ([28, 28], 5, 1, 2),
            ([28, 28], 5, 2, 2),
            ([14, 14], 5, 2, 2),
            ([64, 64], 5, 2, 2),
            ([37, 41], 3, 1, 1),
            ([9, 40], 4, 2, 0),
            ([20, 20], 3, 3, 1),
        ] {
            let k = [kernel, kernel];
            let out_size =
                ConvGeometry::output_size(in_size, k, [stride; 2], [pad; 2], [pad; 2], [1, 1])
                    .unwrap();
            gs.push(ConvGeometry {
                channels: 3,
                in_size,
                out_size,
                kernel: k,
                stride: [stride; 2],
                padding: [pad; 2],
                dilation: [1, 1],
            });
        }
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        let mut strided = 0;
        for g in &gs {
            let map = ColumnMap::new(g);
            let image: Vec<f32> = (0..g.image_len()).map(|_| rng.random()).collect();
            let table = {
                let mut b = vec![0.0; map.cols_len()];
                map.im2col_table(&image, &mut Vec::new(), &mut b);
                b
            };
            assert_eq!(table, im2col_naive(g, &image), "{g:?}");
            let mut a = vec![f32::NAN; map.cols_len()];
            map.im2col_portable(&image, &mut Vec::new(), &mut a);
            assert_eq!(a, table, "portable: {g:?}");
            if avx512 && matches!(g.stride[1], 1 | 2) {
                let mut a = vec![f32::NAN; map.cols_len()];
                map.im2col_rows(&image, &mut Vec::new(), &mut a);
                assert_eq!(a, table, "AVX-512: {g:?}");
            }
            strided += usize::from(g.stride[1] > 1);
            // col2im: the same sums in the same order as the table, onto an image that
            // already holds values.
            let c: Vec<f32> = (0..map.cols_len())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut y = image.clone();
            map.col2im_table(&c, &mut y);
            let mut x = image.clone();
            map.col2im_portable(&c, &mut x);
            assert_eq!(x, y, "portable col2im: {g:?}");
            let mut x = image;
            map.col2im_add(&c, &mut x);
            assert_eq!(x, y, "col2im_add: {g:?}");
        }
        assert!(strided > 100, "{strided} geometries with a stride above 1");
    }

    /// col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)> for any x and c.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for g in random_geometries(&mut rng, 300) {
            let map = ColumnMap::new(&g);
            let x: Vec<f32> = (0..g.image_len())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let c: Vec<f32> = (0..map.cols_len())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut cols = vec![0.0; c.len()];
            map.im2col(&x, &mut Vec::new(), &mut cols);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let mut back = vec![0.0; x.len()];
            map.col2im_add(&c, &mut back);
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-4, "{g:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn output_size_follows_pytorch() {
        // torch.nn.Conv2d(1, 16, 5, stride=2, padding=2): 28 -> 14; 14 -> 7.
        let s = ConvGeometry::output_size([28, 14], [5, 5], [2, 2], [2, 2], [2, 2], [1, 1]);
        assert_eq!(s, Some([14, 7]));
        // A kernel larger than the padded input does not fit.
        assert_eq!(
            ConvGeometry::output_size([2, 2], [5, 5], [1, 1], [1, 1], [1, 1], [1, 1]),
            None
        );
    }
}
