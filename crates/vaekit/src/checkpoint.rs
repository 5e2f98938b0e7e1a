//! Saving and loading model weights (safetensors) and optimiser state (burnpack).
//!
//! A checkpoint holds every part of a training method by name ([`Parts`]): each network as
//! `NAME.safetensors` (the VAE that every command loads is `model`) and each optimiser's state
//! as `NAME.bpk` (a VAE's one optimiser is `optimizer`). It is a folder `checkpoints/step-N/`
//! written under a temporary name and renamed when complete; `meta.json` is then atomically switched to point at it, and only after that
//! are older checkpoints removed. A kill at any moment leaves `meta.json` pointing at a whole
//! checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{KeyRemapper, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bytes, Device};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::model::Vae;
use crate::run::{Meta, RunDir};

/// Name of the network every method saves its VAE (encoder, decoder, prior, likelihood) as.
pub const MODEL: &str = "model";
/// File name of the VAE's weights inside a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of a VAE's optimiser state inside a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

/// The file of network `name` in a checkpoint folder.
pub fn network_file(name: &str) -> String {
    format!("{name}.safetensors")
}

/// The file of optimiser state `name` in a checkpoint folder.
pub fn optimizer_file(name: &str) -> String {
    format!("{name}.bpk")
}

/// Every part of a training method, serialised: what a checkpoint holds.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    /// (name, safetensors bytes) of each network.
    pub networks: Vec<(String, Vec<u8>)>,
    /// (name, burnpack bytes) of each optimiser's state.
    pub optimizers: Vec<(String, Vec<u8>)>,
}

impl Parts {
    /// Adds network `name`'s weights.
    pub fn network<M: Module>(mut self, name: &str, module: &M) -> Parts {
        self.networks.push((name.into(), weights_to_bytes(module)));
        self
    }

    /// Adds optimiser `name`'s state.
    pub fn optimizer(mut self, name: &str, optim: &ModuleOptimizer) -> Result<Parts> {
        let bytes = optim.into_bytes().map_err(|e| Error::Io {
            path: optimizer_file(name).into(),
            error: std::io::Error::other(e.to_string()),
        })?;
        self.optimizers.push((name.into(), bytes.to_vec()));
        Ok(self)
    }
}

/// Tensor names of vaekit's first checkpoint format, when the VAE was one enum of whole models
/// (`Conv.enc_convs.0.weight`), mapped to the parts' names (`encoder.convs.0.weight`). The
/// parameters kept their order, so the optimiser state of such a checkpoint loads as it is.
fn legacy_keys() -> KeyRemapper {
    KeyRemapper::from_patterns(vec![
        (
            r"^(?:Conv|Mlp)\.enc_(convs|hidden|mean|logvar)\.",
            "encoder.$1.",
        ),
        (
            r"^(?:Conv|Mlp)\.dec_(dense|convs|hidden|out)\.",
            "decoder.$1.",
        ),
        (r"^(?:Conv|Mlp)\.global_scale\.", "likelihood.scale."),
        (r"^(?:Conv|Mlp)\.top\.", "prior."),
    ])
    .expect("valid patterns")
}

/// The model's weights as safetensors bytes. The header carries one metadata entry (burn's
/// default has several, in hash order), so the same weights always give the same bytes.
pub fn weights_to_bytes<M: Module>(model: &M) -> Vec<u8> {
    let mut store = SafetensorsStore::from_bytes(None)
        .skip_enum_variants(true)
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
/// exactly the same tensors. Files of the first format are read through [`legacy_keys`].
pub fn load_weights<M: Module>(model: M, path: &Path) -> Result<M> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    // Partial loading lets every problem be collected and reported at once, below.
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .skip_enum_variants(true)
        .remap(legacy_keys())
        .allow_partial(true);
    let mut model = model;
    let result = model.load_from(&mut store).map_err(|e| {
        let msg = e.to_string();
        let shapes = shape_mismatches(&msg);
        Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason: if shapes.is_empty() {
                format!(
                    "unreadable safetensors ({})",
                    msg.lines().next().unwrap_or("").trim()
                )
            } else {
                format!(
                    "does not match the model its config describes: {}",
                    some_names(&shapes)
                )
            },
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
    if !problems.is_empty() {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason: format!(
                "does not match the model its config describes: {}",
                problems.join("; ")
            ),
        });
    }
    // NaN or infinite weights make every result NaN: refused, not used.
    if !crate::model::params_finite(&model) {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason: "the weights are not finite (NaN or infinite): the run diverged before this checkpoint was written".into(),
        });
    }
    Ok(model)
}

