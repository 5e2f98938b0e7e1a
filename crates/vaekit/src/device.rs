//! Choosing where tensors live: burn 0.22 picks the backend at run time from a [`Device`].

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The devices `--device` accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// burn's Flex backend: pure Rust, multi-threaded, SIMD.
    #[default]
    Cpu,
    /// wgpu: Vulkan, Metal or DX12 (also Mesa's software Vulkan). Needs the `wgpu` feature.
    Wgpu,
    /// CUDA. Needs the `cuda` feature, whose build needs network access.
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "wgpu" => Ok(DeviceChoice::Wgpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(format!(
                "unknown device '{other}' (expected cpu, wgpu or cuda)"
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

impl DeviceChoice {
    /// The name burn's `BURN_DEVICE` variable uses for this device. burn materialises some
    /// state (optimiser records) on `Device::default()`, which follows that variable.
    pub fn burn_device_name(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "flex",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Cuda => "cuda",
        }
    }

    /// The burn device for inference (no autodiff).
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            DeviceChoice::Wgpu => wgpu_device(),
            DeviceChoice::Cuda => cuda_device(),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    Err(Error::DeviceUnavailable(
        "wgpu".into(),
        "rebuild with `--features wgpu`".into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(Error::DeviceUnavailable(
        "cuda".into(),
        "rebuild with `--features cuda` (its build downloads LLVM, so it needs network access)"
            .into(),
    ))
}
