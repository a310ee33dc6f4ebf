//! The body of one request, read from the socket as the application asks
//! for it (`wsgi.input`), never more: a large upload streams through a
//! bounded buffer.
//!
//! `raw` holds bytes read from the socket that are not decoded yet; what is
//! left in it once the body is complete belongs to the next pipelined
//! request and goes back to the loop.

use nix::errno::Errno;

use super::chunked::Decoder;
use super::request::Framing;
use super::stream::{Direction, Stream};
use super::{HttpError, Limits};

/// Bytes asked of the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// How the body ends.
#[derive(Debug, Clone)]
enum Remaining {
    Length(u64),
    Chunked(Box<Decoder>),
}

/// Why the body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The client sent something the framing does not allow, or too much.
    Http(HttpError),
    /// The connection failed or ended before the body did.
    Io(Errno),
    /// No byte came within the limit.
    Timeout,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Http(e) => write!(f, "bad request body: {e}"),
            BodyError::Io(Errno::UnknownErrno) => write!(f, "the connection ended inside the request body"),
            BodyError::Io(e) => write!(f, "reading the request body failed: {}", e.desc()),
            BodyError::Timeout => write!(f, "no request body bytes within the time limit"),
        }
    }
}

/// The body of the request being served.
#[derive(Debug)]
pub struct Body {
    stream: Stream,
    remaining: Option<Remaining>,
    /// Undecoded bytes from the socket.
    pub raw: Vec<u8>,
    /// Decoded body bytes not handed out yet.
    decoded: Vec<u8>,
    /// `decoded[..taken]` was handed out already.
    taken: usize,
    /// Body bytes decoded so far.
    total: u64,
    limits: Limits,
    /// `100 Continue` is owed before the first read from the socket.
    pub continue_pending: bool,
    /// A failure that stops the body for good.
    failed: Option<BodyError>,
}

impl Body {
    /// The body of a request framed by `framing`, with `raw` the bytes read
    /// after its head.
    pub fn new(stream: Stream, framing: Framing, raw: Vec<u8>, limits: Limits, expect_continue: bool) -> Body {
        let remaining = match framing {
            Framing::Empty => None,
            Framing::Length(n) => Some(Remaining::Length(n)),
            Framing::Chunked => Some(Remaining::Chunked(Box::new(Decoder::new(limits.max_header_block)))),
        };
        let continue_pending = expect_continue && remaining.is_some();
        Body { stream, remaining, raw, decoded: Vec::new(), taken: 0, total: 0, limits, continue_pending, failed: None }
    }

    /// Whether every body byte has been decoded (handed out or not).
    pub fn is_complete(&self) -> bool {
        self.remaining.is_none()
    }

    fn available(&self) -> &[u8] {
        &self.decoded[self.taken..]
    }

    /// Decodes what `raw` holds; returns whether anything was decoded or the
    /// body ended.
    fn decode(&mut self) -> Result<bool, BodyError> {
        let before = (self.decoded.len(), self.remaining.is_none());
        if self.taken > 0 && self.taken == self.decoded.len() {
            self.decoded.clear();
            self.taken = 0;
        }
        let start = self.decoded.len();
        match &mut self.remaining {
            None => return Ok(false),
            Some(Remaining::Length(n)) => {
                let take = self.raw.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                if take > 0 {
                    if self.decoded.is_empty() && take == self.raw.len() {
                        // The common case: the whole read is body.
                        std::mem::swap(&mut self.decoded, &mut self.raw);
                    } else {
                        self.decoded.extend_from_slice(&self.raw[..take]);
                        self.raw.drain(..take);
                    }
                    *n -= take as u64;
                }
                if *n == 0 {
                    self.remaining = None;
                }
            }
            Some(Remaining::Chunked(decoder)) => {
                let used = decoder.decode(&self.raw, &mut self.decoded).map_err(BodyError::Http)?;
                self.raw.drain(..used);
                if decoder.is_done() {
                    self.remaining = None;
                }
            }
        }
        self.total += (self.decoded.len() - start) as u64;
        if self.total > self.limits.max_body_size {
            return Err(BodyError::Http(HttpError::PayloadTooLarge));
        }
        Ok(self.decoded.len() != before.0 || self.remaining.is_none() != before.1)
    }

