//! The kernels' threads: rayon's global pool, with the thread that runs the training loop as
//! one of its threads.
//!
//! Every kernel splits its layer over rayon's pool. By default the pool is separate threads,
//! and the thread that calls a kernel (the one running burn's graph and the training loop)
//! hands the work over and sleeps until it is done: each of a step's dozens of layers then pays
//! for waking a sleeping worker and for waking the caller again, and the calling thread does
//! none of the arithmetic. With the calling thread in the pool, a kernel's first share runs
//! where it was called and only the rest is stolen by the other threads. Measured with
//! `vaekit bench` on an Intel Xeon with 2 cores: the MLP VAE's training 16,500 -> 22,900 img/s,
//! its sampling 126,000 -> 201,000 img/s, the conv VAE's training 5,350 -> 6,240 img/s.
//!
//! The calling thread only works for the pool while it waits on the pool's work, so a program
//! whose main thread blocks on something else (a server's event loop, threads of its own that
//! call the kernels) should leave the pool as it is.

/// Builds rayon's global pool with the calling thread as its thread 0 and `threads` threads in
/// all (`None`: rayon's default, `RAYON_NUM_THREADS` or one per logical CPU), for a program
/// whose calling thread runs the training or inference loop. Call it once, before anything
/// uses rayon.
///
/// # Errors
/// rayon's message if the global pool exists already or its threads could not be started.
pub fn join_pool(threads: Option<usize>) -> Result<(), rayon::ThreadPoolBuildError> {
    let mut builder = rayon::ThreadPoolBuilder::new().use_current_thread();
    if let Some(n) = threads {
        builder = builder.num_threads(n);
    }
    builder.build_global()
}

#[cfg(test)]
mod tests {
    /// In a pool that includes the calling thread, a parallel loop started on it runs part of
    /// the work on it. A fresh process's global pool is needed, so the check builds a local
    /// pool the same way and runs the loop from that pool's thread 0.
    #[test]
    fn the_calling_thread_takes_a_share_of_a_parallel_loop() {
        use rayon::prelude::*;
        use std::collections::HashSet;
        use std::sync::Mutex;

        let pool = std::thread::spawn(|| {
            let pool = rayon::ThreadPoolBuilder::new()
                .use_current_thread()
                .num_threads(2)
                .build()
                .expect("a local pool");
            let me = std::thread::current().id();
            assert_eq!(pool.current_thread_index(), Some(0));
            let seen = Mutex::new(HashSet::new());
            (0..64).into_par_iter().for_each(|_| {
                seen.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(std::time::Duration::from_millis(1));
            });
            let seen = seen.into_inner().unwrap();
            assert!(seen.contains(&me), "the calling thread did no work");
        });
        pool.join().expect("the pool's thread");
    }
}
