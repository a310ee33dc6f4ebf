//! The threads that run application calls, so that a blocking application
//! (a sleep, a database query) never stalls the loop.
//!
//! A fixed number of threads take jobs from one queue in order. A job that
//! blocks holds its thread only: the others, and the loop, go on.
//!
//! Only one thread at a time can run Python (the GIL), so the pool does not
//! wake a second thread while one is running jobs: the running thread takes
//! the next job when it finishes one, keeping the GIL ([`Hold`]) from one
//! job to the next instead of handing it to another thread for every
//! request, and the threads sleep and wake much less. A thread counts as
//! running unless it waits where the pool is told of it ([`blocking`]: the
//! socket) or its job has run for [`STALL`] and is stalled: blocked where
//! the pool cannot see it (`time.sleep`, a database call that releases the
//! GIL), which the thread's CPU clock tells, and queued jobs do not wait for
//! it. A job that computes keeps its thread counted as running however
//! long it takes: another thread could not run Python beside it, only take
//! the GIL from it every switch interval. A job is queued for a thread that
//! is running; when none is, an idle thread is woken for it at once. The
//! loop looks for stalled jobs ([`Pool::check`]) when [`Pool::check`] says.
//! Idle threads are woken last in, first out: the thread woken is the one
//! whose stack and caches are warmest.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long a job runs before the pool looks whether it is blocked, so
/// that the jobs queued behind its thread go to another thread.
pub const STALL: Duration = Duration::from_millis(1);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// What a worker thread keeps from one job to the next and lets go of while
/// it waits for work: for WSGI, the GIL and the thread's Python state.
pub trait Hold: Send + Sync + 'static {
    /// Runs `body`, the thread's whole life, holding it.
    fn hold(&self, body: &mut dyn FnMut());
    /// Runs `wait` without it; called only from inside `body`.
    fn release(&self, wait: &mut (dyn FnMut() + Send));
}

/// Holds nothing: the jobs need no lock.
#[derive(Debug, Default)]
pub struct NoHold;

impl Hold for NoHold {
    fn hold(&self, body: &mut dyn FnMut()) {
        body()
    }

    fn release(&self, wait: &mut (dyn FnMut() + Send)) {
        wait()
    }
}

/// One thread, as the pool sees it.
#[derive(Debug, Clone, Copy, Default)]
struct Worker {
    /// Told to look for a job.
    woken: bool,
    /// When its current job started, while it runs one.
    started: Option<Instant>,
    /// Not counted as running: its job waits in [`blocking`], or has run
    /// for [`STALL`] and is stalled.
    aside: bool,
    /// The thread's CPU clock, once the thread has started (Linux).
    clock: Option<CpuClock>,
    /// The thread's CPU time at some instant, to measure its use since.
    sample: Option<Sample>,
}

