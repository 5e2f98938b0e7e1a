//! Run directories: where a training run keeps its config, checkpoints, metrics and pictures.
//!
//! ```text
//! RUN/
//!   config.json            the TrainConfig, written before training starts
//!   meta.json              progress (epoch, step) and which checkpoint is current
//!   metrics.jsonl          one JSON object per finished epoch
//!   checkpoints/step-N/    every part of the training method: NAME.safetensors per network
//!                          (model.safetensors: the VAE) and NAME.bpk per optimiser state
//!   images/                recon_epoch_NNN.png, samples_epoch_NNN.png
//!   reconstructions.png    originals on top, one row of reconstructions per epoch
//!   samples.png            prior samples from the latest epoch
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::fsutil::{read_json, write_json_atomic};
pub use crate::metrics::EpochMetrics;

/// Progress of a run, as of its latest checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// vaekit version that wrote the checkpoint.
    pub vaekit_version: String,
    /// Epochs finished.
    pub epoch: usize,
    /// Optimisation steps taken in all.
    pub step: usize,
    /// Steps already taken in the unfinished epoch `epoch + 1` (0 at an epoch boundary).
    pub epoch_step: usize,
    /// The current checkpoint folder, relative to the run directory.
    pub checkpoint: String,
    /// The SHA-256 of the source of the packed file the run trains on (its header's
    /// `source_hash`): a resume on a packed file of other images is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hash: Option<String>,
}

/// Most optimisation steps a run's meta.json may record.
pub const MAX_STEPS: usize = 1 << 48;

/// A run directory on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
    /// The run's exclusive lock, while this value (or a clone) holds it (see
    /// [`RunDir::locked`]).
    lock: Option<std::sync::Arc<std::fs::File>>,
}

impl RunDir {
    /// A new run at `root`: refuses to touch a folder that already holds a run or other files.
    pub fn create(root: &Path, config: &TrainConfig) -> Result<RunDir> {
        crate::fsutil::check_new_dir(
            root,
            "config.json",
            "already holds a run; continue it with --resume or choose another --out",
        )?;
        std::fs::create_dir_all(root.join("images")).map_err(Error::io(root))?;
        let run = RunDir {
            root: root.to_path_buf(),
            lock: None,
        };
        write_json_atomic(&run.config_path(), config)?;
        Ok(run)
    }

    /// An existing run: it must have a readable `config.json`.
    pub fn open(root: &Path) -> Result<RunDir> {
        if !root.is_dir() {
            return Err(Error::NotARun {
                path: root.to_path_buf(),
                reason: "no such folder".into(),
            });
        }
        if !root.join("config.json").is_file() {
            return Err(Error::NotARun {
                path: root.to_path_buf(),
                reason: "no config.json".into(),
            });
        }
        Ok(RunDir {
            root: root.to_path_buf(),
            lock: None,
        })
    }

