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
///
/// Spinning helpers only pay off when they have a core of their own. On an
/// oversubscribed machine a helper that holds an index and is preempted makes
/// the caller wait a whole scheduler slice (milliseconds), and idle spinning
/// takes time from the threads that need it. So each job first checks, and
/// the pool falls back to the caller alone (helpers parked) when:
/// * more threads are runnable than cores (`/proc/loadavg`'s running count,
///   sampled at most every [`SAMPLE`], minus the caller and our own awake
///   helpers), leaving no core for a helper;
/// * a recent job stalled: the caller waited for helpers longer than its own
///   share of the work took (preempted helpers, or a host that does not run
///   this VM's other vCPU), or helpers that were spinning took no index.
///   Then helpers stay off for a backoff of 5 ms, doubling up to 320 ms while
///   stalls repeat, reset by a clean job.
///
/// `TRITTER_SPIN_ADAPT=0` turns the checks off (always use every helper).
mod spin {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    type Task = *const (dyn Fn(usize) + Sync);

    /// How often the runnable-thread count is re-read.
    pub(super) const SAMPLE: Duration = Duration::from_millis(5);
    const BACKOFF_MIN: Duration = Duration::from_millis(5);
    const BACKOFF_MAX: Duration = Duration::from_millis(320);

    pub(super) struct Shared {
        epoch: AtomicU64,
        open: AtomicBool,
        shutdown: AtomicBool,
        /// Helpers between "joining" and "leaving" the current job.
        busy: AtomicUsize,
        /// Helpers parked (the caller unparks them on a new job).
        parked: AtomicUsize,
        /// Helpers `1..=max_helpers` may join the current job.
        max_helpers: AtomicUsize,
        /// Park at once after a job instead of spinning (caller-only mode).
        quiet: AtomicBool,
        next: AtomicUsize,
        done: AtomicUsize,
        /// Indices of the current job that helpers processed.
        helper_items: AtomicUsize,
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

    /// The caller-side state of the oversubscription checks (under the lock).
    struct Adapt {
        enabled: bool,
        /// Reads the machine's runnable-thread count (`runnable_threads`;
        /// tests substitute their own).
        sampler: fn() -> Option<usize>,
        cores: usize,
        /// Runnable threads besides the caller and our awake helpers, and when
        /// that was read.
        others: usize,
        sampled: Option<Instant>,
        backoff: Duration,
        backoff_until: Option<Instant>,
    }

    /// What one job's run says about the helpers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct JobStats {
        /// Helpers the job let in.
        pub helpers: usize,
        /// Indices the helpers processed.
        pub helper_items: usize,
        /// The caller waited on helpers longer than its own work took.
        pub stalled: bool,
    }

    pub(super) struct SpinPool {
        shared: Arc<Shared>,
        helpers: Vec<std::thread::Thread>,
        lock: Mutex<Adapt>,
    }

    /// Runnable threads on the machine (`/proc/loadavg`'s 4th field,
    /// `running/total`); `None` where it cannot be read.
    fn runnable_threads() -> Option<usize> {
        let s = std::fs::read_to_string("/proc/loadavg").ok()?;
        s.split_whitespace().nth(3)?.split('/').next()?.parse().ok()
    }

    impl Adapt {
        /// Helpers (of `len`) the next job may use: none during a backoff or
        /// when other runnable threads leave no core beyond the caller's.
        fn helpers_allowed(&mut self, len: usize, s: &Shared) -> usize {
            if !self.enabled {
                return len;
            }
            let now = Instant::now();
            if self.backoff_until.is_some_and(|u| now < u) {
                return 0;
            }
            if self.sampled.is_none_or(|t| now.duration_since(t) >= SAMPLE) {
                let ours = 1 + len - s.parked.load(SeqCst).min(len);
                self.others = (self.sampler)().map_or(0, |r| r.saturating_sub(ours));
                self.sampled = Some(now);
            }
            len.min(self.cores.saturating_sub(self.others).saturating_sub(1))
        }

