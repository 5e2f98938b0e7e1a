//! Issue 32: the hostile cases of a review of every command, the packed format and the server.
//! Each test reproduces a fault of the code before the fix (a destroyed run, a panic, an abort,
//! a hang, a held server) and checks the one-line refusal or clean stop that replaced it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Every file under `dir` with its length and a hash of its bytes, sorted (to check that
/// nothing changed).
fn snapshot(dir: &Path) -> Vec<(PathBuf, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && e.file_name() != ".lock" {
                let bytes = std::fs::read(e.path()).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.push((e.path(), bytes.len(), h.finish()));
            }
        }
    }
    out.sort();
    out
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vaekit"))
}

/// The current checkpoint folder of a run, relative to the run.
fn checkpoint_of(run: &Path) -> String {
    json_file(&run.join("meta.json"))["checkpoint"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn no_command_writes_into_a_runs_own_files() {
    let f = fixture();
    train_small(&f, "run", &["--limit", "100"]);
    let run = f.root.join("run");
    let ckpt = checkpoint_of(&run);
    let before = snapshot(&run);
    std::os::unix::fs::symlink(run.join("meta.json"), f.root.join("link.csv")).unwrap();
    let weights = format!("run/{ckpt}/model.safetensors");
    let cases: Vec<Vec<&str>> = vec![
        vec!["encode", "--run", "run", "--out", "run/config.json"],
        vec!["encode", "--run", "run", "--out", "run/meta.json"],
        vec!["encode", "--run", "run", "--out", "run/metrics.jsonl"],
        vec!["encode", "--run", "run", "--out", &weights],
        vec!["encode", "--run", "run", "--out", "run/checkpoints/new.csv"],
        vec!["encode", "--run", "run", "--out", "link.csv"],
        vec!["sample", "--run", "run", "--out", "run/checkpoints/s.png"],
        vec!["plot", "--run", "run", "--out", "run/checkpoints/p.png"],
        vec![
            "export", "--run", "run", "--format", "torch", "--out", "run",
        ],
        vec![
            "export",
            "--run",
            "run",
            "--format",
            "onnx",
            "--out",
            "run/checkpoints",
        ],
        vec!["data", "pack", "bars", "--out", "run/checkpoints/d.vkd"],
    ];
    for args in &cases {
        let out = vaekit(args, &f.root);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(snapshot(&run), before, "{args:?} changed the run");
    }
    // The message says why, naming the file and the run.
    let err = fails(
        &["encode", "--run", "run", "--out", "run/config.json"],
        &f.root,
    );
    assert!(
        err.contains("run/config.json") && err.contains("only training writes"),
        "{err}"
    );
    let err = fails(&["encode", "--run", "run", "--out", "link.csv"], &f.root);
    assert!(
        err.contains("link.csv") && err.contains("own files"),
        "{err}"
    );
    // Outputs beside the run's own files are fine.
    ok(
        &["encode", "--run", "run", "--out", "run/codes.csv"],
        &f.root,
    );
    ok(
        &["sample", "--run", "run", "--out", "run/more.png"],
        &f.root,
    );
}

#[test]
fn data_bars_never_replaces_a_dataset_without_force() {
    let f = fixture();
    let before = snapshot(&f.data);
    let err = fails(&["data", "bars", "--dir", "bars", "--seed", "9"], &f.root);
    assert!(
        err.contains("--force") && err.contains("train-images"),
        "{err}"
    );
    assert_eq!(snapshot(&f.data), before);
    ok(
        &["data", "bars", "--dir", "bars", "--seed", "9", "--force"],
        &f.root,
    );
    assert_ne!(snapshot(&f.data), before);
    ok(&["data", "bars", "--dir", "fresh"], &f.root);
}

#[test]
fn a_reader_that_goes_away_ends_vaekit_quietly() {
    let f = fixture();
    train_small(&f, "run", &["--limit", "100"]);
    // `vaekit eval --json | head -c 0`: stdout is a pipe nobody reads.
    for args in [
        &["eval", "--run", "run", "--json"][..],
        &["data", "info", "--help"][..],
        &["encode", "--run", "run", "--out", "c.csv"][..],
    ] {
        let mut child = bin()
            .args(args)
            .current_dir(&f.root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
    // `vaekit train | head -c 10`: training stops at the next step with a checkpoint.
    let d = f.data.to_str().unwrap();
    let mut child = bin()
        .args([
            "train",
            "--data-dir",
            d,
            "--epochs",
            "3",
            "--batch-size",
            "50",
            "--out",
            "piped",
        ])
        .current_dir(&f.root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    let meta = json_file(&f.root.join("piped/meta.json"));
    assert!(meta["step"].as_u64().unwrap() >= 1, "{meta}");
}

#[test]
fn a_full_stdout_is_one_line_and_leaves_no_half_made_run() {
    let f = fixture();
    let d = f.data.to_str().unwrap();
    let out = bin()
        .args(["train", "--data-dir", d, "--epochs", "1", "--out", "full"])
        .current_dir(&f.root)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("standard output"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !f.root.join("full").exists(),
        "a half-made run folder is left"
    );
}

/// A pseudo-terminal: the child's stdout and stderr, and the end this test holds.
fn openpty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new file descriptors, which the Files then own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

#[test]
fn a_hang_up_stops_training_cleanly_with_a_checkpoint() {
    let f = fixture();
    let d = f.data.to_str().unwrap();
    let (master, slave) = openpty();
    let mut child = bin()
        .args([
            "train",
            "--data-dir",
            d,
            "--epochs",
            "200",
            "--batch-size",
            "50",
            "--out",
            "hup",
        ])
        .current_dir(&f.root)
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    // Wait for the first epoch's line on the terminal, then close the terminal and hang up.
    let mut reader = BufReader::new(master);
    let mut line = String::new();
    while !line.contains("epoch   1:") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader);
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_for(&mut child, Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let meta = json_file(&f.root.join("hup/meta.json"));
    assert!(meta["epoch"].as_u64().unwrap() < 200, "{meta}");
    // The run continues from there.
    ok(&["train", "--resume", "hup", "--epochs", "2"], &f.root);
}

fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn borders_are_bounded_and_taken_by_every_grid_command() {
    let f = fixture();
    train_small(&f, "run", &["--limit", "100"]);
    for cmd in ["sample", "reconstruct", "traverse", "manifold"] {
        let out = vaekit(
            &[cmd, "--run", "run", "--out", "b.png", "--border", "100000"],
            &f.root,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && !err.contains("panicked"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("--border") && err.contains("0..=64"),
            "{cmd}: {err}"
        );
    }
    let out = vaekit(
        &[
            "decode",
            "--run",
            "run",
            "--codes",
            "c.csv",
            "--out",
            "b.png",
            "--border",
            "4611686018427387904",
        ],
        &f.root,
    );
    assert!(!out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("panicked"));
    // sample and reconstruct take the border (documented for them): 8 samples in a 3x3 grid.
    for (border, side) in [(0, 3 * 28), (5, 3 * 28 + 4 * 5)] {
        let b = border.to_string();
        ok(
            &[
                "sample", "--run", "run", "--n", "8", "--out", "s.png", "--border", &b,
            ],
            &f.root,
        );
        assert_eq!(png_size(&f.root.join("s.png")), (side, side));
    }
    ok(
        &[
            "reconstruct",
            "--run",
            "run",
            "--n",
            "4",
            "--out",
            "r.png",
            "--border",
            "0",
        ],
        &f.root,
    );
    assert_eq!(png_size(&f.root.join("r.png")), (4 * 28, 2 * 28));
}

#[test]
fn importance_samples_and_model_sizes_are_bounded_before_anything_is_made() {
    let f = fixture();
    let d = f.data.to_str().unwrap();
    let err = fails(
        &[
            "train",
            "--data-dir",
            d,
            "--model",
            "iwae",
            "--k",
            "100000000",
            "--out",
            "k",
        ],
        &f.root,
    );
    assert!(
        err.contains("importance samples") && err.contains("5000"),
        "{err}"
    );
    std::fs::write(
        f.root.join("k.toml"),
        "[objective]\nkind = \"iwae\"\nk = 100000000\n",
    )
    .unwrap();
    let err = fails(
        &["train", "--data-dir", d, "--config", "k.toml", "--out", "k"],
        &f.root,
    );
    assert!(err.contains("5000"), "{err}");
    // Sixteen layers of 16384: each layer within bounds, the model ~8 G weights.
    let wide = format!(
        "[model.architecture]\nkind = \"mlp\"\nhidden = [{}]\n",
        vec!["16384"; 16].join(", ")
    );
    std::fs::write(f.root.join("wide.toml"), &wide).unwrap();
    let err = fails(
        &[
            "train",
            "--data-dir",
            d,
            "--config",
            "wide.toml",
            "--out",
            "w",
        ],
        &f.root,
    );
    assert!(
        err.contains("would need about") && err.contains("GiB"),
        "{err}"
    );
    assert!(!f.root.join("k").exists() && !f.root.join("w").exists());
    // The same config in a run's config.json: sample and resume refuse it in one line.
    train_small(&f, "run", &["--limit", "100"]);
    let cfg_path = f.root.join("run/config.json");
    let mut cfg = json_file(&cfg_path);
    cfg["model"]["architecture"] = serde_json::json!({"kind": "mlp", "hidden": vec![16384; 16]});
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = fails(&["sample", "--run", "run", "--out", "s.png"], &f.root);
    assert!(
        err.contains("config.json") && err.contains("would need about"),
        "{err}"
    );
    let mut cfg = json_file(&cfg_path);
    cfg["model"]["architecture"] = serde_json::json!({"kind": "mlp", "hidden": [400]});
    cfg["objective"] = serde_json::json!({"kind": "iwae", "k": 100000000});
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = fails(&["train", "--resume", "run", "--epochs", "2"], &f.root);
    assert!(err.contains("5000"), "{err}");
}

/// A packed file with its JSON header changed by `edit`, laid out again as a writer would
/// (labels and pixels kept), with `images` records.
fn repack(bytes: &[u8], images: u64, edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[16..16 + len]).unwrap();
    let labels_at = (16 + len).next_multiple_of(8);
    let pixels_at = (labels_at + 4 * images as usize).next_multiple_of(4096);
    let labels = &bytes[labels_at..labels_at + 4 * images as usize];
    let pixels = &bytes[pixels_at..];
    edit(&mut header);
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = bytes[..12].to_vec();
    out.extend((json.len() as u32).to_le_bytes());
    out.extend(&json);
    let labels_at = out.len().next_multiple_of(8);
    out.resize(labels_at, 0);
    out.extend(labels);
    let pixels_at = out.len().next_multiple_of(4096);
    out.resize(pixels_at, 0);
    out.extend(pixels);
    out
}

#[test]
fn packed_counts_that_overflow_are_refused_with_their_true_values() {
    let f = fixture();
    ok(&["data", "pack", "bars", "--out", "d.vkd"], &f.root);
    let good = std::fs::read(f.root.join("d.vkd")).unwrap();
    // 200 + 50 images: counts whose sum wraps to 250 describe this very file to wrapping code.
    let wrap = repack(&good, 250, |h| {
        h["train"] = serde_json::json!((1u64 << 63) + 200);
        h["test"] = serde_json::json!((1u64 << 63) + 50);
    });
    std::fs::write(f.root.join("wrap.vkd"), wrap).unwrap();
    let max = repack(&good, 250, |h| h["train"] = serde_json::json!(u64::MAX));
    std::fs::write(f.root.join("max.vkd"), max).unwrap();
    for file in ["wrap.vkd", "max.vkd"] {
        for args in [
            vec!["data", "info", file],
            vec!["train", "--data-dir", file, "--out", "never"],
        ] {
            let err = fails(&args, &f.root);
            assert!(
                err.contains(file) && err.contains("cannot fit"),
                "{args:?}: {err}"
            );
        }
    }
    let err = fails(&["data", "info", "max.vkd"], &f.root);
    assert!(
        err.contains(&u64::MAX.to_string()) && err.contains(" 50 test"),
        "{err}"
    );
    assert!(!f.root.join("never").exists());
}

#[test]
fn a_packed_file_truncated_while_training_stops_with_one_line_naming_it() {
    let f = fixture();
    write_bars_big(&f.root.join("big"));
    ok(&["data", "pack", "big", "--out", "big.vkd"], &f.root);
    let mut child = bin()
        .args([
            "train",
            "--data-dir",
            "big.vkd",
            "--epochs",
            "50",
            "--batch-size",
            "50",
            "--out",
            "t",
        ])
        .current_dir(&f.root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first checkpoint exists, cut the file under the mapping.
    let t0 = Instant::now();
    while !f.root.join("t/meta.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(f.root.join("big.vkd"))
        .unwrap()
        .set_len(8192)
        .unwrap();
    let status = wait_for(&mut child, Duration::from_secs(120));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}: {err}");
    assert!(
        err.contains("big.vkd") && err.contains("truncated"),
        "{err}"
    );
    // The run is at its last checkpoint, which still loads.
    ok(&["sample", "--run", "t", "--out", "s.png"], &f.root);
}

/// 4,000 training bars: enough steps that a test can act while training runs.
fn write_bars_big(dir: &Path) {
    vaekit::data::synthetic::write_bars_idx(dir, 4000, 100, 1).unwrap();
}

#[test]
fn resuming_on_a_packed_file_of_other_images_is_refused() {
    let f = fixture();
    ok(&["data", "pack", "bars", "--out", "d.vkd"], &f.root);
    ok(
        &[
            "train",
            "--data-dir",
            "d.vkd",
            "--epochs",
            "1",
            "--batch-size",
            "50",
            "--out",
            "run",
        ],
        &f.root,
    );
    ok(&["data", "bars", "--dir", "other", "--seed", "5"], &f.root);
    std::fs::remove_file(f.root.join("d.vkd")).unwrap();
    ok(&["data", "pack", "other", "--out", "d.vkd"], &f.root);
    let before = snapshot(&f.root.join("run"));
    let err = fails(&["train", "--resume", "run", "--epochs", "2"], &f.root);
    assert!(
        err.contains("d.vkd") && err.contains("other images"),
        "{err}"
    );
    assert_eq!(snapshot(&f.root.join("run")), before);
}

#[test]
fn bad_files_in_the_small_places_get_one_line_naming_them() {
    let f = fixture();
    let d = f.data.to_str().unwrap();
    train_small(&f, "run", &["--limit", "100"]);
    // A FIFO as --config, to `data info`, as --codes, as --data-dir: refused, not waited on.
    let fifo = f.root.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for args in [
        vec!["train", "--data-dir", d, "--config", "fifo", "--out", "x"],
        vec!["data", "info", "fifo"],
        vec![
            "decode", "--run", "run", "--codes", "fifo", "--out", "x.png",
        ],
        vec!["train", "--data-dir", "fifo", "--out", "x"],
        vec!["train", "--data-dir", "/dev/zero", "--out", "x"],
    ] {
        let t0 = Instant::now();
        let err = fails(&args, &f.root);
        assert!(t0.elapsed() < Duration::from_secs(20), "{args:?} waited");
        assert!(
            (err.contains("fifo") || err.contains("/dev/zero")) && err.contains("pipe"),
            "{args:?}: {err}"
        );
    }
    // A TOML error says where, not the whole line (here 10 MB).
    std::fs::write(
        f.root.join("long.toml"),
        format!("seed = {}\n", "x".repeat(10 << 20)),
    )
    .unwrap();
    let err = fails(
        &[
            "train",
            "--data-dir",
            d,
            "--config",
            "long.toml",
            "--out",
            "x",
        ],
        &f.root,
    );
    assert!(
        err.len() < 1000 && err.contains("line 1, column 8"),
        "{} bytes",
        err.len()
    );
    std::fs::write(f.root.join("nan.toml"), "[optim]\nlr = nan\n").unwrap();
    let err = fails(
        &[
            "train",
            "--data-dir",
            d,
            "--config",
            "nan.toml",
            "--out",
            "x",
        ],
        &f.root,
    );
    assert!(
        err.contains("optim.lr") && err.contains("not a finite number"),
        "{err}"
    );
    // An IDX folder whose image file is a dangling link, a FIFO or a folder: named.
    for (i, make) in ["link", "fifo", "dir"].iter().enumerate() {
        let dir = f.root.join(format!("idx{i}"));
        vaekit::data::synthetic::write_bars_idx(&dir, 20, 10, 1).unwrap();
        let img = dir.join("train-images-idx3-ubyte.gz");
        std::fs::remove_file(&img).unwrap();
        match *make {
            "link" => std::os::unix::fs::symlink(dir.join("gone"), &img).unwrap(),
            "fifo" => assert!(Command::new("mkfifo").arg(&img).status().unwrap().success()),
            _ => std::fs::create_dir(&img).unwrap(),
        }
        let dir_s = dir.to_str().unwrap().to_string();
        let err = fails(&["train", "--data-dir", &dir_s, "--out", "x"], &f.root);
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{make}: {err}");
    }
    // A codes CSV saved with a byte-order mark decodes as without one.
    ok(&["encode", "--run", "run", "--out", "c.csv"], &f.root);
    let csv = std::fs::read(f.root.join("c.csv")).unwrap();
    std::fs::write(
        f.root.join("bom.csv"),
        [&b"\xef\xbb\xbf"[..], &csv].concat(),
    )
    .unwrap();
    ok(
        &[
            "decode", "--run", "run", "--codes", "c.csv", "--out", "a.png",
        ],
        &f.root,
    );
    ok(
        &[
            "decode", "--run", "run", "--codes", "bom.csv", "--out", "b.png",
        ],
        &f.root,
    );
    assert_eq!(
        std::fs::read(f.root.join("a.png")).unwrap(),
        std::fs::read(f.root.join("b.png")).unwrap()
    );
    // A meta.json step that would wrap, --scale beyond f32, a zero-image dataset.
    let meta_path = f.root.join("run/meta.json");
    let mut meta = json_file(&meta_path);
    meta["step"] = serde_json::json!(u64::MAX);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let err = fails(&["train", "--resume", "run", "--epochs", "2"], &f.root);
    assert!(
        err.contains("meta.json") && err.contains("not counts of a run"),
        "{err}"
    );
    let err = fails(
        &[
            "render", "--run", "run", "--scale", "1e39", "--out", "r.png",
        ],
        &f.root,
    );
    assert!(err.contains("--scale"), "{err}");
    vaekit::data::synthetic::write_bars_idx(&f.root.join("empty"), 0, 0, 1).unwrap();
    let err = fails(&["train", "--data-dir", "empty", "--out", "e"], &f.root);
    assert!(err.contains("0 training"), "{err}");
    assert!(!f.root.join("e").exists());
}

#[test]
fn a_first_epoch_divergence_leaves_no_run_and_says_no_checkpoint_was_kept() {
    let f = fixture();
    let d = f.data.to_str().unwrap();
    // The largest learning rate: the weights blow up at the first step, the loss of the
    // second is NaN.
    let err = fails(
        &[
            "train",
            "--data-dir",
            d,
            "--lr",
            "10",
            "--epochs",
            "1",
            "--batch-size",
            "25",
            "--out",
            "div",
        ],
        &f.root,
    );
    assert!(!err.contains("last good checkpoint"), "{err}");
    assert!(err.contains("no checkpoint had been written yet"), "{err}");
    assert!(
        !f.root.join("div").exists(),
        "an unloadable run folder is left"
    );
}

#[test]
fn eval_of_weights_that_overflow_fails_instead_of_printing_nan() {
    let f = fixture();
    train_small(&f, "run", &["--limit", "100"]);
    {
        use vaekit::burn::module::{Module, ModuleMapper, Param};
        use vaekit::burn::tensor::{Device, Tensor};
        struct Huge;
        impl ModuleMapper for Huge {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                p.map(|t| t.mul_scalar(0.0).add_scalar(3e38))
            }
        }
        let dev = Device::flex();
        let run = vaekit::run::RunDir::open(&f.root.join("run")).unwrap();
        let (model, _, meta) = vaekit::checkpoint::load_model(&run, &dev).unwrap();
        let path = f
            .root
            .join("run")
            .join(&meta.checkpoint)
            .join("model.safetensors");
        let huge = model.map(&mut Huge);
        std::fs::write(&path, vaekit::checkpoint::weights_to_bytes(&huge)).unwrap();
    }
    let err = fails(&["eval", "--run", "run"], &f.root);
    assert!(err.contains("overflow") && !err.contains("NaN |"), "{err}");
    let out = vaekit(&["eval", "--run", "run", "--json"], &f.root);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("neg_elbo"));
}

/// `vaekit serve` on a run, with its address.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(root: &Path, run: &str) -> Server {
        let mut child = bin()
            .args(["serve", "--run", run, "--port", "0"])
            .current_dir(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, addr }
    }

    /// Sends raw bytes, returns the whole answer (the server closes after one request).
    fn raw(&self, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code and body of a raw HTTP answer.
fn status_body(answer: &str) -> (u16, String) {
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

#[test]
fn the_server_refuses_foreign_hosts_and_bad_requests_with_one_json_line() {
    let f = fixture();
    train_small(&f, "run", &["--limit", "100"]);
    let s = Server::start(&f.root, "run");
    let get = |path: &str, host: &str| {
        status_body(&s.raw(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()))
    };
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(get("/api/model", &format!("127.0.0.1:{port}")).0, 200);
    assert_eq!(get("/api/model", &format!("localhost:{port}")).0, 200);
    let (code, body) = get("/api/model", &format!("rebind.evil.example:{port}"));
    assert_eq!(code, 421, "{body}");
    assert!(
        body.contains("\"error\"") && body.contains("rebind.evil.example"),
        "{body}"
    );
    // A request pipelined behind an allowed one is not served unchecked: one answer, then close.
    let answer = s.raw(
        b"GET /api/model HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/model HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Unknown query parameters are refused as unknown JSON fields are.
    let (code, body) = get("/api/sample?n=2&tempreature=3", "localhost");
    assert_eq!(code, 400);
    assert!(body.contains("tempreature"), "{body}");
    // A huge Content-Length: 413 at once, without waiting for a body.
    let t0 = Instant::now();
    let (code, body) = status_body(&s.raw(
        b"POST /api/encode HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000000000\r\n\r\n",
    ));
    assert_eq!(code, 413, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(5) && body.contains("\"error\""));
    // Protocol errors carry the JSON line too.
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(20000)
    );
    let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    for (bytes, want) in [
        (
            b"GARBAGE\x01 / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            400,
        ),
        (long.into_bytes(), 414),
        (
            format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").into_bytes(),
            431,
        ),
    ] {
        let (code, body) = status_body(&s.raw(&bytes));
        assert_eq!(code, want, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    }
}

#[test]
fn a_client_stalled_mid_headers_does_not_hold_shutdown() {
    let f = fixture();
    train_small(&f, "run", &["--limit", "100"]);
    let mut s = Server::start(&f.root, "run");
    let mut stalled = TcpStream::connect(&s.addr).unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    let status = wait_for(&mut s.child, Duration::from_secs(60));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    assert!(status.success(), "{status:?}");
    drop(stalled);
}

/// A PNG of `side` x `side` RGBA, 16 bits a sample, all zeros: ~130 KB that decode to
/// `side^2 * 8` bytes (128 MiB at 4096).
fn rgba16_zero_png(side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::High);
    let mut w = enc.write_header().unwrap();
    let mut stream = w.stream_writer().unwrap();
    let row = vec![0u8; side as usize * 8];
    for _ in 0..side {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
    w.finish().unwrap();
    out
}

/// The server's peak resident memory (VmHWM) in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

/// 40 uploads at once of a PNG that decodes to 128 MiB (5 GiB if all were decoded at once):
/// each is answered (200 or 503), and the server's peak memory stays within its decoding
/// budget (512 MiB) plus what it holds anyway: under 1 GiB.
#[test]
fn concurrent_large_uploads_share_a_memory_budget_and_all_get_answers() {
    let f = fixture();
    train_small(&f, "run", &["--limit", "100"]);
    let s = Server::start(&f.root, "run");
    let png = std::sync::Arc::new(rgba16_zero_png(4096));
    assert!(png.len() < 1 << 20, "{} bytes", png.len());
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let (png, addr) = (png.clone(), s.addr.clone());
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                let head = format!(
                    "POST /api/encode HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
                    png.len()
                );
                c.write_all(head.as_bytes()).unwrap();
                c.write_all(&png).unwrap();
                let mut out = Vec::new();
                let _ = c.read_to_end(&mut out);
                status_body(&String::from_utf8_lossy(&out)).0
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(codes.iter().all(|&c| c == 200 || c == 503), "{codes:?}");
    assert!(codes.contains(&200), "{codes:?}");
    let peak = peak_rss_mib(s.pid());
    assert!(peak < 1024, "peak RSS {peak} MiB");
}