    /// The run with its exclusive lock taken (`.lock`, an advisory file lock that the
    /// operating system releases when the process ends, however it ends), held as long as the
    /// returned value or a clone of it lives; then the temporary files that a killed process
    /// may have left are removed (only the lock holder writes into a run, so none of them is in
    /// use). Another process gets [`Error::RunInUse`]. Every writer takes it: `train` does
    /// when given an unlocked run.
    pub fn locked(self) -> Result<RunDir> {
        if self.lock.is_some() {
            return Ok(self);
        }
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::RunInUse {
                    path: self.root.clone(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
        }
        for dir in [
            self.root.clone(),
            self.root.join("checkpoints"),
            self.images_dir(),
        ] {
            crate::fsutil::remove_stale_temps(&dir)?;
        }
        Ok(RunDir {
            lock: Some(std::sync::Arc::new(file)),
            ..self
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `meta.json`.
    pub fn meta_path(&self) -> PathBuf {
        self.root.join("meta.json")
    }

    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// `images/`.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The saved training configuration, validated.
    pub fn config(&self) -> Result<TrainConfig> {
        let cfg: TrainConfig = read_json(&self.config_path())?;
        cfg.validate().map_err(|e| Error::BadConfig {
            path: self.config_path(),
            reason: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// Rewrites `config.json` (only the epoch count may change, on resume).
    pub fn write_config(&self, cfg: &TrainConfig) -> Result<()> {
        write_json_atomic(&self.config_path(), cfg)
    }

    /// Progress so far, or `None` before the first checkpoint.
    pub fn meta(&self) -> Result<Option<Meta>> {
        let p = self.meta_path();
        if !p.exists() {
            return Ok(None);
        }
        let meta: Meta = read_json(&p)?;
        // Only a checkpoint folder of this run: `checkpoints/step-` and digits.
        let inside = meta
            .checkpoint
            .strip_prefix("checkpoints/step-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !inside {
            return Err(Error::BadConfig {
                path: p,
                reason: format!(
                    "checkpoint \"{}\" is not a checkpoint folder of this run (checkpoints/step-N)",
                    meta.checkpoint
                ),
            });
        }
        // Counts a run can reach: every epoch takes a step, and 2^48 steps is decades of
        // training (a larger count would wrap when training adds to it).
        if meta.step > MAX_STEPS || meta.epoch > meta.step || meta.epoch_step > meta.step {
            return Err(Error::BadConfig {
                path: p,
                reason: format!(
                    "epoch {}, step {}, epoch_step {} are not counts of a run (at most {MAX_STEPS} steps, each epoch at least one)",
                    meta.epoch, meta.step, meta.epoch_step
                ),
            });
        }
        Ok(Some(meta))
    }

    /// Progress, which must exist (commands that need trained weights).
    pub fn require_meta(&self) -> Result<Meta> {
        self.meta()?.ok_or_else(|| Error::NotARun {
            path: self.root.clone(),
            reason: "no checkpoint yet (meta.json is missing): train it first".into(),
        })
    }

    /// Appends one line to `metrics.jsonl`.
    pub fn append_metrics(&self, m: &EpochMetrics) -> Result<()> {
        let p = self.metrics_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(Error::io(&p))?;
        let line = serde_json::to_string(m).expect("serialisable");
        writeln!(f, "{line}").map_err(Error::io(&p))
    }

    /// The lines of `metrics.jsonl` of the epochs the current checkpoint has finished (empty
    /// before the first): a line of an epoch whose checkpoint was never written (a kill or a
    /// full disk while saving) is not a result of this run; training drops it on resume.
    pub fn metrics(&self) -> Result<Vec<EpochMetrics>> {
        let done = self.meta()?.map_or(0, |m| m.epoch);
        Ok(self
            .metrics_lines()?
            .into_iter()
            .filter(|m| m.epoch <= done)
            .collect())
    }

    /// Every whole line of `metrics.jsonl`.
    fn metrics_lines(&self) -> Result<Vec<EpochMetrics>> {
        let p = self.metrics_path();
        if !p.exists() {
            return Ok(Vec::new());
        }
        let mut text = std::fs::read_to_string(&p).map_err(Error::io(&p))?;
        // Every line is written whole with its newline; a last line without one is what a
        // process killed mid-write leaves: not a record (training rewrites the file).
        if !text.ends_with('\n') {
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            text.truncate(keep);
        }
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| Error::BadConfig {
                    path: p.clone(),
                    reason: format!("line {}: {e}", i + 1),
                })
            })
            .collect()
    }

    /// Drops metric lines of epochs after `epoch` (an interrupted run may have logged an epoch
    /// whose checkpoint was never written), and a last line cut short; a file with neither is
    /// left as it is.
    pub fn truncate_metrics(&self, epoch: usize) -> Result<()> {
        let p = self.metrics_path();
        let whole = match std::fs::read(&p) {
            Ok(b) => b.is_empty() || b.ends_with(b"\n"),
            Err(_) => return Ok(()),
        };
        let lines = self.metrics_lines()?;
        let count = lines.len();
        let kept: Vec<EpochMetrics> = lines.into_iter().filter(|m| m.epoch <= epoch).collect();
        if whole && kept.len() == count {
            return Ok(());
        }
        let mut text = String::new();
        for m in &kept {
            text.push_str(&serde_json::to_string(m).expect("serialisable"));
            text.push('\n');
        }
        if self.metrics_path().exists() {
            crate::fsutil::write_atomic(&self.metrics_path(), text.as_bytes())?;
        }
        Ok(())
    }
}
