//! A model's parameters by name, as its checkpoint stores them (burn's names, dense weights
//! `[in, out]`): what both exporters read.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};
use vaekit::model::Vae;

use crate::{ExportError, Result};

/// One parameter: its shape and its values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

impl Param {
    /// The matrix transposed (`[a, b]` -> `[b, a]`); other ranks unchanged.
    pub fn transposed(&self) -> Param {
        let [a, b] = match self.dims[..] {
            [a, b] => [a, b],
            _ => return self.clone(),
        };
        let mut values = vec![0.0; a * b];
        for i in 0..a {
            for j in 0..b {
                values[j * a + i] = self.values[i * b + j];
            }
        }
        Param {
            dims: vec![b, a],
            values,
        }
    }
}

/// Every parameter of a model by its checkpoint name (`encoder.convs.0.weight`, ...).
#[derive(Clone, Debug)]
pub struct Weights(BTreeMap<String, Param>);

impl Weights {
    /// The parameters of `model`, read from the safetensors bytes its checkpoint would hold.
    pub fn of(model: &Vae) -> Result<Weights> {
        let bytes = vaekit::checkpoint::weights_to_bytes(model);
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| ExportError::Unsupported(format!("reading the model's weights: {e}")))?;
        let mut map = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ExportError::Unsupported(format!(
                    "parameter {name} is {:?}; only f32 weights are exported",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            map.insert(
                name,
                Param {
                    dims: view.shape().to_vec(),
                    values,
                },
            );
        }
        Ok(Weights(map))
    }

    /// The parameter `name`; an error naming it if the model has none (a layout this exporter
    /// does not know, refused rather than exported wrong).
    pub fn get(&self, name: &str) -> Result<&Param> {
        self.0.get(name).ok_or_else(|| {
            ExportError::Unsupported(format!(
                "the model has no parameter {name}: its layout is not one this exporter knows"
            ))
        })
    }

    /// Whether the model has a parameter `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Every parameter, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Param)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposing_moves_element_ij_to_ji() {
        let p = Param {
            dims: vec![2, 3],
            values: vec![0., 1., 2., 3., 4., 5.],
        };
        let t = p.transposed();
        assert_eq!(t.dims, vec![3, 2]);
        assert_eq!(t.values, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(t.transposed(), p);
    }
}
