//! HTTP/1.1 for web applications, served on the port's own loop.
//!
//! The engine is split the way the work is: parsing and framing here in
//! Rust, with no Python involved ([`request`], [`chunked`], [`response`],
//! [`body`], [`stream`]); the connection state the loop keeps, its deadlines
//! and the hand-over to the application ([`engine`]); the pool of threads
//! that run blocking application calls ([`pool`]). The WSGI layer that
//! builds `environ` and calls the application lives with the rest of the
//! Python bridge, in `python/wsgi.rs`.
//!
//! While the application runs, its worker thread owns the connection: it
//! reads the request body from the socket as `wsgi.input` asks for it and
//! writes the response, waiting for the socket with the GIL released. The
//! loop neither reads nor writes the connection meanwhile, so bytes can
//! never be taken out of order; it resumes the connection (the next
//! pipelined request, or waiting for one) when the worker reports back.

pub mod body;
pub mod chunked;
pub mod engine;
pub mod pool;
pub mod request;
pub mod response;
pub mod stream;

use std::time::Duration;

/// The limits and times of an HTTP context (`docs/http.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, in bytes: over it, 414.
    pub max_request_line: usize,
    /// Largest header block after the request line, in bytes: over it, 431.
    pub max_header_block: usize,
    /// Most header fields in one request: over it, 431.
    pub max_header_count: usize,
    /// Largest request body, in bytes: over it, 413.
    pub max_body_size: u64,
    /// How long an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// How long a request head may take from its first byte (slowloris: 408),
    /// and how long a body read may wait for the next byte.
    pub header_timeout: Duration,
    /// Threads that run the application.
    pub threads: usize,
    /// One log line per request.
    pub access_log: bool,
    /// `wsgi.multiprocess`: other processes serve the same application.
    pub multiprocess: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8192,
            max_header_block: 65536,
            max_header_count: 100,
            max_body_size: 1 << 30,
            keepalive_timeout: Duration::from_millis(5000),
            header_timeout: Duration::from_millis(10000),
            threads: 8,
            access_log: false,
            multiprocess: false,
        }
    }
}

/// A request the engine refuses, and the status it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    BadRequest(&'static str),
    RequestTimeout,
    PayloadTooLarge,
    UriTooLong,
    HeadersTooLarge,
    ExpectationFailed,
    NotImplemented,
    VersionNotSupported,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::RequestTimeout => 408,
            HttpError::PayloadTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::ExpectationFailed => 417,
            HttpError::HeadersTooLarge => 431,
            HttpError::NotImplemented => 501,
            HttpError::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        response::reason_phrase(self.status())
    }

    /// The complete response sent for this error; the connection is closed
    /// after it.
    pub fn response(self) -> Vec<u8> {
        let body = match self {
            HttpError::BadRequest(why) => format!("{} {}: {why}\n", self.status(), self.reason()),
            _ => format!("{} {}\n", self.status(), self.reason()),
        };
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{body}",
            self.status(),
            self.reason(),
            body.len(),
            response::date_header(),
        )
        .into_bytes()
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "400 Bad Request: {why}"),
            other => write!(f, "{} {}", other.status(), other.reason()),
        }
    }
}
