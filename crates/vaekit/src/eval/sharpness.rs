//! Sharpness of images as the variance of their Laplacian (Pech-Pacheco et al. 2000), the usual
//! blur measure: the 3x3 Laplacian [[0, 1, 0], [1, -4, 1], [0, 1, 0]] over the valid interior of
//! each channel, its variance per image (channels averaged), and the mean over images. Blurry
//! decoder means score low; sharp edges score high.

/// The variance of the Laplacian of one `[channels, height, width]` image of values in [0, 1]
/// (0 for sides under 3).
pub fn laplacian_variance(pixels: &[f32], channels: usize, height: usize, width: usize) -> f64 {
    if height < 3 || width < 3 {
        return 0.0;
    }
    let n = ((height - 2) * (width - 2)) as f64;
    let mut total = 0.0;
    for plane in pixels.chunks_exact(height * width).take(channels) {
        let at = |y: usize, x: usize| plane[y * width + x] as f64;
        let (mut sum, mut sq) = (0.0, 0.0);
        for y in 1..height - 1 {
            for x in 1..width - 1 {
                let l = at(y - 1, x) + at(y + 1, x) + at(y, x - 1) + at(y, x + 1) - 4.0 * at(y, x);
                sum += l;
                sq += l * l;
            }
        }
        let mean = sum / n;
        total += sq / n - mean * mean;
    }
    total / channels.max(1) as f64
}

/// The mean of [`laplacian_variance`] over a batch of `[n, channels, height, width]` images,
/// with the number of images.
pub fn mean_laplacian_variance(pixels: &[f32], shape: [usize; 4]) -> (f64, usize) {
    let [n, c, h, w] = shape;
    let sum: f64 = pixels
        .chunks_exact(c * h * w)
        .take(n)
        .map(|img| laplacian_variance(img, c, h, w))
        .sum();
    (sum / n.max(1) as f64, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms() {
        let (h, w) = (6, 7);
        // Flat and linear images have no curvature.
        assert_eq!(laplacian_variance(&vec![0.3; h * w], 1, h, w), 0.0);
        let ramp: Vec<f32> = (0..h * w).map(|i| (i % w) as f32 / 10.0).collect();
        assert!(laplacian_variance(&ramp, 1, h, w).abs() < 1e-9);
        // A checkerboard: the Laplacian is +4 on 0s and -4 on 1s, variance 16 on a balanced
        // interior.
        let board: Vec<f32> = (0..36).map(|i| ((i / 6 + i % 6) % 2) as f32).collect();
        assert!((laplacian_variance(&board, 1, 6, 6) - 16.0).abs() < 1e-9);
        // Blurring lowers it.
        let blurred: Vec<f32> = board.iter().map(|v| 0.25 + 0.5 * v).collect();
        assert!((laplacian_variance(&blurred, 1, 6, 6) - 4.0).abs() < 1e-9);
        // Batch mean over two images with two channels.
        let mut two = board.clone();
        two.extend(vec![0.0; 36]);
        two.extend(vec![0.5; 72]);
        let (m, n) = mean_laplacian_variance(&two, [2, 2, 6, 6]);
        assert_eq!(n, 2);
        assert!((m - 4.0).abs() < 1e-9, "{m}");
    }
}
