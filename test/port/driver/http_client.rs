//! A raw HTTP/1.1 client for the HTTP tests: one connection handed to the
//! port as the VM hands them, with its own read buffer (responses may arrive
//! together or in pieces), parsing every byte of what comes back.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use super::Port;

/// One parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection with its own read buffer (responses may arrive
/// together or in pieces).
pub struct Client {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub id: u64,
}

impl Client {
    pub fn new(p: &mut Port) -> Client {
        let (stream, id) = p.handoff_tcp();
        Client { stream, buf: Vec::new(), id }
    }

    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
    }

    /// Reads more; false at end of file.
    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return false,
                Err(e) => panic!("read failed ({e}) with {:?} buffered", String::from_utf8_lossy(&self.buf)),
            }
        }
    }

    pub fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill(), "EOF inside a response: {:?}", String::from_utf8_lossy(&self.buf));
        }
        self.buf.drain(..n).collect()
    }

    pub fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.drain(..i + 2).collect::<Vec<u8>>();
                return line[..i].to_vec();
            }
            assert!(self.fill(), "EOF inside a line: {:?}", String::from_utf8_lossy(&self.buf));
        }
    }

    /// The next response; `head` for a response to HEAD (no body).
    pub fn reply(&mut self, head: bool) -> Reply {
        let (status, headers) = loop {
            let mut storage = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut storage);
            match response.parse(&self.buf).expect("a well-formed response head") {
                httparse::Status::Complete(n) => {
                    let status = response.code.unwrap();
                    let headers: Vec<(String, String)> = response
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    self.buf.drain(..n);
                    break (status, headers);
                }
                httparse::Status::Partial => {
                    assert!(self.fill(), "EOF before a response head: {:?}", String::from_utf8_lossy(&self.buf))
                }
            }
        };
        let mut reply = Reply { status, headers, body: Vec::new() };
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
            return reply;
        }
        if let Some(n) = reply.header("content-length") {
            let n: usize = n.parse().unwrap();
            reply.body = self.take(n);
        } else if reply.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let size = usize::from_str_radix(&String::from_utf8_lossy(&self.line()), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line(), b"", "no trailers expected");
                    break;
                }
                let data = self.take(size);
                reply.body.extend_from_slice(&data);
                assert_eq!(self.line(), b"", "chunk not followed by CRLF");
            }
        } else {
            while self.fill() {}
            reply.body = std::mem::take(&mut self.buf);
        }
        reply
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.reply(false)
    }

    /// Whether the server closed the connection (EOF with nothing more).
    pub fn closed(&mut self) -> bool {
        !self.fill() && self.buf.is_empty()
    }
}

/// `Expect: 100-continue` (RFC 9110, 10.1.1) against an application with
/// `/echo` (reads the body and answers it) and `/hello` (answers without
/// reading): the test apps of every interface have both. The interim
/// response comes only when the application reads; one that answers
/// without reading closes the connection, as its unsent body cannot be
/// told from the next request.
pub fn check_expect_100_continue(c: &mut Client) {
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.line(), b"HTTP/1.1 100 Continue");
    assert_eq!(c.line(), b"");
    c.send(b"body");
    assert_eq!(c.reply(false).text(), "body");
    c.send(b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let r = c.reply(false);
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!"));
    assert!(c.closed());
}
