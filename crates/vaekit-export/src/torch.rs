//! PyTorch export: `vaekit_model.py` (the networks as `nn.Module`s, importing only torch and
//! the standard library, built from the config), `weights.safetensors` (the parameters under
//! the same names as in the checkpoint, dense weights in PyTorch's `[out, in]` layout) and
//! `config.json` (the run's config).

use std::collections::HashMap;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::weights::{Param, Weights};
use crate::{ExportError, Result};

/// The module file: one template for every model, built from `config.json` at load time.
pub const MODULE_PY: &str = include_str!("vaekit_model.py");

/// The files of a PyTorch export: name and bytes.
pub fn export(weights: &Weights, config_json: &str) -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        ("vaekit_model.py", MODULE_PY.as_bytes().to_vec()),
        ("weights.safetensors", torch_weights(weights)?),
        ("config.json", format!("{config_json}\n").into_bytes()),
    ])
}

/// The parameters in PyTorch's layout: every matrix is a dense layer's weight, stored
/// `[in, out]` by burn and `[out, in]` by `nn.Linear`; the others (convolution kernels, biases,
/// the global scale) have the same layout in both.
pub fn torch_weights(weights: &Weights) -> Result<Vec<u8>> {
    let params: Vec<(String, Param)> = weights
        .iter()
        .map(|(name, p)| (name.clone(), p.transposed()))
        .collect();
    let bytes: Vec<(String, Vec<u8>)> = params
        .iter()
        .map(|(n, p)| {
            (
                n.clone(),
                p.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = params
        .iter()
        .zip(&bytes)
        .map(|((name, p), (_, b))| {
            TensorView::new(Dtype::F32, p.dims.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| ExportError::Unsupported(format!("parameter {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([(
        "producer".to_string(),
        format!("vaekit {} (PyTorch layout)", vaekit::VERSION),
    )]);
    safetensors::serialize(views, Some(meta))
        .map_err(|e| ExportError::Unsupported(format!("writing the PyTorch weights: {e}")))
}
