//! The crate's one documented thread pool.
//!
//! All parallel kernels run inside [`install`], on a rayon pool owned by this
//! crate (not rayon's global pool), so a host application's own rayon usage is
//! not disturbed and the thread count can be set from C or Python with
//! [`set_num_threads`]. Kernels split work into fixed-size blocks whose results
//! never depend on the number of threads.

use std::sync::{Arc, RwLock};

static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

fn build(n: usize) -> Arc<rayon::ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("tritter-{i}"))
            .build()
            .expect("failed to spawn tritter thread pool"),
    )
}

fn default_threads() -> usize {
    std::env::var("TRITTER_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The pool, created on first use with `TRITTER_NUM_THREADS` threads (default:
/// the available parallelism).
pub fn pool() -> Arc<rayon::ThreadPool> {
    if let Some(p) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return p.clone();
    }
    let mut w = POOL.write().unwrap_or_else(|e| e.into_inner());
    w.get_or_insert_with(|| build(default_threads())).clone()
}

/// Sets the number of worker threads (0 = the default). Work already running
/// finishes on the old pool. Results never depend on this setting.
pub fn set_num_threads(n: usize) {
    let n = if n == 0 { default_threads() } else { n };
    let mut w = POOL.write().unwrap_or_else(|e| e.into_inner());
    if w.as_ref().map(|p| p.current_num_threads()) != Some(n) {
        *w = Some(build(n));
    }
}

/// The number of worker threads kernels use.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Runs `f` inside the crate's pool (rayon calls in `f` use it).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}
