//! `vaekit interpolate`, `traverse` and `manifold`: decoded paths through the latent space.

use anyhow::{Result, bail};
use vaekit::burn::tensor::{Tensor, TensorData};
use vaekit::data::{Split, batch_tensor, one_hot};
use vaekit::device::DeviceChoice;
use vaekit::image::Grid;
use vaekit::inspect::{
    decode_codes, decode_codes_soft, encode_dataset, interpolate as path, lerp, manifold_codes,
    normal_quantiles, traverse as sweep,
};

use crate::cli::{InterpolateArgs, ManifoldArgs, TraverseArgs};

/// Decodes codes (each `latent` long) into a grid of `columns` per row; a conditional model
/// decodes every code with `class`.
fn decode_grid(l: &super::Loaded, codes: &[Vec<f32>], class: u32, columns: usize) -> Grid {
    let flat: Vec<f32> = codes.iter().flatten().copied().collect();
    let labels = vec![class; codes.len()];
    Grid::from_tensor(decode_codes(&l.model, &flat, &labels, &l.device), columns)
}

/// `steps` rows of class weights from the one-hot `ya` to `yb`, both ends included (empty rows
/// for an unconditional model).
fn label_path(ya: &[f32], yb: &[f32], steps: usize) -> Vec<f32> {
    (0..steps)
        .flat_map(|i| lerp(ya, yb, i as f64 / (steps - 1) as f64))
        .collect()
}

pub fn interpolate(a: InterpolateArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    if a.steps < 2 {
        bail!("--steps must be at least 2");
    }
    super::check_cells(a.steps + 2, &format!("--steps {}", a.steps))?;
    let l = super::load_run(&a.run, device)?;
    let data = super::run_data(&l.cfg, None)?;
    let ds = data.get(Split::from(a.split));
    super::check_index(a.from, ds, a.split, "--from")?;
    let Some(to) = a.to else {
        return interpolate_class(&l, ds, &a);
    };
    super::check_index(to, ds, a.split, "--to")?;
    // Posterior means, not samples: the path between what the encoder believes of each image.
    let codes = encode_dataset(&l.model, ds, Some(&[a.from, to]), 2, &l.device);
    let codes_path = path(codes.mean_of(0), codes.mean_of(1), a.steps, a.slerp);
    // A conditional model also moves from one image's label to the other's (mixed one-hots).
    let classes = l.model.classes();
    let (ya, yb) = (
        one_hot(&[ds.labels[a.from]], classes),
        one_hot(&[ds.labels[to]], classes),
    );
    let weights = label_path(&ya, &yb, a.steps);
    let flat: Vec<f32> = codes_path.iter().flatten().copied().collect();
    let decoded = Grid::from_tensor(
        decode_codes_soft(&l.model, &flat, &weights, &l.device),
        a.steps + 2,
    );
    let originals: Tensor<4> = batch_tensor(ds, &[a.from, to], None, &l.device);
    let mut both = Grid::from_tensor(originals, a.steps + 2);
    let mut grid = Grid {
        images: Vec::new(),
        ..both.clone()
    };
    grid.images.push(both.images.remove(0));
    grid.extend(decoded);
    grid.images.push(both.images.remove(0));
    let kind = if a.slerp { "slerp" } else { "lerp" };
    let grid = super::style_grid(grid, &a.grid, vec![format!("{} {kind} {to}", a.from)]);
    grid.save_png(&a.out)?;
    crate::outln!(
        "wrote image {} (left), {} decoded codes on the {} path between their posterior means, and image {to} (right) to {}",
        a.from,
        a.steps,
        if a.slerp { "spherical" } else { "straight" },
        a.out.display()
    )?;
    Ok(())
}

/// `interpolate --to-class C`: image `--from`'s code (its style) decoded under labels moving
/// from its own class to C, after the original.
fn interpolate_class(
    l: &super::Loaded,
    ds: &vaekit::data::Dataset,
    a: &InterpolateArgs,
) -> Result<()> {
    let classes = l.model.classes();
    let to = super::check_class(classes, a.to_class, "--to-class")?.unwrap_or(0);
    let from = ds.labels[a.from];
    let codes = encode_dataset(&l.model, ds, Some(&[a.from]), 1, &l.device);
    let (ya, yb) = (one_hot(&[from], classes), one_hot(&[to], classes));
    let weights = label_path(&ya, &yb, a.steps);
    let (n, dev) = (a.steps, &l.device);
    let flat: Vec<f32> = (0..n)
        .flat_map(|_| codes.mean_of(0).iter().copied())
        .collect();
    // With a learned class prior the code moves with the label, keeping its place in the class.
    let rows =
        |v: Vec<f32>, width: usize| Tensor::<2>::from_data(TensorData::new(v, [n, width]), dev);
    let moved = l.model.move_code(
        rows(flat, l.model.latent_dim()),
        rows(ya.repeat(n), classes),
        rows(weights.clone(), classes),
    );
    let flat = moved.into_data().try_into_vec::<f32>().expect("f32 codes");
    let decoded = Grid::from_tensor(
        decode_codes_soft(&l.model, &flat, &weights, &l.device),
        a.steps + 1,
    );
    let mut grid = Grid::from_tensor(batch_tensor(ds, &[a.from], None, &l.device), a.steps + 1);
    grid.extend(decoded);
    let grid = super::style_grid(grid, &a.grid, vec![format!("{} class {from}-{to}", a.from)]);
    grid.save_png(&a.out)?;
    crate::outln!(
        "wrote image {} (left) and its code decoded under {} labels from its class {from} to class {to} to {}",
        a.from,
        a.steps,
        a.out.display()
    )?;
    Ok(())
}

