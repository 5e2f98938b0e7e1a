//! Training curves from `metrics.jsonl`, by name: one panel per quantity, with its training
//! mean over the epoch (`train_X`) and its value on the test set after it (`test_X`) against
//! the epoch number. A new training method's metrics are plotted without edits here.

use std::path::Path;

use plotters::prelude::*;

use super::{FONT, render_png, s};
use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;

/// Values that describe the run rather than the model; left out unless asked for by name.
pub const BOOKKEEPING: [&str; 6] = [
    "images_per_sec",
    "seconds",
    "data_wait_seconds",
    "allreduce_seconds",
    "beta",
    "skipped_steps",
];

/// Panels per row.
const COLUMNS: usize = 3;

/// One panel: the quantity's name and its series (label, colour, metric name).
struct Panel {
    name: String,
    series: Vec<(&'static str, RGBColor, String)>,
}

/// The panels for `names` (every metric but [`BOOKKEEPING`] when `None`), in the order the
/// names first appear: `train_X` and `test_X` share the panel `X`.
fn panels(metrics: &[EpochMetrics], names: Option<&[String]>) -> Vec<Panel> {
    let mut all: Vec<String> = Vec::new();
    for m in metrics {
        for (n, _) in m.values.iter() {
            if !all.iter().any(|a| a == n) {
                all.push(n.to_string());
            }
        }
    }
    let wanted = |n: &str| match names {
        Some(list) => list.iter().any(|w| {
            w == n || n.strip_prefix("train_") == Some(w) || n.strip_prefix("test_") == Some(w)
        }),
        None => !BOOKKEEPING.contains(&n),
    };
    let mut out: Vec<Panel> = Vec::new();
    for n in all.iter().filter(|n| wanted(n)) {
        let (key, label, color) = if let Some(k) = n.strip_prefix("train_") {
            (k, "train", BLUE)
        } else if let Some(k) = n.strip_prefix("test_") {
            (k, "test", RED)
        } else {
            (n.as_str(), "value", GREEN)
        };
        match out.iter_mut().find(|p| p.name == key) {
            Some(p) => p.series.push((label, color, n.clone())),
            None => out.push(Panel {
                name: key.to_string(),
                series: vec![(label, color, n.clone())],
            }),
        }
    }
    out
}

/// Draws every metric of `metrics` (or those in `names`, with or without their `train_` /
/// `test_` prefix) against the epoch, three panels to a row. Non-finite values are left out.
pub fn plot_curves(
    metrics: &[EpochMetrics],
    names: Option<&[String]>,
    title: &str,
    out: &Path,
) -> Result<()> {
    if metrics.is_empty() {
        return Err(Error::BadConfig {
            path: out.to_path_buf(),
            reason: "no finished epochs to plot yet".into(),
        });
    }
    let panels = panels(metrics, names);
    if panels.is_empty() {
        let known: Vec<&str> = metrics[0].values.iter().map(|(n, _)| n).collect();
        return Err(Error::BadConfig {
            path: out.to_path_buf(),
            reason: format!("no such metric to plot; the run has {}", known.join(", ")),
        });
    }
    let cols = panels.len().min(COLUMNS);
    let rows = panels.len().div_ceil(COLUMNS);
    let size = (500 * cols as u32, 60 + 420 * rows as u32);
    render_png(out, size, |root| {
        let root = root.titled(title, (FONT, 24)).map_err(s)?;
        let areas = root.split_evenly((rows, cols));
        let last = metrics.last().expect("non-empty").epoch as f64;
        let first = metrics[0].epoch as f64;
        let x_range = if last > first {
            first..last
        } else {
            first - 0.5..first + 0.5
        };
        for (area, panel) in areas.iter().zip(&panels) {
            let series: Vec<Vec<(f64, f64)>> = panel
                .series
                .iter()
                .map(|(_, _, name)| {
                    metrics
                        .iter()
                        .filter_map(|m| m.get(name).map(|v| (m.epoch as f64, v)))
                        .filter(|(_, v)| v.is_finite())
                        .collect()
                })
                .collect();
            let ys = series.iter().flatten().map(|p| p.1);
            let lo = ys.clone().fold(f64::INFINITY, f64::min);
            let hi = ys.fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1.0));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.name, (FONT, 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x_range.clone(), (lo - pad)..(hi + pad))
                .map_err(s)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(metrics.len().clamp(2, 12))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .draw()
                .map_err(s)?;
            for ((label, color, _), points) in panel.series.iter().zip(series) {
                let color = *color;
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(s)?
                    .label(*label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(s)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font((FONT, 13))
                .draw()
                .map_err(s)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn epoch(e: usize, values: Metrics) -> EpochMetrics {
        EpochMetrics {
            epoch: e,
            step: e * 10,
            values,
            labels: vec![],
        }
    }

    #[test]
    fn train_and_test_of_a_name_share_a_panel_in_order_of_appearance() {
        let vae = Metrics::new()
            .with("train_loss", 3.0)
            .with("train_kl", 1.0)
            .with("test_neg_elbo", 3.5)
            .with("test_kl", 1.1)
            .with("images_per_sec", 100.0)
            .with("d_real", 0.7);
        let m = vec![epoch(1, vae.clone()), epoch(2, vae)];
        let p = panels(&m, None);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["loss", "kl", "neg_elbo", "d_real"]);
        let kl: Vec<&str> = p[1].series.iter().map(|s| s.2.as_str()).collect();
        assert_eq!(kl, ["train_kl", "test_kl"]);
        // Asked for by name, with or without the prefix; bookkeeping only when asked.
        let ask = ["kl".to_string(), "images_per_sec".to_string()];
        let names: Vec<String> = panels(&m, Some(&ask)).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["kl", "images_per_sec"]);

        let dir = std::env::temp_dir().join(format!("vaekit-curves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("c.png");
        plot_curves(&m, None, "t", &out).unwrap();
        let img = image::open(&out).unwrap();
        assert_eq!((img.width(), img.height()), (1500, 60 + 2 * 420));
        let err = plot_curves(&m, Some(&["nope".to_string()]), "t", &out).unwrap_err();
        assert!(err.to_string().contains("train_loss"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
