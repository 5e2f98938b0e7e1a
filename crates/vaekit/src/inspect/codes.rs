//! Latent codes in and out: the posterior of every image of a split as CSV, and codes read
//! back from CSV for decoding.
//!
//! `encode` writes one row per image: `index,label,class,mean_0..mean_{d-1},logvar_0..`.
//! `decode` reads the `mean_*` columns of such a file, or `z_*` columns, or, in a file with
//! neither, every column (all numeric, one code per row, with or without a header).

use std::path::Path;

use burn::tensor::Device;

use crate::data::{Dataset, batch_tensor};
use crate::error::{Error, Result};
use crate::fsutil::write_output;
use crate::model::Vae;

/// The posterior of a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Codes {
    /// Latent dimensions.
    pub latent: usize,
    /// Posterior means, `[n, latent]` row-major.
    pub mean: Vec<f32>,
    /// Posterior log-variances, `[n, latent]` row-major.
    pub logvar: Vec<f32>,
    /// Label of each image.
    pub labels: Vec<u32>,
}

impl Codes {
    /// Number of codes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The posterior mean of image `i`.
    pub fn mean_of(&self, i: usize) -> &[f32] {
        &self.mean[i * self.latent..(i + 1) * self.latent]
    }
}

/// Encodes images `indices` of `ds` (all of them when `None`), `batch` at a time.
pub fn encode_dataset(
    model: &Vae,
    ds: &Dataset,
    indices: Option<&[usize]>,
    batch: usize,
    device: &Device,
) -> Codes {
    let all: Vec<usize>;
    let idx = match indices {
        Some(i) => i,
        None => {
            all = (0..ds.len()).collect();
            &all
        }
    };
    let mut codes = Codes {
        latent: 0,
        mean: Vec::new(),
        logvar: Vec::new(),
        labels: Vec::new(),
    };
    for chunk in idx.chunks(batch.max(1)) {
        let q = model.encode(
            batch_tensor(ds, chunk, None, device),
            model.condition(&ds.labels_of(chunk), device),
        );
        codes.latent = q.mean.dims()[1];
        codes
            .mean
            .extend(q.mean.into_data().try_into_vec::<f32>().expect("f32 means"));
        codes.logvar.extend(
            q.logvar
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32 logvars"),
        );
        codes.labels.extend(chunk.iter().map(|&i| ds.labels[i]));
    }
    codes
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV line into trimmed fields, honouring double quotes.
fn csv_split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("non-empty").push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().expect("non-empty").push(c),
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

/// Writes `codes` as CSV (see the module docs); `index` and `class` name each row's image.
pub fn write_codes_csv(
    path: &Path,
    codes: &Codes,
    indices: &[usize],
    class_names: &[String],
) -> Result<()> {
    let mut out = String::from("index,label,class");
    for prefix in ["mean", "logvar"] {
        for j in 0..codes.latent {
            out.push_str(&format!(",{prefix}_{j}"));
        }
    }
    out.push('\n');
    for i in 0..codes.len() {
        let label = codes.labels[i];
        let class = class_names
            .get(label as usize)
            .map(String::as_str)
            .unwrap_or("");
        out.push_str(&format!("{},{label},{}", indices[i], csv_field(class)));
        for v in codes
            .mean_of(i)
            .iter()
            .chain(&codes.logvar[i * codes.latent..(i + 1) * codes.latent])
        {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    write_output(path, out.as_bytes())
}

/// Reads latent codes from a CSV file: returns the codes row-major and their dimension.
pub fn read_codes_csv(path: &Path) -> Result<(Vec<f32>, usize)> {
    let text = crate::fsutil::read_text(path)?;
    let bad = |reason: String| Error::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, first_line)) = lines.next() else {
        return Err(bad("no codes in the file".into()));
    };
    let first = csv_split(first_line);
    let has_header = !first.iter().all(|s| s.parse::<f32>().is_ok());
    let columns: Vec<usize> = if has_header {
        let pick = |prefix: &str| -> Vec<usize> {
            let mut cols: Vec<(usize, usize)> = first
                .iter()
                .enumerate()
                .filter_map(|(c, name)| {
                    name.strip_prefix(prefix)
                        .and_then(|d| d.parse::<usize>().ok())
                        .map(|d| (d, c))
                })
                .collect();
            cols.sort_unstable();
            cols.into_iter().map(|(_, c)| c).collect()
        };
        let (mean, z) = (pick("mean_"), pick("z_"));
        if !mean.is_empty() {
            mean
        } else if !z.is_empty() {
            z
        } else {
            return Err(bad("header has no mean_N or z_N columns".into()));
        }
    } else {
        (0..first.len()).collect()
    };
    let mut codes = Vec::new();
    let mut parse_row = |fields: &[String], line: usize| -> Result<()> {
        for &c in &columns {
            let cell = fields.get(c).ok_or_else(|| {
                bad(format!(
                    "line {line}: {} columns, expected at least {}",
                    fields.len(),
                    c + 1
                ))
            })?;
            let v: f32 = cell
                .parse()
                .map_err(|_| bad(format!("line {line}: '{cell}' is not a number")))?;
            if !v.is_finite() {
                return Err(bad(format!("line {line}: '{cell}' is not finite")));
            }
            codes.push(v);
        }
        Ok(())
    };
    if !has_header {
        parse_row(&first, 1)?;
    }
    for (i, line) in lines {
        parse_row(&csv_split(line), i + 1)?;
    }
    if codes.is_empty() {
        return Err(bad("no codes in the file".into()));
    }
    Ok((codes, columns.len()))
}

/// The `label` column of a codes file with a header, if it has one.
pub fn read_label_column(path: &Path) -> Result<Option<Vec<u32>>> {
    let text = crate::fsutil::read_text(path)?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(None);
    };
    let Some(col) = csv_split(header).iter().position(|h| h == "label") else {
        return Ok(None);
    };
    let mut labels = Vec::new();
    for (i, line) in lines {
        let fields = csv_split(line);
        let cell = fields.get(col).map(String::as_str).unwrap_or("");
        let v = cell.parse::<u32>().map_err(|_| Error::BadConfig {
            path: path.to_path_buf(),
            reason: format!("line {}: label '{cell}' is not a class number", i + 1),
        })?;
        labels.push(v);
    }
    Ok(Some(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_codes_read_back_as_their_means() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        let codes = Codes {
            latent: 2,
            mean: vec![0.5, -1.25, 3.0, 0.0],
            logvar: vec![-1.0, -2.0, -3.0, -4.0],
            labels: vec![1, 0],
        };
        write_codes_csv(&p, &codes, &[7, 9], &["a".into(), "T-shirt, top".into()]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("index,label,class,mean_0,mean_1,logvar_0,logvar_1\n7,1,\"T-shirt, top\",0.5,-1.25,-1,-2\n"), "{text}");
        assert_eq!(read_codes_csv(&p).unwrap(), (vec![0.5, -1.25, 3.0, 0.0], 2));
    }

    #[test]
    fn plain_numbers_and_bad_cells() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.csv");
        std::fs::write(&p, "0.1, 0.2, 0.3\n1,2,3\n").unwrap();
        assert_eq!(
            read_codes_csv(&p).unwrap(),
            (vec![0.1, 0.2, 0.3, 1.0, 2.0, 3.0], 3)
        );
        std::fs::write(&p, "z_1,z_0\n1,2\n").unwrap();
        assert_eq!(read_codes_csv(&p).unwrap(), (vec![2.0, 1.0], 2));
        std::fs::write(&p, "1,2\n3,x\n").unwrap();
        let e = read_codes_csv(&p).unwrap_err().to_string();
        assert!(
            e.contains("z.csv") && e.contains("line 2") && e.contains("'x'"),
            "{e}"
        );
        std::fs::write(&p, "").unwrap();
        assert!(
            read_codes_csv(&p)
                .unwrap_err()
                .to_string()
                .contains("no codes")
        );
    }
}
