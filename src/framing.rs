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
    /// Everything available was read; the descriptor would block now.
    Drained,
    /// The writer closed its end.
    Eof,
}

/// Reassembles frames from a non-blocking byte stream.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// Bytes of an oversized frame still to be thrown away.
    skipping: usize,
    limit: usize,
}

impl FrameReader {
    /// A reader that refuses frames above `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameReader {
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            skipping: 0,
            limit,
        }
    }

    /// Reads what the descriptor has until it would block or ends.
    pub fn fill(&mut self, source: &mut impl Read) -> io::Result<Fill> {
        loop {
            if self.pos > 0 && self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
            }
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK, 0);
            match source.read(&mut self.buf[start..]) {
                Ok(0) => {
                    self.buf.truncate(start);
                    return Ok(Fill::Eof);
                }
                Ok(n) => {
                    self.buf.truncate(start + n);
                    self.discard_skipped();
                }
                Err(e) => {
                    self.buf.truncate(start);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                        io::ErrorKind::Interrupted => continue,
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// Feeds bytes directly, as `fill` would.
    #[cfg(test)]
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.discard_skipped();
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        self.discard_skipped();
        if self.skipping > 0 {
            return None;
        }
        let available = &self.buf[self.pos..];
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
        self.buf.len() - self.pos
    }

    fn discard_skipped(&mut self) {
        if self.skipping == 0 {
            return;
        }
        let n = self.skipping.min(self.buf.len() - self.pos);
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

    #[test]
    fn huge_declared_length_allocates_nothing() {
        let mut r = FrameReader::new(MAX_FRAME);
        r.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(matches!(r.next_frame(), Some(Err(FrameError::TooLarge { .. }))));
        assert_eq!(r.pending(), 0);
        assert!(r.buf.capacity() < 1024 * 1024);
    }
}
