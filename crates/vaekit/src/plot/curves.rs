//! Training curves from `metrics.jsonl`: loss, reconstruction and KL per epoch, train and test.

use std::path::Path;

use plotters::prelude::*;

use super::{FONT, render_png, s};
use crate::error::{Error, Result};
use crate::run::EpochMetrics;

/// Three panels side by side (loss / neg-ELBO, reconstruction, KL), each with the training
/// average over the epoch and the test value after it, against the epoch number.
pub fn plot_curves(metrics: &[EpochMetrics], title: &str, out: &Path) -> Result<()> {
    if metrics.is_empty() {
        return Err(Error::BadConfig {
            path: out.to_path_buf(),
            reason: "no finished epochs to plot yet".into(),
        });
    }
    type Pick = fn(&EpochMetrics) -> (f64, f64);
    let panels: [(&str, Pick); 3] = [
        ("loss (neg-ELBO), nats/image", |m| {
            (m.train_loss, m.test_neg_elbo)
        }),
        ("reconstruction, nats/image", |m| {
            (m.train_recon, m.test_recon)
        }),
        ("KL, nats/image", |m| (m.train_kl, m.test_kl)),
    ];
    render_png(out, (1500, 480), |root| {
        let root = root.titled(title, (FONT, 24)).map_err(s)?;
        let areas = root.split_evenly((1, 3));
        let last = metrics.last().expect("non-empty").epoch as f64;
        let first = metrics[0].epoch as f64;
        let x_range = if last > first {
            first..last
        } else {
            first - 0.5..first + 0.5
        };
        for (area, (name, pick)) in areas.iter().zip(panels) {
            let pts: Vec<(f64, f64, f64)> = metrics
                .iter()
                .map(|m| (m.epoch as f64, pick(m).0, pick(m).1))
                .collect();
            let lo = pts
                .iter()
                .map(|p| p.1.min(p.2))
                .fold(f64::INFINITY, f64::min);
            let hi = pts
                .iter()
                .map(|p| p.1.max(p.2))
                .fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1.0));
            let mut chart = ChartBuilder::on(area)
                .caption(name, (FONT, 18))
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
            for (label, color, which) in [("train", BLUE, 1), ("test", RED, 2)] {
                let series: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| (p.0, if which == 1 { p.1 } else { p.2 }))
                    .collect();
                chart
                    .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
                    .map_err(s)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(series.iter().map(|&p| Circle::new(p, 3, color.filled())))
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
