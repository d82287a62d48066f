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

// ---------------------------------------------------------------- low-latency fork-join

/// A fork-join for short, latency-bound kernels (a batch-1 GEMV takes tens of
/// microseconds; waking a sleeping rayon worker and then the waiting caller
/// costs about as much). The caller works too, and `num_threads() - 1` helper
/// threads spin on an epoch counter for [`spin_us`] microseconds after each
/// job before they park, so back-to-back calls (a model's layers) start at
/// once. Work is handed out as indices from an atomic counter; each index is
/// processed by exactly one thread, so results never depend on who ran it.
mod spin {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    type Task = *const (dyn Fn(usize) + Sync);

    pub(super) struct Shared {
        epoch: AtomicU64,
        open: AtomicBool,
        shutdown: AtomicBool,
        /// Helpers between "joining" and "leaving" the current job.
        busy: AtomicUsize,
        /// Helpers parked (the caller unparks them on a new job).
        parked: AtomicUsize,
        next: AtomicUsize,
        done: AtomicUsize,
        panicked: AtomicBool,
        n: AtomicUsize,
        /// Written only while `open` is false and no helper is inside a job.
        task: UnsafeCell<Option<Task>>,
        spin: Duration,
    }
    // SAFETY: `task` is only written by the (single, mutex-holding) caller while
    // no helper can read it, and read by helpers only while `open` (see run).
    unsafe impl Sync for Shared {}
    unsafe impl Send for Shared {}

    pub(super) struct SpinPool {
        shared: Arc<Shared>,
        helpers: Vec<std::thread::Thread>,
        lock: Mutex<()>,
    }

    impl SpinPool {
        pub(super) fn new(threads: usize, spin: Duration) -> Option<Self> {
            let shared = Arc::new(Shared {
                epoch: AtomicU64::new(0),
                open: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                busy: AtomicUsize::new(0),
                parked: AtomicUsize::new(0),
                next: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                n: AtomicUsize::new(0),
                task: UnsafeCell::new(None),
                spin,
            });
            let mut pool = SpinPool {
                shared,
                helpers: Vec::new(),
                lock: Mutex::new(()),
            };
            for i in 1..threads {
                let s = pool.shared.clone();
                // On a spawn failure `pool` drops, which stops the helpers
                // already started.
                let h = std::thread::Builder::new()
                    .name(format!("tritter-spin-{i}"))
                    .spawn(move || helper(s))
                    .ok()?;
                pool.helpers.push(h.thread().clone());
            }
            Some(pool)
        }

        /// Runs `f(i)` for every `i < n` on the caller and the helpers; `None`
        /// (nothing run) when another caller holds the pool.
        pub(super) fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) -> Option<()> {
            let _g = match self.lock.try_lock() {
                Ok(g) => g,
                // A panic in an earlier job's task left the pool consistent
                // (Close ran); only the lock's flag remains.
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            };
            let s = &*self.shared;
            // SAFETY: the lifetime is erased only for the duration of this
            // call: `Close` below waits until no helper is inside the job.
            let task: Task = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Task>(f) };
            // SAFETY: open is false and busy helpers leave without reading task.
            unsafe { *s.task.get() = Some(task) };
            s.n.store(n, SeqCst);
            s.next.store(0, SeqCst);
            s.done.store(0, SeqCst);
            s.panicked.store(false, SeqCst);
            s.open.store(true, SeqCst);
            s.epoch.fetch_add(1, SeqCst);
            if s.parked.load(SeqCst) > 0 {
                for h in &self.helpers {
                    h.unpark();
                }
            }
            struct Close<'a>(&'a Shared);
            impl Drop for Close<'_> {
                fn drop(&mut self) {
                    let s = self.0;
                    // Stop handing out work, then wait for helpers inside the job.
                    s.next.store(usize::MAX / 2, SeqCst);
                    s.open.store(false, SeqCst);
                    while s.busy.load(SeqCst) != 0 {
                        std::hint::spin_loop();
                    }
                    // SAFETY: no helper is inside the job.
                    unsafe { *s.task.get() = None };
                }
            }
            let close = Close(s);
            work(s, f);
            // Wait for indices other threads took.
            let mut spins = 0u32;
            while s.done.load(SeqCst) < n {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1024) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            drop(close);
            if s.panicked.load(SeqCst) {
                panic!("a tritter worker thread panicked");
            }
            Some(())
        }
    }

    impl Drop for SpinPool {
        fn drop(&mut self) {
            self.shared.shutdown.store(true, SeqCst);
            for h in &self.helpers {
                h.unpark();
            }
        }
    }

    /// Takes indices until none are left.
    fn work(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
        let n = s.n.load(SeqCst);
        loop {
            let i = s.next.fetch_add(1, SeqCst);
            if i >= n {
                return;
            }
            f(i);
            s.done.fetch_add(1, SeqCst);
        }
    }

    fn helper(s: Arc<Shared>) {
        let mut seen = s.epoch.load(SeqCst);
        loop {
            // Spin for a new epoch, then park.
            let t0 = Instant::now();
            let mut k = 0u32;
            while s.epoch.load(SeqCst) == seen && !s.shutdown.load(SeqCst) {
                k = k.wrapping_add(1);
                if k.is_multiple_of(4096) {
                    // let other runnable threads (rayon's workers, the host's
                    // own) have this core while we wait; a no-op when idle
                    std::thread::yield_now();
                }
                if k.is_multiple_of(256) && t0.elapsed() > s.spin {
                    s.parked.fetch_add(1, SeqCst);
                    if s.epoch.load(SeqCst) == seen && !s.shutdown.load(SeqCst) {
                        std::thread::park_timeout(Duration::from_millis(100));
                    }
                    s.parked.fetch_sub(1, SeqCst);
                } else {
                    std::hint::spin_loop();
                }
            }
            if s.shutdown.load(SeqCst) {
                return;
            }
            seen = s.epoch.load(SeqCst);
            s.busy.fetch_add(1, SeqCst);
            if s.open.load(SeqCst) {
                // SAFETY: open and counted busy: the caller keeps the task
                // alive and unchanged until busy drops to zero.
                if let Some(t) = unsafe { *s.task.get() } {
                    let f = unsafe { &*t };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&s, f)));
                    if r.is_err() {
                        s.panicked.store(true, SeqCst);
                        // count the index the panic abandoned so the caller ends
                        s.done.fetch_add(1, SeqCst);
                    }
                }
            }
            s.busy.fetch_sub(1, SeqCst);
        }
    }
}

