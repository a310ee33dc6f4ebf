//! Timers run by the port's own loop: `Protocol.call_later`, the context's
//! `idle_timeout`, and the examples' HTTP header timeout.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::{Read, Write};
use std::time::Duration;

const TIMED: &str = r#"
import threading
import erlang.reactor as reactor

LOOP_THREAD = []

class Later(reactor.Protocol):
    """On each line: 'later N' answers 'tick N' from a timer; 'cancel'
    sets two timers and cancels the first; 'raise' sets one that raises;
    'wait' sets one far off and reports its handle when the connection closes."""
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        LOOP_THREAD.append(threading.get_ident())
        self.handles = []

    def data_received(self, data):
        word, _, arg = bytes(data).decode().strip().partition(" ")
        if word == "later":
            handle = self.call_later(0.05, self.tick, arg)
            report("when", handle.when() - reactor.time() > 0, handle.cancelled())
        elif word == "cancel":
            first = self.call_later(0.05, report, "first")
            self.call_later(0.3, report, "second")
            first.cancel()
            first.cancel()
            report("cancelled", first.cancelled())
        elif word == "raise":
            self.call_later(0, self.fail)
        elif word == "wait":
            self.handles.append(self.call_later(2.0, report, "far"))
        elif word == "thread":
            def from_thread():
                self.call_later(0, self.tick, "from a thread")
            threading.Thread(target=from_thread).start()
        return "continue"

    def tick(self, arg):
        report("tick", threading.get_ident() == LOOP_THREAD[0])
        self.write_buffer.extend(b"tick " + arg.encode())
        return "write_pending"

    def write_ready(self):
        super().write_ready()
        return "continue" if self.write_buffer else "read_pending"

    def fail(self):
        raise ValueError("timer failed")

    def connection_lost(self):
        report("lost", [h.cancelled() for h in self.handles])

reactor.set_protocol_factory(Later)
"#;

fn read_text(c: &mut impl Read, n: usize) -> String {
    String::from_utf8(read_n(c, n)).unwrap()
}

#[test]
fn call_later_runs_the_callback_in_the_loop_with_its_arguments_and_action() {
    let mut p = Port::start_std(TIMED);
    let (mut c, id) = p.handoff_tcp();
    c.write_all(b"later 1\n").unwrap();
    let when = p.wait_report("when");
    assert!(is_atom(&when[0], "true") && is_atom(&when[1], "false"), "{}", show(&tup(when)));
    assert_eq!(read_text(&mut c, 6), "tick 1");
    let tick = p.wait_report("tick");
    assert!(is_atom(&tick[0], "true"), "the timer ran outside the loop thread");
    // The connection goes on as usual after a timer's action.
    c.write_all(b"later 2\n").unwrap();
    assert_eq!(read_text(&mut c, 6), "tick 2");
    drop(c);
    assert!(is_atom(&p.wait_closed(id), "eof"));
    assert_eq!(p.stat("python_errors"), 0);
}

#[test]
fn a_cancelled_timer_never_runs() {
    let mut p = Port::start_std(TIMED);
    let (mut c, _id) = p.handoff_tcp();
    c.write_all(b"cancel\n").unwrap();
    assert!(is_atom(&p.wait_report("cancelled")[0], "true"));
    // "second" is due after "first" would have been: once it has run, the
    // first would have too.
    p.wait_report("second");
    assert!(p.take_reports("first").is_empty(), "the cancelled timer ran");
}

#[test]
fn a_timer_set_from_another_thread_wakes_the_loop() {
    let mut p = Port::start_std(TIMED);
    let (mut c, _id) = p.handoff_tcp();
    c.write_all(b"thread\n").unwrap();
    assert_eq!(read_text(&mut c, 18), "tick from a thread");
}

#[test]
fn an_exception_in_a_timer_closes_its_connection_as_a_python_error() {
    let mut p = Port::start_std(TIMED);
    let (mut other, _other_id) = p.handoff_tcp();
    let (mut c, id) = p.handoff_tcp();
    c.write_all(b"raise\n").unwrap();
    let reason = p.wait_closed(id);
    assert!(
        matches(&reason, &tup(vec![atom("python"), bin("ValueError"), bin("timer failed"), any()])),
        "closed reason {}",
        show(&reason)
    );
    p.wait_log("the traceback", |l, t| l == "error" && t.contains("ValueError: timer failed"));
    assert_eq!(p.stat("python_errors"), 1);
    // Only that connection.
    other.write_all(b"later 3\n").unwrap();
    assert_eq!(read_text(&mut other, 6), "tick 3");
}

#[test]
fn the_timers_of_a_closed_connection_are_cancelled() {
    let mut p = Port::start_std(TIMED);
    let (mut c, id) = p.handoff_tcp();
    c.write_all(b"wait\n").unwrap();
    assert!(eventually(T, || p.stat("total_requests") == 1));
    drop(c);
    assert!(is_atom(&p.wait_closed(id), "eof"));
    let lost = p.wait_report("lost");
    assert!(term_eq(&lost[0], &list(vec![atom("true")])), "handles in connection_lost: {}", show(&lost[0]));
    p.expect_no("the timer of the closed connection", Duration::from_millis(2500), |_| false);
    assert!(p.take_reports("far").is_empty(), "a timer of a closed connection ran");
}

