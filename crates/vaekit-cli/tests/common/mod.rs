//! Helpers shared by the end-to-end tests of the `vaekit` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vaekit::data::synthetic::write_bars_idx;

pub fn vaekit(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vaekit"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

pub fn ok(args: &[&str], cwd: &Path) -> String {
    let out = vaekit(args, cwd);
    assert!(
        out.status.success(),
        "vaekit {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns stderr after checking it is one line without a panic.
pub fn fails(args: &[&str], cwd: &Path) -> String {
    let out = vaekit(args, cwd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "vaekit {args:?} should have failed");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "expected one line, got:\n{err}"
    );
    err
}

pub fn png_size(p: &Path) -> (u32, u32) {
    let d = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let r = d.read_info().unwrap();
    (r.info().width, r.info().height)
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim().lines().last().unwrap()).unwrap()
}

/// A whole JSON file.
pub fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
}

pub fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("bars");
    write_bars_idx(&data, 200, 50, 3).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        data,
    }
}

pub fn train_small(f: &Fixture, out: &str, extra: &[&str]) {
    let d = f.data.to_str().unwrap();
    let mut args = vec![
        "train",
        "--data-dir",
        d,
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    ok(&args, &f.root);
}
