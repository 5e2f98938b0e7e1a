//! `vaekit sample`: decode draws from the prior.

use anyhow::{Result, bail};
use vaekit::checkpoint::load_model;
use vaekit::device::DeviceChoice;
use vaekit::image::Grid;
use vaekit::inspect::sample;
use vaekit::run::RunDir;

use crate::cli::SampleArgs;

pub fn run(a: SampleArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    super::check_cells(a.n, &format!("--n {}", a.n))?;
    let device = device.device()?;
    let run = RunDir::open(&a.run)?;
    let (model, _, meta) = load_model(&run, &device)?;
    super::check_class(model.classes(), a.class, "--class")?;
    super::check_temperature(a.temperature)?;
    let x = sample(&model, a.n, a.seed, a.class, a.temperature, &device);
    let cols = (a.n as f64).sqrt().ceil() as usize;
    Grid::from_tensor(x, cols)
        .with_border(a.border)
        .save_png(&a.out)?;
    crate::outln!(
        "wrote {} samples (epoch {}, seed {}, temperature {}) to {}",
        a.n,
        meta.epoch,
        a.seed,
        a.temperature,
        a.out.display()
    )?;
    Ok(())
}
