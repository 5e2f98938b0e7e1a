//! Small dense linear algebra for evaluation: mean and covariance of feature vectors and the
//! eigendecomposition of symmetric matrices (cyclic Jacobi), for the Frechet distance's matrix
//! square roots and PCA. Matrices here are at most a few hundred rows, row-major `Vec<f64>`.
//!
//! Written here rather than taken from nalgebra: adding nalgebra changed the features of
//! dependencies shared with burn's GPU stack and forced a full rebuild of it (~40 minutes on
//! 2 cores) for a few dozen lines of code.

/// Mean (`[dims]`) and covariance (divisor n - 1, `[dims * dims]` row-major) of `rows`
/// (`[n, dims]` row-major).
pub fn mean_and_covariance(rows: &[f32], dims: usize) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len() / dims.max(1);
    let mut mean = vec![0.0f64; dims];
    for row in rows.chunks(dims) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut cov = vec![0.0f64; dims * dims];
    let mut centred = vec![0.0f64; dims];
    for row in rows.chunks(dims) {
        for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
            *c = v as f64 - m;
        }
        for i in 0..dims {
            let ci = centred[i];
            for j in i..dims {
                cov[i * dims + j] += ci * centred[j];
            }
        }
    }
    let div = n.saturating_sub(1).max(1) as f64;
    for i in 0..dims {
        for j in i..dims {
            let v = cov[i * dims + j] / div;
            cov[i * dims + j] = v;
            cov[j * dims + i] = v;
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors of the symmetric `n x n` matrix `a` (row-major), by cyclic
/// Jacobi rotations. Returns the eigenvalues (unsorted) and the eigenvectors as the columns of
/// an `n x n` row-major matrix: `a = V diag(w) V^T`.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                // Rotation angle that zeroes a[p][q] (Golub & Van Loan, Algorithm 8.5.2).
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The product of two `n x n` row-major matrices.
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// The square root of a symmetric positive semi-definite matrix: V diag(sqrt(max(w, 0))) V^T
/// (eigenvalues below zero from rounding count as zero).
pub fn sqrt_psd(a: &[f64], n: usize) -> Vec<f64> {
    let (w, v) = symmetric_eigen(a, n);
    let mut out = vec![0.0f64; n * n];
    for (k, &wk) in w.iter().enumerate() {
        let r = wk.max(0.0).sqrt();
        for i in 0..n {
            let vik = v[i * n + k] * r;
            for j in 0..n {
                out[i * n + j] += vik * v[j * n + k];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposes_a_known_matrix() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3, eigenvectors (1, -1)/sqrt 2 and (1, 1)/sqrt 2.
        let (mut w, v) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let big = if w[0] > w[1] { 0 } else { 1 };
        assert!((w[big] - 3.0).abs() < 1e-12);
        assert!(
            (v[big].abs() - 0.5f64.sqrt()).abs() < 1e-12 && (v[2 + big] - v[big]).abs() < 1e-12
        );
        w.sort_by(f64::total_cmp);
        assert!((w[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reconstructs_a_random_symmetric_matrix() {
        let n = 6;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = ((i * 7 + j * 3) % 11) as f64 - 5.0;
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        let (w, v) = symmetric_eigen(&a, n);
        for i in 0..n {
            for j in 0..n {
                let back: f64 = (0..n).map(|k| v[i * n + k] * w[k] * v[j * n + k]).sum();
                assert!(
                    (back - a[i * n + j]).abs() < 1e-9,
                    "({i},{j}) {back} vs {}",
                    a[i * n + j]
                );
                let vtv: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                assert!((vtv - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn square_root_squares_back() {
        // A = B B^T is positive definite.
        let b = [1.0, 2.0, 0.0, 0.5, 1.0, 3.0, 2.0, 0.0, 1.0];
        let bt = [1.0, 0.5, 2.0, 2.0, 1.0, 0.0, 0.0, 3.0, 1.0];
        let a = matmul(&b, &bt, 3);
        let r = sqrt_psd(&a, 3);
        let rr = matmul(&r, &r, 3);
        assert!(
            a.iter().zip(&rr).all(|(x, y)| (x - y).abs() < 1e-9),
            "{rr:?}"
        );
    }

    #[test]
    fn covariance_of_two_points() {
        let (m, c) = mean_and_covariance(&[1.0, 2.0, 3.0, 6.0], 2);
        assert_eq!(m, vec![2.0, 4.0]);
        assert_eq!(c, vec![2.0, 4.0, 4.0, 8.0]);
    }
}
