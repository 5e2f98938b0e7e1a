//! `mpirun -np 2 vaekit train` over loopback (the `mpi` feature; Open MPI's mpirun on PATH).

#![cfg(feature = "mpi")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vaekit::data::synthetic::write_bars_idx;

const VAEKIT: &str = env!("CARGO_BIN_EXE_vaekit");

/// `mpirun -np 2 vaekit ARGS` in `cwd`, one rayon thread per rank (two ranks on two cores).
fn mpirun(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "-np",
        "2",
        "--oversubscribe",
        "-x",
        "RAYON_NUM_THREADS=1",
        VAEKIT,
    ])
    .args(args)
    .current_dir(cwd)
    // Root in CI containers.
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every f32 of a safetensors file, by tensor name.
fn tensors(p: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = v["data_offsets"].as_array().unwrap();
            let (s, e) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            let f = data[s..e]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k.clone(), f)
        })
        .collect()
}

/// The model weights of a run's last checkpoint.
fn weights(run: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    let ck = meta["checkpoint"].as_str().unwrap();
    tensors(&run.join(ck).join("model.safetensors"))
}

#[test]
fn two_ranks_of_batch_b_equal_one_process_of_batch_2b_and_a_killed_rank_ends_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_bars_idx(&root.join("bars"), 300, 50, 3).unwrap();
    ok(
        Command::new(VAEKIT)
            .args(["data", "pack", "bars", "--out", "bars.vkd"])
            .current_dir(root)
            .output()
            .unwrap(),
        "data pack",
    );
    let common = [
        "--data-dir",
        "bars.vkd",
        "--epochs",
        "2",
        "--latent",
        "4",
        "--binarize",
        "dynamic",
    ];
    let out = ok(
        mpirun(&["train", "--batch-size", "25", "--out", "runs/mpi"], root)
            .args(common)
            .output()
            .unwrap(),
        "mpirun train",
    );
    assert!(
        out.contains("MPI: 2 ranks of 25 images each, 50 images a step"),
        "{out}"
    );
    ok(
        Command::new(VAEKIT)
            .args(["train", "--batch-size", "50", "--out", "runs/one"])
            .args(common)
            .current_dir(root)
            .output()
            .unwrap(),
        "train",
    );
    let (a, b) = (
        weights(&root.join("runs/mpi")),
        weights(&root.join("runs/one")),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let gap = a
        .iter()
        .flat_map(|(k, x)| x.iter().zip(&b[k]).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    assert!(
        gap < 1e-4,
        "two ranks vs one process: weights differ by {gap}"
    );
    let metrics = std::fs::read_to_string(root.join("runs/mpi/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "rank 0 alone writes metrics");
    assert!(metrics.contains("\"allreduce_seconds\""), "{metrics}");

    // A long run; once it has a checkpoint, rank 1 is killed.
    let job = mpirun(
        &[
            "train",
            "--batch-size",
            "25",
            "--epochs",
            "1000",
            "--out",
            "runs/kill",
        ],
        root,
    )
    .args(&common[..2])
    .env("VAEKIT_TEST_MARK", root.as_os_str())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let t0 = Instant::now();
    while !root.join("runs/kill/meta.json").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rank1 = find_rank1(root).expect("rank 1 of the job");
    Command::new("kill")
        .args(["-9", &rank1.to_string()])
        .status()
        .unwrap();
    let out = job.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job went on without rank 1");
    assert!(err.contains("rank 1") && err.contains("signal 9"), "{err}");
    // The last checkpoint loads, and the job resumes from it.
    ok(
        Command::new(VAEKIT)
            .args(["eval", "--run", "runs/kill", "--json"])
            .current_dir(root)
            .output()
            .unwrap(),
        "eval after the kill",
    );
    let epoch = |p: &Path| -> u64 {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("meta.json")).unwrap()).unwrap();
        meta["epoch"].as_u64().unwrap()
    };
    let done = epoch(&root.join("runs/kill"));
    let more = (done + 1).to_string();
    ok(
        mpirun(&["train", "--resume", "runs/kill", "--epochs", &more], root)
            .output()
            .unwrap(),
        "mpirun resume",
    );
    assert_eq!(epoch(&root.join("runs/kill")), done + 1);
}

/// The pid of the process of rank 1 that carries this test's mark in its environment.
fn find_rank1(mark: &Path) -> Option<u32> {
    let mark = format!("VAEKIT_TEST_MARK={}", mark.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
        let has = |v: &str| vars.contains(&v.as_bytes());
        (has(&mark) && has("OMPI_COMM_WORLD_RANK=1")).then_some(pid)
    })
}
