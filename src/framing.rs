//! `{packet,4}` framing: a 4-byte big-endian length, then that many bytes.
//!
//! The reader works on a non-blocking descriptor: the loop calls
//! [`FrameReader::fill`] when stdin is readable and then drains complete frames
//! with [`FrameReader::next_frame`]. A frame longer than the limit is skipped
//! as it streams past, without ever being buffered, and reported as
//! [`FrameError::TooLarge`]: a forged length costs nothing.

use std::fs::File;
use std::io::{self, Read, Write};

use byteorder::{BigEndian, ByteOrder, WriteBytesExt};

/// The largest frame the port accepts (announced to the VM in `hello`).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// How much the reader asks the kernel for at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Most bytes one [`FrameReader::fill`] reads before it returns.
pub const FILL_BUDGET: usize = 4 * READ_CHUNK;

/// Buffer memory kept once a large frame has been consumed.
const KEEP_CAPACITY: usize = FILL_BUDGET + 2 * READ_CHUNK;

/// A frame that could not be taken off the stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length is above [`MAX_FRAME`]; the bytes were skipped.
    #[error("frame of {declared} bytes exceeds the limit of {limit} bytes")]
    TooLarge { declared: usize, limit: usize },
}

/// What [`FrameReader::fill`] saw on the descriptor.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// Everything available was read (the descriptor would block now), or
    /// as much as one call reads ([`FILL_BUDGET`]): wait for readability
    /// again.
    Drained,
    /// The writer closed its end.
    Eof,
}

/// Reassembles frames from a non-blocking byte stream.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes `pos..end` are input not yet returned; the rest is room for the
    /// next read, zeroed once when it grows rather than before every read.
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    /// Bytes of an oversized frame still to be thrown away.
    skipping: usize,
    limit: usize,
}

impl FrameReader {
    /// A reader that refuses frames above `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            skipping: 0,
            limit,
        }
    }

    /// Reads what the descriptor has until it would block or ends, or until
    /// [`FILL_BUDGET`] bytes were read: a VM that writes without pause can
    /// neither keep the loop here nor grow the buffer past one partial frame
    /// and the budget. `Fill::Drained` means "wait for readability again";
    /// more may already be there.
    pub fn fill(&mut self, source: &mut impl Read) -> io::Result<Fill> {
        let mut budget = FILL_BUDGET;
        loop {
            self.compact();
            if budget == 0 {
                return Ok(Fill::Drained);
            }
            self.reserve(READ_CHUNK);
            match source.read(&mut self.buf[self.end..self.end + READ_CHUNK]) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => {
                    self.end += n;
                    budget = budget.saturating_sub(n);
                    self.discard_skipped();
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                },
            }
        }
    }

    /// Makes room for `n` more bytes after `end`.
    fn reserve(&mut self, n: usize) {
        if self.buf.len() < self.end + n {
            self.buf.resize(self.end + n, 0);
        }
    }

    /// Drops the bytes already returned or skipped, so that the buffer holds
    /// only the partial frame; gives back the memory of a large frame once
    /// it is gone.
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.end == 0 && self.buf.len() > KEEP_CAPACITY {
            self.buf.truncate(KEEP_CAPACITY);
            self.buf.shrink_to_fit();
        }
    }

    /// Feeds bytes directly, as `fill` would.
    #[cfg(test)]
    fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.reserve(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
        self.discard_skipped();
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        self.discard_skipped();
        if self.skipping > 0 {
            return None;
        }
        let available = &self.buf[self.pos..self.end];
        if available.len() < 4 {
            return None;
        }
        let declared = BigEndian::read_u32(&available[..4]) as usize;
        if declared > self.limit {
            self.pos += 4;
            self.skipping = declared;
            self.discard_skipped();
            return Some(Err(FrameError::TooLarge {
                declared,
                limit: self.limit,
            }));
        }
        if available.len() < 4 + declared {
            return None;
        }
        let frame = available[4..4 + declared].to_vec();
        self.pos += 4 + declared;
        Some(Ok(frame))
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.end - self.pos
    }

    /// Bytes of memory the buffer holds (for bounds checks: tests, fuzzing).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn discard_skipped(&mut self) {
        if self.skipping == 0 {
            return;
        }
        let n = self.skipping.min(self.end - self.pos);
        self.pos += n;
        self.skipping -= n;
    }
}

