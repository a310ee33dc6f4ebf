//! Blocking reads and writes on a connection's non-blocking socket, for the
//! worker thread that owns the connection while its application runs.
//!
//! Each call first tries the socket as it is and waits (`poll(2)`) only when
//! it would block, so the caller can hold the GIL for the attempt and
//! release it only for the wait ([`Stream::wait`]).

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::python::native::Shared;

/// What a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// A connection's socket, borrowed by number by the thread that owns it.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub fd: RawFd,
}

impl Stream {
    fn borrowed(&self) -> BorrowedFd<'_> {
        // SAFETY: the connection stays open while its worker runs: the loop
        // closes a connection in the hands of a worker only when the port
        // stops, after shutting it down, and then the worker's calls fail.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    /// One `read(2)`; `Ok(None)` when it would block.
    pub fn try_read(&self, buf: &mut Vec<u8>, max: usize) -> Result<Option<usize>, Errno> {
        buf.reserve(max);
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(max);
        // SAFETY: the kernel writes at most `len` bytes into spare capacity
        // that `buf` owns; exactly the bytes read are then marked initialised.
        let n = unsafe { nix::libc::read(self.fd, spare.as_mut_ptr().cast(), len) };
        match Errno::result(n) {
            Ok(n) => {
                let n = n as usize;
                // SAFETY: `read` initialised `n` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                if let Some(s) = Shared::get() {
                    s.bytes_in.fetch_add(n as u64, Relaxed);
                }
                Ok(Some(n))
            }
            Err(Errno::EAGAIN) => Ok(None),
            Err(Errno::EINTR) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One `write(2)`; `Ok(0)` when it would block.
    pub fn try_write(&self, data: &[u8]) -> Result<usize, Errno> {
        match nix::unistd::write(self.borrowed(), data) {
            Ok(n) => {
                if let Some(s) = Shared::get() {
                    s.bytes_out.fetch_add(n as u64, Relaxed);
                }
                Ok(n)
            }
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// One `sendfile(2)` of up to `count` bytes of `file` from `offset`;
    /// `Ok(0)` when the socket would block.
    pub fn try_sendfile(&self, file: RawFd, offset: &mut i64, count: usize) -> Result<usize, Errno> {
        // SAFETY: the file descriptor is borrowed for the call only; the
        // caller keeps the file open.
        let file = unsafe { BorrowedFd::borrow_raw(file) };
        match nix::sys::sendfile::sendfile64(self.borrowed(), file, Some(offset), count) {
            Ok(n) => {
                if let Some(s) = Shared::get() {
                    s.bytes_out.fetch_add(n as u64, Relaxed);
                }
                Ok(n)
            }
            Err(Errno::EAGAIN | Errno::EINTR) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Waits until the socket is ready in `direction`, at most `timeout`.
    /// `Err(ETIMEDOUT)` when the time passed; a hang-up or error counts as
    /// ready (the next call reports it).
    pub fn wait(&self, direction: Direction, timeout: Duration) -> Result<(), Errno> {
        let flags = match direction {
            Direction::Read => PollFlags::POLLIN,
            Direction::Write => PollFlags::POLLOUT,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(self.borrowed(), flags)];
        loop {
            match poll(&mut fds, PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)) {
                Ok(0) => return Err(Errno::ETIMEDOUT),
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data`, waiting as needed (call with the GIL released).
    pub fn write_all(&self, mut data: &[u8], timeout: Duration) -> Result<(), Errno> {
        while !data.is_empty() {
            let n = self.try_write(data)?;
            if n == 0 {
                self.wait(Direction::Write, timeout)?;
            }
            data = &data[n..];
        }
        Ok(())
    }
}