        /// `own`: how long the caller worked on the job.
        fn observe(&mut self, st: &JobStats, helpers_were_awake: bool, own: Duration) {
            // spinning helpers join within microseconds; none in 50 µs of
            // work means they are not running
            let absent =
                helpers_were_awake && st.helper_items == 0 && own > Duration::from_micros(50);
            if st.stalled || absent {
                self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                self.backoff_until = Some(Instant::now() + self.backoff);
            } else {
                self.backoff = Duration::ZERO;
                self.backoff_until = None;
            }
        }
    }

    impl SpinPool {
        pub(super) fn new(threads: usize, spin: Duration) -> Option<Self> {
            Self::with_sampler(threads, spin, runnable_threads)
        }

        /// As [`SpinPool::new`] with another source of the runnable-thread
        /// count.
        pub(super) fn with_sampler(
            threads: usize,
            spin: Duration,
            sampler: fn() -> Option<usize>,
        ) -> Option<Self> {
            let shared = Arc::new(Shared {
                epoch: AtomicU64::new(0),
                open: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                busy: AtomicUsize::new(0),
                parked: AtomicUsize::new(0),
                max_helpers: AtomicUsize::new(0),
                quiet: AtomicBool::new(false),
                next: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                helper_items: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                n: AtomicUsize::new(0),
                task: UnsafeCell::new(None),
                spin,
            });
            let adapt = Adapt {
                sampler,
                enabled: std::env::var("TRITTER_SPIN_ADAPT").map_or(true, |v| v.trim() != "0"),
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
                others: 0,
                sampled: None,
                backoff: Duration::ZERO,
                backoff_until: None,
            };
            let mut pool = SpinPool {
                shared,
                helpers: Vec::new(),
                lock: Mutex::new(adapt),
            };
            for i in 1..threads {
                let s = pool.shared.clone();
                // On a spawn failure `pool` drops, which stops the helpers
                // already started.
                let h = std::thread::Builder::new()
                    .name(format!("tritter-spin-{i}"))
                    .spawn(move || helper(s, i))
                    .ok()?;
                pool.helpers.push(h.thread().clone());
            }
            Some(pool)
        }

