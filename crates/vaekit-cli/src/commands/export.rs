//! `vaekit export`: a run's model as ONNX graphs or a PyTorch module.

use anyhow::Result;
use vaekit_export::{Format, export_run};

use crate::cli::{ExportArgs, ExportFormatArg};

pub fn run(a: ExportArgs) -> Result<()> {
    vaekit::fsutil::check_output(&a.out)?;
    let size = match &a.size {
        Some(s) => Some(super::parse_wxh("--size", s)?),
        None => None,
    };
    let format = match a.format {
        ExportFormatArg::Onnx => Format::Onnx,
        ExportFormatArg::Torch => Format::Torch,
    };
    let files = export_run(&a.run, format, &a.out, size)?;
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    crate::outln!("wrote {} to {}", names.join(", "), a.out.display())?;
    Ok(())
}
