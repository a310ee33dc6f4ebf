//! Responses: the head written from the application's status and headers,
//! and the body framed the way the request allows.
//!
//! A response carries `Content-Length` when the application gives one (or
//! when the server knows the length, as for a body of one piece or a file),
//! is chunked when it does not and the client speaks HTTP/1.1, and ends with
//! the connection otherwise. A HEAD response has the same head and no body;
//! 1xx, 204 and 304 responses have no body whatever the application yields.

use std::cell::RefCell;
use std::time::SystemTime;

/// How the body of a response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body is sent (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, no length).
    Close,
}

/// A response being written.
#[derive(Debug)]
pub struct Response {
    /// Bytes ready to be written to the socket.
    pub out: Vec<u8>,
    pub framing: BodyFraming,
    /// The status code sent, once the head is out.
    pub status: u16,
    /// Whether the connection may serve another request afterwards.
    pub keep_alive: bool,
    /// Whether the head has been produced.
    pub started: bool,
    /// Body bytes the application produced.
    pub body_bytes: u64,
    /// Body bytes framed into `out` so far (or sent by `sendfile`).
    sent_body: u64,
    head_only: bool,
    minor: u8,
}

/// What the server knows of the body before the application yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownLength {
    Unknown,
    Exactly(u64),
}

impl Response {
    /// A response to a request of HTTP/1.`minor`; `head_only` for HEAD;
    /// `keep_alive` when the request allows another one after it.
    pub fn new(minor: u8, head_only: bool, keep_alive: bool) -> Response {
        Response {
            out: Vec::with_capacity(256),
            framing: BodyFraming::None,
            status: 0,
            keep_alive,
            started: false,
            body_bytes: 0,
            sent_body: 0,
            head_only,
            minor,
        }
    }

