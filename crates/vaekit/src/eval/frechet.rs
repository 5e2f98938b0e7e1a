//! The Frechet distance between two sets of feature vectors, each summarised by a Gaussian
//! (Heusel et al. 2017, "FID"): ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

use serde::{Deserialize, Serialize};

use crate::linalg::{matmul, mean_and_covariance, sqrt_psd, symmetric_eigen};

/// Mean and covariance of a set of feature vectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// Mean feature vector, `[dims]`.
    pub mean: Vec<f64>,
    /// Covariance (divisor n - 1), row-major `[dims * dims]`.
    pub cov: Vec<f64>,
    /// Vectors summarised.
    pub count: usize,
}

impl FeatureStats {
    /// Mean and covariance of `rows`, each `dims` values long (row-major, `[n, dims]`).
    pub fn from_rows(rows: &[f32], dims: usize) -> FeatureStats {
        let (mean, cov) = mean_and_covariance(rows, dims);
        FeatureStats {
            mean,
            cov,
            count: rows.len() / dims.max(1),
        }
    }

    /// Feature dimensions.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }
}

/// The Frechet distance between the Gaussians fitted to two feature sets.
///
/// Tr((S_a S_b)^(1/2)) is computed as Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)): the same eigenvalues,
/// but of a symmetric matrix, so a symmetric eigensolver applies and the result is real.
///
/// # Panics
/// If the two sets have different dimensions.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> f64 {
    assert_eq!(a.dims(), b.dims(), "feature dimensions differ");
    let n = a.dims();
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
    let root_a = sqrt_psd(&a.cov, n);
    let mut inner = matmul(&matmul(&root_a, &b.cov, n), &root_a, n);
    for i in 0..n {
        for j in i + 1..n {
            let v = 0.5 * (inner[i * n + j] + inner[j * n + i]);
            inner[i * n + j] = v;
            inner[j * n + i] = v;
        }
    }
    let cross: f64 = symmetric_eigen(&inner, n)
        .0
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum();
    (mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * cross).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, normals, stream_rng};

    fn gaussian_rows(n: usize, dims: usize, seed: u64, scale: f32, shift: f32) -> Vec<f32> {
        normals(&mut stream_rng(seed, Stream::Prior, 0), n * dims)
            .into_iter()
            .map(|v| v * scale + shift)
            .collect()
    }

    #[test]
    fn stats_are_the_sample_mean_and_covariance() {
        // Rows (1, 2), (3, 6): mean (2, 4), cov [[2, 4], [4, 8]] with divisor n - 1 = 1.
        let s = FeatureStats::from_rows(&[1.0, 2.0, 3.0, 6.0], 2);
        assert_eq!(s.mean, vec![2.0, 4.0]);
        assert_eq!(s.cov, vec![2.0, 4.0, 4.0, 8.0]);
    }

    #[test]
    fn a_set_is_at_distance_zero_from_itself_and_shifts_add_their_square() {
        let rows = gaussian_rows(2000, 8, 1, 1.0, 0.0);
        let s = FeatureStats::from_rows(&rows, 8);
        assert!(
            frechet_distance(&s, &s).abs() < 1e-6,
            "{}",
            frechet_distance(&s, &s)
        );
        // Shifting every feature by 0.5 moves the mean by 0.5 per dimension: distance 8 * 0.25.
        let shifted = FeatureStats::from_rows(&rows.iter().map(|v| v + 0.5).collect::<Vec<_>>(), 8);
        assert!((frechet_distance(&s, &shifted) - 2.0).abs() < 1e-6);
        // A larger shift is farther.
        let far = FeatureStats::from_rows(&rows.iter().map(|v| v + 1.0).collect::<Vec<_>>(), 8);
        assert!(frechet_distance(&s, &far) > frechet_distance(&s, &shifted));
    }

    #[test]
    fn matches_the_closed_form_for_diagonal_gaussians() {
        // N(0, I) vs N(0, 4 I) in d dims: Tr(I + 4I - 2 * 2I) = d, from exact covariances.
        let eye = |s: f64| {
            (0..9)
                .map(|k| if k % 4 == 0 { s } else { 0.0 })
                .collect::<Vec<f64>>()
        };
        let a = FeatureStats {
            mean: vec![0.0; 3],
            cov: eye(1.0),
            count: 0,
        };
        let b = FeatureStats {
            mean: vec![1.0, 0.0, 0.0],
            cov: eye(4.0),
            count: 0,
        };
        assert!((frechet_distance(&a, &b) - (3.0 + 1.0)).abs() < 1e-9);
        // Two independent samples of the same distribution are close; another spread is not.
        let x = FeatureStats::from_rows(&gaussian_rows(20_000, 4, 2, 1.0, 0.0), 4);
        let y = FeatureStats::from_rows(&gaussian_rows(20_000, 4, 3, 1.0, 0.0), 4);
        let z = FeatureStats::from_rows(&gaussian_rows(20_000, 4, 4, 2.0, 0.0), 4);
        assert!(
            frechet_distance(&x, &y) < 0.01,
            "{}",
            frechet_distance(&x, &y)
        );
        assert!(
            (frechet_distance(&x, &z) - 4.0).abs() < 0.15,
            "{}",
            frechet_distance(&x, &z)
        );
    }
}
