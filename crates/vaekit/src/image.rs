//! Tensors to pictures: image grids saved as PNG.

use std::path::Path;

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::fsutil::write_output;

/// A grid of equally sized images, row-major, with a border between cells.
#[derive(Clone, Debug)]
pub struct Grid {
    /// 1 or 3.
    pub channels: usize,
    /// Cell height in pixels.
    pub height: usize,
    /// Cell width in pixels.
    pub width: usize,
    /// Images, each `channels * height * width` values in [0, 1], CHW.
    pub images: Vec<Vec<f32>>,
    /// Images per row.
    pub columns: usize,
    /// Pixels of gray border between cells and around the grid. Default 2.
    pub border: usize,
    /// Text drawn left of each row (none by default); rows without a label get a blank margin.
    pub row_labels: Vec<String>,
}

/// Pixels of border between cells and around the grid, by default.
pub const BORDER: usize = 2;
/// Height of row label text in pixels.
const LABEL_PX: u32 = 12;
/// Border gray level.
const BORDER_VALUE: u8 = 128;
/// Most pixels of one picture (2^28: 768 MiB as RGB while it is built).
pub const MAX_PICTURE_PIXELS: usize = 1 << 28;

impl Grid {
    /// A grid from a batch of images in [0, 1].
    ///
    /// # Shapes
    /// `images`: `[n, channels, height, width]`
    pub fn from_tensor(images: Tensor<4>, columns: usize) -> Grid {
        let [n, c, h, w] = images.dims();
        let flat = images
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 tensor");
        let per = c * h * w;
        let images = (0..n)
            .map(|i| flat[i * per..(i + 1) * per].to_vec())
            .collect();
        Grid {
            channels: c,
            height: h,
            width: w,
            images,
            columns: columns.max(1),
            border: BORDER,
            row_labels: Vec::new(),
        }
    }

    /// Appends the images of another grid with the same cell shape.
    pub fn extend(&mut self, other: Grid) {
        self.images.extend(other.images);
    }

    /// With these labels left of the rows.
    pub fn with_row_labels(mut self, labels: Vec<String>) -> Grid {
        self.row_labels = labels;
        self
    }

    /// With this border width in pixels (0 for none).
    pub fn with_border(mut self, border: usize) -> Grid {
        self.border = border;
        self
    }

    /// Width of the label margin: enough for the longest label at [`LABEL_PX`].
    fn label_margin(&self) -> usize {
        let longest = self
            .row_labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        if longest == 0 {
            0
        } else {
            longest * (LABEL_PX as usize * 2 / 3) + 8
        }
    }

    /// (width, height) of the rendered picture (saturating: an absurd border or label gives
    /// `usize::MAX`, which [`Grid::save_png`] refuses).
    pub fn size(&self) -> (usize, usize) {
        let rows = self.images.len().div_ceil(self.columns).max(1);
        let cols = self.columns.min(self.images.len()).max(1);
        let b = self.border;
        let side = |n: usize, cell: usize, extra: usize| {
            n.checked_mul(cell.saturating_add(b))
                .and_then(|v| v.checked_add(b))
                .and_then(|v| v.checked_add(extra))
                .unwrap_or(usize::MAX)
        };
        (
            side(cols, self.width, self.label_margin()),
            side(rows, self.height, 0),
        )
    }

    /// Renders the grid as 8-bit gray or RGB (RGB whenever there are labels).
    pub fn render(&self) -> image::DynamicImage {
        let (gw, gh) = self.size();
        let c = if self.row_labels.is_empty() {
            self.channels
        } else {
            3
        };
        let b = self.border;
        let margin = self.label_margin();
        let mut buf = vec![BORDER_VALUE; gw * gh * c];
        if margin > 0 {
            for y in 0..gh {
                buf[y * gw * c..(y * gw + margin) * c].fill(255);
            }
        }
        for (k, img) in self.images.iter().enumerate() {
            let (r, col) = (k / self.columns, k % self.columns);
            let (y0, x0) = (
                b + r * (self.height + b),
                margin + b + col * (self.width + b),
            );
            for y in 0..self.height {
                for x in 0..self.width {
                    for ch in 0..c {
                        let src = if self.channels == 1 { 0 } else { ch };
                        let v = img[src * self.height * self.width + y * self.width + x];
                        buf[((y0 + y) * gw + x0 + x) * c + ch] =
                            (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                }
            }
        }
        if margin > 0 {
            self.draw_labels(&mut buf, (gw as u32, gh as u32));
        }
        if c == 1 {
            image::DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(gw as u32, gh as u32, buf).expect("size"),
            )
        } else {
            image::DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(gw as u32, gh as u32, buf).expect("size"),
            )
        }
    }

