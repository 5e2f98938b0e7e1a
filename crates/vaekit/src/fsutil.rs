//! File helpers: atomic writes, so a crash never leaves a half-written file in place.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
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
