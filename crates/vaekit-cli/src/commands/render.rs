//! `vaekit render` (one code at any size, in tiles) and `vaekit morph` (an animated GIF along
//! the path between two images' codes).

use anyhow::{Context, Result, bail};
use vaekit::burn::tensor::Tensor;
use vaekit::data::{Split, one_hot};
use vaekit::device::DeviceChoice;
use vaekit::inspect::{
    encode_dataset, interpolate, prior_z, read_codes_csv, render_image, save_gif,
};

use crate::cli::{MorphArgs, RenderArgs};
use crate::progress::bar;

/// Most frames `morph` writes.
const MAX_FRAMES: usize = 1000;

/// `WxH` (or the training size when absent) as [height, width], with the flag in errors.
fn parse_size(s: Option<&str>, training: [usize; 2]) -> Result<[usize; 2]> {
    match s {
        Some(s) => super::parse_wxh("--size", s),
        None => Ok(training),
    }
}

pub fn render(a: RenderArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    // The coordinates are f32: beyond 1e6 either way the plane is a blur of rounding.
    if !(1e-6..=1e6).contains(&a.scale) {
        bail!("--scale must be between 1e-6 and 1e6, got {}", a.scale);
    }
    let l = super::load_run(&a.run, device)?;
    let size = parse_size(a.size.as_deref(), l.model.decoder.size())?;
    let latent = l.model.latent_dim();
    super::check_class(l.model.classes(), a.class, "--class")?;
    let (z, what) = match &a.codes {
        Some(path) => {
            let (codes, dims) = read_codes_csv(path)?;
            if dims != latent {
                bail!(
                    "{}: codes of {dims} dimensions, the model's latent has {latent}",
                    path.display()
                );
            }
            let rows = codes.len() / dims;
            if a.row >= rows {
                bail!(
                    "--row {} is out of range: {} has {rows} codes",
                    a.row,
                    path.display()
                );
            }
            (
                codes[a.row * dims..(a.row + 1) * dims].to_vec(),
                format!("row {} of {}", a.row, path.display()),
            )
        }
        None => {
            let noise = prior_z(1, l.model.noise_dim(), a.seed, &l.device);
            let y = l.model.condition(&[a.class.unwrap_or(0)], &l.device);
            let z: Tensor<2> = l.model.prior_sample(noise, y);
            (
                z.into_data().try_into_vec::<f32>().expect("f32 codes"),
                format!("the prior draw of seed {}", a.seed),
            )
        }
    };
    let classes = l.model.classes();
    let y = (classes > 0).then(|| one_hot(&[a.class.unwrap_or(0)], classes));
    let [h, w] = size;
    let pb = bar(h as u64, &format!("render {w}x{h}"), false);
    let t0 = std::time::Instant::now();
    let img = render_image(
        &l.model,
        &z,
        y.as_deref(),
        size,
        a.scale,
        &l.device,
        |done, _| pb.set_position(done as u64),
    )?;
    pb.finish_and_clear();
    img.save_png(&a.out)?;
    crate::outln!(
        "rendered {what} at {w}x{h} (scale {}) in {:.1} s to {}",
        a.scale,
        t0.elapsed().as_secs_f64(),
        a.out.display()
    )?;
    Ok(())
}

pub fn morph(a: MorphArgs, device: DeviceChoice) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    if a.frames < 2 || a.frames > MAX_FRAMES {
        bail!("--frames must be 2 to {MAX_FRAMES}, got {}", a.frames);
    }
    let l = super::load_run(&a.run, device)?;
    let size = parse_size(a.size.as_deref(), l.model.decoder.size())?;
    let data = super::run_data(&l.cfg, None)?;
    let ds = data.get(Split::from(a.split));
    super::check_index(a.from, ds, a.split, "--from")?;
    super::check_index(a.to, ds, a.split, "--to")?;
    let codes = encode_dataset(&l.model, ds, Some(&[a.from, a.to]), 2, &l.device);
    // Out and back, so the loop has no jump: frames/2 + 1 codes each way, ends shared.
    let half = a.frames / 2 + 1;
    let mut path = interpolate(codes.mean_of(0), codes.mean_of(1), half, true);
    let back: Vec<Vec<f32>> = path
        .iter()
        .rev()
        .skip(1)
        .take(a.frames - half)
        .cloned()
        .collect();
    path.extend(back);
    let classes = l.model.classes();
    let (ya, yb) = (
        one_hot(&[ds.labels[a.from]], classes),
        one_hot(&[ds.labels[a.to]], classes),
    );
    let pb = bar(path.len() as u64, "morph frames", false);
    let mut frames = Vec::with_capacity(path.len());
    for (i, z) in path.iter().enumerate() {
        let t = 1.0 - ((i as f64 / (half - 1) as f64) - 1.0).abs();
        let y: Vec<f32> = ya
            .iter()
            .zip(&yb)
            .map(|(p, q)| ((1.0 - t) * *p as f64 + t * *q as f64) as f32)
            .collect();
        let y = (classes > 0).then_some(y.as_slice());
        frames.push(render_image(
            &l.model,
            z,
            y,
            size,
            1.0,
            &l.device,
            |_, _| {},
        )?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    save_gif(&frames, a.delay, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    crate::outln!(
        "wrote {} frames ({}x{}) from image {} to image {} and back to {}",
        frames.len(),
        size[1],
        size[0],
        a.from,
        a.to,
        a.out.display()
    )?;
    Ok(())
}
