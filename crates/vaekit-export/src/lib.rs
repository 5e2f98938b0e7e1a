//! vaekit models out of vaekit: a run's networks as ONNX graphs ([`onnx`]) or as a PyTorch
//! module file with its weights ([`torch`]), each checked by the tests against vaekit's own
//! outputs in onnxruntime and torch.
//!
//! ```text
//! vaekit export --run RUN --format onnx --out DIR    encoder.onnx, decoder.onnx (, prior.onnx)
//! vaekit export --run RUN --format torch --out DIR   vaekit_model.py, weights.safetensors, config.json
//! ```

pub mod onnx;
pub mod torch;
pub mod weights;

use std::path::{Path, PathBuf};

use vaekit::checkpoint::load_model;
use vaekit::run::RunDir;

pub use weights::Weights;

/// What can go wrong in an export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The run could not be read (its message names the file).
    #[error(transparent)]
    Vaekit(#[from] vaekit::Error),
    /// A model or an option this exporter does not handle: refused, never exported wrong.
    #[error("{0}")]
    Unsupported(String),
    /// The output folder is one the export must not write into.
    #[error("{}: {reason}", path.display())]
    BadOut {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, ExportError>;

/// The formats a run exports to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ONNX graphs for onnxruntime and every other ONNX runtime.
    Onnx,
    /// A self-contained PyTorch module file and its weights.
    Torch,
}

/// Exports the current checkpoint of the run at `run` as `format` into the folder `out`
/// (created if missing), a CPPN decoder rendering at `size` (`[height, width]`; the
/// training size when `None`). Returns the files written.
pub fn export_run(
    run: &Path,
    format: Format,
    out: &Path,
    size: Option<[usize; 2]>,
) -> Result<Vec<PathBuf>> {
    let dir = RunDir::open(run)?;
    let cfg = dir.config()?;
    check_out(dir.root(), out)?;
    if let Some([h, w]) = size {
        if h == 0 || w == 0 || h.saturating_mul(w) > 16_777_216 {
            return Err(ExportError::Unsupported(format!(
                "--size {w}x{h}: give a width and height of at least 1 and at most 16M pixels in all"
            )));
        }
    }
    let device = burn_device();
    let (model, model_cfg, _) = load_model(&dir, &device)?;
    let weights = Weights::of(&model)?;
    let config_json = serde_json::to_string_pretty(&cfg).expect("a config serialises");
    std::fs::create_dir_all(out).map_err(vaekit::Error::io(out))?;
    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = out.join(name);
        vaekit::fsutil::write_output(&path, bytes)?;
        files.push(path);
        Ok(())
    };
    match format {
        Format::Onnx => {
            for m in onnx::export(&model_cfg, &weights, size, &config_json)? {
                write(&format!("{}.onnx", m.part), &m.bytes)?;
            }
        }
        Format::Torch => {
            if size.is_some() {
                return Err(ExportError::Unsupported(
                    "--size applies to ONNX export; the PyTorch module renders a CPPN at any size (decode(z, size=(h, w)))".into(),
                ));
            }
            for (name, bytes) in torch::export(&weights, &config_json)? {
                write(name, &bytes)?;
            }
        }
    }
    Ok(files)
}

/// The CPU device the export reads the weights on.
fn burn_device() -> vaekit::burn::tensor::Device {
    vaekit::burn::tensor::Device::flex()
}

/// Refuses an output folder that is the run's own folder or inside its checkpoints: an
/// export never writes over a run's files.
fn check_out(run: &Path, out: &Path) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let Some(run) = canon(run) else {
        return Ok(());
    };
    // The nearest existing folder of `out` tells where it would be.
    let mut probe = Some(out);
    while let Some(p) = probe {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        if let Some(c) = canon(p) {
            let rest = out.strip_prefix(p).unwrap_or(Path::new(""));
            let target = c.join(rest);
            if target == run || target.starts_with(run.join("checkpoints")) {
                return Err(ExportError::BadOut {
                    path: out.to_path_buf(),
                    reason: "is the run's own folder (or its checkpoints); export into a folder of its own, e.g. RUN/export".into(),
                });
            }
            return Ok(());
        }
        probe = p.parent();
    }
    Ok(())
}
