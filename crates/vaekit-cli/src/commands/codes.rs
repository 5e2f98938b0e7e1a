//! `vaekit encode` and `vaekit decode`: latent codes as CSV, in and out.

use anyhow::{Result, bail};
use vaekit::device::DeviceChoice;
use vaekit::image::Grid;
use vaekit::inspect::{decode_codes, read_codes_csv, read_label_column, write_codes_csv};

use crate::cli::{DecodeArgs, EncodeArgs};

pub fn encode(a: EncodeArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    let (ds, codes) = super::encode_split(&a.run, a.split, a.limit, device)?;
    let n = codes.len();
    let idx: Vec<usize> = (0..n).collect();
    write_codes_csv(&a.out, &codes, &idx, &ds.classes)?;
    crate::outln!(
        "wrote the posterior of {n} {} images ({} dimensions) to {}",
        super::split_name(a.split),
        codes.latent,
        a.out.display()
    )?;
    Ok(())
}

pub fn decode(a: DecodeArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    let l = super::load_run(&a.run, device)?;
    let (codes, dims) = read_codes_csv(&a.codes)?;
    let latent = l.cfg.model.latent_dim;
    if dims != latent {
        bail!(
            "{}: codes have {dims} dimensions, the model's latent has {latent}",
            a.codes.display()
        );
    }
    let n = codes.len() / latent;
    super::check_cells(n, &format!("{} ({n} codes)", a.codes.display()))?;
    let columns = a
        .columns
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
        .max(1);
    // A conditional model needs a label per code: --class, or the file's `label` column.
    let classes = l.model.classes();
    let labels = match (super::check_class(classes, a.class, "--class")?, classes) {
        (_, 0) => Vec::new(),
        (Some(c), _) => vec![c; n],
        (None, k) => match read_label_column(&a.codes)? {
            Some(l) if l.iter().all(|&c| (c as usize) < k) => l,
            Some(_) => bail!(
                "{}: a label is out of range for the model's {k} classes",
                a.codes.display()
            ),
            None => bail!(
                "{}: a conditional model needs a `label` column or --class",
                a.codes.display()
            ),
        },
    };
    let grid = Grid::from_tensor(decode_codes(&l.model, &codes, &labels, &l.device), columns);
    super::style_grid(grid, &a.grid, Vec::new()).save_png(&a.out)?;
    crate::outln!(
        "wrote {n} decoded codes from {} to {}",
        a.codes.display(),
        a.out.display()
    )?;
    Ok(())
}