/// Writes `payload` as one frame.
pub fn write_frame(out: &mut File, payload: &[u8]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(4 + payload.len());
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    framed.write_u32::<BigEndian>(len)?;
    framed.extend_from_slice(payload);
    out.write_all(&framed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn reassembles_frames_split_anywhere() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b""));
        stream.extend(frame(b"world!"));
        for split in 0..stream.len() {
            let mut r = FrameReader::new(100);
            r.push(&stream[..split]);
            let mut got = Vec::new();
            while let Some(f) = r.next_frame() {
                got.push(f.unwrap());
            }
            r.push(&stream[split..]);
            while let Some(f) = r.next_frame() {
                got.push(f.unwrap());
            }
            assert_eq!(got, vec![b"hello".to_vec(), vec![], b"world!".to_vec()]);
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn oversized_frame_is_skipped_and_reported() {
        let mut r = FrameReader::new(8);
        let mut stream = frame(&[7u8; 20]);
        stream.extend(frame(b"ok"));
        r.push(&stream[..10]);
        assert_eq!(
            r.next_frame(),
            Some(Err(FrameError::TooLarge {
                declared: 20,
                limit: 8
            }))
        );
        assert_eq!(r.next_frame(), None);
        r.push(&stream[10..]);
        assert_eq!(r.next_frame(), Some(Ok(b"ok".to_vec())));
    }

    /// A non-blocking source: each chunk is one read, `None` is a would-block,
    /// and after the last chunk it would block forever (or ends, if `eof`).
    struct Script {
        chunks: std::collections::VecDeque<Option<Vec<u8>>>,
        eof: bool,
    }

    impl Read for Script {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match self.chunks.pop_front() {
                Some(Some(mut c)) => {
                    let n = c.len().min(out.len());
                    out[..n].copy_from_slice(&c[..n]);
                    if n < c.len() {
                        self.chunks.push_front(Some(c.split_off(n)));
                    }
                    Ok(n)
                }
                Some(None) => Err(io::ErrorKind::WouldBlock.into()),
                None if self.eof => Ok(0),
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    /// Found by the `frame_reader` fuzz target: when every read ended inside
    /// a frame, the consumed frames before it were never dropped, so the
    /// buffer grew with every byte the VM sent.
    #[test]
    fn consumed_frames_are_dropped_when_reads_end_inside_frames() {
        let payload = vec![7u8; 1000];
        let one = frame(&payload);
        let frames = 2000;
        let stream: Vec<u8> = one.repeat(frames);
        // Each read ends 500 bytes into a frame, then the source would block.
        let mut chunks = std::collections::VecDeque::new();
        let mut cut = 0;
        for i in 0..frames {
            let end = i * one.len() + 500;
            chunks.push_back(Some(stream[cut..end].to_vec()));
            chunks.push_back(None);
            cut = end;
        }
        chunks.push_back(Some(stream[cut..].to_vec()));
        let mut source = Script { chunks, eof: true };
        let mut r = FrameReader::new(MAX_FRAME);
        let mut got = 0;
        loop {
            let fill = r.fill(&mut source).unwrap();
            while let Some(f) = r.next_frame() {
                assert_eq!(f.unwrap(), payload);
                got += 1;
            }
            assert!(r.capacity() <= 2 * READ_CHUNK, "buffer of {} bytes after {got} frames", r.capacity());
            if fill == Fill::Eof {
                break;
            }
        }
        assert_eq!(got, frames);
        assert_eq!(r.pending(), 0);
    }

    /// A VM that never pauses: `fill` still returns, having read about its
    /// budget, with the frames it read ready.
    #[test]
    fn fill_returns_after_its_budget_on_an_endless_stream() {
        /// Endless as far as one fill can tell: it would block only after
        /// 64 MiB, so that a reader without a budget fails instead of hanging.
        struct Endless(Vec<u8>, usize);
        impl Read for Endless {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.1 >= 64 << 20 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                for b in out.iter_mut() {
                    *b = self.0[self.1 % self.0.len()];
                    self.1 += 1;
                }
                Ok(out.len())
            }
        }
        let one = frame(b"0123456789");
        let mut source = Endless(one.clone(), 0);
        let mut r = FrameReader::new(MAX_FRAME);
        for _ in 0..3 {
            assert_eq!(r.fill(&mut source).unwrap(), Fill::Drained);
            assert!(r.pending() <= FILL_BUDGET + READ_CHUNK, "{} bytes buffered", r.pending());
            let mut n = 0;
            while let Some(f) = r.next_frame() {
                assert_eq!(f.unwrap(), b"0123456789");
                n += 1;
            }
            assert!(n >= FILL_BUDGET / one.len() - 1, "only {n} frames");
            assert!(r.capacity() <= 2 * (FILL_BUDGET + 2 * READ_CHUNK), "{}", r.capacity());
        }
    }

    #[test]
    fn memory_of_a_large_frame_is_given_back() {
        let big = vec![1u8; 4 * 1024 * 1024];
        let stream = frame(&big);
        let chunks = stream.chunks(100_000).map(|c| Some(c.to_vec())).collect();
        let mut source = Script { chunks, eof: false };
        let mut r = FrameReader::new(MAX_FRAME);
        let mut got = None;
        while got.is_none() {
            assert_eq!(r.fill(&mut source).unwrap(), Fill::Drained);
            got = r.next_frame();
        }
        assert_eq!(got.unwrap().unwrap().len(), big.len());
        assert!(r.capacity() >= big.len());
        assert_eq!(r.fill(&mut source).unwrap(), Fill::Drained);
        assert!(r.capacity() <= KEEP_CAPACITY, "{} bytes kept", r.capacity());
    }

    #[test]
    fn huge_declared_length_allocates_nothing() {
        let mut r = FrameReader::new(MAX_FRAME);
        r.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(matches!(r.next_frame(), Some(Err(FrameError::TooLarge { .. }))));
        assert_eq!(r.pending(), 0);
        assert!(r.buf.capacity() < 1024 * 1024);
    }
}
