//! `vaekit reconstruct`: real images above their reconstructions.

use anyhow::{Result, bail};
use vaekit::checkpoint::load_model;
use vaekit::data::{Split, batch_tensor};
use vaekit::device::DeviceChoice;
use vaekit::image::Grid;
use vaekit::inspect::reconstruct;
use vaekit::run::RunDir;

use crate::cli::ReconstructArgs;

/// Images per row; each row of originals is followed by its row of reconstructions.
const COLUMNS: usize = 16;

pub fn run(a: ReconstructArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    super::check_cells(
        2 * a.n,
        &format!("--n {} (originals and reconstructions)", a.n),
    )?;
    let device = device.device()?;
    let run = RunDir::open(&a.run)?;
    let cfg = run.config()?;
    let (model, _, meta) = load_model(&run, &device)?;
    let data = super::run_data(&cfg, a.data_dir)?;
    let ds = data.get(Split::from(a.split));
    let n = a.n.min(ds.len());
    let mut grid: Option<Grid> = None;
    for start in (0..n).step_by(COLUMNS) {
        let idx: Vec<usize> = (start..(start + COLUMNS).min(n)).collect();
        let x = batch_tensor(ds, &idx, None, &device);
        let recon = reconstruct(&model, x.clone(), &ds.labels_of(&idx));
        let mut originals = Grid::from_tensor(x, COLUMNS);
        let mut recon = Grid::from_tensor(recon, COLUMNS);
        // Pad a short last row so the reconstructions start on their own row.
        let blank = vec![1.0; originals.channels * originals.height * originals.width];
        while originals.images.len() < COLUMNS && n > COLUMNS {
            originals.images.push(blank.clone());
            recon.images.push(blank.clone());
        }
        originals.extend(recon);
        match grid.as_mut() {
            None => grid = Some(originals),
            Some(g) => g.extend(originals),
        }
    }
    let mut grid = grid.expect("n >= 1");
    grid.columns = n.min(COLUMNS);
    grid.with_border(a.border).save_png(&a.out)?;
    crate::outln!(
        "wrote {n} originals and reconstructions (epoch {}) to {}",
        meta.epoch,
        a.out.display()
    )?;
    Ok(())
}
