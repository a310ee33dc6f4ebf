//! A `write` that fails because the peer went away is an I/O error of that
//! connection, not a fault of the protocol: when its `OSError` escapes the
//! callback, the connection closes as `{error, Errno}` (as a failed read
//! does), with no traceback logged and no Python error counted. Anything
//! else that escapes stays a Python error.
//!
//! The peer "goes away" by `shutdown(SHUT_RD)` on its end of a Unix stream
//! pair: the port's writes then fail with `EPIPE` at once, while its reads
//! still wait for data, so the failure happens inside the callback every time.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

const WRITERS: &str = r#"
import erlang.reactor as reactor

_held = []

class Writer(reactor.Protocol):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        if self.mode == "held":
            _held.append(self)
    def data_received(self, data):
        if self.mode == "answer":
            self.write(b"answer: " + bytes(data))
        elif self.mode == "wrap":
            try:
                self.write(b"answer")
            except OSError as e:
                raise RuntimeError("wrapped write failure") from e
        elif self.mode == "broadcast":
            _held[0].write(b"to the held connection")
        elif self.mode == "pending":
            self.write_buffer.extend(b"later: " + bytes(data))
            return "write_pending"
        else:
            self.write(bytes(data))
        return "continue"
    def connection_lost(self):
        report("lost", self.mode)

def make_protocol(mode):
    return Writer(mode)
"#;

fn connect(p: &mut Port, mode: &str) -> (UnixStream, u64) {
    p.call_ok("__main__", "use", vec![bin(mode)]);
    let (c, server) = unix_pair();
    let id = conn_id();
    p.handoff(id, server.as_raw_fd(), unix_info());
    drop(server);
    (c, id)
}

fn is_log(t: &Term) -> bool {
    elems(t).is_some_and(|e| e.len() == 3 && is_atom(&e[0], "log"))
}

/// The connection's own write fails inside `callback`: `{error, epipe}`,
/// `connection_lost` runs, nothing is logged or counted, the next
/// connection is served.
fn own_write_fails(mode: &str) {
    let mut p = Port::start_queued(WRITERS);
    let (mut c, id) = connect(&mut p, mode);
    c.shutdown(Shutdown::Read).unwrap();
    c.write_all(b"request").unwrap();
    let reason = p.wait_closed(id);
    assert!(
        matches(&reason, &tup(vec![atom("error"), atom("epipe")])),
        "closed reason {} (expected {{error, epipe}})",
        show(&reason)
    );
    let lost = p.wait_report("lost");
    assert!(term_eq(&lost[0], &bin(mode)), "connection_lost of {}", show(&lost[0]));
    p.expect_no("a log line about the write failure", Duration::from_millis(300), is_log);
    let s = p.stats();
    assert_eq!(s["python_errors"], 0, "a peer that went away counted as a Python error: {s:?}");
    assert_eq!(s["active_connections"], 0, "{s:?}");

    let (mut next, next_id) = connect(&mut p, "echo");
    echo_roundtrip(&mut next, b"the next connection is served");
    drop(next);
    assert!(is_atom(&p.wait_closed(next_id), "eof"));
}

#[test]
fn a_failed_write_in_data_received_closes_as_an_io_error() {
    own_write_fails("answer");
}

#[test]
fn a_failed_write_in_write_ready_closes_as_an_io_error() {
    own_write_fails("pending");
}

/// A protocol that turns the failure into another exception has a fault of
/// its own: that is a Python error, with its traceback.
#[test]
fn another_exception_raised_from_a_write_failure_is_a_python_error() {
    let mut p = Port::start_queued(WRITERS);
    let (mut c, id) = connect(&mut p, "wrap");
    c.shutdown(Shutdown::Read).unwrap();
    c.write_all(b"request").unwrap();
    let reason = p.wait_closed(id);
    assert!(
        matches(&reason, &tup(vec![atom("python"), bin("RuntimeError"), bin("wrapped write failure"), any()])),
        "closed reason {}",
        show(&reason)
    );
    p.wait_log("the traceback", |l, t| l == "error" && t.contains("BrokenPipeError") && t.contains("RuntimeError"));
    assert_eq!(p.stat("python_errors"), 1);
}

/// A write to another connection that fails, let through by the protocol
/// that made it, is that protocol's fault: it closes with a Python error,
/// and the connection written to is left to its own events.
#[test]
fn a_failed_write_to_another_connection_is_a_python_error() {
    let mut p = Port::start_queued(WRITERS);
    let (held, held_id) = connect(&mut p, "held");
    held.shutdown(Shutdown::Read).unwrap();
    let (mut c, id) = connect(&mut p, "broadcast");
    c.write_all(b"news").unwrap();
    let reason = p.wait_closed(id);
    assert!(
        matches(&reason, &tup(vec![atom("python"), bin("BrokenPipeError"), any(), any()])),
        "closed reason {}",
        show(&reason)
    );
    p.wait_log("the traceback", |l, t| l == "error" && t.contains("BrokenPipeError"));
    let s = p.stats();
    assert_eq!(s["python_errors"], 1, "{s:?}");
    assert_eq!(s["active_connections"], 1, "the held connection was closed too: {s:?}");
    drop(held);
    assert!(is_atom(&p.wait_closed(held_id), "eof"));
}
