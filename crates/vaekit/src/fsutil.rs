//! File helpers: atomic writes, so a crash never leaves a half-written file in place.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary name `path` is written under before its rename: `.NAME.tmp-PID` in the same
/// folder (see [`remove_stale_temps`]).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(Error::io(path))
}

/// Whether `name` is one of vaekit's temporary names: `.NAME.tmp` or `.NAME.tmp-PID` (files of
/// [`write_atomic`], checkpoint folders being written).
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && (name.ends_with(".tmp")
            || name
                .rsplit_once(".tmp-")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())))
}

/// Removes the temporary files and folders (see [`is_temp_name`]) directly in `dir`, left by a
/// process that was killed mid-write; nothing else. A missing `dir` is fine.
pub fn remove_stale_temps(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temp_name(&name) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map_err(Error::io(&path))?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(Error::io(&path))?;
    }
    Ok(())
}

/// The files and folders of a run folder that only training writes: `--out` of any other
/// command that resolves to one of them (or inside `checkpoints/`) is refused.
const RUN_OWN: [&str; 5] = [
    "config.json",
    "meta.json",
    "metrics.jsonl",
    ".lock",
    "checkpoints",
];

/// Where `path` would be written: the path with symbolic links resolved, through its nearest
/// existing folder when it does not exist yet.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(path) {
        return c;
    }
    let mut probe = path;
    loop {
        let dir = if probe.as_os_str().is_empty() {
            Path::new(".")
        } else {
            probe
        };
        if let Ok(c) = std::fs::canonicalize(dir) {
            return c.join(path.strip_prefix(probe).unwrap_or(Path::new("")));
        }
        match probe.parent() {
            Some(p) => probe = p,
            None => return path.to_path_buf(),
        }
    }
}

/// The run folder whose own file (config, meta, metrics, lock, checkpoints) `path` would
/// write, if any. A run folder is one holding a `config.json`.
pub fn run_owning(path: &Path) -> Option<PathBuf> {
    let target = resolve(path);
    target
        .ancestors()
        .skip(1)
        .filter(|dir| dir.join("config.json").is_file())
        .find(|dir| {
            let first = target
                .strip_prefix(dir)
                .ok()
                .and_then(|rel| rel.components().next());
            first.is_some_and(|c| RUN_OWN.iter().any(|own| c.as_os_str() == *own))
        })
        .map(Path::to_path_buf)
}

/// Refuses an output path that is a run folder's own file (see [`run_owning`]): only training
/// writes those, and a mistyped `--out RUN/config.json` would destroy the run.
pub fn check_output(path: &Path) -> Result<()> {
    match run_owning(path) {
        Some(run) => Err(Error::RunFile {
            path: path.to_path_buf(),
            run,
        }),
        None => Ok(()),
    }
}

/// Writes a command's output file: refused where it would replace a run's own file (see
/// [`check_output`]), then written atomically.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    check_output(path)?;
    write_atomic(path, bytes)
}

/// Removes the temporary files of `path` (`.NAME.tmp-PID` beside it, see [`temp_path`]) left
/// by processes that no longer run (killed mid-write); a live process's file is kept.
pub fn remove_orphan_temps_of(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Refuses to write a picture of kind `ext` (e.g. "png") to a path with another extension: a
/// mistyped `--out RUN/config.json` would replace a run's file with an image.
pub fn check_picture_path(path: &Path, ext: &str) -> Result<()> {
    let ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext));
    if ok {
        Ok(())
    } else {
        Err(Error::BadImage {
            path: path.to_path_buf(),
            reason: format!(
                "pictures are written only to .{ext} files (this name would replace a file of another kind)"
            ),
        })
    }
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).expect("serialisable");
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Checks that `root` may become a new folder of results: refused (with `taken` after the
/// folder's name) when it already holds `marker`, and refused when it has any other files, so
/// earlier results are never overwritten. Creates nothing.
pub fn check_new_dir(root: &Path, marker: &str, taken: &str) -> Result<()> {
    if root.join(marker).exists() {
        return Err(Error::InvalidConfig(format!("{} {taken}", root.display())));
    }
    if root.is_dir()
        && std::fs::read_dir(root)
            .map_err(Error::io(root))?
            .next()
            .is_some()
    {
        return Err(Error::InvalidConfig(format!(
            "{} exists and is not empty; choose another --out",
            root.display()
        )));
    }
    Ok(())
}

/// Largest text file (config, codes CSV, metrics) vaekit reads: 1 GiB.
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// Checks that `path` is a regular file before it is opened: a FIFO would block the open (and
/// the read) until another program writes, a device such as /dev/zero never ends.
pub fn check_regular_file(path: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if meta.is_file() {
        Ok(meta)
    } else {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "a pipe, a socket or a device"
        };
        Err(Error::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("is {kind}, not a regular file"),
            ),
        })
    }
}

