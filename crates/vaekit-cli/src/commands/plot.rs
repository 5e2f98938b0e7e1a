//! `vaekit plot` (training curves) and `vaekit scatter` (latent means in 2-D).

use anyhow::Result;
use vaekit::device::DeviceChoice;
use vaekit::inspect::Pca;
use vaekit::plot::{plot_curves, plot_scatter};
use vaekit::run::RunDir;

use crate::cli::{PlotArgs, ScatterArgs};

pub fn curves(a: PlotArgs) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    let run = RunDir::open(&a.run)?;
    let metrics = run.metrics()?;
    let title = format!("{}: {} epochs", a.run.display(), metrics.len());
    plot_curves(&metrics, a.metrics.as_deref(), &title, &a.out)?;
    crate::outln!(
        "wrote the curves of {} epochs to {}",
        metrics.len(),
        a.out.display()
    )?;
    Ok(())
}

pub fn scatter(a: ScatterArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    let (ds, codes) = super::encode_split(&a.run, a.split, a.limit, device)?;
    let (n, latent) = (codes.len(), codes.latent);
    let epoch = vaekit::run::RunDir::open(&a.run)?.require_meta()?.epoch;
    let split = super::split_name(a.split);
    let (points, axes, how): (Vec<(f64, f64)>, (String, String), String) = if latent == 2 {
        let pts = (0..n)
            .map(|i| (codes.mean_of(i)[0] as f64, codes.mean_of(i)[1] as f64))
            .collect();
        (
            pts,
            ("z0 (posterior mean)".into(), "z1 (posterior mean)".into()),
            "the latent itself".into(),
        )
    } else {
        let pca = Pca::fit(&codes.mean, latent, 2.min(latent));
        let pts = (0..n)
            .map(|i| {
                let p = pca.project(codes.mean_of(i));
                (p[0], p.get(1).copied().unwrap_or(0.0))
            })
            .collect();
        let e = |k: usize| 100.0 * pca.explained.get(k).copied().unwrap_or(0.0);
        (
            pts,
            (
                format!("PC 1 ({:.1}% of variance)", e(0)),
                format!("PC 2 ({:.1}% of variance)", e(1)),
            ),
            format!("PCA of the {latent}-D means"),
        )
    };
    let title = format!(
        "{split} set posterior means, {n} images, epoch {} ({how})",
        epoch
    );
    plot_scatter(
        &points,
        &codes.labels,
        &ds.classes,
        &title,
        (&axes.0, &axes.1),
        &a.out,
    )?;
    crate::outln!(
        "wrote the latent means of {n} {split} images ({how}) to {}",
        a.out.display()
    )?;
    Ok(())
}
