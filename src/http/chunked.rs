//! The chunked transfer coding of request bodies (RFC 9112, 7.1), decoded
//! incrementally: bytes arrive in whatever pieces the socket gives.
//!
//! A chunk size that is not hexadecimal, overflows, or a chunk not followed
//! by CRLF is an error: the connection cannot be trusted to find the next
//! request any more. Chunk extensions are skipped; trailer fields are read
//! and dropped (WSGI has no place for them), within a size limit.

use super::HttpError;

/// Longest chunk-size line (size and extensions) accepted.
const MAX_SIZE_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hexadecimal size; `digits` read so far.
    Size { value: u64, digits: usize },
    /// After the size: extensions up to the end of the line.
    Extension,
    /// Expecting the LF of the size line.
    SizeLf,
    Data { remaining: u64 },
    DataCr,
    DataLf,
    /// In the trailer section; `line` bytes of the current line read.
    Trailer { line: usize },
    TrailerLf { line: usize },
    Done,
}

/// An incremental decoder of one chunked body.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// The size of the chunk whose size line is being read.
    size: u64,
    line_length: usize,
    trailer_bytes: usize,
    max_trailer: usize,
}

impl Decoder {
    /// A decoder that accepts at most `max_trailer` bytes of trailer fields.
    pub fn new(max_trailer: usize) -> Decoder {
        Decoder { state: State::Size { value: 0, digits: 0 }, size: 0, line_length: 0, trailer_bytes: 0, max_trailer }
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending body bytes to `out`; returns how many
    /// input bytes were used. Stops at the end of the body: the bytes after it
    /// belong to the next request.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let bad = |what| Err(HttpError::BadRequest(what));
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.state {
                State::Size { value, digits } => {
                    self.line_length += 1;
                    if let Some(d) = (byte as char).to_digit(16) {
                        if digits >= 16 {
                            return bad("chunk size too large");
                        }
                        self.state = State::Size { value: value * 16 + u64::from(d), digits: digits + 1 };
                    } else if digits == 0 {
                        return bad("bad chunk size");
                    } else {
                        self.size = value;
                        self.state = match byte {
                            b';' | b' ' | b'\t' => State::Extension,
                            b'\r' => State::SizeLf,
                            _ => return bad("bad chunk size"),
                        };
                    }
                }
                State::Extension => {
                    self.line_length += 1;
                    if self.line_length > MAX_SIZE_LINE {
                        return bad("chunk extensions too long");
                    }
                    if byte == b'\r' {
                        self.state = State::SizeLf;
                    } else if byte == b'\n' {
                        return bad("bare LF in a chunk size line");
                    }
                }
                State::SizeLf => {
                    if byte != b'\n' {
                        return bad("chunk size line not ended by CRLF");
                    }
                    self.line_length = 0;
                    self.state = match self.size {
                        0 => State::Trailer { line: 0 },
                        n => State::Data { remaining: n },
                    };
                }
                State::Data { remaining } => {
                    let take = (input.len() - i).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { remaining: left } };
                    continue;
                }
                State::DataCr => {
                    if byte != b'\r' {
                        return bad("chunk data not followed by CRLF");
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if byte != b'\n' {
                        return bad("chunk data not followed by CRLF");
                    }
                    self.line_length = 0;
                    self.state = State::Size { value: 0, digits: 0 };
                }
                State::Trailer { line } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.max_trailer {
                        return Err(HttpError::HeadersTooLarge);
                    }
                    match byte {
                        b'\r' => self.state = State::TrailerLf { line },
                        b'\n' => return bad("bare LF in the trailer section"),
                        _ => self.state = State::Trailer { line: line + 1 },
                    }
                }
                State::TrailerLf { line } => {
                    if byte != b'\n' {
                        return bad("trailer line not ended by CRLF");
                    }
                    if line == 0 {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    self.state = State::Trailer { line: 0 };
                }
                State::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = Decoder::new(1024);
        let mut out = Vec::new();
        let mut used = 0;
        while used < input.len() && !d.is_done() {
            let end = (used + step).min(input.len());
            used += d.decode(&input[used..end], &mut out)?;
        }
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_in_any_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (out, used, done) = decode_all(body, step).unwrap();
            assert_eq!(out, b"hello, world");
            assert!(done);
            assert_eq!(&body[used..], b"NEXT", "step {step}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        for bad in [&b"x\r\n"[..], b"\r\n", b"5\r\nhelloXX", b"11111111111111111\r\n", b"5\nhello\r\n", b"-1\r\n"] {
            assert!(decode_all(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn trailers_are_bounded() {
        let mut body = b"0\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', 2000));
        assert!(matches!(decode_all(&body, 50), Err(HttpError::HeadersTooLarge)));
    }
}