    /// Makes body bytes available (or finds the end), reading the socket and
    /// waiting as needed. `wait` runs the blocking wait (the caller releases
    /// the GIL in it).
    fn fill(&mut self, wait: &mut dyn FnMut(&Stream, Direction) -> Result<(), Errno>) -> Result<(), BodyError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.fill_inner(wait);
        if let Err(e) = result {
            self.failed = Some(e);
        }
        result
    }

    fn fill_inner(&mut self, wait: &mut dyn FnMut(&Stream, Direction) -> Result<(), Errno>) -> Result<(), BodyError> {
        loop {
            if !self.raw.is_empty() && self.decode()? {
                if !self.available().is_empty() || self.remaining.is_none() {
                    return Ok(());
                }
                continue;
            }
            if self.remaining.is_none() {
                return Ok(());
            }
            if self.continue_pending {
                self.continue_pending = false;
                let line = b"HTTP/1.1 100 Continue\r\n\r\n";
                let mut sent = 0;
                while sent < line.len() {
                    match self.stream.try_write(&line[sent..]).map_err(BodyError::Io)? {
                        0 => wait(&self.stream, Direction::Write).map_err(wait_error)?,
                        n => sent += n,
                    }
                }
            }
            match self.stream.try_read(&mut self.raw, READ_CHUNK).map_err(BodyError::Io)? {
                Some(0) => return Err(BodyError::Io(Errno::UnknownErrno)),
                Some(_) => {}
                None => wait(&self.stream, Direction::Read).map_err(wait_error)?,
            }
        }
    }

    /// `size` body bytes, fewer only at the end of the body (all that remain
    /// for `None`), as a buffered file's `read` does; empty at the end.
    pub fn read(
        &mut self,
        size: Option<usize>,
        wait: &mut dyn FnMut(&Stream, Direction) -> Result<(), Errno>,
    ) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        loop {
            let want = size.map_or(usize::MAX, |s| s - out.len());
            if want == 0 {
                return Ok(out);
            }
            if self.available().is_empty() {
                self.fill(wait)?;
                if self.available().is_empty() {
                    return Ok(out);
                }
            }
            let avail = self.available();
            let take = avail.len().min(want);
            if out.is_empty() && take == avail.len() && self.taken == 0 {
                // No copy when the whole decoded buffer goes out.
                out = std::mem::take(&mut self.decoded);
            } else {
                out.extend_from_slice(&avail[..take]);
                self.taken += take;
            }
        }
    }

    /// One line (up to and including `\n`), at most `size` bytes.
    pub fn readline(
        &mut self,
        size: Option<usize>,
        wait: &mut dyn FnMut(&Stream, Direction) -> Result<(), Errno>,
    ) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        let limit = size.unwrap_or(usize::MAX);
        while out.len() < limit {
            if self.available().is_empty() {
                self.fill(wait)?;
                if self.available().is_empty() {
                    break;
                }
            }
            let avail = self.available();
            let room = (limit - out.len()).min(avail.len());
            match memchr::memchr(b'\n', &avail[..room]) {
                Some(i) => {
                    out.extend_from_slice(&avail[..=i]);
                    self.taken += i + 1;
                    break;
                }
                None => {
                    out.extend_from_slice(&avail[..room]);
                    self.taken += room;
                }
            }
        }
        Ok(out)
    }

    /// Reads and drops what is left of the body, when at most `budget` bytes
    /// of it remain to come; returns whether the body is now complete (the
    /// connection can then serve another request).
    pub fn discard_rest(&mut self, budget: u64, wait: &mut dyn FnMut(&Stream, Direction) -> Result<(), Errno>) -> bool {
        if self.remaining.is_none() {
            return true;
        }
        if self.continue_pending || self.failed.is_some() {
            // The client waits for our word before sending the body: it
            // will not come, and the connection cannot be reused.
            return false;
        }
        let mut dropped = 0u64;
        while self.remaining.is_some() {
            if let Some(Remaining::Length(n)) = &self.remaining {
                if *n > budget.saturating_sub(dropped) {
                    return false;
                }
            }
            self.decoded.clear();
            self.taken = 0;
            if self.fill(wait).is_err() {
                return false;
            }
            dropped += self.available().len() as u64;
            if dropped > budget {
                return false;
            }
        }
        true
    }

    /// The bytes read past the end of the body (the start of the next
    /// request), taken out when the request is over; the body fails from
    /// then on, so that a `wsgi.input` kept by the application cannot touch
    /// the connection any more.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        self.failed = Some(BodyError::Io(Errno::EBADF));
        self.remaining = None;
        std::mem::take(&mut self.raw)
    }

    /// The failure that stopped the body, if one did.
    pub fn failure(&self) -> Option<BodyError> {
        self.failed
    }
}

fn wait_error(e: Errno) -> BodyError {
    if e == Errno::ETIMEDOUT {
        BodyError::Timeout
    } else {
        BodyError::Io(e)
    }
}
