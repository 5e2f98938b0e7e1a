//! Output buffers zeroed on rayon's threads. A kernel's output (or input gradient) of a batch is
//! megabytes; zeroing it with `vec![0.0; n]` ran on the calling thread while the others waited,
//! a serial share of every layer (with the first touch of fresh pages) that the profile of a
//! training step showed next to the products.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Elements per task; below this the calling thread zeroes the buffer itself.
const CHUNK: usize = 1 << 15;

/// `vec![0.0; len]`, the zeroing spread over the threads when `len` is large.
pub fn zeroed(len: usize) -> Vec<f32> {
    if len < 2 * CHUNK {
        return vec![0.0; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: the loop above initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_has_the_length_and_only_zeros() {
        for len in [0, 1, 2 * CHUNK - 1, 2 * CHUNK, 5 * CHUNK + 7] {
            let v = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
