//! Output buffers zeroed on rayon's threads. A kernel's output (or input gradient) of a batch is
//! megabytes; zeroing it with `vec![0.0; n]` ran on the calling thread while the others waited,
//! a serial share of every layer (with the first touch of fresh pages) that the profile of a
//! training step showed next to the products.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Elements per task; below this the calling thread zeroes the buffer itself.
const CHUNK: usize = 1 << 15;

/// `vec![zero; len]` (`T::default()`: 0.0, 0), the zeroing spread over the threads when `len`
/// is large.
pub fn zeroed<T: Copy + Default + Send + Sync>(len: usize) -> Vec<T> {
    if len < 2 * CHUNK {
        return vec![T::default(); len];
    }
    let mut v: Vec<T> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(T::default())));
    // SAFETY: the loop above initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// A vector of `len` floats made chunk by chunk on the threads: chunk `i` (of `chunk`
/// elements, the last one shorter) is zeroed, then `f(i, chunk)` fills it. One parallel pass
/// for elementwise kernels, whose output would otherwise be zeroed on the calling thread first.
pub fn filled(len: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    filled_with(len, chunk, || (), |_, i, c| f(i, c))
}

/// [`filled`] with per-thread state: `f(state, i, chunk)`, each thread's `state` made by
/// `init` (rayon's `for_each_init`). The layers write their outputs this way: each block is
/// zeroed by the thread that then computes it, while it is in that core's cache, instead of in
/// a pass of its own first.
pub fn filled_with<S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    filled_rows_with(len, chunk, &[0.0], init, f)
}

/// [`filled_with`] whose chunks start as rows of constants instead of zeros: each chunk is
/// `row_values.len()` equal rows, row `r` all `row_values[r]` (a layer's output per image,
/// starting as its bias per channel), written by the thread that then adds to it, where
/// zeroing it first was a pass of its own.
pub fn filled_rows_with<S>(
    len: usize,
    chunk: usize,
    row_values: &[f32],
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |state, (i, c)| {
            let row_len = c.len() / row_values.len().max(1);
            assert_eq!(
                row_len * row_values.len(),
                c.len(),
                "filled_rows_with: row size"
            );
            for (row, &value) in c.chunks_exact_mut(row_len.max(1)).zip(row_values) {
                row.fill(MaybeUninit::new(value));
            }
            // SAFETY: the rows cover the chunk (asserted), so every element was initialised
            // above, and `MaybeUninit<f32>` has the layout of `f32`.
            let c = unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) };
            f(state, i, c);
        });
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
            let v: Vec<f32> = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0));
            let v: Vec<u32> = zeroed(len);
            assert!(v.len() == len && v.iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn filled_rows_hands_each_chunk_its_rows_of_values() {
        let v = filled_rows_with(
            24,
            6,
            &[1.5, -2.0, 7.0],
            || 0usize,
            |calls, i, c| {
                *calls += 1;
                assert_eq!(c, &[1.5, 1.5, -2.0, -2.0, 7.0, 7.0]);
                c[0] += i as f32;
            },
        );
        assert_eq!(v.len(), 24);
        for i in 0..4 {
            assert_eq!(v[i * 6], 1.5 + i as f32);
            assert_eq!(&v[i * 6 + 1..i * 6 + 6], &[1.5, -2.0, -2.0, 7.0, 7.0]);
        }
    }

    #[test]
    fn filled_hands_each_chunk_its_index_zeroed() {
        for (len, chunk) in [(0, 4), (1, 4), (10, 4), (12, 4), (100_003, 1000)] {
            let v = filled(len, chunk, |i, c| {
                assert!(c.iter().all(|&x| x == 0.0));
                for (j, x) in c.iter_mut().enumerate() {
                    *x = (i * chunk + j) as f32;
                }
            });
            assert_eq!(v.len(), len);
            assert!(v.iter().enumerate().all(|(j, &x)| x == j as f32));
        }
    }
}