/// Parses `all` or a comma-separated list of dimensions below `latent`.
fn parse_dims(s: &str, latent: usize) -> Result<Vec<usize>> {
    if s.trim() == "all" {
        return Ok((0..latent).collect());
    }
    let mut dims = Vec::new();
    for part in s.split(',') {
        let d: usize = part.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "--dims: '{}' is not a dimension number (use `all` or e.g. 0,3,5)",
                part.trim()
            )
        })?;
        if d >= latent {
            bail!(
                "--dims: dimension {d} is out of range: the latent has {latent} dimensions (0..{})",
                latent - 1
            );
        }
        dims.push(d);
    }
    Ok(dims)
}

pub fn traverse(a: TraverseArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    if a.steps == 0 || !(a.range > 0.0 && a.range.is_finite()) {
        bail!("--steps must be at least 1 and --range a positive number");
    }
    super::check_cells(a.steps, &format!("--steps {}", a.steps))?;
    let l = super::load_run(&a.run, device)?;
    let latent = l.cfg.model.latent_dim;
    let dims = parse_dims(&a.dims, latent)?;
    super::check_cells(
        dims.len() * a.steps,
        &format!("--dims {} with --steps {}", a.dims, a.steps),
    )?;
    let data = super::run_data(&l.cfg, None)?;
    let ds = data.get(Split::from(a.split));
    super::check_index(a.image, ds, a.split, "--image")?;
    let codes = encode_dataset(&l.model, ds, Some(&[a.image]), 1, &l.device);
    let rows = sweep(codes.mean_of(0), &dims, a.range, a.steps);
    let grid = decode_grid(&l, &rows, ds.labels[a.image], a.steps);
    let labels = dims.iter().map(|d| format!("z{d}")).collect();
    super::style_grid(grid, &a.grid, labels).save_png(&a.out)?;
    crate::outln!(
        "wrote {} rows (dimensions {}) of {} values from -{r} to +{r} around image {}'s code to {}",
        dims.len(),
        a.dims,
        a.steps,
        a.image,
        a.out.display(),
        r = a.range
    )?;
    Ok(())
}

pub fn manifold(a: ManifoldArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    super::check_cells(
        a.steps.saturating_mul(a.steps),
        &format!("--steps {} (a {0}x{0} grid)", a.steps),
    )?;
    let l = super::load_run(&a.run, device)?;
    if l.cfg.model.latent_dim != 2 {
        bail!(
            "{}: manifold needs a model with a 2-D latent, this one has {} dimensions (train with --latent 2, or use traverse/scatter)",
            a.run.display(),
            l.cfg.model.latent_dim
        );
    }
    let class = super::check_class(l.model.classes(), a.class, "--class")?.unwrap_or(0);
    // The N(0, 1) quantiles through the prior: themselves, or p(z|class) of a class prior.
    let codes = manifold_codes(a.steps);
    let n = codes.len();
    let flat: Vec<f32> = codes.into_iter().flatten().collect();
    let z = Tensor::from_data(TensorData::new(flat, [n, 2]), &l.device);
    let z = match l.model.condition(&vec![class; n], &l.device) {
        Some(y) => match l.model.prior.class_gaussian(y) {
            Some(p) => p.rsample(z),
            None => z,
        },
        None => z,
    };
    let z = z.into_data().try_into_vec::<f32>().expect("f32 codes");
    let grid = Grid::from_tensor(
        decode_codes(&l.model, &z, &vec![class; n], &l.device),
        a.steps,
    );
    let labels = normal_quantiles(a.steps)
        .iter()
        .rev()
        .map(|z| format!("z1 {z:+.2}"))
        .collect();
    super::style_grid(grid, &a.grid, labels).save_png(&a.out)?;
    crate::outln!(
        "wrote a {0}x{0} grid of decoded codes at the N(0, 1) quantiles (z0 along rows, z1 down the columns) to {1}",
        a.steps,
        a.out.display()
    )?;
    Ok(())
}
