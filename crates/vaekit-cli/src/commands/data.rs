//! `vaekit data download`, `data bars`, `data pack` and `data info`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use vaekit::data::download::{FileOutcome, download as fetch_all, remote_dataset};
use vaekit::data::packed::{read_header, write_packed};
use vaekit::data::source::{default_download_dir, pack_input};

use crate::cli::{BarsArgs, DownloadArgs, InfoArgs, PackArgs};
use crate::progress::{bar, bytes_bar};

/// Largest side `data pack --size` accepts.
const MAX_SIDE: usize = 4096;

pub fn download(a: DownloadArgs) -> Result<()> {
    let mut ds = remote_dataset(&a.name)
        .ok_or_else(|| anyhow!("unknown dataset '{}' (known: mnist, fashion-mnist)", a.name))?;
    if let Some(base) = a.base_url {
        ds.base_url = if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        };
    }
    let dir = a.dir.unwrap_or_else(|| default_download_dir(&a.name));
    let pb = bytes_bar();
    let outcomes = fetch_all(&ds, &dir, |file, done, total| {
        pb.set_message(file.to_string());
        if let Some(t) = total {
            pb.set_length(t);
        }
        pb.set_position(done);
    })?;
    pb.finish_and_clear();
    for o in outcomes {
        match o {
            FileOutcome::Present(p) => {
                crate::outln!("already present and verified: {}", p.display())?
            }
            FileOutcome::Downloaded(p) => {
                crate::outln!("downloaded and verified: {}", p.display())?
            }
        }
    }
    crate::outln!("{} is ready in {}", a.name, dir.display())?;
    Ok(())
}

/// Most images `data bars` writes per split: it is for small trials.
const MAX_BARS: usize = 1_000_000;

pub fn bars(a: BarsArgs) -> Result<()> {
    for (flag, n) in [("--train", a.train), ("--test", a.test)] {
        if n == 0 || n > MAX_BARS {
            anyhow::bail!("{flag} {n}: give 1 to {MAX_BARS} images");
        }
    }
    if !a.force {
        let taken = [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ]
        .iter()
        .flat_map(|n| [a.dir.join(n), a.dir.join(format!("{n}.gz"))])
        .find(|p| p.symlink_metadata().is_ok());
        if let Some(p) = taken {
            anyhow::bail!(
                "{}: a dataset is already there ({} exists); choose another --dir, or add --force to replace its IDX files",
                a.dir.display(),
                p.display()
            );
        }
    }
    vaekit::data::synthetic::write_bars_idx(&a.dir, a.train, a.test, a.seed)?;
    crate::outln!(
        "wrote {} training and {} test images (bars, 28x28, 10 classes) to {}",
        a.train,
        a.test,
        a.dir.display()
    )?;
    Ok(())
}

pub fn pack(a: PackArgs) -> Result<()> {
    let size = a
        .size
        .as_deref()
        .map(|s| super::parse_wxh("--size", s))
        .transpose()?;
    if let Some([h, w]) = size
        && (h > MAX_SIDE || w > MAX_SIDE)
    {
        bail!(
            "--size {}: at most {MAX_SIDE} pixels a side",
            a.size.as_deref().unwrap_or("")
        );
    }
    if let Some(c) = a.channels
        && c != 1
        && c != 3
    {
        bail!("--channels {c}: give 1 (gray) or 3 (RGB)");
    }
    if a.out.exists() {
        bail!(
            "{}: exists already; remove it or choose another --out",
            a.out.display()
        );
    }
    let t0 = Instant::now();
    let (input, dir) = pack_input(&a.src, size, a.channels)?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // First signal: stop after the chunk being decoded and remove the partial file.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            crate::errln!("\nstopping; the partial file is removed (again to quit now)");
        });
    }
    let pb = bar(0, "packing", !std::io::stderr().is_terminal());
    let header = write_packed(
        &input,
        &dir.display().to_string(),
        &a.out,
        &stop,
        &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    )?;
    pb.finish_and_clear();
    let bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    crate::outln!(
        "packed {} training and {} test images ({}, {} classes) from {} into {}: {:.1} MiB in {:.1} s",
        header.train,
        header.test,
        header.shape,
        header.classes.len(),
        dir.display(),
        a.out.display(),
        bytes as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    )?;
    crate::outln!(
        "train from it with: vaekit train --data-dir {}",
        a.out.display()
    )?;
    Ok(())
}

pub fn info(a: InfoArgs) -> Result<()> {
    let (header, _, _, f) = read_header(&a.file)?;
    let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&header)?)?;
        return Ok(());
    }
    crate::outln!("{}", a.file.display())?;
    crate::outln!(
        "  images:      {} training, {} test",
        header.train,
        header.test
    )?;
    crate::outln!(
        "  shape:       {} ({} bytes a record)",
        header.shape,
        header.shape.numel()
    )?;
    // A folder of thousands of classes: the first few names.
    const SHOWN: usize = 12;
    let mut names = header.classes[..header.classes.len().min(SHOWN)].join(", ");
    if header.classes.len() > SHOWN {
        names.push_str(&format!(", ... ({} more)", header.classes.len() - SHOWN));
    }
    crate::outln!("  classes:     {} ({names})", header.classes.len())?;
    crate::outln!("  source:      {}", header.source)?;
    crate::outln!("  source hash: sha256 {}", header.source_hash)?;
    crate::outln!("  file size:   {:.1} MiB", bytes as f64 / (1 << 20) as f64)?;
    Ok(())
}
