//! A process forked by Python never serves.
//!
//! A protocol may call `os.fork()`. If the child returns into the port (from
//! a callback, a request or the setup code) instead of ending itself, it
//! holds copies of everything the port has: the frame stream, the poller,
//! every connection. Left alone it would wait on the same poller, read the
//! same sockets and write frames into the same stream as its parent.
//!
//! So the port marks a fork child the moment it is born (a `pthread_atfork`
//! child handler, which `os.fork()` runs through libc's `fork`), and the
//! places where the port takes control back from Python end such a child at
//! once with `_exit`, before it can touch a connection or the VM: around
//! every protocol callback, after every request, at the top of every loop
//! turn, and in the single writer of frames. The mark is one atomic load, so
//! the check costs no system call on the hot path, where comparing
//! `getpid()` with the port's own pid would cost one per callback.
//! A child that `exec`s or ends itself (`os._exit`, as `multiprocessing`
//! does) never comes back and is not affected.

use std::sync::atomic::{AtomicBool, Ordering};

static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn mark_child() {
    FORKED.store(true, Ordering::Relaxed);
}

/// Starts watching for forks. Called once by `serve`, before Python starts.
pub fn install() -> std::io::Result<()> {
    // SAFETY: the handler only stores to an atomic, which is safe in the
    // child of a multi-threaded fork.
    let rc = unsafe { nix::libc::pthread_atfork(None, None, Some(mark_child)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Whether this process is a child forked from the port.
#[inline]
pub fn is_child() -> bool {
    FORKED.load(Ordering::Relaxed)
}

/// Ends this process at once if it is a fork child; `after` says what it
/// came back from, for the line it leaves on stderr.
#[inline]
pub fn exit_if_child(after: &str) {
    if is_child() {
        leave(after);
    }
}

#[cold]
fn leave(after: &str) -> ! {
    let line = format!(
        "py_reactor_port: process {} was forked by Python and came back to the port after {after}; \
         it exits without serving (end a forked child with os._exit)\n",
        std::process::id()
    );
    // SAFETY: a plain write of a live buffer to stderr, then `_exit`, which
    // runs no destructor or atexit handler that could touch what the parent
    // owns (the frame stream, the connections, Python's state).
    unsafe {
        nix::libc::write(2, line.as_ptr().cast(), line.len());
        nix::libc::_exit(0)
    }
}
