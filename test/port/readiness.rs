//! One-shot readiness (`enif_select` semantics) observed through behaviour,
//! and one loop serving stdin, the auxiliary socket and many connections.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::Write;
use std::thread::sleep;
use std::time::{Duration, Instant};

const PROTOS: &str = r#"
import threading, time
import erlang.reactor as reactor

class Collect(reactor.Protocol):
    """Reports every chunk; returns the action named in client_info."""
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self.action = client_info.get("action", "continue")
        self.n = 0
    def data_received(self, data):
        self.n += 1
        report("chunk", self.fd, bytes(data), self.n)
        return self.action

class Async(reactor.Protocol):
    """data_received -> async_pending; a thread calls signal_write_ready later."""
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self.signal = client_info.get("signal", True)
        self.signalled = False
        self.reads = 0
        self.writes = 0
    def data_received(self, data):
        self.reads += 1
        report("async_data", bytes(data), self.reads)
        self.write_buffer.extend(b"reply:" + bytes(data))
        if self.signal and self.reads == 1:
            def later():
                time.sleep(0.3)
                self.signalled = True
                report("signal", reactor.signal_write_ready(self.fd))
            threading.Thread(target=later, daemon=True).start()
        return "async_pending"
    def write_ready(self):
        self.writes += 1
        report("async_write_ready", self.signalled, self.writes)
        n = self.write(bytes(self.write_buffer))
        del self.write_buffer[:n]
        return "read_pending"

class WriteLoop(reactor.Protocol):
    """write_pending, then write_ready returns continue 4 times, then read_pending."""
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self.calls = 0
    def data_received(self, data):
        return "write_pending"
    def write_ready(self):
        self.calls += 1
        report("wr", self.calls)
        return "continue" if self.calls % 5 else "read_pending"

_kinds = {"collect": Collect, "async": Async, "writeloop": WriteLoop}
def make_protocol(kind):
    return _kinds[kind]()
"#;

fn info(extra: Vec<(&str, Term)>) -> Term {
    let mut v = vec![(atom("type"), atom("tcp"))];
    for (k, t) in extra {
        v.push((atom(k), t));
    }
    map(v)
}

fn handoff_kind(p: &mut Port, kind: &str, inf: Term) -> (std::net::TcpStream, u64) {
    p.call_ok("__main__", "use", vec![bin(kind)]);
    let (client, server) = tcp_pair();
    let id = conn_id();
    p.handoff(id, std::os::fd::AsRawFd::as_raw_fd(&server), inf);
    drop(server);
    (client, id)
}

/// Closes `stream` with a reset (RST) instead of an orderly FIN.
fn reset(stream: std::net::TcpStream) {
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger).unwrap();
    drop(stream);
}

fn chunk_payload(r: &[Term]) -> Vec<u8> {
    match &r[1] {
        Term::Binary(b) => b.bytes.clone(),
        t => panic!("chunk payload is not a binary: {}", show(t)),
    }
}

#[test]
fn continue_and_read_pending_keep_delivering_data() {
    let mut p = Port::start_queued(PROTOS);
    for action in ["continue", "read_pending"] {
        let (mut c, id) = handoff_kind(&mut p, "collect", info(vec![("action", bin(action))]));
        for i in 0..5 {
            let msg = format!("{action}-{i}");
            c.write_all(msg.as_bytes()).unwrap();
            let r = p.wait_report("chunk");
            assert_eq!(chunk_payload(&r), msg.as_bytes(), "{action}: chunk {i}");
            assert_eq!(as_int(&r[2]), Some(i + 1), "{action}: data_received call count");
        }
        drop(c);
        assert!(is_atom(&p.wait_closed(id), "eof"));
    }
}

#[test]
fn async_pending_waits_for_signal_write_ready() {
    let mut p = Port::start_queued(PROTOS);
    let (mut c, id) = handoff_kind(&mut p, "async", info(vec![]));
    let t0 = Instant::now();
    c.write_all(b"one").unwrap();
    let r = p.wait_report("async_data");
    assert_eq!(chunk_payload(&[bin(""), r[0].clone()]), b"one");
    // While async_pending, nothing is armed: more input is not delivered.
    sleep(Duration::from_millis(50));
    c.write_all(b"two").unwrap();
    let early = p.try_wait_report("async_data", Duration::from_millis(150));
    assert!(early.is_none(), "data_received ran again while async_pending: {:?}", early.map(|v| show(&tup(v))));
    // write_ready comes only after the thread's signal_write_ready.
    let w = p.wait_report("async_write_ready");
    assert!(is_atom(&w[0], "true"), "write_ready ran before signal_write_ready");
    assert!(t0.elapsed() >= Duration::from_millis(250), "write_ready came too early: {:?}", t0.elapsed());
    let s = p.wait_report("signal");
    assert!(is_atom(&s[0], "true"), "signal_write_ready returned {}", show(&s[0]));
    assert_eq!(read_n(&mut c, 9), b"reply:one");
    // read_pending from write_ready re-arms read: "two" arrives now.
    let r = p.wait_report("async_data");
    assert_eq!(chunk_payload(&[bin(""), r[0].clone()]), b"two");
    // async_pending again, with no signal this time: even the peer's reset
    // goes unnoticed (nothing is armed) until stop, and the lasting error and
    // hang-up do not wake the loop over and over.
    reset(c);
    let cpu_before = cpu_time(p.os_pid());
    p.expect_no("a closed notice while nothing is armed", Duration::from_millis(600), |t| {
        matches(t, &tup(vec![atom("closed"), any(), any()]))
    });
    let burnt = cpu_time(p.os_pid()) - cpu_before;
    assert!(burnt <= Duration::from_millis(100), "the port used {burnt:?} of CPU in 600 ms while idle");
    assert!(is_atom(&p.stop(), "ok"));
    let r = p.wait_closed(id);
    assert!(is_atom(&r, "stopped"), "{}", show(&r));
}

