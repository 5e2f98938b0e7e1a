//! Principal component analysis of latent codes, for 2-D pictures of a larger latent space.

use crate::linalg::{mean_and_covariance, symmetric_eigen};

/// A fitted projection onto the leading principal components.
#[derive(Clone, Debug)]
pub struct Pca {
    /// Mean of the data, `[dims]`.
    pub mean: Vec<f64>,
    /// Components, one row of `dims` values each, by decreasing variance.
    pub components: Vec<Vec<f64>>,
    /// Variance along each component.
    pub variances: Vec<f64>,
    /// Fraction of the total variance each component explains.
    pub explained: Vec<f64>,
}

impl Pca {
    /// Fits `k` components to `rows` (`[n, dims]`, row-major). Each component's sign is fixed
    /// so that its largest entry is positive, making the projection deterministic.
    pub fn fit(rows: &[f32], dims: usize, k: usize) -> Pca {
        let (mean, cov) = mean_and_covariance(rows, dims);
        let total: f64 = (0..dims).map(|i| cov[i * dims + i]).sum();
        let (w, v) = symmetric_eigen(&cov, dims);
        let mut order: Vec<usize> = (0..dims).collect();
        order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
        let k = k.min(dims);
        let components: Vec<Vec<f64>> = order[..k]
            .iter()
            .map(|&j| {
                let mut c: Vec<f64> = (0..dims).map(|i| v[i * dims + j]).collect();
                let big = c
                    .iter()
                    .copied()
                    .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
                if big < 0.0 {
                    c.iter_mut().for_each(|x| *x = -*x);
                }
                c
            })
            .collect();
        let variances: Vec<f64> = order[..k].iter().map(|&j| w[j].max(0.0)).collect();
        let explained = variances
            .iter()
            .map(|x| if total > 0.0 { x / total } else { 0.0 })
            .collect();
        Pca {
            mean,
            components,
            variances,
            explained,
        }
    }
    /// Coordinates of one code along the components.
    pub fn project(&self, code: &[f32]) -> Vec<f64> {
        self.components
            .iter()
            .map(|c| {
                c.iter()
                    .zip(code)
                    .zip(&self.mean)
                    .map(|((w, &x), m)| w * (x as f64 - m))
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_direction_of_largest_variance() {
        // Points along (1, 1, 0) / sqrt 2 with large spread, small noise along z.
        let mut rows = Vec::new();
        for i in 0..50 {
            let t = i as f32 - 25.0;
            rows.extend([t + 3.0, t - 1.0, if i % 2 == 0 { 0.1 } else { -0.1 }]);
        }
        let p = Pca::fit(&rows, 3, 2);
        let c = &p.components[0];
        let s = 0.5f64.sqrt();
        assert!(
            (c[0] - s).abs() < 1e-6 && (c[1] - s).abs() < 1e-6 && c[2].abs() < 1e-3,
            "{c:?}"
        );
        assert!(p.explained[0] > 0.99 && p.variances[0] > p.variances[1]);
        // The mean projects to the origin; a step along the component projects to its length.
        let m: Vec<f32> = p.mean.iter().map(|&v| v as f32).collect();
        assert!(p.project(&m)[0].abs() < 1e-5);
        let moved: Vec<f32> = m
            .iter()
            .zip([1.0f32, 1.0, 0.0])
            .map(|(a, b)| a + b)
            .collect();
        assert!((p.project(&moved)[0] - 2f64.sqrt()).abs() < 1e-5);
    }
}
