//! Requests from Python to the VM that wait for their answer
//! (`erlang.whereis`, `erlang.call`).
//!
//! The calling callback blocks: the port sends `{vm_request, Id, Request}`
//! and reads the frame stream from the VM itself until `{vm_reply, Id,
//! Result}` comes. Every other frame read meanwhile (requests, handoffs) is
//! kept, in order, for the loop, which serves them as soon as the callback
//! returns. So the loop and the waits share one [`InputChannel`]: the
//! descriptor, the frame reader with any partial frame, and the frames kept.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use eetf::Term;

use crate::framing::{Fill, FrameError, FrameReader, MAX_FRAME};
use crate::terms::{self, as_atom, as_u64};

/// A frame as the reader returns it.
pub type Frame = Result<Vec<u8>, FrameError>;

struct Input {
    file: File,
    reader: FrameReader,
    /// Frames read by a wait that were not its reply, for the loop.
    queued: VecDeque<Frame>,
    eof: bool,
}

/// The frame stream from the VM, shared by the loop and waiting requests.
pub struct InputChannel {
    input: Mutex<Input>,
    has_queued: AtomicBool,
}

static CHANNEL: OnceLock<Arc<InputChannel>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the loop gets from [`InputChannel::read_available`].
pub struct Available {
    pub frames: Vec<Frame>,
    pub fill: io::Result<Fill>,
    /// Bytes of a partial frame left in the reader.
    pub partial: usize,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("no Erlang VM is attached to this process (only a context's port can reach the VM)")]
    NoVm,
    #[error("the VM closed the port while a request waited for its answer")]
    VmGone,
    #[error("no answer from the VM within {0:?}")]
    Timeout(Duration),
    #[error("reading from the VM failed: {0}")]
    Io(#[from] io::Error),
}

impl InputChannel {
    /// Takes `file` (the frame stream from the VM) as the process's one
    /// input channel.
    pub fn install(file: File) -> Arc<InputChannel> {
        let channel = Arc::new(InputChannel {
            input: Mutex::new(Input { file, reader: FrameReader::new(MAX_FRAME), queued: VecDeque::new(), eof: false }),
            has_queued: AtomicBool::new(false),
        });
        // A port serves one VM: a second install (tests) keeps the first.
        let _ = CHANNEL.set(Arc::clone(&channel));
        channel
    }

    fn lock(&self) -> MutexGuard<'_, Input> {
        self.input.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether waits kept frames that the loop has not taken yet.
    pub fn has_queued(&self) -> bool {
        self.has_queued.load(Ordering::Acquire)
    }

    /// The frames kept by waits.
    pub fn take_queued(&self) -> Vec<Frame> {
        if !self.has_queued() {
            return Vec::new();
        }
        let mut input = self.lock();
        self.has_queued.store(false, Ordering::Release);
        input.queued.drain(..).collect()
    }

    /// For the loop, on readability: the frames kept by waits, then what the
    /// descriptor has now.
    pub fn read_available(&self) -> Available {
        let mut input = self.lock();
        self.has_queued.store(false, Ordering::Release);
        let Input { file, reader, queued, eof } = &mut *input;
        let fill = if *eof { Ok(Fill::Eof) } else { reader.fill(file) };
        if matches!(fill, Ok(Fill::Eof)) {
            *eof = true;
        }
        let mut frames: Vec<Frame> = queued.drain(..).collect();
        while let Some(frame) = reader.next_frame() {
            frames.push(frame);
        }
        Available { frames, fill, partial: reader.pending() }
    }

    /// Waits for the reply to request `id` until `deadline`, keeping every
    /// other frame for the loop. The reply's frame is given to `seen` (the
    /// recorder) and its `Result` returned.
    fn wait_reply(&self, id: u64, deadline: Instant, seen: &dyn Fn(&[u8])) -> Result<Term, WaitError> {
        let mut input = self.lock();
        loop {
            // Already read (by this or another thread's wait)?
            if let Some(pos) = input.queued.iter().position(|f| reply_to(f, id).is_some()) {
                let frame = input.queued.remove(pos).expect("position found");
                self.has_queued.store(!input.queued.is_empty(), Ordering::Release);
                let bytes = frame.expect("a reply is a frame");
                seen(&bytes);
                return Ok(reply_to(&Ok(bytes), id).expect("reply"));
            }
            let mut found = None;
            {
                let Input { reader, queued, .. } = &mut *input;
                while let Some(frame) = reader.next_frame() {
                    match reply_to(&frame, id) {
                        Some(result) if found.is_none() => {
                            if let Ok(bytes) = &frame {
                                seen(bytes);
                            }
                            found = Some(result);
                        }
                        _ => queued.push_back(frame),
                    }
                }
            }
            self.has_queued.store(!input.queued.is_empty(), Ordering::Release);
            if let Some(result) = found {
                return Ok(result);
            }
            if input.eof {
                return Err(WaitError::VmGone);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout(Duration::ZERO));
            }
            if readable(input.file.as_fd(), left)? {
                let Input { file, reader, eof, .. } = &mut *input;
                if reader.fill(file)? == Fill::Eof {
                    *eof = true;
                }
            }
        }
    }
}

/// Sends `request` to the VM as `{vm_request, Id, Request}` with `send`,
/// then waits up to `timeout` for its `{vm_reply, Id, Result}`; returns
/// `Result`. `seen` is given the reply's frame (for the recorder).
pub fn request(
    request: Term,
    timeout: Duration,
    send: impl FnOnce(u64, Term) -> io::Result<()>,
    seen: &dyn Fn(&[u8]),
) -> Result<Term, WaitError> {
    let channel = CHANNEL.get().ok_or(WaitError::NoVm)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    send(id, request).map_err(|_| WaitError::VmGone)?;
    let deadline = Instant::now() + timeout;
    channel.wait_reply(id, deadline, seen).map_err(|e| match e {
        WaitError::Timeout(_) => WaitError::Timeout(timeout),
        other => other,
    })
}

/// `Result` when `frame` is `{vm_reply, id, Result}`.
fn reply_to(frame: &Frame, id: u64) -> Option<Term> {
    let bytes = frame.as_ref().ok()?;
    // Cheap test first: most frames are not replies.
    if !bytes.windows(8).any(|w| w == b"vm_reply") {
        return None;
    }
    let Term::Tuple(t) = terms::decode(bytes).ok()? else { return None };
    match t.elements.as_slice() {
        [tag, reply_id, result] if as_atom(tag) == Some("vm_reply") && as_u64(reply_id) == Some(id) => {
            Some(result.clone())
        }
        _ => None,
    }
}

fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}