static SPIN: RwLock<Option<(usize, Arc<spin::SpinPool>)>> = RwLock::new(None);

/// Microseconds the low-latency helpers spin after a job before they park
/// (`TRITTER_SPIN_US`, default 200; 0 parks at once).
pub fn spin_us() -> u64 {
    std::env::var("TRITTER_SPIN_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(200)
}

fn spin_pool(threads: usize) -> Option<Arc<spin::SpinPool>> {
    if let Some((n, p)) = SPIN.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if *n == threads {
            return Some(p.clone());
        }
    }
    let mut w = SPIN.write().unwrap_or_else(|e| e.into_inner());
    if let Some((n, p)) = w.as_ref() {
        if *n == threads {
            return Some(p.clone());
        }
    }
    let p = Arc::new(spin::SpinPool::new(
        threads,
        std::time::Duration::from_micros(spin_us()),
    )?);
    *w = Some((threads, p.clone()));
    Some(p)
}

/// Runs `f(i, chunk)` for every `chunk_len`-element chunk of `data` (index
/// `i`), on the caller and [`num_threads`]` - 1` spinning helpers: a
/// fork-join with microsecond latency for short kernels. Each chunk is
/// processed exactly once by one thread. Falls back to running on the caller
/// when the helpers are busy with another caller's job (or nested inside one).
pub fn for_each_chunk_mut<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk_len = chunk_len.max(1);
    let n = data.len().div_ceil(chunk_len);
    let threads = num_threads();
    if n <= 1 || threads <= 1 {
        for (i, c) in data.chunks_mut(chunk_len).enumerate() {
            f(i, c);
        }
        return;
    }
    struct Ptr<T>(*mut T);
    // SAFETY: each chunk index is handed to exactly one thread, so the chunks
    // reached through this pointer never alias.
    unsafe impl<T> Sync for Ptr<T> {}
    let (base, len) = (Ptr(data.as_mut_ptr()), data.len());
    let g = |i: usize| {
        let lo = i * chunk_len;
        let hi = (lo + chunk_len).min(len);
        let b = &base;
        // SAFETY: lo..hi is inside data and disjoint from every other index's.
        let c = unsafe { std::slice::from_raw_parts_mut(b.0.add(lo), hi - lo) };
        f(i, c)
    };
    match spin_pool(threads).and_then(|p| p.run(n, &g)) {
        Some(()) => {}
        None => (0..n).for_each(g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn for_each_chunk_mut_visits_every_chunk_once_at_any_thread_count() {
        for threads in [1usize, 2, 3] {
            // a private pool size: the spin pool is keyed by thread count
            let pool = spin::SpinPool::new(threads, std::time::Duration::from_micros(50)).unwrap();
            for (len, chunk) in [
                (0usize, 1usize),
                (1, 1),
                (5, 2),
                (64, 1),
                (1000, 7),
                (4096, 4096),
            ] {
                let mut data = vec![0u32; len];
                let n = len.div_ceil(chunk);
                let calls = AtomicUsize::new(0);
                struct P(*mut u32);
                unsafe impl Sync for P {}
                let base = P(data.as_mut_ptr());
                let g = |i: usize| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let b = &base;
                    for j in i * chunk..((i + 1) * chunk).min(len) {
                        // SAFETY: index i is handed out once; its range is disjoint.
                        unsafe { *b.0.add(j) += 1 + i as u32 };
                    }
                };
                pool.run(n, &g).unwrap();
                assert_eq!(
                    calls.load(Ordering::SeqCst),
                    n,
                    "threads {threads} len {len}"
                );
                for (j, &v) in data.iter().enumerate() {
                    assert_eq!(
                        v,
                        1 + (j / chunk) as u32,
                        "threads {threads} len {len} elem {j}"
                    );
                }
            }
        }
        // the public entry point, with the crate pool's thread count
        let mut data = vec![0u8; 999];
        for_each_chunk_mut(&mut data, 10, |i, c| c.fill(i as u8));
        assert!(data.iter().enumerate().all(|(j, &v)| v == (j / 10) as u8));
    }

    #[test]
    fn nested_and_panicking_jobs_neither_deadlock_nor_poison_the_pool() {
        let pool = spin::SpinPool::new(2, std::time::Duration::from_micros(50)).unwrap();
        // a job that submits to the same pool: the inner call is refused (None)
        let inner = AtomicUsize::new(0);
        pool.run(4, &|_| {
            if pool.run(1, &|_| {}).is_none() {
                inner.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
        assert_eq!(inner.load(Ordering::SeqCst), 4);
        // a panicking task: the panic reaches the caller, the pool keeps working
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(8, &|i| {
                if i == 5 {
                    panic!("task 5");
                }
            })
        }));
        assert!(r.is_err());
        let done = AtomicUsize::new(0);
        pool.run(100, &|_| {
            done.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 100);
    }
}
