//! Input assembled ahead of the training step on background threads, through a bounded queue.
//!
//! Worker `w` of `W` builds steps `first + w`, `first + w + W`, ... and hands each to its own
//! channel of [`DEPTH`] slots; the consumer takes step `k` from channel `(k - first) % W`. So
//! batches arrive in step order whatever the threads' timing, and the results equal those of
//! building every batch on the training thread. Reading a memory-mapped dataset's pages (and
//! the page faults of a dataset on disk) happens on the workers.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::Scope;
use std::time::{Duration, Instant};

/// Items each worker may have ready ahead of the consumer.
pub const DEPTH: usize = 2;

/// Steps `steps` built by `make`, in order, on `threads` scoped threads (0: on the calling
/// thread when asked for). Time spent waiting in [`Prefetch::next`] is recorded.
pub struct Prefetch<'scope, T> {
    source: Source<'scope, T>,
    next: usize,
    end: usize,
    first: usize,
    waited: Duration,
}

enum Source<'scope, T> {
    Inline(Box<dyn Fn(usize) -> T + 'scope>),
    Threads(Vec<Receiver<T>>),
}

/// Starts `threads` workers in `scope` that build the items of `steps` with `make` (none
/// with `threads` = 0: [`Prefetch::next`] then builds each item itself). Dropping the
/// [`Prefetch`] ends the workers after the item each is building.
pub fn prefetch<'scope, 'env, T, F>(
    scope: &'scope Scope<'scope, 'env>,
    steps: Range<usize>,
    threads: usize,
    make: F,
) -> Prefetch<'scope, T>
where
    T: Send + 'scope,
    F: Fn(usize) -> T + Send + Sync + 'scope,
{
    let source = if threads == 0 {
        Source::Inline(Box::new(make))
    } else {
        let make = Arc::new(make);
        let receivers = (0..threads)
            .map(|w| {
                let (tx, rx) = sync_channel(DEPTH);
                let make = make.clone();
                let mine = steps.clone().skip(w).step_by(threads);
                scope.spawn(move || {
                    for k in mine {
                        if tx.send(make(k)).is_err() {
                            break; // the consumer stopped early
                        }
                    }
                });
                rx
            })
            .collect();
        Source::Threads(receivers)
    };
    Prefetch {
        source,
        next: steps.start,
        end: steps.end,
        first: steps.start,
        waited: Duration::ZERO,
    }
}

impl<T> Prefetch<'_, T> {
    /// The next step's item, or `None` after the last. Blocks until it is built.
    ///
    /// # Panics
    /// If a worker panicked (the panic itself reaches the caller when the scope ends).
    pub fn next_item(&mut self) -> Option<T> {
        if self.next >= self.end {
            return None;
        }
        let t0 = Instant::now();
        let item = match &self.source {
            Source::Inline(make) => make(self.next),
            Source::Threads(rx) => {
                let w = (self.next - self.first) % rx.len();
                rx[w].recv().expect("a data loader thread stopped early")
            }
        };
        self.waited += t0.elapsed();
        self.next += 1;
        Some(item)
    }

    /// Time spent in [`Prefetch::next_item`] so far: what the consumer waited for input.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl<T> Iterator for Prefetch<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.next_item()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn items_arrive_in_step_order_for_any_thread_count() {
        for threads in 0..5 {
            let got: Vec<usize> = std::thread::scope(|s| {
                prefetch(s, 3..40, threads, |k| {
                    // Uneven work, so the workers finish out of order.
                    std::thread::sleep(Duration::from_micros(((k * 7) % 5) as u64 * 200));
                    k * k
                })
                .collect()
            });
            assert_eq!(
                got,
                (3..40).map(|k| k * k).collect::<Vec<_>>(),
                "{threads} threads"
            );
        }
    }

    #[test]
    fn the_queue_is_bounded_and_an_early_stop_ends_the_workers() {
        let built = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let mut p = prefetch(s, 0..1000, 2, |k| {
                built.fetch_add(1, Ordering::SeqCst);
                k
            });
            assert_eq!(p.next_item(), Some(0));
            std::thread::sleep(Duration::from_millis(50));
            // Each worker holds at most DEPTH items ready plus the one it is blocked sending.
            let ahead = built.load(Ordering::SeqCst);
            assert!(ahead <= 1 + 2 * (DEPTH + 1), "{ahead} built");
            drop(p);
        });
        // The scope returned: both workers ended without building the other ~990 items.
        assert!(built.load(Ordering::SeqCst) < 20);
    }

    #[test]
    fn waiting_for_slow_input_is_measured() {
        std::thread::scope(|s| {
            let mut p = prefetch(s, 0..3, 1, |_| {
                std::thread::sleep(Duration::from_millis(30))
            });
            while p.next_item().is_some() {}
            // Three items of 30 ms each, one worker: the consumer waited for nearly all of it.
            assert!(p.waited() >= Duration::from_millis(60), "{:?}", p.waited());
        });
    }
}