/// The shape mismatches in burn's import error text, as "NAME is [..] in the file, [..] in
/// the model" (burn reports them as debug structs; none if the text has none).
fn shape_mismatches(msg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let dims_after = |s: &str, key: &str| -> Option<String> {
        let rest = &s[s.find(key)? + key.len()..];
        let open = rest.find('[')?;
        let close = rest.find(']')?;
        Some(rest[open..=close].to_string())
    };
    for part in msg.split("ShapeMismatch").skip(1) {
        let name = part
            .split('"')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_default();
        if let (Some(want), Some(got)) = (dims_after(part, "expected"), dims_after(part, "found")) {
            out.push(format!("{name} is {got} in the file, {want} in the model"));
        }
    }
    out
}

/// Writes every part as a new checkpoint of `run` and makes it current.
pub fn save_checkpoint(run: &RunDir, parts: &Parts, meta: &Meta) -> Result<()> {
    let dir = run.root().join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let name = format!("step-{:09}", meta.step);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let fin = dir.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(Error::io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(Error::io(&tmp))?;
    let written = (|| {
        for (part, bytes) in &parts.networks {
            write_atomic(&tmp.join(network_file(part)), bytes)?;
        }
        for (part, bytes) in &parts.optimizers {
            write_atomic(&tmp.join(optimizer_file(part)), bytes)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        // A full disk: leave no half-written checkpoint folder behind.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
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

/// The id and shape of every parameter of `module`.
fn param_shapes<M: Module>(module: &M) -> BTreeMap<u64, Vec<usize>> {
    struct Shapes(BTreeMap<u64, Vec<usize>>);
    impl burn::module::ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::Tensor<D>>) {
            self.0.insert(param.id.val(), param.val().dims().to_vec());
        }
    }
    let mut s = Shapes(BTreeMap::new());
    module.visit(&mut s);
    s.0
}

/// Why the optimiser state in `bytes` cannot be the state of parameters `params` (id ->
/// shape): a state tensor without a parameter, for a parameter the module does not have, or of
/// another shape than its parameter (Adam keeps two moments shaped like the parameter).
fn state_mismatch(bytes: Vec<u8>, params: &BTreeMap<u64, Vec<usize>>) -> Option<String> {
    let reader = match burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes)) {
        Ok(r) => r,
        Err(e) => return Some(format!("unreadable optimiser state ({e})")),
    };
    // burn rebuilds each parameter's state at the rank its `ID.__rank` scalar gives.
    for (name, value) in reader.scalars() {
        let Some(id) = name.strip_suffix(".__rank") else {
            continue;
        };
        let rank = usize::try_from(*value).ok();
        match id.parse::<u64>().ok().and_then(|id| params.get(&id)) {
            Some(dims) if rank == Some(dims.len()) => {}
            _ => {
                return Some(format!(
                    "optimiser state of another model: {name} does not fit any parameter"
                ));
            }
        }
    }
    let tensors = match reader.into_tensors() {
        Ok(t) => t,
        Err(e) => return Some(format!("unreadable optimiser state ({e})")),
    };
    for t in tensors {
        let (name, dtype, shape, id, _) = match t.into_parts() {
            Ok(p) => p,
            Err(e) => return Some(format!("unreadable optimiser state ({e})")),
        };
        let Some(id) = id else {
            return Some(format!("state tensor {name} belongs to no parameter"));
        };
        if dtype != burn_pack::DType::F32 {
            return Some(format!("state tensor {name} is {dtype:?}, not f32"));
        }
        // burn finds a parameter's state by the name's prefix, "ID.": it must be this id.
        if name.split('.').next() != Some(id.to_string().as_str()) {
            return Some(format!(
                "state tensor {name} is filed under parameter {id}: the state is damaged"
            ));
        }
        match params.get(&id) {
            None => {
                return Some(format!(
                    "optimiser state of another model: it has state for parameter {id}, which this model does not have"
                ));
            }
            Some(dims) if dims.as_slice() != shape.as_slice() => {
                return Some(format!(
                    "optimiser state of another model: state tensor {name} is {:?}, its parameter {dims:?}",
                    shape.as_slice()
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// Loads optimiser state written by [`save_checkpoint`] for the parameters of `module`, after
/// checking that every state tensor belongs to one of them with its shape: another model's
/// state is refused with one line naming the file (burn would load it, and the first update
/// would fail on the mismatch).
pub fn load_optimizer<M: Module>(
    optim: ModuleOptimizer,
    path: &Path,
    module: &M,
) -> Result<ModuleOptimizer> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    if let Some(reason) = state_mismatch(bytes.clone(), &param_shapes(module)) {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason,
        });
    }
    optim
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::CheckpointMismatch {
            path: path.to_path_buf(),
            reason: format!("unreadable optimiser state ({e})"),
        })
}
