//! `vaekit data download` and `vaekit data bars`.

use anyhow::{Result, anyhow};
use vaekit::data::download::{FileOutcome, download as fetch_all, remote_dataset};
use vaekit::data::source::default_download_dir;

use crate::cli::{BarsArgs, DownloadArgs};
use crate::progress::bytes_bar;

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
            FileOutcome::Present(p) => println!("already present and verified: {}", p.display()),
            FileOutcome::Downloaded(p) => println!("downloaded and verified: {}", p.display()),
        }
    }
    println!("{} is ready in {}", a.name, dir.display());
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
    vaekit::data::synthetic::write_bars_idx(&a.dir, a.train, a.test, a.seed)?;
    println!(
        "wrote {} training and {} test images (bars, 28x28, 10 classes) to {}",
        a.train,
        a.test,
        a.dir.display()
    );
    Ok(())
}
