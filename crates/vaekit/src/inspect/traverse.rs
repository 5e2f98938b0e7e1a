//! Latent traversals: one dimension at a time swept across the prior's range.

/// Rows of codes: for each dimension `d` of `dims`, `steps` copies of `code` with `z_d` set to
/// evenly spaced values from `-range` to `range` (the prior is N(0, 1) in every dimension, so
/// +-3 covers almost all of it), the others kept at the image's code.
pub fn traverse(code: &[f32], dims: &[usize], range: f64, steps: usize) -> Vec<Vec<f32>> {
    let steps = steps.max(1);
    let value = |i: usize| {
        if steps == 1 {
            0.0
        } else {
            -range + 2.0 * range * i as f64 / (steps - 1) as f64
        }
    };
    dims.iter()
        .flat_map(|&d| {
            (0..steps).map(move |i| {
                let mut z = code.to_vec();
                z[d] = value(i) as f32;
                z
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_one_dimension_per_row_over_the_range() {
        let code = [0.5f32, -0.25, 1.0];
        let rows = traverse(&code, &[0, 2], 3.0, 5);
        assert_eq!(rows.len(), 10);
        let want = [-3.0f32, -1.5, 0.0, 1.5, 3.0];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(rows[i], vec![*w, -0.25, 1.0]);
            assert_eq!(rows[5 + i], vec![0.5, -0.25, *w]);
        }
    }
}
