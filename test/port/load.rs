//! Load and accounting: what the port costs while a peer does not keep up.
//!
//! A protocol writing to a peer that never reads fills the socket, then waits
//! for writability. While it waits the port must be idle: no busy polling
//! (its CPU time stays near zero), no `write_ready` calls the kernel did not
//! ask for, and no memory beyond what the protocol itself chose to buffer.
//! Once the peer reads, the protocol resumes on `write_ready` and every byte
//! arrives, in order.
//!
//! The slow-reader test measures the port's CPU time (`utime + stime` of
//! `/proc/<pid>/stat`) over a two-second window. An idle process accrues no
//! CPU time however loaded the machine is, and a busy-polling one accrues a
//! large share of the window even on a saturated machine, so the bound (5 %
//! of the window) separates the two with a wide margin on both sides.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

/// Bytes the slow-reader protocol sends (and so holds while blocked): far
/// more than the two socket buffers take, so the protocol must wait for
/// writability many times over.
const TOTAL: usize = 32 * 1024 * 1024;

/// Socket buffer sizes asked for on both ends, so that the point where the
/// protocol blocks does not depend on TCP autotuning.
const SOCKET_BUFFER: usize = 128 * 1024;

/// How long the blocked port is watched.
const WINDOW: Duration = Duration::from_secs(2);

/// The most CPU time the port may use while blocked, as a share of the
/// window.
const MAX_CPU_SHARE: f64 = 0.05;

/// The most the port's RSS may grow while blocked.
const MAX_RSS_GROWTH_BLOCKED: u64 = 1024 * 1024;

/// Beyond the buffered payload, what the port's RSS may grow by from before
/// the connection to while it is blocked (the interpreter's own allocations
/// for one connection, allocator rounding).
const RSS_SLACK: u64 = 8 * 1024 * 1024;

/// `write_ready` calls while blocked: the peer reads nothing, so the socket
/// never becomes writable and there should be none; a busy-polling loop
/// makes thousands.
const MAX_WRITE_READY_BLOCKED: i128 = 2;

const PROTOS: &str = r#"
import array, sys
import erlang.reactor as reactor