        /// Runs `f(i)` for every `i < n` on the caller and the helpers the
        /// checks allow (see the module docs); `None` (nothing run) when
        /// another caller holds the pool.
        pub(super) fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) -> Option<JobStats> {
            let mut ad = match self.lock.try_lock() {
                Ok(g) => g,
                // A panic in an earlier job's task left the pool consistent
                // (Close ran); only the lock's flag remains.
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            };
            let s = &*self.shared;
            let helpers = ad.helpers_allowed(self.helpers.len(), s);
            if helpers == 0 {
                // caller alone; helpers park instead of spinning meanwhile
                s.quiet.store(true, SeqCst);
                (0..n).for_each(f);
                return Some(JobStats {
                    helpers: 0,
                    helper_items: 0,
                    stalled: false,
                });
            }
            s.quiet.store(false, SeqCst);
            let awake = s.parked.load(SeqCst) == 0;
            // SAFETY: the lifetime is erased only for the duration of this
            // call: `Close` below waits until no helper is inside the job.
            let task: Task = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Task>(f) };
            // SAFETY: open is false and busy helpers leave without reading task.
            unsafe { *s.task.get() = Some(task) };
            s.n.store(n, SeqCst);
            s.next.store(0, SeqCst);
            s.done.store(0, SeqCst);
            s.helper_items.store(0, SeqCst);
            s.panicked.store(false, SeqCst);
            s.max_helpers.store(helpers, SeqCst);
            s.open.store(true, SeqCst);
            s.epoch.fetch_add(1, SeqCst);
            if s.parked.load(SeqCst) > 0 {
                for h in &self.helpers[..helpers] {
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
            let t0 = Instant::now();
            work(s, f, false);
            let t1 = Instant::now();
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
            let waited = t1.elapsed();
            let st = JobStats {
                helpers,
                helper_items: s.helper_items.load(SeqCst),
                // a helper held the caller up longer than its own work (and
                // long enough not to be a wake-up): it was not running
                stalled: waited > (t1 - t0).max(Duration::from_micros(50)),
            };
            ad.observe(&st, awake, t1 - t0);
            if s.panicked.load(SeqCst) {
                panic!("a tritter worker thread panicked");
            }
            Some(st)
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
    fn work(s: &Shared, f: &(dyn Fn(usize) + Sync), is_helper: bool) {
        let n = s.n.load(SeqCst);
        loop {
            let i = s.next.fetch_add(1, SeqCst);
            if i >= n {
                return;
            }
            f(i);
            if is_helper {
                s.helper_items.fetch_add(1, SeqCst);
            }
            s.done.fetch_add(1, SeqCst);
        }
    }

    /// Helper `id` (1-based).
    fn helper(s: Arc<Shared>, id: usize) {
        let mut seen = s.epoch.load(SeqCst);
        loop {
            // Spin for a new epoch (unless quiet), then park.
            let t0 = Instant::now();
            let mut k = 0u32;
            while s.epoch.load(SeqCst) == seen && !s.shutdown.load(SeqCst) {
                k = k.wrapping_add(1);
                if k.is_multiple_of(4096) {
                    // let other runnable threads (rayon's workers, the host's
                    // own) have this core while we wait; a no-op when idle
                    std::thread::yield_now();
                }
                if s.quiet.load(SeqCst) || (k.is_multiple_of(256) && t0.elapsed() > s.spin) {
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
            if id > s.max_helpers.load(SeqCst) {
                continue;
            }
            s.busy.fetch_add(1, SeqCst);
            if s.open.load(SeqCst) {
                // SAFETY: open and counted busy: the caller keeps the task
                // alive and unchanged until busy drops to zero.
                if let Some(t) = unsafe { *s.task.get() } {
                    let f = unsafe { &*t };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        work(&s, f, true)
                    }));
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
    if spin_pool(threads).and_then(|p| p.run(n, &g)).is_none() {
        (0..n).for_each(g);
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

    #[test]
    fn helpers_step_aside_when_cores_are_taken_or_a_helper_stalls() {
        use std::time::Duration;
        // a machine with nothing else runnable: the helper joins
        let idle = || Some(0);
        let pool = spin::SpinPool::with_sampler(2, Duration::from_micros(200), idle).unwrap();
        let caller = std::thread::current().id();
        assert_eq!(pool.run(64, &|_| {}).unwrap().helpers, 1);
        // a helper that holds an index for 200 ms stalls the caller (which
        // waits up to 100 ms for it to start): the next job runs on the
        // caller alone (backoff), a later one uses the helper again
        let started = std::sync::atomic::AtomicBool::new(false);
        let st = pool
            .run(8, &|_| {
                if std::thread::current().id() != caller {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                } else {
                    let t = std::time::Instant::now();
                    while !started.load(Ordering::SeqCst)
                        && t.elapsed() < Duration::from_millis(100)
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
            .unwrap();
        if st.helper_items > 0 {
            assert!(st.stalled, "{st:?}");
            let t = std::time::Instant::now();
            let next = pool.run(8, &|_| {}).unwrap();
            if t.elapsed() < Duration::from_millis(4) {
                assert_eq!(next.helpers, 0, "no helper during the backoff");
            }
            std::thread::sleep(Duration::from_millis(30));
            assert_eq!(pool.run(8, &|_| {}).unwrap().helpers, 1, "backoff over");
        }
        // every core taken by other threads: no helper at all
        let busy = || Some(64);
        let pool = spin::SpinPool::with_sampler(2, Duration::from_micros(200), busy).unwrap();
        for _ in 0..5 {
            let st = pool.run(16, &|_| {}).unwrap();
            assert_eq!((st.helpers, st.helper_items), (0, 0));
        }
    }
}
