//! The threads that run application calls, so that a blocking application
//! (a sleep, a database query) never stalls the loop.
//!
//! A fixed number of threads take jobs from one queue in order. A job that
//! blocks holds its thread only: the others, and the loop, go on.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

/// A fixed pool of worker threads.
pub struct Pool {
    queue: Arc<Queue>,
    threads: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("threads", &self.threads).finish()
    }
}

impl Pool {
    /// Starts `threads` worker threads (at least one). They live as long as
    /// the process: the port exits without joining them.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let queue = Arc::new(Queue::default());
        let threads = threads.max(1);
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            thread::Builder::new().name(format!("wsgi-{i}")).spawn(move || work(&queue))?;
        }
        Ok(Pool { queue, threads })
    }

    /// Queues `job` for the next free thread.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        let mut jobs = self.queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.push_back(Box::new(job));
        drop(jobs);
        self.queue.ready.notify_one();
    }
}

fn work(queue: &Queue) {
    loop {
        let job = {
            let mut jobs = queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match jobs.pop_front() {
                    Some(job) => break job,
                    None => jobs = queue.ready.wait(jobs).unwrap_or_else(|p| p.into_inner()),
                }
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocked_job_does_not_hold_the_others() {
        let pool = Pool::new(2).unwrap();
        let (release, blocked) = mpsc::channel::<()>();
        pool.submit(move || {
            let _ = blocked.recv();
        });
        let (done, finished) = mpsc::channel();
        for i in 0..20 {
            let done = done.clone();
            pool.submit(move || done.send(i).unwrap());
        }
        let mut got: Vec<i32> = (0..20).map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        release.send(()).unwrap();
    }
}