/// A thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), readable from another
/// thread: the loop reads a worker's to tell a job that computes from one
/// that is blocked.
#[derive(Debug, Clone, Copy)]
struct CpuClock(#[cfg(target_os = "linux")] nix::libc::clockid_t);

impl CpuClock {
    /// The calling thread's clock.
    fn current() -> Option<CpuClock> {
        #[cfg(target_os = "linux")]
        {
            use nix::libc;
            let mut clock: libc::clockid_t = 0;
            // SAFETY: `clock` is a valid out-pointer for the call's duration.
            let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
            (rc == 0).then_some(CpuClock(clock))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// The CPU time its thread has used, user and system.
    fn read(self) -> Option<Duration> {
        #[cfg(target_os = "linux")]
        {
            let time = nix::time::clock_gettime(nix::time::ClockId::from_raw(self.0)).ok()?;
            Some(Duration::new(time.tv_sec() as u64, time.tv_nsec() as u32))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

/// A thread's CPU time `cpu` read at `at`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu: Duration,
}

impl Worker {
    /// Whether its job, started at `started` and run for [`STALL`] by
    /// `now`, is stalled: its thread had the CPU for less than a quarter of
    /// the time since the job started or since the last sample, whichever
    /// is later (a blocked thread has next to none; one that computes has
    /// half even when another thread competes for its CPU). Not while that
    /// cannot be told yet (the last sample too recent: the time measured is
    /// at least [`STALL`], as a thread that computes can be off its CPU for
    /// a moment); without a clock every such job is stalled.
    /// Samples are renewed at most once per [`STALL`], so a blocked job is
    /// found [`STALL`] to twice that after it started (later by the loop's
    /// timer resolution), and the loop reads a clock only for a job past
    /// [`STALL`], never per request.
    fn stalled(&mut self, started: Instant, now: Instant) -> bool {
        let (Some(clock), Some(base)) = (self.clock, self.sample) else { return true };
        let Some(cpu) = clock.read() else { return true };
        if now.saturating_duration_since(base.at) >= STALL {
            self.sample = Some(Sample { at: now, cpu });
        }
        // A sample from before the job counts the CPU of earlier jobs too,
        // so a low use since it still proves the job blocked.
        let window = now.saturating_duration_since(base.at.max(started));
        window >= STALL && cpu.saturating_sub(base.cpu) < window / 4
    }
}

struct State {
    jobs: VecDeque<Job>,
    /// Idle threads by index, the most recently idle last.
    idle: Vec<usize>,
    workers: Vec<Worker>,
    /// Threads running a job (or woken to take one) and not set aside.
    running: usize,
}

impl State {
    /// Sets thread `i` aside (it stops counting as running); false if it was.
    fn set_aside(&mut self, i: usize) -> bool {
        let worker = &mut self.workers[i];
        if worker.aside {
            return false;
        }
        worker.aside = true;
        self.running -= 1;
        true
    }

    /// Counts thread `i` as running again.
    fn take_back(&mut self, i: usize) {
        let worker = &mut self.workers[i];
        if std::mem::take(&mut worker.aside) {
            self.running += 1;
        }
    }
}

struct Inner {
    state: Mutex<State>,
    /// One per thread, each waited on with `state`'s lock.
    wake: Vec<Condvar>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the most recently idle thread, if any is idle.
    fn wake_one(&self, state: &mut State) {
        if let Some(i) = state.idle.pop() {
            state.workers[i].woken = true;
            state.running += 1;
            self.wake[i].notify_one();
        }
    }

    /// Wakes a thread if jobs wait and none is running.
    fn wake_if_needed(&self, state: &mut State) {
        if state.running == 0 && !state.jobs.is_empty() {
            self.wake_one(state);
        }
    }
}

thread_local! {
    /// The pool of the current worker thread, and the thread's index in it.
    static CURRENT: RefCell<Option<(Arc<Inner>, usize)>> = const { RefCell::new(None) };
}

/// Runs `wait`, a wait for the socket or a lock, telling the current
/// thread's pool (if it is a pool thread) that this thread is not running
/// meanwhile, so that queued jobs go to another thread.
pub fn blocking<T>(wait: impl FnOnce() -> T) -> T {
    let current = CURRENT.with(|c| c.borrow().clone());
    let Some((pool, i)) = current else { return wait() };
    let set_aside = {
        let mut state = pool.lock();
        let set_aside = state.set_aside(i);
        pool.wake_if_needed(&mut state);
        set_aside
    };
    let result = wait();
    if set_aside {
        pool.lock().take_back(i);
    }
    result
}

/// Whether jobs wait in the current worker thread's pool: its thread will
/// take the next one when it finishes its own (false off a pool thread).
pub fn more_queued() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|(pool, _)| !pool.lock().jobs.is_empty()))
}

/// A fixed pool of worker threads.
pub struct Pool {
    inner: Arc<Inner>,
    threads: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("threads", &self.threads).finish()
    }
}

impl Pool {
    /// Starts `threads` worker threads (at least one), each holding `hold`
    /// while it runs jobs. They live as long as the process: the port exits
    /// without joining them.
    pub fn new(threads: usize, hold: Arc<dyn Hold>) -> std::io::Result<Pool> {
        let threads = threads.max(1);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                // Thread 0 on top: the first woken.
                idle: (0..threads).rev().collect(),
                workers: vec![Worker::default(); threads],
                running: 0,
            }),
            wake: (0..threads).map(|_| Condvar::new()).collect(),
        });
        for i in 0..threads {
            let inner = Arc::clone(&inner);
            let hold = Arc::clone(&hold);
            thread::Builder::new().name(format!("wsgi-{i}")).spawn(move || {
                CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(&inner), i)));
                hold.hold(&mut || work(&inner, &*hold, i));
            })?;
        }
        Ok(Pool { inner, threads })
    }

    /// Queues `job` at `now`; wakes a thread unless one is running (it
    /// takes the job when it finishes its own).
    pub fn submit(&self, now: Instant, job: impl FnOnce() + Send + 'static) {
        let mut state = self.inner.lock();
        state.jobs.push_back(Box::new(job));
        set_aside_slow(&mut state, now);
        self.inner.wake_if_needed(&mut state);
    }

    /// Sets aside the threads whose job has run for [`STALL`] by `now`, and
    /// wakes a thread for the queued jobs if none is running then; returns
    /// when to check again, as long as jobs wait.
    pub fn check(&self, now: Instant) -> Option<Instant> {
        let mut state = self.inner.lock();
        if state.jobs.is_empty() {
            return None;
        }
        let next = set_aside_slow(&mut state, now);
        self.inner.wake_if_needed(&mut state);
        Some(next)
    }
}

