//! Paths between two latent codes: straight lines and great circles.

/// (1 - t) a + t b.
pub fn lerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((1.0 - t) * x as f64 + t * y as f64) as f32)
        .collect()
}

/// Spherical interpolation (Shoemake 1985; White 2016, "Sampling generative networks"):
/// sin((1 - t) w) / sin w * a + sin(t w) / sin w * b, with w the angle between a and b. It keeps
/// intermediate codes at a typical distance from the origin of a Gaussian prior, where a
/// straight line passes closer to the origin than any sample would. Falls back to [`lerp`]
/// when a and b are (anti-)parallel or one is zero.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return lerp(a, b, t);
    }
    let omega = (dot / (na * nb)).clamp(-1.0, 1.0).acos();
    let s = omega.sin();
    if s.abs() < 1e-6 {
        return lerp(a, b, t);
    }
    let (wa, wb) = (((1.0 - t) * omega).sin() / s, (t * omega).sin() / s);
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (wa * x as f64 + wb * y as f64) as f32)
        .collect()
}

/// `steps` codes from `a` to `b` inclusive (t = 0, 1/(steps-1), ..., 1), spherical or linear.
/// `steps` below 2 gives just `a` and `b`.
pub fn interpolate(a: &[f32], b: &[f32], steps: usize, spherical: bool) -> Vec<Vec<f32>> {
    let steps = steps.max(2);
    (0..steps)
        .map(|i| {
            let t = i as f64 / (steps - 1) as f64;
            if spherical {
                slerp(a, b, t)
            } else {
                lerp(a, b, t)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn endpoints_are_the_two_codes() {
        let (a, b) = ([0.3f32, -1.2, 2.0], [-0.5f32, 0.7, 0.1]);
        for spherical in [false, true] {
            let path = interpolate(&a, &b, 7, spherical);
            assert_eq!(path.len(), 7);
            assert!(close(&path[0], &a, 1e-6), "{spherical}: {:?}", path[0]);
            assert!(close(&path[6], &b, 1e-6), "{spherical}: {:?}", path[6]);
        }
    }

    #[test]
    fn slerp_follows_the_great_circle() {
        // Orthogonal unit vectors: the midpoint is (1, 1)/sqrt 2, still of norm 1; lerp's is
        // (0.5, 0.5), of norm 0.707.
        let (a, b) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let m = slerp(&a, &b, 0.5);
        assert!(close(&m, &[0.5f32.sqrt(), 0.5f32.sqrt()], 1e-6), "{m:?}");
        assert!(close(&lerp(&a, &b, 0.5), &[0.5, 0.5], 1e-7));
        // t = 1/3 of a 90 degree arc: angle 30 degrees.
        let p = slerp(&a, &b, 1.0 / 3.0);
        assert!(
            close(
                &p,
                &[(30f32).to_radians().cos(), (30f32).to_radians().sin()],
                1e-6
            ),
            "{p:?}"
        );
        // Parallel codes fall back to a straight line.
        assert!(close(
            &slerp(&[1.0, 1.0], &[2.0, 2.0], 0.5),
            &[1.5, 1.5],
            1e-6
        ));
    }
}
