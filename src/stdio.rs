//! Moves the frame stream off fds 0 and 1 before Python starts.
//!
//! The VM's `{packet,4}` stream arrives on fd 0 and leaves on fd 1. Python,
//! C extensions and child processes all believe fd 1 is theirs to write, so
//! the port keeps private close-on-exec duplicates of both for the frames,
//! points fd 1 at stderr and fd 0 at `/dev/null`. Nothing written to "stdout"
//! after this can reach the VM except through the port's own writer.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The frame stream's two ends, now on private descriptors.
#[derive(Debug)]
pub struct FrameStream {
    /// Frames from the VM, non-blocking.
    pub input: File,
    /// Frames to the VM, blocking.
    pub output: File,
}

/// Takes fds 0 and 1 for the frame stream and leaves harmless stand-ins.
pub fn take_frame_stream() -> io::Result<FrameStream> {
    let input = private_copy(0)?;
    let output = private_copy(1)?;
    let devnull = File::open("/dev/null")?;
    nix::unistd::dup2_stdin(devnull.as_fd())?;
    nix::unistd::dup2_stdout(std::io::stderr().as_fd())?;
    let flags = OFlag::from_bits_truncate(fcntl(&input, FcntlArg::F_GETFL)?);
    fcntl(&input, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(FrameStream { input: File::from(input), output: File::from(output) })
}

fn private_copy(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: fds 0 and 1 are open for the life of the process (the VM
    // spawned us with them).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let copy = fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned a fresh descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Signal dispositions the port wants whatever Python or the VM set:
/// SIGPIPE ignored (a closed peer is an `EPIPE` on that connection, not the
/// death of the port) and SIGINT ignored (the VM ends the port by closing
/// stdin; a Ctrl-C in the VM's shell must not kill it).
pub fn set_signal_dispositions() -> nix::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code.
    unsafe {
        signal(Signal::SIGPIPE, SigHandler::SigIgn)?;
        signal(Signal::SIGINT, SigHandler::SigIgn)?;
    }
    Ok(())
}
