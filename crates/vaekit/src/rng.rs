//! Seeded random streams on the host.
//!
//! All randomness in training and evaluation (shuffling, reparameterisation noise, binarisation,
//! prior samples) is drawn here from ChaCha generators keyed by (seed, stream, index), so a
//! run is reproducible on any device and a resumed run draws exactly what an uninterrupted one
//! would have drawn.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Independent purposes that must never share random numbers.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Stream {
    /// Order of training images in an epoch (index: epoch).
    Shuffle = 1,
    /// Reparameterisation noise for a training step (index: global step).
    TrainNoise = 2,
    /// Dynamic binarisation of a training batch (index: global step).
    TrainBinarize = 3,
    /// Binarisation done once at load time.
    StaticBinarize = 4,
    /// Noise of the evaluation ELBO (index: batch number).
    EvalNoise = 5,
    /// Binarisation of evaluation batches under dynamic binarisation (index: batch number).
    EvalBinarize = 6,
    /// z drawn from the prior for sample grids.
    Prior = 7,
    /// Importance samples of the log-likelihood estimate (index: batch number).
    ImportanceNoise = 8,
    /// z drawn from the prior during a training step, for a VAE-GAN's generated images (index:
    /// global step).
    TrainPrior = 9,
}

/// A generator for one (seed, stream, index) triple.
pub fn stream_rng(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    // 2^32 words per index keeps streams apart: far more than one step ever draws.
    rng.set_word_pos((index as u128) << 32);
    rng
}

/// `n` standard normal numbers.
pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// A random permutation of `0..n` (Fisher-Yates).
pub fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(rng);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = normals(&mut stream_rng(3, Stream::TrainNoise, 7), 5);
        let b = normals(&mut stream_rng(3, Stream::TrainNoise, 7), 5);
        let c = normals(&mut stream_rng(3, Stream::TrainNoise, 8), 5);
        let d = normals(&mut stream_rng(3, Stream::EvalNoise, 7), 5);
        let e = normals(&mut stream_rng(4, Stream::TrainNoise, 7), 5);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_ne!(a, e);
    }

    #[test]
    fn normals_have_unit_moments() {
        let x = normals(&mut stream_rng(0, Stream::Prior, 0), 200_000);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(&mut stream_rng(1, Stream::Shuffle, 0), 1000);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }
}
