//! A small trained run on generated bars, for the server's tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use vaekit::config::{DataConfig, TrainConfig};
use vaekit::data::load_data;
use vaekit::data::synthetic::write_bars_idx;
use vaekit::device::DeviceChoice;
use vaekit::run::RunDir;
use vaekit::train::{Silent, train};

/// A run folder trained for one epoch on 300 bars images (test set of 100) in a temp dir.
pub struct TestRun {
    pub _tmp: tempfile::TempDir,
    pub run: PathBuf,
}

/// Trains `cfg` (its data replaced by generated bars) into a new temp run folder.
pub fn trained_run(mut cfg: TrainConfig) -> TestRun {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("bars");
    write_bars_idx(&data_dir, 300, 100, 7).unwrap();
    cfg.data = DataConfig {
        dataset: "bars".into(),
        dir: Some(data_dir),
        ..DataConfig::default()
    };
    cfg.epochs = 1;
    cfg.batch_size = 50;
    cfg.model.latent_dim = 4;
    let data = load_data(&cfg.data, None, cfg.seed).unwrap();
    cfg.model.image = data.train.shape;
    let run = tmp.path().join("run");
    let dir = RunDir::create(&run, &cfg).unwrap();
    let device = DeviceChoice::Cpu.device().unwrap();
    train(
        &dir,
        &cfg,
        &data,
        &device,
        &AtomicBool::new(false),
        &mut Silent,
    )
    .unwrap();
    TestRun { _tmp: tmp, run }
}

/// Every file under `dir` with its length and modification time.
#[allow(dead_code)]
pub fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}
