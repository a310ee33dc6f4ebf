//! The port never outlives the VM, even while Python is stuck.
//!
//! The loop learns that the VM is gone from end of file on stdin, but only
//! when it gets to read stdin: a protocol stuck in a callback (an infinite
//! loop, a long sleep, a deadlock) would keep the port alive forever. A
//! watchdog thread waits for the hang-up on stdin without reading it; once
//! the VM has hung up, the loop gets a grace period to end on its own
//! (closing every connection with `connection_lost`), and if it has not, the
//! process exits at once.

use std::fs::File;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How long the loop may take to end on its own after the VM has gone.
pub const GRACE: Duration = Duration::from_secs(2);

/// Exit status when the watchdog ends the port.
pub const EXIT_STUCK: i32 = 3;

/// Starts the watchdog on a duplicate of the frame input.
pub fn watch(input: &File) -> std::io::Result<()> {
    let input = input.try_clone()?;
    std::thread::Builder::new().name("py_reactor_lifeline".into()).spawn(move || {
        // Hang-ups are reported whatever the requested events; asking for
        // none keeps unread frames from waking the thread.
        let mut fds = [PollFd::new(input.as_fd(), PollFlags::empty())];
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                    if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                        break;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        std::thread::sleep(GRACE);
        eprintln!(
            "py_reactor_port: the VM is gone and the loop did not end within {GRACE:?} (a Python callback is stuck); exiting"
        );
        // SAFETY: `_exit` ends the process without running atexit handlers
        // or destructors, which could wait on the GIL the stuck thread holds.
        unsafe { nix::libc::_exit(EXIT_STUCK) };
    })?;
    Ok(())
}
