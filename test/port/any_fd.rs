//! Any descriptor works: TCP, a Unix stream pair, a connected UDP pair, a pipe.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::Write;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

const ANY: &str = r#"
import erlang.reactor as reactor
class Any(reactor.Protocol):
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self.kind = client_info.get("type")
    def data_received(self, data):
        report("data", self.kind, bytes(data))
        if self.kind == "pipe":
            return "continue"
        self.write_buffer.extend(data)
        return "write_pending"
    def write_ready(self):
        n = self.write(bytes(self.write_buffer))
        del self.write_buffer[:n]
        return "continue" if self.write_buffer else "read_pending"
    def connection_lost(self):
        report("lost", self.kind)
reactor.set_protocol_factory(Any)
"#;

fn kind(k: &str) -> Term {
    map(vec![(atom("type"), atom(k))])
}

fn expect_data(p: &mut Port, k: &str, data: &[u8]) {
    let r = p.wait_report("data");
    // The kind was an atom in client_info: it comes back an atom.
    assert!(term_eq(&r[0], &atom(k)), "data reported for {} instead of {k}", show(&r[0]));
    assert_eq!(as_bin(&r[1]), Some(data), "{k} data");
}

#[test]
fn tcp() {
    let mut p = Port::start_std(ANY);
    let (client, server) = tcp_pair();
    let id = conn_id();
    p.handoff(id, server.as_raw_fd(), kind("tcp"));
    drop(server);
    let mut c = client;
    echo_roundtrip(&mut c, b"over tcp");
    expect_data(&mut p, "tcp", b"over tcp");
    drop(c);
    assert!(is_atom(&p.wait_closed(id), "eof"));
    p.wait_report("lost");
}

#[test]
fn unix_stream_pair() {
    let mut p = Port::start_std(ANY);
    let (mut a, b) = unix_pair();
    let id = conn_id();
    p.handoff(id, b.as_raw_fd(), kind("unix"));
    drop(b);
    echo_roundtrip(&mut a, b"over a unix socket");
    expect_data(&mut p, "unix", b"over a unix socket");
    drop(a);
    assert!(is_atom(&p.wait_closed(id), "eof"));
}

#[test]
fn connected_udp_pair() {
    let mut p = Port::start_std(ANY);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    a.set_read_timeout(Some(T)).unwrap();
    let id = conn_id();
    p.handoff(id, b.as_raw_fd(), kind("udp"));
    drop(b);
    for msg in [&b"datagram one"[..], b"datagram two", b"3"] {
        a.send(msg).unwrap();
        expect_data(&mut p, "udp", msg);
        let mut buf = [0u8; 100];
        let n = a.recv(&mut buf).expect("udp echo");
        assert_eq!(&buf[..n], msg, "datagram echoed");
    }
    assert_eq!(p.stat("active_connections"), 1);
    assert!(is_atom(&p.stop(), "ok"));
    assert!(matches(&p.history.iter().find(|t| matches(t, &tup(vec![atom("closed"), uint(id), any()]))).cloned().expect("closed at stop"), &tup(vec![atom("closed"), uint(id), atom("stopped")])));
}

#[test]
fn pipe_read_end() {
    let mut p = Port::start_std(ANY);
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let id = conn_id();
    p.handoff(id, r.as_raw_fd(), kind("pipe"));
    drop(r);
    let mut w = std::fs::File::from(w);
    w.write_all(b"through a pipe").unwrap();
    expect_data(&mut p, "pipe", b"through a pipe");
    w.write_all(b"second write").unwrap();
    expect_data(&mut p, "pipe", b"second write");
    drop(w);
    let reason = p.wait_closed(id);
    assert!(is_atom(&reason, "eof"), "closed reason {}", show(&reason));
    let lost = p.wait_report("lost");
    assert!(term_eq(&lost[0], &atom("pipe")));
}
