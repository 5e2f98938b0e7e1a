//! The processes of one training job (MPI ranks, `mpirun -np N vaekit train ...`), as training
//! needs them: who am I, how many are we, and an element-wise sum over all of us.
//!
//! burn 0.22 has no cross-machine all-reduce, so the binary implements this trait over MPI
//! (`vaekit-cli`'s `mpi` feature); [`Solo`] is the one-process job, and [`ThreadRanks`] runs
//! ranks as threads of one process, for tests and for reading the protocol without MPI.
//!
//! What training does with it (see [`crate::train`]): every rank visits the same shuffled order;
//! step `k` takes `N * batch` images of it and rank `r` computes the gradients of its `r`-th
//! share (with the share's rows of the step's noise), weighted by the share's part of the
//! whole; the gradients and the step's values are summed over the ranks, so every rank applies
//! the same Adam update, equal to one process training on batches of `N * batch`. Rank 0 alone
//! evaluates, writes checkpoints, metrics and pictures; a stop request on any rank stops all
//! at the same step.

use std::sync::{Arc, Condvar, Mutex};

/// A group of processes that sum vectors together.
pub trait Collective {
    /// This process's number, 0 to `size() - 1`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `values` with their element-wise sum over all processes. Every process must
    /// call it with the same length, in the same order of calls.
    fn all_reduce_sum(&self, values: &mut [f64]);
}

/// A job of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _: &mut [f64]) {}
}

#[derive(Default)]
struct Round {
    sum: Vec<f64>,
    arrived: usize,
    generation: u64,
    result: Vec<f64>,
}

/// Ranks that are threads of one process: [`ThreadRanks::new`] gives one handle per rank.
pub struct ThreadRanks {
    rank: usize,
    size: usize,
    shared: Arc<(Mutex<Round>, Condvar)>,
}

impl ThreadRanks {
    /// Handles for ranks 0 to `size - 1`, to be moved into one thread each.
    pub fn new(size: usize) -> Vec<ThreadRanks> {
        let shared = Arc::new((Mutex::new(Round::default()), Condvar::new()));
        (0..size)
            .map(|rank| ThreadRanks {
                rank,
                size,
                shared: shared.clone(),
            })
            .collect()
    }
}

impl Collective for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, values: &mut [f64]) {
        let (lock, cv) = &*self.shared;
        let mut round = lock.lock().expect("no rank panics holding the lock");
        let generation = round.generation;
        if round.arrived == 0 {
            round.sum = values.to_vec();
        } else {
            assert_eq!(
                round.sum.len(),
                values.len(),
                "ranks reduced different lengths"
            );
            for (s, v) in round.sum.iter_mut().zip(values.iter()) {
                *s += v;
            }
        }
        round.arrived += 1;
        if round.arrived == self.size {
            round.result = std::mem::take(&mut round.sum);
            round.arrived = 0;
            round.generation += 1;
            cv.notify_all();
        } else {
            while round.generation == generation {
                round = cv.wait(round).expect("no rank panics holding the lock");
            }
        }
        // The result stays until every rank has arrived at the next round, this one included.
        values.copy_from_slice(&round.result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ranks_sum_every_round() {
        let handles: Vec<_> = ThreadRanks::new(3)
            .into_iter()
            .map(|r| {
                std::thread::spawn(move || {
                    (0..50)
                        .map(|round| {
                            let mut v = vec![r.rank() as f64 + round as f64, 1.0];
                            r.all_reduce_sum(&mut v);
                            v
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (round, v) in h.join().unwrap().into_iter().enumerate() {
                assert_eq!(v, vec![3.0 + 3.0 * round as f64, 3.0]);
            }
        }
    }
}