class SlowReaderSource(reactor.Protocol):
    """On any input, sends `total` bytes: 4-byte big-endian counters.

    Writes straight from a memoryview of the payload (no copies), until the
    socket is full; then waits for writability. Closes once all is sent.
    """
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self.total = client_info["total"]
        self.view = None
        self.sent = 0
        self.write_ready_calls = 0
        self.blocked_reported = False

    def data_received(self, data):
        if self.view is not None:
            return "continue"
        words = array.array("I", range(self.total // 4))
        if sys.byteorder == "little":
            words.byteswap()
        self.view = memoryview(words).cast("B")
        del words
        return self.push()

    def push(self):
        while self.sent < self.total:
            n = self.write(self.view[self.sent:])
            if n == 0:
                if not self.blocked_reported:
                    self.blocked_reported = True
                    report("blocked", self.sent, self.total - self.sent, self.fd)
                return "write_pending"
            self.sent += n
        report("sent_all", self.sent, self.write_ready_calls)
        self.view.release()
        self.view = None
        return "close"

    def write_ready(self):
        self.write_ready_calls += 1
        return self.push()

class Echo(reactor.Protocol):
    def data_received(self, data):
        self.write_buffer.extend(data)
        return "write_pending"

_kinds = {"source": SlowReaderSource, "echo": Echo}
def make_protocol(kind):
    return _kinds[kind]()
def write_ready_calls(fd):
    return reactor.get_protocol(fd).write_ready_calls
"#;

/// Resident set size of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("status has VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).expect("VmRSS value").parse().expect("VmRSS is a number");
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn write_ready_calls(p: &mut Port, fd: i64) -> i128 {
    as_int(&p.call_ok("__main__", "write_ready_calls", vec![int(fd)])).expect("write_ready_calls is an integer")
}

fn handoff_kind(p: &mut Port, kind: &str, extra: Vec<(&str, Term)>) -> (TcpStream, u64) {
    p.call_ok("__main__", "use", vec![bin(kind)]);
    let (client, server) = tcp_pair();
    setsockopt(&server, sockopt::SndBuf, &SOCKET_BUFFER).expect("SO_SNDBUF");
    setsockopt(&client, sockopt::RcvBuf, &SOCKET_BUFFER).expect("SO_RCVBUF");
    let id = conn_id();
    let mut kv = vec![(atom("type"), atom("tcp"))];
    kv.extend(extra.into_iter().map(|(k, v)| (atom(k), v)));
    p.handoff(id, server.as_raw_fd(), map(kv));
    drop(server);
    (client, id)
}

/// Reads until end of file, checking that the stream is the counters
/// 0, 1, 2, ... as 4-byte big-endian words; returns the byte count.
fn read_counters(c: &mut TcpStream) -> usize {
    let mut chunk = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut next: u32 = 0;
    loop {
        let n = match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed after {total} bytes: {e}"),
        };
        total += n;
        carry.extend_from_slice(&chunk[..n]);
        let whole = carry.len() / 4 * 4;
        for word in carry[..whole].chunks_exact(4) {
            let got = u32::from_be_bytes(word.try_into().unwrap());
            assert_eq!(got, next, "word {next} (byte offset {}) is {got}", next as usize * 4);
            next += 1;
        }
        carry.drain(..whole);
    }
    assert!(carry.is_empty(), "the stream ends inside a word ({} stray bytes)", carry.len());
    total
}

#[test]
fn slow_reader_blocks_the_port_without_spinning_or_growing() {
    let mut p = Port::start_queued(PROTOS);
    let pid = p.os_pid();

    // Baseline: an echo connection served once, so the interpreter has run
    // the paths a connection takes before anything is measured.
    let (mut echo, echo_id) = handoff_kind(&mut p, "echo", vec![]);
    echo_roundtrip(&mut echo, b"warm-up");
    let rss_before = rss(pid);

    let (mut slow, slow_id) = handoff_kind(&mut p, "source", vec![("total", int(TOTAL as i64))]);
    slow.write_all(b"go").unwrap();
    let blocked = p.wait_report("blocked");
    let sent_before_block = as_int(&blocked[0]).unwrap() as u64;
    let buffered = as_int(&blocked[1]).unwrap() as u64;
    let slow_fd = as_int(&blocked[2]).unwrap() as i64;
    assert!(
        buffered > (TOTAL / 2) as u64,
        "the protocol should block with most of the payload unsent, but {sent_before_block} of {TOTAL} bytes went out"
    );

    // The port is now waiting for writability that cannot come: the peer
    // reads nothing. The first EAGAIN can come while data in flight is still
    // being acknowledged, so writability may return a few times until the
    // peer's receive window closes: let that settle, then watch the port.
    let mut calls_start = write_ready_calls(&mut p, slow_fd);
    let settle_deadline = Instant::now() + T;
    loop {
        sleep(Duration::from_millis(300));
        let now = write_ready_calls(&mut p, slow_fd);
        if now == calls_start || Instant::now() >= settle_deadline {
            calls_start = now;
            break;
        }
        calls_start = now;
    }
    let rss_blocked_start = rss(pid);
    let cpu_start = cpu_time(pid);
    let t_start = Instant::now();
    sleep(WINDOW);
    let cpu_used = cpu_time(pid) - cpu_start;
    let wall = t_start.elapsed();
    let rss_blocked_end = rss(pid);
    let calls_blocked = write_ready_calls(&mut p, slow_fd) - calls_start;

    let share = cpu_used.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "slow reader: {sent_before_block} bytes sent before blocking, {buffered} bytes ({:.1} MiB) buffered; \
         port CPU {:?} over {:?} ({:.2} %); RSS {:.1} MiB before the connection, {:.1} MiB blocked \
         (start of window), {:.1} MiB (end); {calls_blocked} write_ready calls while blocked",
        mib(buffered),
        cpu_used,
        wall,
        share * 100.0,
        mib(rss_before),
        mib(rss_blocked_start),
        mib(rss_blocked_end),
    );
    assert!(
        share < MAX_CPU_SHARE,
        "the port used {cpu_used:?} of CPU in {wall:?} ({:.1} %) while blocked on writability: it is spinning",
        share * 100.0
    );
    assert!(
        calls_blocked <= MAX_WRITE_READY_BLOCKED,
        "write_ready was called {calls_blocked} times while the socket was full: the port is polling writability"
    );
    assert!(
        rss_blocked_end <= rss_blocked_start + MAX_RSS_GROWTH_BLOCKED,
        "the port's RSS grew from {:.1} to {:.1} MiB while blocked",
        mib(rss_blocked_start),
        mib(rss_blocked_end)
    );
    assert!(
        rss_blocked_end <= rss_before + TOTAL as u64 + RSS_SLACK,
        "the port's RSS grew from {:.1} to {:.1} MiB: more than the {:.1} MiB payload the protocol holds",
        mib(rss_before),
        mib(rss_blocked_end),
        mib(TOTAL as u64)
    );

    // Other connections are still served while one is blocked.
    echo_roundtrip(&mut echo, b"still served");

    // The peer reads: the protocol resumes on write_ready until all is sent.
    slow.set_read_timeout(Some(T)).unwrap();
    let got = read_counters(&mut slow);
    assert_eq!(got, TOTAL, "the peer received {got} of {TOTAL} bytes");
    let done = p.wait_report("sent_all");
    assert_eq!(as_int(&done[0]), Some(TOTAL as i128));
    let resumed_calls = as_int(&done[1]).unwrap();
    assert!(resumed_calls >= 1, "the protocol finished without a write_ready call");
    eprintln!("slow reader: all {got} bytes read back in order after {resumed_calls} write_ready calls");
    assert!(is_atom(&p.wait_closed(slow_id), "normal"));

    drop(echo);
    assert!(is_atom(&p.wait_closed(echo_id), "eof"));
}
