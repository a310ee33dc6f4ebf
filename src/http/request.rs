//! Request heads: parsed with `httparse`, then checked for what RFC 9112
//! asks of a server (one framing, a Host, sizes within the limits) before
//! anything reaches the application.
//!
//! Framing is decided here once and for all, so that no later stage can
//! disagree with it about where a request ends: a request with both
//! `Content-Length` and `Transfer-Encoding`, with several differing
//! `Content-Length`s, or with a transfer coding other than a final
//! `chunked`, is refused (request smuggling).

use super::{HttpError, Limits};

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed every check.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    /// The request target as sent (origin form, or absolute form).
    pub target: Vec<u8>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Header names as sent, values as bytes, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    /// Whether the client allows the connection to stay open after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

impl Head {
    /// `GET`, `HEAD`, ... as the client wrote it.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn protocol(&self) -> &'static str {
        if self.minor == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete
/// (and within the limits), the head and its length in bytes once complete.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HttpError> {
    // Empty lines before a request line are ignored (RFC 9112, 2.2); they
    // count against the limits like any other byte.
    let line_end = memchr::memchr(b'\n', buf);
    match line_end {
        None if buf.len() > limits.max_request_line => return Err(HttpError::UriTooLong),
        Some(n) if n > limits.max_request_line => return Err(HttpError::UriTooLong),
        _ => {}
    }
    // Most requests have a few headers: room for them on the stack; a
    // request with more is parsed again with room for the limit.
    let mut small = [httparse::EMPTY_HEADER; 32];
    let mut large = Vec::new();
    let mut request = httparse::Request::new(&mut small[..limits.max_header_count.min(32)]);
    let mut parsed = request.parse(buf);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) && limits.max_header_count > 32 {
        large.resize(limits.max_header_count, httparse::EMPTY_HEADER);
        request = httparse::Request::new(&mut large);
        parsed = request.parse(buf);
    }
    let status = match parsed {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HttpError::VersionNotSupported),
        Err(_) => return Err(HttpError::BadRequest("malformed request line or header")),
    };
    let httparse::Status::Complete(length) = status else {
        if line_end.is_some_and(|n| buf.len() - n > limits.max_header_block) {
            return Err(HttpError::HeadersTooLarge);
        }
        return Ok(None);
    };
    let request_line = memchr::memchr(b'\n', &buf[..length]).unwrap_or(length);
    if length - request_line > limits.max_header_block {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default().as_bytes().to_vec();
    let minor = request.version.unwrap_or(1);
    let mut headers = Vec::with_capacity(request.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut expect_continue = false;
    let mut hosts = 0;
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|&b| b == b',') {
                let n = parse_length(trim(part)).ok_or(HttpError::BadRequest("bad Content-Length"))?;
                match content_length {
                    Some(m) if m != n => return Err(HttpError::BadRequest("differing Content-Length values")),
                    _ => content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let text = std::str::from_utf8(value).map_err(|_| HttpError::BadRequest("bad Transfer-Encoding"))?;
            let all = transfer_encoding.get_or_insert_with(String::new);
            if !all.is_empty() {
                all.push(',');
            }
            all.push_str(text);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                connection_close |= token.eq_ignore_ascii_case(b"close");
                connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if trim(value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = minor >= 1;
            } else {
                return Err(HttpError::ExpectationFailed);
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
        headers.push((name.to_string(), value.to_vec()));
    }
    if minor >= 1 && hosts != 1 {
        return Err(HttpError::BadRequest("an HTTP/1.1 request needs exactly one Host header"));
    }
    let framing = match (transfer_encoding, content_length) {
        (Some(_), Some(_)) => return Err(HttpError::BadRequest("both Content-Length and Transfer-Encoding")),
        (Some(_), None) if minor == 0 => return Err(HttpError::BadRequest("Transfer-Encoding in an HTTP/1.0 request")),
        (Some(codings), None) => {
            let codings: Vec<&str> = codings.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
            match codings.as_slice() {
                [only] if only.eq_ignore_ascii_case("chunked") => Framing::Chunked,
                // Any coding but a single final `chunked` leaves the end of
                // the body to be guessed: refused rather than guessed.
                [.., last] if last.eq_ignore_ascii_case("chunked") => return Err(HttpError::NotImplemented),
                _ => return Err(HttpError::BadRequest("Transfer-Encoding does not end in chunked")),
            }
        }
        (None, Some(0)) | (None, None) => Framing::Empty,
        (None, Some(n)) => {
            if n > limits.max_body_size {
                return Err(HttpError::PayloadTooLarge);
            }
            Framing::Length(n)
        }
    };
    let keep_alive = if minor == 0 { connection_keep_alive && !connection_close } else { !connection_close };
    let head = Head { method, target, minor, headers, framing, keep_alive, expect_continue };
    Ok(Some((head, length)))
}

/// A Content-Length value: ASCII digits only (no sign, no spaces inside).
fn parse_length(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn head(text: &str) -> Result<Option<(Head, usize)>, HttpError> {
        parse(text.as_bytes(), &limits())
    }

    #[test]
    fn a_simple_request() {
        let (h, n) = head("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nrest").unwrap().unwrap();
        assert_eq!(n, "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n".len());
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, b"/a?b");
        assert_eq!(h.framing, Framing::Empty);
        assert!(h.keep_alive && !h.expect_continue);
    }

    #[test]
    fn incomplete_heads_wait() {
        assert!(head("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(head("GE").unwrap().is_none());
    }

    #[test]
    fn framing_and_smuggling() {
        let h = |t: &str| head(t).map(|o| o.map(|(h, _)| h.framing));
        assert_eq!(h("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"), Ok(Some(Framing::Length(5))));
        assert_eq!(h("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), Ok(Some(Framing::Length(5))));
        assert_eq!(h("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), Ok(Some(Framing::Chunked)));
        for bad in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(HttpError::BadRequest(_))), "{bad:?}: {:?}", head(bad));
        }
    }

    #[test]
    fn limits_give_their_status() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(10_000));
        assert_eq!(head(&long).unwrap_err().status(), 414);
        let partial = format!("GET /{}", "a".repeat(10_000));
        assert_eq!(head(&partial).unwrap_err().status(), 414);
        let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(head(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")).unwrap_err().status(), 431);
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(70_000));
        assert_eq!(head(&big).unwrap_err().status(), 431);
        let body = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n";
        assert_eq!(head(body).unwrap_err().status(), 413);
    }

    #[test]
    fn header_counts_around_the_stack_room_follow_the_limit() {
        let request = |n: usize| {
            let fields: String = (0..n).map(|i| format!("X-{i}: y\r\n")).collect();
            format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n")
        };
        let (h, _) = head(&request(60)).unwrap().unwrap();
        assert_eq!(h.headers.len(), 61);
        let few = Limits { max_header_count: 10, ..limits() };
        assert_eq!(parse(request(10).as_bytes(), &few).unwrap_err().status(), 431);
        assert!(parse(request(9).as_bytes(), &few).unwrap().is_some());
        let many = Limits { max_header_count: 40, ..limits() };
        assert_eq!(parse(request(40).as_bytes(), &many).unwrap_err().status(), 431);
        assert!(parse(request(39).as_bytes(), &many).unwrap().is_some());
    }

    #[test]
    fn keep_alive_by_version() {
        let ka = |t: &str| head(t).unwrap().unwrap().0.keep_alive;
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    }
}
