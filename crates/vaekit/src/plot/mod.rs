//! Plots rendered with plotters into PNG files: training curves and latent scatter plots.
//!
//! Text uses DejaVu Sans, embedded in the binary (the `dejavu` crate), so plots look the same on
//! every machine and need no system fonts.

pub mod curves;
pub mod scatter;

use std::path::Path;
use std::sync::Once;

use plotters::backend::BitMapBackend;
use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, IntoDrawingArea};
use plotters::style::{FontStyle, WHITE};

pub use curves::plot_curves;
pub use scatter::plot_scatter;

use crate::error::{Error, Result};
use crate::fsutil::write_output;

/// Font family name plots ask for.
pub const FONT: &str = "sans-serif";

/// Makes the embedded font available to plotters (once per process).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a constant of this crate; failing to parse it is a build defect.
        let ok = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok();
        assert!(ok, "the embedded DejaVu Sans font parses");
    });
}

/// Draws into a white `width` x `height` RGB canvas with `draw`, then writes it as a PNG
/// (atomically). `draw` reports plotters' errors as text.
pub fn render_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    crate::fsutil::check_picture_path(path, "png")?;
    register_font();
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        draw(&root).map_err(|e| Error::BadImage {
            path: path.to_path_buf(),
            reason: format!("plotting failed: {e}"),
        })?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    // Plots are mostly flat colour: the best compression makes them several times smaller.
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut bytes,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(&buf, width, height, image::ExtendedColorType::Rgb8)
    .map_err(|e| Error::BadImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_output(path, &bytes)
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::BadImage {
        path: path.to_path_buf(),
        reason: format!("plotting failed: {e}"),
    }
}

/// Turns any displayable error into the `String` that [`render_png`]'s closure returns.
pub(crate) fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}
