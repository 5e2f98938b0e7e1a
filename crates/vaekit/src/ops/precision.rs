//! The precision of the CPU kernels' matrix products, chosen once per process (as PyTorch's
//! `torch.autocast` region, but for the whole run): `fp32` everywhere, or `bf16` products with
//! fp32 accumulation on CPUs with AVX512-BF16 (see [`super::gemm_bf16`]).
//!
//! Only the products change: weights, optimiser states, activations, losses and every
//! elementwise operation stay fp32 (fp32 master weights), and burn's own operations (other
//! devices, `VAEKIT_KERNELS=burn`) are untouched.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// A matrix-product precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 products (see [`super::gemm`]).
    #[default]
    Fp32,
    /// bf16 products with f32 accumulation.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision {other:?} (expected fp32 or bf16)"
            )),
        }
    }
}

static BF16: AtomicBool = AtomicBool::new(false);

/// Whether this CPU runs bf16 products natively (AVX512-BF16's dot product).
pub fn bf16_supported() -> bool {
    super::gemm_bf16::available()
}

/// Sets the kernels' precision and returns the one in force: `Bf16` falls back to `Fp32` on a
/// CPU without AVX512-BF16 (the caller says so once).
pub fn set_precision(p: Precision) -> Precision {
    let bf16 = p == Precision::Bf16 && bf16_supported();
    BF16.store(bf16, Ordering::Relaxed);
    precision()
}

/// The precision in force.
pub fn precision() -> Precision {
    if BF16.load(Ordering::Relaxed) {
        Precision::Bf16
    } else {
        Precision::Fp32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_names() {
        for p in [Precision::Fp32, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("fp16".parse::<Precision>().unwrap_err().contains("fp16"));
    }
}