/// Sets aside the running threads whose job has run for [`STALL`] by `now`
/// and is stalled ([`Worker::stalled`]); returns when to look again.
fn set_aside_slow(state: &mut State, now: Instant) -> Instant {
    let mut next = now + STALL;
    for i in 0..state.workers.len() {
        let Worker { started: Some(started), aside: false, .. } = state.workers[i] else { continue };
        if now.saturating_duration_since(started) < STALL {
            next = next.min(started + STALL);
        } else if state.workers[i].stalled(started, now) {
            state.set_aside(i);
        } else if let Some(sample) = state.workers[i].sample {
            next = next.min((sample.at + STALL).max(now + STALL / 4));
        }
    }
    next
}

/// Makes the calling thread, the loop, yield to the worker threads: its
/// wake-ups no longer preempt a running worker on the same CPU
/// (`SCHED_BATCH`, sched(7)); it runs when a worker waits or its time slice
/// ends, and at once on an idle CPU. Without it, with the port on one CPU,
/// every request arriving while a worker runs the application woke the loop
/// in the middle of the application's call: two context switches per
/// request, and the call stretched past [`STALL`] so that a second worker
/// was woken to contend for the GIL (`docs/performance.md`). Threads
/// created by the caller afterwards inherit the policy, so call it after
/// [`Pool::new`]. Linux only; elsewhere it does nothing.
pub fn yield_to_workers() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::libc;
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call's duration.
        let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_BATCH, &param) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// A worker thread's life: sleep (without `hold`) until woken, then take