/// Reads a text file: a regular file of at most [`MAX_TEXT_BYTES`], UTF-8, with a leading
/// byte-order mark removed (spreadsheet programs write one).
pub fn read_text(path: &Path) -> Result<String> {
    let meta = check_regular_file(path)?;
    if meta.len() > MAX_TEXT_BYTES {
        return Err(Error::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "is {} bytes; the largest text file vaekit reads is 1 GiB",
                    meta.len()
                ),
            ),
        });
    }
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| Error::BadConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vaekits_temporary_names_are_swept() {
        for n in [
            ".meta.json.tmp-123",
            ".step-000000010.tmp",
            ".step-000000010.tmp-77",
        ] {
            assert!(is_temp_name(n), "{n}");
        }
        for n in [
            "meta.json",
            ".lock",
            "notes.tmp",
            ".x.tmp-",
            ".x.tmp-12a",
            "step-000000010",
        ] {
            assert!(!is_temp_name(n), "{n}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".a.tmp-1"), b"").unwrap();
        std::fs::create_dir(dir.path().join(".b.tmp")).unwrap();
        std::fs::write(dir.path().join("keep"), b"").unwrap();
        remove_stale_temps(dir.path()).unwrap();
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["keep"]);
        remove_stale_temps(&dir.path().join("missing")).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = write_atomic(&dir.path().join("missing/x"), b"z")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing/x"), "{err}");
    }

    #[test]
    fn outputs_into_a_runs_own_files_are_refused_however_named() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("checkpoints/step-000000003")).unwrap();
        std::fs::create_dir_all(run.join("images")).unwrap();
        for f in ["config.json", "meta.json", "metrics.jsonl"] {
            std::fs::write(run.join(f), b"{}").unwrap();
        }
        std::os::unix::fs::symlink(run.join("meta.json"), dir.path().join("link.csv")).unwrap();
        std::os::unix::fs::symlink(&run, dir.path().join("alias")).unwrap();
        for bad in [
            run.join("config.json"),
            run.join("meta.json"),
            run.join("metrics.jsonl"),
            run.join(".lock"),
            run.join("checkpoints/step-000000003/model.safetensors"),
            run.join("checkpoints/new/x.onnx"),
            run.join("images/../config.json"),
            dir.path().join("link.csv"),
            dir.path().join("alias/meta.json"),
        ] {
            let err = check_output(&bad).unwrap_err().to_string();
            assert!(
                err.contains("only training writes"),
                "{}: {err}",
                bad.display()
            );
            assert!(write_output(&bad, b"x").is_err());
        }
        assert_eq!(std::fs::read(run.join("config.json")).unwrap(), b"{}");
        for fine in [
            run.join("codes.csv"),
            run.join("images/x.png"),
            dir.path().join("elsewhere/out.csv"),
            dir.path().join("config.json"),
        ] {
            assert!(check_output(&fine).is_ok(), "{}", fine.display());
        }
    }

    #[test]
    fn orphan_temporary_files_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("d.vkd");
        // No process has pid 2^22 + 1 (above Linux's pid_max default); this one lives.
        let dead = dir.path().join(format!(".d.vkd.tmp-{}", (1 << 22) + 1));
        let live = dir
            .path()
            .join(format!(".d.vkd.tmp-{}", std::process::id()));
        let other = dir.path().join(".e.vkd.tmp-4194305");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"partial").unwrap();
        }
        remove_orphan_temps_of(&out);
        assert!(!dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn text_readers_refuse_pipes_and_drop_a_byte_order_mark() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_text(&fifo).unwrap_err().to_string();
        assert!(err.contains("fifo") && err.contains("pipe"), "{err}");
        assert!(
            read_text(dir.path())
                .unwrap_err()
                .to_string()
                .contains("folder")
        );
        let p = dir.path().join("bom.csv");
        std::fs::write(&p, b"\xef\xbb\xbfz_0\n1\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "z_0\n1\n");
    }
}
