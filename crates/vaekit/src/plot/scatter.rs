//! Scatter plots of 2-D latent coordinates, coloured by class, with a legend.

use std::path::Path;

use plotters::prelude::*;

use super::{FONT, render_png, s};
use crate::error::{Error, Result};

/// The colour of class `c`: ten well-separated hues (matplotlib's tab10), then the palette of
/// plotters for more classes.
pub fn class_colour(c: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    if c < TAB10.len() {
        let (r, g, b) = TAB10[c];
        RGBColor(r, g, b)
    } else {
        let p = Palette99::pick(c).to_rgba();
        RGBColor(p.0, p.1, p.2)
    }
}

/// Draws `points` (x, y) coloured by `labels`, one legend entry per class in `class_names`.
pub fn plot_scatter(
    points: &[(f64, f64)],
    labels: &[u32],
    class_names: &[String],
    title: &str,
    axes: (&str, &str),
    out: &Path,
) -> Result<()> {
    if points.is_empty() {
        return Err(Error::BadConfig {
            path: out.to_path_buf(),
            reason: "no points to plot".into(),
        });
    }
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let (px, py) = (((x1 - x0) * 0.05).max(1e-3), ((y1 - y0) * 0.05).max(1e-3));
    render_png(out, (1000, 860), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
            .map_err(s)?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(s)?;
        let classes = labels
            .iter()
            .map(|&l| l as usize + 1)
            .max()
            .unwrap_or(0)
            .max(class_names.len());
        for c in 0..classes {
            let colour = class_colour(c);
            let pts: Vec<(f64, f64)> = points
                .iter()
                .zip(labels)
                .filter(|&(_, &l)| l as usize == c)
                .map(|(&p, _)| p)
                .collect();
            if pts.is_empty() {
                continue;
            }
            let name = class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
            chart
                .draw_series(
                    pts.iter()
                        .map(|&p| Circle::new(p, 2, colour.mix(0.6).filled())),
                )
                .map_err(s)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()
            .map_err(s)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_class_in_its_colour() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.png");
        // Two tight clusters far apart: class 0 at (-1, -1), class 1 at (1, 1).
        let mut pts = Vec::new();
        let mut labels = Vec::new();
        for i in 0..50 {
            let e = i as f64 * 1e-3;
            pts.push((-1.0 + e, -1.0 - e));
            labels.push(0);
            pts.push((1.0 - e, 1.0 + e));
            labels.push(1);
        }
        plot_scatter(
            &pts,
            &labels,
            &["zero".into(), "one".into()],
            "test",
            ("x", "y"),
            &p,
        )
        .unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1000, 860));
        let count = |c: RGBColor| img.pixels().filter(|px| px.0 == [c.0, c.1, c.2]).count();
        // Both classes' legend markers are drawn in full colour; the plot is mostly white.
        assert!(count(class_colour(0)) > 20 && count(class_colour(1)) > 20);
        let white = img.pixels().filter(|px| px.0 == [255, 255, 255]).count();
        assert!(white > img.pixels().len() / 2);
        // Points (drawn translucent, so overlaps approach the full colour) sit where their
        // class is: class 0 in the lower left quarter, class 1 in the right half.
        let near = |px: &image::Rgb<u8>, c: RGBColor| {
            (px.0[0].abs_diff(c.0) as u32
                + px.0[1].abs_diff(c.1) as u32
                + px.0[2].abs_diff(c.2) as u32)
                < 30
        };
        let lower_left = img
            .enumerate_pixels()
            .filter(|(x, y, px)| *x < 500 && *y > 430 && near(px, class_colour(0)))
            .count();
        let right = img
            .enumerate_pixels()
            .filter(|(x, _, px)| *x > 500 && near(px, class_colour(1)))
            .count();
        let wrong = img
            .enumerate_pixels()
            .filter(|(x, y, px)| *x < 500 && *y > 430 && near(px, class_colour(1)))
            .count();
        assert!(
            lower_left > 20 && right > 20 && wrong == 0,
            "{lower_left} {right} {wrong}"
        );
    }
}