/// jobs until there is none.
fn work(inner: &Inner, hold: &dyn Hold, i: usize) {
    if let Some(clock) = CpuClock::current() {
        let sample = clock.read().map(|cpu| Sample { at: Instant::now(), cpu });
        let mut state = inner.lock();
        state.workers[i].clock = Some(clock);
        state.workers[i].sample = sample;
    }
    loop {
        hold.release(&mut || {
            let mut state = inner.lock();
            while !state.workers[i].woken {
                state = inner.wake[i].wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.workers[i].woken = false;
        });
        loop {
            let job = {
                let mut state = inner.lock();
                state.take_back(i);
                match state.jobs.pop_front() {
                    Some(job) => {
                        state.workers[i].started = Some(Instant::now());
                        Some(job)
                    }
                    None => {
                        state.workers[i].started = None;
                        state.running -= 1;
                        state.idle.push(i);
                        None
                    }
                }
            };
            match job {
                Some(job) => job(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pool(threads: usize) -> Pool {
        Pool::new(threads, Arc::new(NoHold)).unwrap()
    }

    #[cfg(target_os = "linux")]
    fn policy() -> nix::libc::c_int {
        unsafe { nix::libc::sched_getscheduler(0) }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_loop_yields_to_workers_started_before() {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let pool = pool(1);
            yield_to_workers().unwrap();
            let (worker_tx, worker_rx) = mpsc::channel();
            pool.submit(Instant::now(), move || worker_tx.send(policy()).unwrap());
            tx.send((policy(), worker_rx.recv().unwrap())).unwrap();
        });
        let (the_loop, worker) = rx.recv().unwrap();
        assert_eq!(the_loop, nix::libc::SCHED_BATCH);
        assert_eq!(worker, nix::libc::SCHED_OTHER);
    }

    #[test]
    fn a_blocked_job_does_not_hold_the_others() {
        let pool = pool(2);
        let (release, blocked) = mpsc::channel::<()>();
        pool.submit(Instant::now(), move || {
            let _ = blocked.recv();
        });
        let (done, finished) = mpsc::channel();
        for i in 0..20 {
            let done = done.clone();
            pool.submit(Instant::now(), move || done.send(i).unwrap());
        }
        // The loop's part: it checks the queue at the time the pool names.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 20 && Instant::now() < deadline {
            pool.check(Instant::now());
            if let Ok(i) = finished.recv_timeout(STALL) {
                got.push(i);
            }
        }
        got.sort_unstable();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        release.send(()).unwrap();
    }

    #[test]
    fn a_thread_blocked_in_a_known_wait_hands_the_queue_on_at_once() {
        let pool = pool(2);
        let (release, blocked) = mpsc::channel::<()>();
        pool.submit(Instant::now(), move || {
            blocking(|| {
                let _ = blocked.recv();
            })
        });
        let (done, finished) = mpsc::channel();
        for i in 0..5 {
            let done = done.clone();
            pool.submit(Instant::now(), move || done.send(i).unwrap());
        }
        // No check by the loop: the blocked thread woke the other itself.
        let mut got: Vec<i32> = (0..5).map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..5).collect::<Vec<_>>());
        release.send(()).unwrap();
    }

    #[test]
    fn jobs_queued_behind_a_slow_job_go_to_another_thread_at_once() {
        let pool = pool(2);
        let (start, started) = mpsc::channel::<()>();
        let (release, blocked) = mpsc::channel::<()>();
        pool.submit(Instant::now(), move || {
            start.send(()).unwrap();
            let _ = blocked.recv();
        });
        started.recv().unwrap();
        thread::sleep(STALL * 3);
        let (done, finished) = mpsc::channel();
        pool.submit(Instant::now(), move || done.send(()).unwrap());
        // No check by the loop: the submission saw the first job past STALL.
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
        release.send(()).unwrap();
    }

    /// Queues five jobs behind one that computes for 30 STALLs, the loop
    /// checking the pool meanwhile; whether they all waited for its thread.
    #[cfg(target_os = "linux")]
    fn queued_behind_a_computing_job() -> bool {
        let pool = pool(2);
        let (start, started) = mpsc::channel();
        pool.submit(Instant::now(), move || {
            start.send(thread::current().id()).unwrap();
            let until = Instant::now() + STALL * 30;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        });
        let computing = started.recv().unwrap();
        let (done, finished) = mpsc::channel();
        for _ in 0..5 {
            let done = done.clone();
            pool.submit(Instant::now(), move || done.send(thread::current().id()).unwrap());
        }
        let mut ids = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ids.len() < 5 && Instant::now() < deadline {
            pool.check(Instant::now());
            if let Ok(id) = finished.recv_timeout(STALL) {
                ids.push(id);
            }
        }
        assert_eq!(ids.len(), 5);
        ids.iter().all(|id| *id == computing)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn jobs_queued_behind_a_computing_job_wait_for_its_thread() {
        // The checks see the job past STALL but using its CPU: waking the
        // other thread would only have it wait for the GIL. On a loaded
        // machine the computing thread can be off its CPU for a whole STALL
        // and be taken for stalled, so one of three tries must show it; a
        // pool that sets every long job aside fails all three.
        assert!((0..3).any(|_| queued_behind_a_computing_job()), "the queued jobs went to another thread");
    }

    #[test]
    fn a_running_thread_takes_the_queued_jobs_itself() {
        let pool = pool(4);
        let (start, started) = mpsc::channel::<()>();
        let (go, wait) = mpsc::channel::<()>();
        pool.submit(Instant::now(), move || {
            start.send(()).unwrap();
            let _ = wait.recv();
        });
        started.recv().unwrap();
        let (done, finished) = mpsc::channel();
        for _ in 0..10 {
            let done = done.clone();
            pool.submit(Instant::now(), move || done.send(thread::current().id()).unwrap());
        }
        // Nobody else was woken: the jobs wait for the running thread.
        assert!(finished.recv_timeout(Duration::from_millis(50)).is_err());
        go.send(()).unwrap();
        let ids: Vec<_> = (0..10).map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "one thread ran them all");
    }
}
