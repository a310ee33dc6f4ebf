//! A Python fault closes the one connection it belongs to, is reported, and
//! the next connection is served.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

const FAULTY: &str = r#"
import erlang.reactor as reactor

class Faulty(reactor.Protocol):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        if self.mode == "made":
            raise RuntimeError("made boom")
    def data_received(self, data):
        m = self.mode
        if m == "data":
            raise RuntimeError("data boom")
        if m == "write":
            return "write_pending"
        if m == "lost":
            return "close"
        if m == "bogus":
            return "bogus"
        if m == "none":
            return None
        if m == "int":
            return 42
        if m == "bytes_action":
            return b"continue"
        self.write_buffer.extend(data)
        return "write_pending"
    def write_ready(self):
        if self.mode == "write":
            raise ValueError("write boom")
        n = self.write(bytes(self.write_buffer))
        del self.write_buffer[:n]
        return "continue" if self.write_buffer else "read_pending"
    def connection_lost(self):
        report("lost", self.mode)
        if self.mode == "lost":
            raise KeyError("lost boom")

def make_protocol(m):
    if m == "factory":
        raise RuntimeError("factory boom")
    return Faulty(m)
"#;

fn connect(p: &mut Port, mode: &str) -> (std::net::TcpStream, u64) {
    p.call_ok("__main__", "use", vec![bin(mode)]);
    let (c, server) = tcp_pair();
    let id = conn_id();
    p.handoff(id, server.as_raw_fd(), tcp_info(&server));
    drop(server);
    (c, id)
}

/// The next connection after a fault is served normally.
fn next_is_served(p: &mut Port) {
    let (mut c, id) = connect(p, "ok");
    echo_roundtrip(&mut c, b"next connection works");
    drop(c);
    assert!(is_atom(&p.wait_closed(id), "eof"));
    let lost = p.wait_report("lost");
    assert!(term_eq(&lost[0], &bin("ok")));
}

fn python_reason(reason: &Term, ty: &str, msg: &str) -> String {
    let e = elems(reason).unwrap_or_else(|| panic!("closed reason {} is not a tuple", show(reason)));
    assert!(
        e.len() == 4 && is_atom(&e[0], "python"),
        "closed reason {} is not {{python, Type, Message, Traceback}}",
        show(reason)
    );
    assert!(term_eq(&e[1], &bin(ty)), "exception type {} (expected {ty})", show(&e[1]));
    let m = as_text(&e[2]).expect("message is a binary");
    assert!(m.contains(msg), "message {m:?} (expected {msg:?})");
    let tb = as_text(&e[3]).expect("traceback is a binary");
    assert!(!tb.is_empty(), "empty traceback");
    tb
}

fn fault_case(mode: &str, send_data: bool, ty: &str, msg: &str, lost_runs: bool, tb_has: &str) {
    let mut p = Port::start_queued(FAULTY);
    let errors0 = p.stat("python_errors");
    let (mut c, id) = connect(&mut p, mode);
    if send_data {
        c.write_all(b"trigger").unwrap();
    }
    let reason = p.wait_closed(id);
    let tb = python_reason(&reason, ty, msg);
    assert!(tb.contains(tb_has), "traceback does not mention {tb_has}:\n{tb}");
    // the peer sees the close
    let _ = read_to_eof(&mut c);
    if lost_runs {
        let lost = p.wait_report("lost");
        assert!(term_eq(&lost[0], &bin(mode)), "connection_lost of {}", show(&lost[0]));
    } else {
        let lost = p.try_wait_report("lost", Duration::from_millis(200));
        assert!(lost.is_none(), "connection_lost ran without a protocol");
    }
    p.wait_log("an error log with the exception", |l, t| l == "error" && t.contains(msg));
    let s = p.stats();
    assert_eq!(s["python_errors"], errors0 + 1, "python_errors: {s:?}");
    assert_eq!(s["active_connections"], 0, "{s:?}");
    next_is_served(&mut p);
}

#[test]
fn exception_in_factory() {
    fault_case("factory", false, "RuntimeError", "factory boom", false, "make_protocol");
}

#[test]
fn exception_in_connection_made() {
    fault_case("made", false, "RuntimeError", "made boom", true, "connection_made");
}

#[test]
fn exception_in_data_received() {
    fault_case("data", true, "RuntimeError", "data boom", true, "data_received");
}

#[test]
fn exception_in_write_ready() {
    fault_case("write", true, "ValueError", "write boom", true, "write_ready");
}

#[test]
fn exception_in_connection_lost() {
    let mut p = Port::start_queued(FAULTY);
    let errors0 = p.stat("python_errors");
    let (mut c, id) = connect(&mut p, "lost");
    c.write_all(b"x").unwrap();
    let reason = p.wait_closed(id);
    assert!(
        is_atom(&reason, "normal") || matches(&reason, &tup(vec![atom("python"), bin("KeyError"), any(), any()])),
        "closed reason {}",
        show(&reason)
    );
    let _ = read_to_eof(&mut c);
    p.wait_report("lost");
    p.wait_log("an error log with the exception", |l, t| l == "error" && t.contains("lost boom"));
    assert_eq!(p.stat("python_errors"), errors0 + 1);
    p.expect_no("a second closed notice", Duration::from_millis(200), |t| {
        matches(t, &tup(vec![atom("closed"), uint(id), any()]))
    });
    next_is_served(&mut p);
}

fn bad_action_case(mode: &str, shown: &str) {
    let mut p = Port::start_queued(FAULTY);
    let (mut c, id) = connect(&mut p, mode);
    c.write_all(b"x").unwrap();
    let reason = p.wait_closed(id);
    let e = elems(&reason).unwrap_or_else(|| panic!("closed reason {}", show(&reason)));
    assert!(e.len() == 2 && is_atom(&e[0], "bad_action"), "closed reason {} is not {{bad_action, _}}", show(&reason));
    let text = as_text(&e[1]).expect("bad_action text is a binary");
    assert!(text.contains(shown), "bad_action text {text:?} does not show {shown}");
    let _ = read_to_eof(&mut c);
    let lost = p.wait_report("lost");
    assert!(term_eq(&lost[0], &bin(mode)));
    assert_eq!(p.stat("active_connections"), 0);
    next_is_served(&mut p);
}

#[test]
fn bad_action_string() {
    bad_action_case("bogus", "bogus");
}

#[test]
fn bad_action_none() {
    bad_action_case("none", "None");
}

#[test]
fn bad_action_int() {
    bad_action_case("int", "42");
}

#[test]
fn bad_action_bytes() {
    bad_action_case("bytes_action", "continue");
}

#[test]
fn faults_on_one_connection_leave_others_alone() {
    let mut p = Port::start_queued(FAULTY);
    let (mut good, gid) = connect(&mut p, "ok");
    echo_roundtrip(&mut good, b"before");
    let base = p.fd_count();
    for mode in ["data", "bogus", "factory", "made", "write", "none"] {
        let (mut c, id) = connect(&mut p, mode);
        let _ = c.write_all(b"x");
        p.wait_closed(id);
        echo_roundtrip(&mut good, format!("after {mode}").as_bytes());
    }
    assert!(p.stat("python_errors") >= 4);
    assert_eq!(p.stat("active_connections"), 1);
    let c = p.wait_fd_count(base, Duration::from_secs(2));
    assert_eq!(c, base, "descriptors of faulty connections leaked (fds {c}, expected {base})");
    drop(good);
    p.wait_closed(gid);
}
