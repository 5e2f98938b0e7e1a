//! `vaekit sample`: decode draws from the prior.

use anyhow::{Result, bail};
use vaekit::checkpoint::load_model;
use vaekit::device::DeviceChoice;
use vaekit::image::Grid;
use vaekit::inspect::sample;
use vaekit::run::RunDir;

use crate::cli::SampleArgs;

pub fn run(a: SampleArgs, device: DeviceChoice) -> Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let device = device.device()?;
    let run = RunDir::open(&a.run)?;
    let (model, _, meta) = load_model(&run, &device)?;
    if let Some(c) = a.class {
        match model.classes() {
            0 => bail!("--class needs a conditional model (train with --model cvae)"),
            k if c as usize >= k => bail!(
                "--class {c} is out of range: the model knows {k} classes (0..{})",
                k - 1
            ),
            _ => {}
        }
    }
    let x = sample(&model, a.n, a.seed, a.class, &device);
    let cols = (a.n as f64).sqrt().ceil() as usize;
    Grid::from_tensor(x, cols).save_png(&a.out)?;
    println!(
        "wrote {} samples (epoch {}, seed {}) to {}",
        a.n,
        meta.epoch,
        a.seed,
        a.out.display()
    );
    Ok(())
}
