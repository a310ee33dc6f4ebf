//! The port never outlives the VM, even while Python is stuck, and even when
//! its stdin is held open by some other process.
//!
//! The loop learns that the VM is gone from end of file on stdin, but only
//! when it gets to read stdin: a protocol stuck in a callback (an infinite
//! loop, a long sleep, a deadlock) would keep the port alive forever. A
//! watchdog thread waits for the hang-up on stdin without reading it; once
//! the VM has hung up, the loop gets a grace period to end on its own
//! (closing every connection with `connection_lost`), and if it has not, the
//! process exits at once.
//!
//! End of file needs every copy of the VM's end of the pipe closed: a
//! process that inherited one (a stray child of the VM) keeps it from ever
//! coming. On Linux the port therefore also asks for `SIGHUP` when its parent
//! dies (`PR_SET_PDEATHSIG`). The parent is OTP's `erl_child_setup`, a
//! single-threaded helper that lives exactly as long as the VM (the death
//! signal follows the parent *thread* that forked the port, so a
//! multi-threaded parent would not do). The signal is caught: it ends the
//! loop the way end of file does, with the same grace period.

use std::fs::File;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::readiness::Waker;

/// How long the loop may take to end on its own after the VM has gone.
pub const GRACE: Duration = Duration::from_secs(2);

/// Exit status when the watchdog ends the port.
pub const EXIT_STUCK: i32 = 3;

/// Write end of the pipe the `SIGHUP` handler signals the watchdog through.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// Set once the parent has died.
static PARENT_GONE: AtomicBool = AtomicBool::new(false);

/// Wakes the loop when the parent dies.
static LOOP_WAKER: OnceLock<Arc<Waker>> = OnceLock::new();

/// Whether the port's parent has died: the loop ends as on end of file.
pub fn parent_gone() -> bool {
    PARENT_GONE.load(Ordering::Relaxed)
}

/// Lets the watchdog wake the loop when the parent dies.
pub fn attach_waker(waker: Arc<Waker>) {
    let _ = LOOP_WAKER.set(waker);
}

extern "C" fn on_parent_death(_: nix::libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe already holds a
        // wake-up.
        unsafe { nix::libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Starts the watchdog on a duplicate of the frame input; `vm_pid` is the
/// VM's OS pid, for saying what happened.
pub fn watch(input: &File, vm_pid: i32) -> std::io::Result<()> {
    let input = input.try_clone()?;
    let (signal_read, signal_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    SIGNAL_PIPE.store(signal_write.into_raw_fd(), Ordering::Relaxed);
    ask_for_parent_death_signal(vm_pid)?;
    std::thread::Builder::new().name("py_reactor_lifeline".into()).spawn(move || {
        let cause = wait_for_the_end(&input, &signal_read, vm_pid);
        std::thread::sleep(GRACE);
        eprintln!(
            "py_reactor_port: {cause}, and the loop did not end within {GRACE:?} \
             (a Python call is still running: setup code, a request or a protocol callback); exiting"
        );
        // SAFETY: `_exit` ends the process without running atexit handlers
        // or destructors, which could wait on the GIL the stuck thread holds.
        unsafe { nix::libc::_exit(EXIT_STUCK) };
    })?;
    Ok(())
}

/// Blocks until stdin hangs up or the parent dies; says which.
fn wait_for_the_end(input: &File, signal: &OwnedFd, vm_pid: i32) -> String {
    // Hang-ups are reported whatever the requested events; asking for none
    // on stdin keeps unread frames from waking the thread.
    let mut fds = [PollFd::new(input.as_fd(), PollFlags::empty()), PollFd::new(signal.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                let hung_up = fds[0].revents().unwrap_or(PollFlags::empty());
                if hung_up.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                    return if vm_alive(vm_pid) {
                        format!("the VM (os pid {vm_pid}) closed the port's input")
                    } else {
                        format!("the VM (os pid {vm_pid}) is gone")
                    };
                }
                if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    PARENT_GONE.store(true, Ordering::Relaxed);
                    if let Some(waker) = LOOP_WAKER.get() {
                        let _ = waker.wake();
                    }
                    return format!(
                        "the port's parent process died (the VM, os pid {vm_pid}, is {})",
                        if vm_alive(vm_pid) { "still running" } else { "gone" }
                    );
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return format!("watching stdin failed ({e})"),
        }
    }
}

fn vm_alive(vm_pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(vm_pid), None).is_ok()
}

/// `SIGHUP` when the parent dies, caught by [`on_parent_death`].
#[cfg(target_os = "linux")]
fn ask_for_parent_death_signal(_vm_pid: i32) -> std::io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_parent_death), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only calls write(2), which is async-signal-safe.
    unsafe { sigaction(Signal::SIGHUP, &action)? };
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(Signal::SIGHUP)?;
    if nix::unistd::getppid() != parent {
        // The parent died before the request took effect.
        on_parent_death(0);
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn ask_for_parent_death_signal(_vm_pid: i32) -> std::io::Result<()> {
    Ok(())
}
