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

/// One device of a `--devices` list: `cpu`, `wgpu` (the default adapter), `wgpu:N` (discrete
/// GPU N), `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => {
            let i: usize = i.trim().parse().map_err(|_| {
                Error::InvalidConfig(format!(
                    "device '{spec}': the part after ':' must be a device number"
                ))
            })?;
            (k.trim(), Some(i))
        }
        None => (spec.trim(), None),
    };
    let choice: DeviceChoice = kind.parse().map_err(Error::InvalidConfig)?;
    match (choice, index) {
        (DeviceChoice::Cpu, None) => Ok(Device::flex()),
        (DeviceChoice::Cpu, Some(_)) => Err(Error::InvalidConfig(format!(
            "device '{spec}': the CPU has no number (give cpu)"
        ))),
        (_, None) => choice.device(),
        (DeviceChoice::Wgpu, Some(i)) => wgpu_numbered(i),
        (DeviceChoice::Cuda, Some(i)) => cuda_numbered(i),
    }
}

/// The kind of the first device of a `--devices` list (where the networks live and the
/// optimiser state belongs), or `None` if it names none.
pub fn first_device_kind(list: &str) -> Option<DeviceChoice> {
    let first = list.split(',').map(str::trim).find(|s| !s.is_empty())?;
    first.split(':').next()?.trim().parse().ok()
}

/// The devices of a comma-separated list such as `wgpu:0,wgpu:1` (see [`parse_device`]).
pub fn parse_devices(list: &str) -> Result<Vec<Device>> {
    let devices = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_device)
        .collect::<Result<Vec<_>>>()?;
    if devices.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "devices '{list}': give one or more, e.g. wgpu:0,wgpu:1"
        )));
    }
    Ok(devices)
}

#[cfg(feature = "wgpu")]
fn wgpu_numbered(i: usize) -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_numbered(_: usize) -> Result<Device> {
    wgpu_device()
}

#[cfg(feature = "cuda")]
fn cuda_numbered(i: usize) -> Result<Device> {
    Ok(Device::cuda(i))
}

#[cfg(not(feature = "cuda"))]
fn cuda_numbered(_: usize) -> Result<Device> {
    cuda_device()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_parse_and_bad_ones_say_why() {
        assert_eq!(parse_devices("cpu,cpu").unwrap().len(), 2);
        let err = |s: &str| parse_devices(s).unwrap_err().to_string();
        assert!(err("cpu,tpu").contains("unknown device 'tpu'"));
        assert!(err("wgpu:x").contains("device number"));
        assert!(err("cpu:1").contains("no number"));
        assert!(err(",").contains("give one or more"));
    }
}
