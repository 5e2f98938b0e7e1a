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

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
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
}