    /// Draws the row labels into the left margin of an RGB buffer.
    fn draw_labels(&self, buf: &mut [u8], size: (u32, u32)) {
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        crate::plot::register_font();
        let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
        let style = TextStyle::from((crate::plot::FONT, LABEL_PX as f64).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (r, label) in self.row_labels.iter().enumerate() {
            let y = self.border + r * (self.height + self.border) + self.height / 2;
            // Text outside the canvas is clipped by plotters; nothing to report.
            let _ = root.draw_text(label, &style, (4, y as i32));
        }
        let _ = root.present();
    }

    /// Writes the grid as a PNG, atomically (an existing file is replaced only when complete).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        crate::fsutil::check_picture_path(path, "png")?;
        let (w, h) = self.size();
        if w.saturating_mul(h) > MAX_PICTURE_PIXELS
            || w > u32::MAX as usize
            || h > u32::MAX as usize
        {
            return Err(Error::BadImage {
                path: path.to_path_buf(),
                reason: format!(
                    "a picture of {w} x {h} pixels is too large (at most {MAX_PICTURE_PIXELS} pixels): use a smaller --border or fewer images"
                ),
            });
        }
        let mut bytes = Vec::new();
        self.render()
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .map_err(|e| Error::BadImage {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        write_output(path, &bytes)
    }
}

/// Stacks two-row grids (originals over reconstructions, one file per epoch) into one
/// picture: the first file whole, then the bottom row of every later file, as in the article's
/// "epoch 1 / epoch 9 / original" figure. `cell_height` is the height of one image.
pub fn stack_rows(files: &[std::path::PathBuf], cell_height: usize, out: &Path) -> Result<()> {
    let Some(first) = files.first() else {
        return Ok(());
    };
    let open = |p: &Path| {
        image::open(p).map_err(|e| Error::BadImage {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let base = open(first)?;
    let row = (cell_height + BORDER) as u32; // pictures written with the default border
    let (w, h0) = (base.width(), base.height());
    let mut canvas = image::DynamicImage::new(w, h0 + row * (files.len() as u32 - 1), base.color());
    image::imageops::replace(&mut canvas, &base, 0, 0);
    for (i, f) in files.iter().enumerate().skip(1) {
        let img = open(f)?;
        if img.width() != w || img.height() != h0 {
            return Err(Error::BadImage {
                path: f.clone(),
                reason: "picture size differs from the first epoch's".into(),
            });
        }
        let bottom = img.crop_imm(0, h0 - row, w, row);
        image::imageops::replace(&mut canvas, &bottom, 0, (h0 + row * (i as u32 - 1)) as i64);
    }
    let mut bytes = Vec::new();
    canvas
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::BadImage {
            path: out.to_path_buf(),
            reason: e.to_string(),
        })?;
    write_output(out, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn grid_places_images_and_borders() {
        let dev = Device::flex();
        // Two 2x3 gray images: all 0 and all 1, two per row.
        let t = Tensor::<1>::from_floats(
            [0.0f32; 6]
                .iter()
                .chain([1.0f32; 6].iter())
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
            &dev,
        )
        .reshape([2, 1, 2, 3]);
        let g = Grid::from_tensor(t, 2);
        assert_eq!(g.size(), (2 * (3 + 2) + 2, 2 + 2 + 2));
        let img = g.render().to_luma8();
        assert_eq!(img.get_pixel(0, 0).0[0], 128);
        assert_eq!(img.get_pixel(2, 2).0[0], 0);
        assert_eq!(img.get_pixel(2 + 5, 2).0[0], 255);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        g.save_png(&p).unwrap();
        let back = image::open(&p).unwrap();
        assert_eq!((back.width(), back.height()), (12, 6));
    }

    #[test]
    fn row_labels_add_a_margin_with_text_and_borders_are_optional() {
        let dev = Device::flex();
        let t = Tensor::<4>::ones([4, 1, 5, 5], &dev);
        let plain = Grid::from_tensor(t.clone(), 2).with_border(0);
        assert_eq!(plain.size(), (10, 10));
        let img = plain.render().to_luma8();
        assert!(img.pixels().all(|p| p.0[0] == 255), "no border pixels left");
        let labelled = Grid::from_tensor(t, 2).with_row_labels(vec!["z0".into(), "z12".into()]);
        let (w, h) = labelled.size();
        assert_eq!(h, 2 * 7 + 2);
        assert!(w > 2 * 7 + 2 + 3 * 6, "margin for 3 characters: {w}");
        let img = labelled.render().to_rgb8();
        let margin = w as u32 - (2 * 7 + 2);
        // Dark text pixels in the margin, and the cells unchanged to its right.
        let dark = (0..margin)
            .flat_map(|x| (0..h as u32).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
            .count();
        assert!(dark > 5, "{dark} text pixels");
        assert_eq!(img.get_pixel(margin + 2, 2).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(margin, 0).0, [128, 128, 128]);
    }

    #[test]
    fn an_absurd_border_is_refused_not_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let grid = Grid {
            images: vec![vec![0.5; 4]; 4],
            columns: 2,
            channels: 1,
            height: 2,
            width: 2,
            border: 0,
            row_labels: Vec::new(),
        };
        for border in [100_000, 1 << 62, usize::MAX] {
            let err = grid
                .clone()
                .with_border(border)
                .save_png(&dir.path().join("g.png"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("too large"), "{border}: {err}");
        }
        grid.with_border(3)
            .save_png(&dir.path().join("g.png"))
            .unwrap();
    }
}
