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
    /// body's length. See [`write_head`].
    pub fn start(&mut self, status: &str, headers: &[(String, String)], known: KnownLength) {
        let code: u16 = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(500);
        self.status = code;
        let known = match known {
            KnownLength::Exactly(n) => Some(n),
            KnownLength::Unknown => None,
        };
        let head = Head { minor: self.minor, head_only: self.head_only, code, status_line: status.as_bytes() };
        let headers = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        self.framing = write_head(&mut self.out, head, headers, known, &mut self.keep_alive);
        self.started = true;
    }

    /// Frames body bytes into `out` (see [`frame_body`]).
    pub fn body(&mut self, data: &[u8]) {
        self.body_bytes += data.len() as u64;
        frame_body(&mut self.out, self.framing, data, &mut self.sent_body, &mut self.keep_alive);
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
        finish_body(&mut self.out, self.framing, self.sent_body, &mut self.keep_alive);
    }
}

/// The status of a response head and the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// The request's HTTP/1.`minor`.
    pub minor: u8,
    /// The request was HEAD: same head, no body.
    pub head_only: bool,
    /// The status code.
    pub code: u16,
    /// What follows the version on the status line (`200 OK`).
    pub status_line: &'a [u8],
}

/// Writes a response head into `out` and returns how its body is framed:
/// the application's first valid `Content-Length`, else `known` (written
/// as `Content-Length`), else chunked for HTTP/1.1 and until the close for
/// HTTP/1.0 (RFC 9112, 6). Hop-by-hop headers of the application are
/// dropped, except that `Connection: close` clears `keep_alive`; 1xx, 204
/// and 304 responses and HEAD get no body (RFC 9110, 6.4.1). A `Date` is
/// added when the application gives none.
pub fn write_head<'h>(
    out: &mut Vec<u8>,
    head: Head<'_>,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    known: Option<u64>,
    keep_alive: &mut bool,
) -> BodyFraming {
    let code = head.code;
    out.extend_from_slice(if head.minor == 0 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(head.status_line);
    out.extend_from_slice(b"\r\n");
    let mut declared: Option<u64> = None;
    let mut has_date = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            match parsed {
                Some(n) if declared.is_none() => declared = Some(n),
                _ => continue,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close")) {
                *keep_alive = false;
            }
            continue;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") || name.eq_ignore_ascii_case(b"keep-alive") {
            continue;
        }
        has_date |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let informational = (100..200).contains(&code) || code == 204;
    let no_body = head.head_only || informational || code == 304;
    let framing = match declared.or(known) {
        _ if informational => BodyFraming::None,
        Some(n) => {
            if declared.is_none() && code != 304 {
                out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            }
            if no_body {
                BodyFraming::None
            } else {
                BodyFraming::Length(n)
            }
        }
        None if no_body => BodyFraming::None,
        None if head.minor >= 1 => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            BodyFraming::Chunked
        }
        None => {
            *keep_alive = false;
            BodyFraming::Close
        }
    };
    if !*keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if head.minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    if !has_date {
        out.extend_from_slice(date_header().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// Frames body bytes into `out`; `sent_body` counts what was framed. Bytes
/// beyond a declared length are dropped and clear `keep_alive` (the
/// application gave a wrong length).
pub fn frame_body(out: &mut Vec<u8>, framing: BodyFraming, data: &[u8], sent_body: &mut u64, keep_alive: &mut bool) {
    if data.is_empty() {
        return;
    }
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            let room = n.saturating_sub(*sent_body);
            let take = (data.len() as u64).min(room) as usize;
            out.extend_from_slice(&data[..take]);
            *sent_body += take as u64;
            if take < data.len() {
                *keep_alive = false;
            }
        }
        BodyFraming::Chunked => {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            *sent_body += data.len() as u64;
        }
        BodyFraming::Close => {
            out.extend_from_slice(data);
            *sent_body += data.len() as u64;
        }
    }
}

/// Ends a body: the last chunk of a chunked body; a body shorter than its
/// `Content-Length` clears `keep_alive`, the connection being unusable.
pub fn finish_body(out: &mut Vec<u8>, framing: BodyFraming, sent_body: u64, keep_alive: &mut bool) {
    match framing {
        BodyFraming::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        BodyFraming::Length(n) if sent_body < n => *keep_alive = false,
        _ => {}
    }
}

/// The reason phrase of a status code (RFC 9110, 15), empty for codes
/// without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
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