    /// Writes the head. `status` is the WSGI status line (`"200 OK"`),
    /// `headers` the application's, `known` what the server knows of the
    /// body's length. Hop-by-hop headers of the application are dropped,
    /// except that `Connection: close` is honoured.
    pub fn start(&mut self, status: &str, headers: &[(String, String)], known: KnownLength) {
        let code: u16 = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(500);
        self.status = code;
        let mut length: Option<u64> = None;
        self.out.extend_from_slice(if self.minor == 0 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        self.out.extend_from_slice(status.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        let mut has_date = false;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("content-length") {
                match value.trim().parse::<u64>() {
                    Ok(n) if length.is_none() => length = Some(n),
                    _ => continue,
                }
            } else if name.eq_ignore_ascii_case("connection") {
                if value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
                    self.keep_alive = false;
                }
                continue;
            } else if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            has_date |= name.eq_ignore_ascii_case("date");
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b": ");
            self.out.extend_from_slice(value.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        let no_body = self.head_only || (100..200).contains(&code) || code == 204 || code == 304;
        let length = length.or(match known {
            KnownLength::Exactly(n) => Some(n),
            KnownLength::Unknown => None,
        });
        let has_length_header = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        self.framing = match length {
            _ if (100..200).contains(&code) || code == 204 => BodyFraming::None,
            Some(n) => {
                if !has_length_header && code != 304 {
                    self.out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
                }
                if no_body {
                    BodyFraming::None
                } else {
                    BodyFraming::Length(n)
                }
            }
            None if no_body => BodyFraming::None,
            None if self.minor >= 1 => {
                self.out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                BodyFraming::Chunked
            }
            None => {
                self.keep_alive = false;
                BodyFraming::Close
            }
        };
        if !self.keep_alive {
            self.out.extend_from_slice(b"Connection: close\r\n");
        } else if self.minor == 0 {
            self.out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        if !has_date {
            self.out.extend_from_slice(date_header().as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
        self.started = true;
    }

    /// Frames body bytes into `out`. Bytes beyond a declared length are
    /// dropped, and the connection will close (the application lied).
    pub fn body(&mut self, data: &[u8]) {
        self.body_bytes += data.len() as u64;
        if data.is_empty() {
            return;
        }
        match self.framing {
            BodyFraming::None => {}
            BodyFraming::Length(n) => {
                let room = n.saturating_sub(self.sent_body);
                let take = (data.len() as u64).min(room) as usize;
                self.out.extend_from_slice(&data[..take]);
                self.sent_body += take as u64;
                if take < data.len() {
                    self.keep_alive = false;
                }
            }
            BodyFraming::Chunked => {
                self.out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                self.out.extend_from_slice(data);
                self.out.extend_from_slice(b"\r\n");
                self.sent_body += data.len() as u64;
            }
            BodyFraming::Close => {
                self.out.extend_from_slice(data);
                self.sent_body += data.len() as u64;
            }
        }
    }

    /// How many file bytes may go out by `sendfile` after `out` is flushed,
    /// given `available` in the file; they are counted as sent.
    pub fn raw_body_room(&mut self, available: u64) -> u64 {
        let n = match self.framing {
            BodyFraming::None | BodyFraming::Chunked => 0,
            BodyFraming::Length(n) => n.saturating_sub(self.sent_body).min(available),
            BodyFraming::Close => available,
        };
        self.sent_body += n;
        self.body_bytes += n;
        n
    }

    /// Ends the body: the last chunk of a chunked body; a body shorter than
    /// its `Content-Length` leaves the connection unusable.
    pub fn finish(&mut self) {
        match self.framing {
            BodyFraming::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
            BodyFraming::Length(n) if self.sent_body < n => self.keep_alive = false,
            _ => {}
        }
    }
}

/// The reason phrase of the statuses the server itself sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

thread_local! {
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// `Date: <IMF-fixdate>\r\n`, formatted once a second per thread.
pub fn date_header() -> String {
    let now = SystemTime::now();
    let second = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second || cached.1.is_empty() {
            *cached = (second, format!("Date: {}\r\n", httpdate::fmt_http_date(now)));
        }
        cached.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Response) -> String {
        String::from_utf8_lossy(&r.out).into_owned()
    }

    #[test]
    fn chunked_without_a_length_on_http_1_1() {
        let mut r = Response::new(1, false, true);
        r.start("200 OK", &[("X".into(), "y".into())], KnownLength::Unknown);
        r.body(b"hello");
        r.finish();
        let t = text(&r);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\nDate: "), "{t}");
        assert!(t.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{t}");
        assert!(r.keep_alive);
    }

    #[test]
    fn http_1_0_without_a_length_closes() {
        let mut r = Response::new(0, false, true);
        r.start("200 OK", &[], KnownLength::Unknown);
        assert_eq!(r.framing, BodyFraming::Close);
        assert!(!r.keep_alive);
        assert!(text(&r).contains("Connection: close\r\n"));
    }

    #[test]
    fn head_keeps_the_headers_and_drops_the_body() {
        let mut r = Response::new(1, true, true);
        r.start("200 OK", &[("Content-Length".into(), "5".into())], KnownLength::Unknown);
        r.body(b"hello");
        r.finish();
        let t = text(&r);
        assert!(t.contains("Content-Length: 5\r\n") && t.ends_with("\r\n\r\n"), "{t}");
        assert!(r.keep_alive);
    }

    #[test]
    fn a_known_length_is_declared_and_enforced() {
        let mut r = Response::new(1, false, true);
        r.start("200 OK", &[], KnownLength::Exactly(3));
        assert!(text(&r).contains("Content-Length: 3\r\n"));
        r.body(b"abcdef");
        assert!(text(&r).ends_with("\r\n\r\nabc"));
        assert!(!r.keep_alive);
        let mut r = Response::new(1, false, true);
        r.start("200 OK", &[("Content-Length".into(), "9".into())], KnownLength::Unknown);
        r.body(b"abc");
        r.finish();
        assert!(!r.keep_alive, "a short body leaves the connection unusable");
    }
}