/// Voluntary context switches of the port's loop thread (its main thread).
fn loop_wakeups(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

#[test]
fn with_no_timer_pending_the_loop_sleeps_without_a_timeout() {
    let mut p = Port::start_std(TIMED);
    let (mut c, _id) = p.handoff_tcp();
    c.write_all(b"cancel\n").unwrap();
    p.wait_report("second");
    // Every timer has run or was cancelled, and nothing else is pending:
    // the loop waits for events only and does not wake up by itself.
    std::thread::sleep(Duration::from_millis(100));
    let before = loop_wakeups(p.os_pid());
    std::thread::sleep(Duration::from_millis(500));
    let after = loop_wakeups(p.os_pid());
    assert_eq!(before, after, "the idle loop woke up {} times", after - before);
}

#[test]
fn idle_timeout_closes_connections_without_events_and_spares_busy_ones() {
    let mut p = Port::start();
    p.setup_std(ECHO, vec![("idle_timeout", int(1000))]);
    let (_quiet, quiet_id) = p.handoff_tcp();
    let (mut busy, busy_id) = p.handoff_tcp();
    // The busy one has an event every 100 ms, ten times more often than the limit.
    for i in 0..25 {
        echo_roundtrip(&mut busy, format!("{i:02}").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(is_atom(&p.wait_closed(quiet_id), "idle_timeout"));
    assert!(
        p.try_wait_for(Duration::ZERO, |t| {
            elems(t).is_some_and(|e| e.len() == 3 && is_atom(&e[0], "closed") && term_eq(&e[1], &uint(busy_id)))
        })
        .is_none(),
        "the busy connection was closed"
    );
    // connection_lost ran for the closed one (the echo protocol prints).
    p.wait_log("connection_lost", |l, t| l == "info" && t.starts_with("Connection closed"));
    // Once quiet, the busy one goes too.
    assert!(is_atom(&p.wait_closed(busy_id), "idle_timeout"));
    assert!(read_to_eof(&mut busy).is_empty());
    assert_eq!(p.stat("active_connections"), 0);
}

#[test]
fn idle_timeout_must_be_a_positive_number_of_milliseconds_or_infinity() {
    for bad in [int(0), int(-5), atom("never"), bin("1000")] {
        let mut p = Port::start();
        let r = p.setup(vec![("idle_timeout", bad.clone())]);
        assert!(matches(&r, &tup(vec![atom("error"), tup(vec![atom("bad_request"), any()])])), "{} gave {}", show(&bad), show(&r));
    }
    let mut p = Port::start();
    p.setup_std(ECHO, vec![("idle_timeout", atom("infinity"))]);
    let (mut c, _id) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"no limit");
}

/// 100 clients that send half a request and nothing more fill a context of
/// 100 connections; the example protocol's header timeout answers them 408
/// and closes them, and the next client is served.
#[test]
fn slow_clients_cannot_lock_the_example_http_server() {
    let mut p = Port::start();
    p.setup_std(
        "import http_protocol\nhttp_protocol.HEADER_TIMEOUT = 1.0\n",
        vec![
            ("python_path", list(vec![bin(repo_root().join("examples").to_string_lossy().as_bytes())])),
            ("max_connections", int(100)),
        ],
    );
    let mut slow = Vec::new();
    for _ in 0..100 {
        let (mut c, id) = p.handoff_tcp();
        c.write_all(b"GET /slow HTTP/1.0\r\nX-a: b").unwrap();
        slow.push((c, id));
    }
    let (_refused, refused_id) = p.handoff_tcp();
    assert!(is_atom(&p.wait_closed(refused_id), "max_connections"));
    for (c, id) in &mut slow {
        let answer = String::from_utf8(read_to_eof(c)).unwrap();
        assert!(answer.starts_with("HTTP/1.0 408 Request Timeout\r\n"), "a slow client got {answer:?}");
        assert!(is_atom(&p.wait_closed(*id), "normal"));
    }
    let (mut next, next_id) = p.handoff_tcp();
    next.write_all(b"GET /fast HTTP/1.0\r\n\r\n").unwrap();
    let answer = String::from_utf8(read_to_eof(&mut next)).unwrap();
    assert!(answer.ends_with("Hello! You requested /fast"), "{answer:?}");
    assert!(is_atom(&p.wait_closed(next_id), "normal"));
}

/// The keep-alive example gives each request its header timeout, counted
/// from the end of the previous response, and answers 408 past it.
#[test]
fn the_keep_alive_example_times_out_a_request_head_that_does_not_come() {
    let mut p = Port::start();
    p.setup_std(
        "import http_protocol\nimport erlang.reactor as reactor\n\
         http_protocol.HEADER_TIMEOUT = 0.5\n\
         reactor.set_protocol_factory(http_protocol.KeepAliveHTTPProtocol)\n",
        vec![("python_path", list(vec![bin(repo_root().join("examples").to_string_lossy().as_bytes())]))],
    );
    let (mut c, id) = p.handoff_tcp();
    c.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = Vec::new();
    while !String::from_utf8_lossy(&first).ends_with("Hello! You requested /one") {
        let mut chunk = [0u8; 1024];
        let n = c.read(&mut chunk).expect("the first response");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&chunk[..n]);
    }
    // Half of the next request, then nothing.
    c.write_all(b"GET /two HTTP/1.1\r\n").unwrap();
    let rest = String::from_utf8(read_to_eof(&mut c)).unwrap();
    assert!(rest.starts_with("HTTP/1.0 408 Request Timeout\r\n"), "{rest:?}");
    assert!(is_atom(&p.wait_closed(id), "normal"));
}
