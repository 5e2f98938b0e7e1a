//! Saving and loading model weights (safetensors) and optimiser state (burnpack).
//!
//! A checkpoint is a folder `checkpoints/step-N/` written under a temporary name and renamed
//! when complete; `meta.json` is then atomically switched to point at it, and only after that
//! are older checkpoints removed. A kill at any moment leaves `meta.json` pointing at a whole
//! checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bytes, Device};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::model::Vae;
use crate::run::{Meta, RunDir};

/// File name of the weights inside a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the optimiser state inside a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

/// The model's weights as safetensors bytes. The header carries one metadata entry (burn's
/// default has several, in hash order), so the same weights always give the same bytes.
pub fn weights_to_bytes<M: Module>(model: &M) -> Vec<u8> {
    let mut store = SafetensorsStore::from_bytes(None)
        .clear_metadata()
        .metadata(
            "producer",
            format!("vaekit {} (burn 0.22.1)", crate::VERSION),
        );
    model
        .save_into(&mut store)
        .expect("serialising weights to memory cannot fail");
    store.get_bytes().expect("the store was just written")
}

/// Writes the weights to `path` atomically.
pub fn save_weights<M: Module>(model: &M, path: &Path) -> Result<()> {
    write_atomic(path, &weights_to_bytes(model))
}

/// "a, b, c and 4 more": keeps error lines short.
fn some_names<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 3;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| n.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// Loads weights from `path` into `model` (a [`Vae`] or any other module), which must have
/// exactly the same tensors.
pub fn load_weights<M: Module>(model: M, path: &Path) -> Result<M> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    // Partial loading lets every problem be collected and reported at once, below.
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).allow_partial(true);
    let mut model = model;
    let result = model.load_from(&mut store).map_err(|e| {
        let msg = e.to_string();
        Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason: format!(
                "unreadable safetensors ({})",
                msg.lines().next().unwrap_or("").trim()
            ),
        }
    })?;
    let mut problems = Vec::new();
    if !result.errors.is_empty() {
        let errs: Vec<String> = result
            .errors
            .iter()
            .map(|e| e.to_string().replace('\n', " "))
            .collect();
        problems.push(some_names(&errs));
    }
    if !result.missing.is_empty() {
        let names: Vec<&str> = result.missing.iter().map(|(n, _)| n.as_str()).collect();
        problems.push(format!("missing tensors {}", some_names(&names)));
    }
    if !result.unused.is_empty() {
        problems.push(format!("unexpected tensors {}", some_names(&result.unused)));
    }
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason: problems.join("; "),
        })
    }
}

/// Saves weights and optimiser state as a new checkpoint of `run` and makes it current.
pub fn save_checkpoint(
    run: &RunDir,
    model: &Vae,
    optim: &ModuleOptimizer,
    meta: &Meta,
) -> Result<()> {
    let dir = run.root().join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let name = format!("step-{:09}", meta.step);
    let tmp = dir.join(format!(".{name}.tmp"));
    let fin = dir.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(Error::io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(Error::io(&tmp))?;
    write_atomic(&tmp.join(WEIGHTS_FILE), &weights_to_bytes(model))?;
    let opt_bytes = optim.into_bytes().map_err(|e| Error::Io {
        path: tmp.join(OPTIMIZER_FILE),
        source: std::io::Error::other(e.to_string()),
    })?;
    write_atomic(&tmp.join(OPTIMIZER_FILE), &opt_bytes)?;
    if fin.exists() {
        std::fs::remove_dir_all(&fin).map_err(Error::io(&fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(Error::io(&fin))?;
    let meta = Meta {
        checkpoint: format!("checkpoints/{name}"),
        ..meta.clone()
    };
    write_json_atomic(&run.meta_path(), &meta)?;
    // Only now is the previous checkpoint unreferenced.
    for entry in std::fs::read_dir(&dir).map_err(Error::io(&dir))?.flatten() {
        if entry.file_name() != *name.as_str() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// The current checkpoint folder of a run.
pub fn checkpoint_dir(run: &RunDir, meta: &Meta) -> PathBuf {
    run.root().join(&meta.checkpoint)
}

/// Rebuilds the run's model from its `config.json` and loads the current weights.
pub fn load_model(run: &RunDir, device: &Device) -> Result<(Vae, ModelConfig, Meta)> {
    let cfg = run.config()?;
    let meta = run.require_meta()?;
    let model = Vae::init(&cfg.model, cfg.seed, device);
    let model = load_weights(model, &checkpoint_dir(run, &meta).join(WEIGHTS_FILE))?;
    Ok((model, cfg.model, meta))
}

/// Loads optimiser state written by [`save_checkpoint`].
pub fn load_optimizer(optim: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    optim
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason: format!("unreadable optimiser state ({e})"),
        })
}
