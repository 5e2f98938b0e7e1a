//! `vaekit data download`: fetch the standard IDX files over HTTPS and verify their SHA-256.
//!
//! Each file is written to `NAME.part`, checked, and only then renamed into place, so an
//! interrupted or corrupted download never leaves a file that looks valid. Files already
//! present with the right checksum are not fetched again.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One file of a downloadable dataset.
#[derive(Clone, Debug)]
pub struct RemoteFile {
    /// File name, appended to the base URL and used on disk.
    pub name: String,
    /// Expected SHA-256, lowercase hex.
    pub sha256: String,
}

/// A dataset that can be downloaded: a base URL and its files.
#[derive(Clone, Debug)]
pub struct RemoteDataset {
    /// The dataset's name.
    pub name: String,
    /// Base URL ending in `/`.
    pub base_url: String,
    /// The files, with checksums.
    pub files: Vec<RemoteFile>,
}

fn files(list: [(&str, &str); 4]) -> Vec<RemoteFile> {
    list.iter()
        .map(|(n, s)| RemoteFile {
            name: n.to_string(),
            sha256: s.to_string(),
        })
        .collect()
}

/// The standard location and checksums of a named dataset, if vaekit knows it.
pub fn remote_dataset(name: &str) -> Option<RemoteDataset> {
    let (base, list) = match name {
        "mnist" => (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            ],
        ),
        "fashion-mnist" => (
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ),
            ],
        ),
        _ => return None,
    };
    Some(RemoteDataset {
        name: name.to_string(),
        base_url: base.to_string(),
        files: files(list),
    })
}

/// SHA-256 of a byte slice, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What happened to each file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    /// Already present with the right checksum.
    Present(PathBuf),
    /// Downloaded and verified.
    Downloaded(PathBuf),
}

/// Downloads every file of `ds` into `dir`, calling `progress(file, bytes_so_far, total)`.
pub fn download(
    ds: &RemoteDataset,
    dir: &Path,
    mut progress: impl FnMut(&str, u64, Option<u64>),
) -> Result<Vec<FileOutcome>> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut out = Vec::new();
    for f in &ds.files {
        let dest = dir.join(&f.name);
        if let Ok(existing) = std::fs::read(&dest)
            && sha256_hex(&existing) == f.sha256
        {
            out.push(FileOutcome::Present(dest));
            continue;
        }
        let url = format!("{}{}", ds.base_url, f.name);
        let bytes = fetch(&url, |done, total| progress(&f.name, done, total))?;
        let got = sha256_hex(&bytes);
        if got != f.sha256 {
            return Err(Error::Download {
                url,
                reason: format!(
                    "SHA-256 mismatch: expected {}, got {got}; nothing was saved",
                    f.sha256
                ),
            });
        }
        let part = dir.join(format!("{}.part", f.name));
        std::fs::write(&part, &bytes).map_err(Error::io(&part))?;
        std::fs::rename(&part, &dest).map_err(Error::io(&dest))?;
        out.push(FileOutcome::Downloaded(dest));
    }
    Ok(out)
}

fn fetch(url: &str, mut progress: impl FnMut(u64, Option<u64>)) -> Result<Vec<u8>> {
    let err = |reason: String| Error::Download {
        url: url.to_string(),
        reason,
    };
    let resp = ureq::get(url).call().map_err(|e| err(e.to_string()))?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut reader = resp.into_body().into_reader();
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| err(format!("connection broke: {e}")))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        progress(bytes.len() as u64, total);
    }
    if let Some(t) = total
        && t != bytes.len() as u64
    {
        return Err(err(format!("truncated: got {} of {t} bytes", bytes.len())));
    }
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Serves `files` on 127.0.0.1 (HTTP/1.1, one request per connection) from a thread;
    /// returns the base URL. Stops after `max_requests`.
    pub fn serve(files: HashMap<String, Vec<u8>>, max_requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(max_requests) {
                let Ok(mut s) = stream else { continue };
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                r.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                match files.get(&path) {
                    Some(body) => {
                        write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .unwrap();
                        s.write_all(body).unwrap();
                    }
                    None => {
                        write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
                    }
                }
            }
        });
        format!("http://{addr}/")
    }

    #[test]
    fn downloads_verifies_and_rejects_corruption() {
        let good = b"hello idx".to_vec();
        let other = b"second file".to_vec();
        let mut served = HashMap::new();
        served.insert("a.gz".to_string(), good.clone());
        served.insert("b.gz".to_string(), b"tampered bytes".to_vec());
        served.insert("c.gz".to_string(), other.clone());
        let base = serve(served, 16);
        let dir = tempfile::tempdir().unwrap();

        let spec = |files: Vec<(&str, &[u8])>| RemoteDataset {
            name: "tiny".into(),
            base_url: base.clone(),
            files: files
                .into_iter()
                .map(|(n, b)| RemoteFile {
                    name: n.into(),
                    sha256: sha256_hex(b),
                })
                .collect(),
        };
        let ok = spec(vec![("a.gz", &good), ("c.gz", &other)]);
        let res = download(&ok, dir.path(), |_, _, _| {}).unwrap();
        assert!(matches!(res[0], FileOutcome::Downloaded(_)));
        assert_eq!(std::fs::read(dir.path().join("a.gz")).unwrap(), good);
        // A second run finds the files and fetches nothing.
        let res = download(&ok, dir.path(), |_, _, _| {}).unwrap();
        assert!(res.iter().all(|r| matches!(r, FileOutcome::Present(_))));

        // b.gz is served with other bytes than its checksum says: an error naming the URL, no file.
        let bad = spec(vec![("b.gz", b"the real bytes")]);
        let msg = download(&bad, dir.path(), |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("b.gz") && msg.contains("SHA-256 mismatch"),
            "{msg}"
        );
        assert!(!dir.path().join("b.gz").exists() && !dir.path().join("b.gz.part").exists());

        // A missing file is an HTTP error naming the URL.
        let missing = spec(vec![("nope.gz", b"x")]);
        let msg = download(&missing, dir.path(), |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope.gz") && msg.contains("404"), "{msg}");
    }

    #[test]
    fn known_datasets_have_four_https_files() {
        for name in ["mnist", "fashion-mnist"] {
            let d = remote_dataset(name).unwrap();
            assert!(d.base_url.starts_with("https://"));
            assert_eq!(d.files.len(), 4);
            assert!(d.files.iter().all(|f| f.sha256.len() == 64));
        }
        assert!(remote_dataset("cifar").is_none());
    }
}
