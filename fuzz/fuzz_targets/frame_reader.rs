//! `FrameReader` fed an arbitrary byte stream in arbitrary chunks, with
//! would-block and interrupted reads between them, exactly as the loop drives
//! it (`fill`, then `next_frame` until it returns `None`).
//!
//! Input: `[limit, repeat, n, split_1 .. split_n, body...]`. `limit`
//! selects the frame limit (small ones make the oversized path common); the
//! stream is `body` repeated up to 3970 times (so a short input makes a long
//! stream, up to 1 MiB); each split byte gives the size of the next chunk and
//! whether a would-block or an interrupted read follows it, or, when bit 7 of
//! `repeat` is set, where inside each frame the chunk ends, so that no read
//! ever stops on a frame boundary (the case of a VM writing large frames
//! faster than the port reads them).
//!
//! Asserts, against a plain model that parses the whole stream at once:
//! the same frames and `TooLarge` errors in the same order, the same bytes
//! left over at the end; that no call panics; and that the reader's buffer
//! never holds much more than the bytes the kernel handed it in one `fill`
//! plus one partial frame: a declared length is never an allocation size,
//! and consumed bytes are not kept.

#![no_main]

use std::collections::VecDeque;
use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use py_reactor_port::framing::{Fill, FrameError, FrameReader, MAX_FRAME};

const LIMITS: [usize; 8] = [0, 1, 4, 16, 100, 4096, 70_000, MAX_FRAME];

/// What the reader (or the model) produced.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Frame(Vec<u8>),
    TooLarge(usize),
}

#[derive(Debug)]
enum Step {
    Data(Vec<u8>),
    WouldBlock,
    Interrupted,
}

/// A non-blocking descriptor's behaviour, scripted.
struct Source {
    steps: VecDeque<Step>,
    /// Bytes handed out since the counter was last reset.
    handed: usize,
}

impl Read for Source {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.steps.pop_front() {
            None => Ok(0),
            Some(Step::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Some(Step::Interrupted) => Err(io::ErrorKind::Interrupted.into()),
            Some(Step::Data(mut d)) => {
                if d.is_empty() {
                    // A zero-byte read is end of file; empty chunks are not scripted.
                    return self.read(out);
                }
                let n = d.len().min(out.len());
                out[..n].copy_from_slice(&d[..n]);
                if n < d.len() {
                    self.steps.push_front(Step::Data(d.split_off(n)));
                }
                self.handed += n;
                Ok(n)
            }
        }
    }
}

/// Longest stream built from one input.
const MAX_STREAM: usize = 1 << 20;

/// The length declared by the 4-byte header at `pos` (the caller checked
/// that 4 bytes are there).
fn declared_at(stream: &[u8], pos: usize) -> usize {
    let header: [u8; 4] = stream[pos..pos + 4].try_into().expect("4 header bytes");
    u32::from_be_bytes(header) as usize
}

/// Start and length (header included) of every frame of `stream` that fits
/// the limit, in order.
fn frame_spans(stream: &[u8], limit: usize) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut pos = 0;
    while stream.len() - pos >= 4 {
        let declared = declared_at(stream, pos);
        let len = (4 + declared).min(stream.len() - pos);
        if declared <= limit {
            spans.push((pos, len));
        }
        pos += len;
    }
    spans
}

/// The frames of `stream`, parsed in one go, and the bytes left over.
fn model(stream: &[u8], limit: usize) -> (Vec<Item>, usize) {
    let mut items = Vec::new();
    let mut pos = 0;
    while stream.len() - pos >= 4 {
        let declared = declared_at(stream, pos);
        if declared > limit {
            items.push(Item::TooLarge(declared));
            // Skipped as it streams past; a cut-short skip leaves nothing.
            pos = (pos + 4).saturating_add(declared).min(stream.len());
            continue;
        }
        if stream.len() - pos - 4 < declared {
            break;
        }
        items.push(Item::Frame(stream[pos + 4..pos + 4 + declared].to_vec()));
        pos += 4 + declared;
    }
    (items, stream.len() - pos)
}