#[test]
fn async_pending_without_signal_never_gets_write_ready() {
    let mut p = Port::start_queued(PROTOS);
    let (mut c, id) = handoff_kind(&mut p, "async", info(vec![("signal", atom("false"))]));
    c.write_all(b"x").unwrap();
    p.wait_report("async_data");
    let w = p.try_wait_report("async_write_ready", Duration::from_millis(500));
    assert!(w.is_none(), "write_ready without signal_write_ready");
    // signal from outside (an exec on the loop's thread) arms write
    let fd = p.eval_ok("[fd for fd in range(3, 1024) if __import__('erlang.reactor').reactor.get_protocol(fd) is not None][0]");
    let r = p.eval_ok(&format!("__import__('erlang.reactor').reactor.signal_write_ready({})", int_text(&fd).unwrap()));
    assert!(is_atom(&r, "true"), "signal_write_ready: {}", show(&r));
    p.wait_report("async_write_ready");
    assert_eq!(read_n(&mut c, 7), b"reply:x");
    // signal_write_ready for an fd with no connection is False
    let r = p.eval_ok("__import__('erlang.reactor').reactor.signal_write_ready(1000)");
    assert!(is_atom(&r, "false"), "signal_write_ready(unknown fd): {}", show(&r));
    drop(c);
    p.wait_closed(id);
}

#[test]
fn write_pending_gets_write_ready_and_continue_rearms_write() {
    let mut p = Port::start_queued(PROTOS);
    let (mut c, id) = handoff_kind(&mut p, "writeloop", info(vec![]));
    c.write_all(b"go").unwrap();
    for i in 1..=5 {
        let r = p.wait_report("wr");
        assert_eq!(as_int(&r[0]), Some(i));
    }
    // read_pending: write interest is gone, no more write_ready.
    let extra = p.try_wait_report("wr", Duration::from_millis(300));
    assert!(extra.is_none(), "write_ready after read_pending: {:?}", extra.map(|v| show(&tup(v))));
    // and read interest is armed
    c.write_all(b"again").unwrap();
    for i in 6..=10 {
        let r = p.wait_report("wr");
        assert_eq!(as_int(&r[0]), Some(i));
    }
    drop(c);
    p.wait_closed(id);
}

#[test]
fn one_loop_serves_stdin_aux_and_twenty_connections() {
    let mut p = Port::start_std(ECHO);
    let n = 20;
    let mut conns: Vec<_> = (0..n).map(|_| p.handoff_tcp()).collect();
    // Interleave: a round of writes on every connection, a request on
    // stdin, a handoff on aux, then all the replies.
    for round in 0..5 {
        for (i, (c, _)) in conns.iter_mut().enumerate().take(n) {
            c.write_all(format!("r{round}c{i};").as_bytes()).unwrap();
        }
        let s = p.stats();
        assert!(s.contains_key("active_connections"), "round {round}: {s:?}");
        let extra = p.handoff_tcp();
        conns.push(extra);
        for (i, (c, _)) in conns.iter_mut().enumerate().take(n) {
            let want = format!("r{round}c{i};");
            assert_eq!(read_n(c, want.len()), want.as_bytes(), "conn {i} round {round}");
        }
        let s = p.stats();
        assert!(s["active_connections"] >= n as i128, "round {round}: {s:?}");
    }
    // Concurrent clients on threads, each doing several round trips.
    let handles: Vec<_> = conns
        .drain(..)
        .enumerate()
        .map(|(i, (mut c, id))| {
            std::thread::spawn(move || {
                for k in 0..10 {
                    let m = format!("thread {i} msg {k} {}", "x".repeat(i * 100));
                    echo_roundtrip(&mut c, m.as_bytes());
                }
                (c, id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        let (c, id) = h.join().expect("client thread");
        drop(c);
        ids.push(id);
    }
    for id in &ids {
        assert!(is_atom(&p.wait_closed(*id), "eof"));
    }
    let s = p.stats();
    assert_eq!(s["active_connections"], 0, "{s:?}");
    assert_eq!(s["total_connections"], ids.len() as i128, "{s:?}");
}
