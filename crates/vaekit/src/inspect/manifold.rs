//! The learned 2-D manifold: a grid of codes spaced by the prior's quantiles (Kingma & Welling
//! 2014, figure 4), so each cell covers the same prior probability mass.

use statrs::distribution::{ContinuousCDF, Normal};

/// Phi^-1((i + 0.5) / steps) for i = 0..steps: the standard normal quantiles at the midpoints
/// of `steps` equal slices of (0, 1).
pub fn normal_quantiles(steps: usize) -> Vec<f64> {
    let n = Normal::standard();
    (0..steps)
        .map(|i| n.inverse_cdf((i as f64 + 0.5) / steps as f64))
        .collect()
}

/// `steps * steps` codes for a 2-D latent, row-major as they appear in a picture: columns go
/// from low to high z_1, rows from high z_2 (top) to low z_2 (bottom).
pub fn manifold_codes(steps: usize) -> Vec<Vec<f32>> {
    let q = normal_quantiles(steps);
    q.iter()
        .rev()
        .flat_map(|&z2| q.iter().map(move |&z1| vec![z1 as f32, z2 as f32]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_uses_the_gaussian_quantiles() {
        // Phi^-1(0.25) = -0.6744897501960817, Phi^-1(0.75) = +0.6744897501960817.
        let q = normal_quantiles(2);
        assert!(
            (q[0] + 0.674_489_750_196_081_7).abs() < 1e-9
                && (q[1] - 0.674_489_750_196_081_7).abs() < 1e-9,
            "{q:?}"
        );
        // Phi^-1(0.05) = -1.6448536269514729 (steps = 10, i = 0); the middle of an odd grid is 0.
        assert!((normal_quantiles(10)[0] + 1.644_853_626_951_472_9).abs() < 1e-9);
        assert!(normal_quantiles(5)[2].abs() < 1e-12);
        // Spacing widens towards the tails: equal probability mass, not equal distance.
        let q = normal_quantiles(20);
        assert!(q[1] - q[0] > q[10] - q[9]);
        let g = manifold_codes(3);
        assert_eq!(g.len(), 9);
        let q = normal_quantiles(3);
        assert_eq!(g[0], vec![q[0] as f32, q[2] as f32]); // top left: low z1, high z2
        assert_eq!(g[8], vec![q[2] as f32, q[0] as f32]); // bottom right
    }
}
