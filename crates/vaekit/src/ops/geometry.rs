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

/// Where each element of one image's column matrix comes from: the image's flat index, or one of
/// [`PAD_SLOTS`] zero slots past its end for a tap in the padding, so im2col is a branch-free
/// table walk. Built once per batch and shared by its images (each image's gathers stay in the
/// first-level cache).
///
/// col2im runs the other way, as a gather too: for each image element, the column-matrix
/// elements that read it, summed and added once, instead of scattering read-modify-writes.
/// Pixels are grouped by how many elements read them (a stride-2 layer with 5x5 taps has
/// pixels read 9, 6 and 4 times), so each group's loop runs a fixed number of loads per pixel
/// and none is spent on padding. (Padding every pixel to the largest count with a zero slot,
/// as an earlier version did, loaded a third more.)
/// Column maps [`ColumnMap::shared`] keeps (a model has a handful of geometries; a program
/// that runs many different ones rebuilds them).
pub const CACHED_MAPS: usize = 64;

#[derive(Clone, Debug)]
pub struct ColumnMap {
    geometry: ConvGeometry,
    source: Vec<u32>,
    /// The pixels read by the column matrix, grouped by how many elements read them.
    readers: Vec<Readers>,
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
        ColumnMap {
            geometry: *g,
            source,
            readers,
        }
    }

    /// Elements of one image's column matrix `[channels * kh * kw, out_h * out_w]`.
    pub fn cols_len(&self) -> usize {
        self.source.len()
    }

    /// Gathers one image `[channels, in_h, in_w]` into its column matrix
    /// `[channels * kh * kw, out_h * out_w]` (row-major), zeros where a tap reads padding.
    /// `scratch` is reused between calls.
    pub fn im2col(&self, image: &[f32], scratch: &mut Vec<f32>, cols: &mut [f32]) {
        assert_eq!(image.len(), self.geometry.image_len(), "im2col: image size");
        assert_eq!(cols.len(), self.source.len(), "im2col: column size");
        scratch.clear();
        scratch.extend_from_slice(image);
        scratch.resize(image.len() + PAD_SLOTS, 0.0);
        for (c, &i) in cols.iter_mut().zip(&self.source) {
            // SAFETY: `new` only stores indices below image_len + PAD_SLOTS = scratch.len().
            *c = unsafe { *scratch.get_unchecked(i as usize) };
        }
    }

    /// Adds a column matrix `[channels * kh * kw, out_h * out_w]` back into an image
    /// `[channels, in_h, in_w]` (the adjoint of [`ColumnMap::im2col`]); taps in the padding are
    /// dropped.
    pub fn col2im_add(&self, cols: &[f32], image: &mut [f32]) {
        assert_eq!(cols.len(), self.source.len(), "col2im: column size");
        assert_eq!(image.len(), self.geometry.image_len(), "col2im: image size");
        for group in &self.readers {
            let elements = group.elements.chunks_exact(group.count);
            for (&i, elements) in group.pixels.iter().zip(elements) {
                // SAFETY: `new` stores pixels below image_len and elements below the column
                // matrix's length, both checked above.
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
