//! The threads that run application calls, so that a blocking application
//! (a sleep, a database query) never stalls the loop.
//!
//! A fixed number of threads take jobs from one queue in order. A job that
//! blocks holds its thread only: the others, and the loop, go on.
//!
//! Only one thread at a time is meant to run Python (the GIL), so the pool
//! does not wake a second thread while one is running jobs: the running
//! thread takes the next job when it finishes one, keeping the GIL
//! ([`Hold`]) from one job to the next instead of handing it to another
//! thread for every request, and the threads sleep and wake much less. A
//! second thread is woken when no thread is running (all idle, or blocked
//! in a wait the pool is told of, [`blocking`]), or when the running thread
//! makes no progress: the job at the head of the queue has waited
//! [`STALL`] with no job taken meanwhile, which is how a job blocked where
//! the pool cannot see it (`time.sleep`, a database call that releases the
//! GIL) never holds the others back for longer than that. The loop checks
//! for that ([`Pool::check`]) at the time [`Pool::check`] names. Idle
//! threads are woken last in, first out: the thread woken is the one whose
//! stack and caches are warmest.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long the head of the queue may wait, with no job taken by any
/// thread meanwhile, before another thread is woken for it.
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

struct Queued {
    job: Job,
    since: Instant,
}

struct State {
    jobs: VecDeque<Queued>,
    /// Idle threads by index, the most recently idle last.
    idle: Vec<usize>,
    /// Per thread: told to look for a job.
    woken: Vec<bool>,
    /// Threads running a job (or woken to take one) and not in a wait the
    /// pool was told of.
    running: usize,
    /// When a thread last took a job, or another thread was woken for a
    /// stalled queue.
    progress: Instant,
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
            state.woken[i] = true;
            state.running += 1;
            self.wake[i].notify_one();
        }
    }
}

thread_local! {
    /// The pool of the current worker thread.
    static CURRENT: RefCell<Option<Arc<Inner>>> = const { RefCell::new(None) };
}

/// Runs `wait`, a wait for the socket or a lock, telling the current
/// thread's pool (if it is a pool thread) that this thread is not running
/// meanwhile, so that queued jobs go to another thread.
pub fn blocking<T>(wait: impl FnOnce() -> T) -> T {
    let pool = CURRENT.with(|c| c.borrow().clone());
    let Some(pool) = pool else { return wait() };
    {
        let mut state = pool.lock();
        state.running -= 1;
        if state.running == 0 && !state.jobs.is_empty() {
            pool.wake_one(&mut state);
        }
    }
    let result = wait();
    pool.lock().running += 1;
    result
}

/// Whether jobs wait in the current worker thread's pool: its thread will
/// take the next one when it finishes its own (false off a pool thread).
pub fn more_queued() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|pool| !pool.lock().jobs.is_empty()))
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
                woken: vec![false; threads],
                running: 0,
                progress: Instant::now(),
            }),
            wake: (0..threads).map(|_| Condvar::new()).collect(),
        });
        for i in 0..threads {
            let inner = Arc::clone(&inner);
            let hold = Arc::clone(&hold);
            thread::Builder::new().name(format!("wsgi-{i}")).spawn(move || {
                CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(&inner)));
                hold.hold(&mut || work(&inner, &*hold, i));
            })?;
        }
        Ok(Pool { inner, threads })
    }

    /// Queues `job`, which was ready at `now`; wakes a thread unless one is
    /// running (it takes the job when it finishes its own).
    pub fn submit(&self, now: Instant, job: impl FnOnce() + Send + 'static) {
        let mut state = self.inner.lock();
        state.jobs.push_back(Queued { job: Box::new(job), since: now });
        if state.running == 0 {
            self.inner.wake_one(&mut state);
        }
    }

    /// Wakes another thread if the queue has stalled by `now`; returns when
    /// to check again, as long as jobs wait.
    pub fn check(&self, now: Instant) -> Option<Instant> {
        let mut state = self.inner.lock();
        let head = state.jobs.front()?.since;
        let since = head.max(state.progress);
        if now.saturating_duration_since(since) < STALL {
            return Some(since + STALL);
        }
        // With every thread busy, the next to finish takes the head.
        self.inner.wake_one(&mut state);
        state.progress = now;
        Some(now + STALL)
    }
}

/// A worker thread's life: sleep (without `hold`) until woken, then take
/// jobs until there is none.
fn work(inner: &Inner, hold: &dyn Hold, i: usize) {
    loop {
        hold.release(&mut || {
            let mut state = inner.lock();
            while !state.woken[i] {
                state = inner.wake[i].wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.woken[i] = false;
        });
        loop {
            let job = {
                let mut state = inner.lock();
                match state.jobs.pop_front() {
                    Some(queued) => {
                        state.progress = Instant::now();
                        Some(queued.job)
                    }
                    None => {
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