fuzz_target!(|data: &[u8]| {
    let [limit, repeat, nsplits, rest @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(*limit) % LIMITS.len()];
    // Bit 7 of `repeat`: cut every chunk inside a frame (see below).
    let mid_frame = repeat & 0x80 != 0;
    let repeat = 1 + usize::from(repeat & 0x3f).pow(2);
    let nsplits = usize::from(*nsplits).min(rest.len());
    let (splits, body) = rest.split_at(nsplits);
    let mut stream: Vec<u8> = body.repeat(repeat);
    stream.truncate(MAX_STREAM);
    let split = |i: usize| splits.get(i % splits.len().max(1)).copied().unwrap_or(0xff);

    let mut steps = VecDeque::new();
    if mid_frame {
        // One chunk per frame, each ending strictly inside the next frame
        // and followed by a would-block: no fill ever ends on a boundary.
        let mut cut = 0;
        for (i, (start, len)) in frame_spans(&stream, limit).into_iter().enumerate() {
            let end = start + 1 + usize::from(split(i)) % (len - 1);
            if end > cut {
                steps.push_back(Step::Data(stream[cut..end].to_vec()));
                steps.push_back(Step::WouldBlock);
                cut = end;
            }
        }
        steps.push_back(Step::Data(stream[cut..].to_vec()));
    } else {
        // Chunk sizes from the split bytes, cycling; the two high bits add a
        // would-block (bit 7) or an interrupted read (bit 6) after the chunk.
        let mut offset = 0;
        let mut i = 0;
        while offset < stream.len() {
            let s = split(i);
            let size = match s & 0x3f {
                0x3f => 1 << 17,
                n => usize::from(n) * usize::from(n) + 1,
            };
            let end = (offset + size).min(stream.len());
            steps.push_back(Step::Data(stream[offset..end].to_vec()));
            if s & 0x80 != 0 {
                steps.push_back(Step::WouldBlock);
            }
            if s & 0x40 != 0 {
                steps.push_back(Step::Interrupted);
            }
            offset = end;
            i += 1;
        }
    }
    let mut source = Source { steps, handed: 0 };

    let mut reader = FrameReader::new(limit);
    let mut got = Vec::new();
    // The most bytes legitimately held at once: what one fill read plus the
    // partial frame left before it.
    let mut peak = 0;
    let mut fills = 0;
    loop {
        let before = reader.pending();
        source.handed = 0;
        let fill = reader
            .fill(&mut source)
            .expect("a scripted source fails only with would-block or EINTR");
        fills += 1;
        assert!(fills <= 4 * stream.len() + 16, "fill makes no progress");
        peak = peak.max(before + source.handed);
        while let Some(item) = reader.next_frame() {
            got.push(match item {
                Ok(frame) => {
                    assert!(
                        frame.len() <= limit,
                        "frame of {} bytes over the limit {limit}",
                        frame.len()
                    );
                    Item::Frame(frame)
                }
                Err(FrameError::TooLarge { declared, limit: l }) => {
                    assert_eq!(l, limit);
                    assert!(declared > limit);
                    Item::TooLarge(declared)
                }
            });
        }
        // A partial frame is never more than a header and `limit` bytes.
        assert!(
            reader.pending() < 4 + limit,
            "{} bytes pending with limit {limit}",
            reader.pending()
        );
        let held = reader.capacity();
        let bound = 2 * (peak + 64 * 1024) + 64;
        assert!(
            held <= bound,
            "reader holds {held} bytes; at most {peak} were needed at once"
        );
        if fill == Fill::Eof {
            break;
        }
    }
    let (want, left) = model(&stream, limit);
    assert_eq!(got, want, "frames differ from the model (limit {limit})");
    assert_eq!(reader.pending(), left, "bytes left over at end of file");
});
