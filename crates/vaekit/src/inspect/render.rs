//! Rendering one code at any size (a resolution-free decoder such as the CPPN) in tiles of
//! rows, so memory stays bounded whatever the size, into 8-bit pixels; and animated GIFs of a
//! path of codes.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::fsutil::write_output;
use crate::model::Vae;

/// Pixels decoded per tile: with the CPPN's hidden width of 32 each layer's activations are
/// 8 MiB, whatever the image's size.
pub const TILE_PIXELS: usize = 1 << 16;

/// Largest side `render_image` takes.
pub const MAX_SIDE: usize = 16_384;

/// An 8-bit image, rows of `width` pixels of `channels` (1 or 3) interleaved values.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// `height * width * channels` values, row-major, channels interleaved.
    pub pixels: Vec<u8>,
}

/// The decoder's mean image of `z` (one code) with the condition `y` (one-hot row of a
/// conditional model) at `[height, width]`, the coordinate range times `zoom`, decoded
/// [`TILE_PIXELS`] at a time; `progress(rows_done, height)` after each tile. Fixed-size
/// decoders take only their training size at zoom 1.
pub fn render_image(
    model: &Vae,
    z: &[f32],
    y: Option<&[f32]>,
    size: [usize; 2],
    zoom: f64,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<Rendered> {
    let [h, w] = size;
    if h == 0 || w == 0 || h > MAX_SIDE || w > MAX_SIDE {
        return Err(Error::InvalidConfig(format!(
            "a render must be 1 to {MAX_SIDE} pixels on each side, not {w}x{h}"
        )));
    }
    let zt = Tensor::<2>::from_data(TensorData::new(z.to_vec(), [1, z.len()]), device);
    let yt = y.map(|y| Tensor::<2>::from_data(TensorData::new(y.to_vec(), [1, y.len()]), device));
    let rows_per_tile = (TILE_PIXELS / w).max(1);
    let mut out: Option<Rendered> = None;
    let mut row = 0;
    while row < h {
        let rows = rows_per_tile.min(h - row);
        let maps = model
            .decoder
            .render_rows(zt.clone(), yt.clone(), size, row, rows, zoom)?;
        let mean = model.likelihood.mean_image(model.likelihood.params(maps)); // [1, c, rows, w]
        let c = mean.dims()[1];
        let v = mean
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::InvalidConfig(format!("{e:?}")))?;
        let img = out.get_or_insert_with(|| Rendered {
            height: h,
            width: w,
            channels: c,
            pixels: Vec::with_capacity(h * w * c),
        });
        for r in 0..rows {
            for x in 0..w {
                for ch in 0..c {
                    let p = v[(ch * rows + r) * w + x];
                    img.pixels.push((p.clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
        row += rows;
        progress(row, h);
    }
    Ok(out.expect("at least one row"))
}

impl Rendered {
    /// Writes the image as a PNG (atomically).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        use image::ImageEncoder;
        crate::fsutil::check_picture_path(path, "png")?;
        let color = if self.channels == 3 {
            image::ExtendedColorType::Rgb8
        } else {
            image::ExtendedColorType::L8
        };
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(&self.pixels, self.width as u32, self.height as u32, color)
            .map_err(|e| Error::BadImage {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        write_output(path, &bytes)
    }

    /// The image as RGBA (gray repeated, opaque).
    fn rgba(&self) -> image::RgbaImage {
        let px: Vec<u8> = self
            .pixels
            .chunks_exact(self.channels)
            .flat_map(|p| match p {
                [g] => [*g, *g, *g, 255],
                [r, g, b] => [*r, *g, *b, 255],
                _ => [0, 0, 0, 255],
            })
            .collect();
        image::RgbaImage::from_raw(self.width as u32, self.height as u32, px)
            .expect("width * height RGBA pixels")
    }
}

/// Writes `frames` (all the same size) as an animated GIF that loops forever, `delay_ms`
/// between frames.
pub fn save_gif(frames: &[Rendered], delay_ms: u32, path: &Path) -> Result<()> {
    use image::codecs::gif::{GifEncoder, Repeat};
    crate::fsutil::check_picture_path(path, "gif")?;
    let bad = |e: image::ImageError| Error::BadImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut bytes, 10);
        enc.set_repeat(Repeat::Infinite).map_err(bad)?;
        for f in frames {
            let frame = image::Frame::from_parts(
                f.rgba(),
                0,
                0,
                image::Delay::from_numer_denom_ms(delay_ms, 1),
            );
            enc.encode_frame(frame).map_err(bad)?;
        }
    }
    write_output(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DecoderArchitecture, ModelConfig};

    fn cppn_model() -> (Vae, Device) {
        let dev = Device::flex();
        let cfg = ModelConfig {
            decoder: Some(DecoderArchitecture::default_cppn()),
            ..ModelConfig::default()
        };
        (Vae::init(&cfg, 3, &dev), dev)
    }

    #[test]
    fn the_training_size_render_is_the_decoders_output_and_tiles_change_nothing() {
        let (m, dev) = cppn_model();
        let z: Vec<f32> = (0..20).map(|i| ((i * 7) % 5) as f32 * 0.3 - 0.6).collect();
        let zt = Tensor::<2>::from_data(TensorData::new(z.clone(), [1, 20]), &dev);
        let direct = m
            .decode_mean(zt.clone(), None)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let r = render_image(&m, &z, None, [28, 28], 1.0, &dev, |_, _| {}).unwrap();
        assert_eq!((r.height, r.width, r.channels), (28, 28, 1));
        for (a, b) in direct.iter().zip(&r.pixels) {
            assert!(((a * 255.0).round() as i32 - *b as i32).abs() <= 1);
        }
        // Rows rendered in pieces equal the whole.
        let whole = m.decoder.render(zt.clone(), None, [40, 30]).unwrap();
        let top = m
            .decoder
            .render_rows(zt.clone(), None, [40, 30], 0, 17, 1.0)
            .unwrap();
        let rest = m
            .decoder
            .render_rows(zt, None, [40, 30], 17, 23, 1.0)
            .unwrap();
        let joined = Tensor::cat(vec![top, rest], 2);
        assert_eq!(whole.into_data(), joined.into_data());
        // A fixed-size decoder refuses other sizes with one clear line.
        let conv = Vae::init(&ModelConfig::default(), 0, &dev);
        let err = render_image(&conv, &z, None, [56, 56], 1.0, &dev, |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("--decoder cppn"), "{err}");
        assert!(render_image(&m, &z, None, [0, 5], 1.0, &dev, |_, _| {}).is_err());
    }

    /// Multiplies every parameter by a factor: a random CPPN at burn's initialisation is
    /// nearly flat, a scaled one has structure at the scale of a few pixels.
    struct Scale(f32);
    impl burn::module::ModuleMapper for Scale {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            let f = self.0;
            param.map(|t| t.mul_scalar(f))
        }
    }

    #[test]
    fn a_render_at_twice_the_size_is_smooth() {
        // Each training pixel's cell holds four pixels of the 2x render, placed symmetrically
        // around its centre: their mean is the 1x value up to the curvature of the function,
        // far closer than neighbouring pixels are to each other.
        use burn::module::Module;
        let (m, dev) = cppn_model();
        let m = m.map(&mut Scale(2.5));
        let z: Vec<f32> = (0..20).map(|i| (i as f32 * 0.37).sin() * 0.5).collect();
        let zt = Tensor::<2>::from_data(TensorData::new(z, [1, 20]), &dev);
        let mean = |size: [usize; 2]| {
            let p = m.decoder.render(zt.clone(), None, size).unwrap();
            m.likelihood
                .mean_image(p)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let (one, two) = (mean([28, 28]), mean([56, 56]));
        let (mut pooled_gap, mut neighbour_gap) = (0.0f32, 0.0f32);
        for i in 0..28 {
            for j in 0..27 {
                let pooled = (two[2 * i * 56 + 2 * j]
                    + two[2 * i * 56 + 2 * j + 1]
                    + two[(2 * i + 1) * 56 + 2 * j]
                    + two[(2 * i + 1) * 56 + 2 * j + 1])
                    / 4.0;
                pooled_gap += (pooled - one[i * 28 + j]).abs();
                neighbour_gap += (one[i * 28 + j + 1] - one[i * 28 + j]).abs();
            }
        }
        let spread = one.iter().cloned().fold(f32::MIN, f32::max)
            - one.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 0.2, "a flat image proves nothing ({spread})");
        assert!(
            pooled_gap < 0.1 * neighbour_gap,
            "2x pooled vs 1x: {pooled_gap}, neighbours: {neighbour_gap}"
        );
    }

    #[test]
    fn circles_stay_round_in_a_wide_render() {
        // The coordinates of a wide image: equal steps along both axes, the short side in
        // [-s, s].
        use crate::model::cppn::coordinates;
        let c = coordinates(4, 8, 0, 4, 2.0);
        let dx = c[1][0] - c[0][0];
        let dy = c[8][1] - c[0][1];
        assert!((dx - dy).abs() < 1e-6 && (dx - 1.0).abs() < 1e-6);
        assert!((c[0][1] + 1.5).abs() < 1e-6 && (c[31][1] - 1.5).abs() < 1e-6);
        assert!((c[0][0] + 3.5).abs() < 1e-6);
        assert!((c[0][2] - (3.5f32.powi(2) + 1.5f32.powi(2)).sqrt()).abs() < 1e-5);
    }
}
