//! The auxiliary socket: announced path, private directory, peer check, and
//! every way of passing (and mis-passing) descriptors.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

fn echo_port() -> Port {
    Port::start_std(ECHO)
}

#[test]
fn socket_path_is_private_and_removed_after_the_peer_connects() {
    let mut p = Port::start_with(Opts { connect_aux: false, ..Opts::default() });
    let path = p.socket_path.clone();
    let md = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("announced path {path:?}: {e}"));
    assert!(md.file_type().is_socket(), "{path:?} is not a socket");
    let dir = path.parent().unwrap().to_path_buf();
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "directory {dir:?} has mode {mode:o}");
    assert_ne!(dir, std::env::temp_dir(), "the socket is not in a directory of its own");

    p.aux = Some(connect_aux(&path).expect("connect"));
    assert!(
        eventually(Duration::from_secs(3), || !path.exists() && !dir.exists()),
        "path {path:?} (or its directory) still exists after the peer connected"
    );
    // no one else can connect now
    let e = UnixStream::connect(&path).expect_err("a second connect succeeded");
    assert!(
        matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused),
        "second connect: {e}"
    );
    // and the accepted peer works
    p.setup_std(ECHO, vec![]);
    let (mut c, _) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"works");
}

#[test]
fn a_second_racing_connector_is_closed() {
    let mut p = Port::start_with(Opts { connect_aux: false, ..Opts::default() });
    let a = connect_aux(&p.socket_path).expect("connect A");
    let b = connect_aux(&p.socket_path); // may be refused outright, or queued
    if let Ok(b) = b {
        let r = sees_close(b.as_fd(), Duration::from_secs(5));
        assert!(r.is_ok(), "second connector was neither refused nor closed: {}", r.unwrap_err());
    }
    p.aux = Some(a);
    p.setup_std(ECHO, vec![]);
    let (mut c, _) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"via the first peer");
}

#[test]
fn wrong_vm_pid_is_refused_and_port_keeps_running() {
    // Pid 1 is never this test process.
    let mut p = Port::start_with(Opts { vm_pid: Some(1), connect_aux: false, ..Opts::default() });
    let s = connect_aux(&p.socket_path).expect("connect");
    let text = p.wait_aux_error(T);
    assert!(!text.is_empty());
    let r = sees_close(s.as_fd(), Duration::from_secs(5));
    assert!(r.is_ok(), "refused peer was not closed: {}", r.unwrap_err());
    assert!(p.is_running(), "port exited after refusing a peer");
    // It keeps waiting for the right peer: the path is still there.
    assert!(p.socket_path.exists(), "socket path removed after a refused peer");
    let r = p.setup(vec![]);
    assert!(is_atom(&r, "ok"), "setup after a refused peer: {}", show(&r));
    assert!(p.stats().contains_key("active_connections"));
}

#[test]
fn peer_from_another_process_is_refused_then_the_vm_is_accepted() {
    let mut p = Port::start_with(Opts { connect_aux: false, ..Opts::default() });
    // A different process (python3) connects first; it must be refused.
    let out = Command::new("python3")
        .args([
            "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(8)\ns.connect(sys.argv[1])\ntry:\n  print('recv', repr(s.recv(1)))\nexcept Exception as e:\n  print('error', type(e).__name__)\n",
        ])
        .arg(&p.socket_path)
        .stdout(Stdio::piped())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("python3 not available ({e}); skipping the foreign-peer half");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recv b''") || text.contains("ConnectionResetError"),
        "foreign peer was not closed by the port: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.wait_aux_error(T);
    // Now the real VM (this process) connects and is accepted.
    p.aux = Some(connect_aux(&p.socket_path).expect("connect after a refused peer"));
    p.setup_std(ECHO, vec![]);
    let (mut c, _) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"accepted");
}

#[test]
fn several_fds_in_one_sendmsg() {
    let mut p = echo_port();
    let pairs: Vec<_> = (0..3).map(|_| unix_pair()).collect();
    let ids: Vec<u64> = (0..3).map(|_| conn_id()).collect();
    let fds: Vec<_> = pairs.iter().map(|(_, b)| b.as_raw_fd()).collect();
    p.send_fds(&ids, &fds);
    for &id in &ids {
        p.send_handoff_frame(id, unix_info());
    }
    let mut mine = Vec::new();
    for (a, b) in pairs {
        drop(b);
        mine.push(a);
    }
    for (i, s) in mine.iter_mut().enumerate() {
        echo_roundtrip(s, format!("conn {i}").as_bytes());
    }
    assert_eq!(p.stat("active_connections"), 3);
    drop(mine);
    for id in ids {
        let r = p.wait_closed(id);
        assert!(is_atom(&r, "eof"), "closed {id}: {}", show(&r));
    }
}

#[test]
fn fd_before_frame_and_frame_before_fd_both_pair() {
    let mut p = echo_port();
    // fd first
    let (mut a1, b1) = unix_pair();
    let id1 = conn_id();
    p.send_fds(&[id1], &[b1.as_raw_fd()]);
    drop(b1);
    sleep(Duration::from_millis(300));
    p.send_handoff_frame(id1, unix_info());
    echo_roundtrip(&mut a1, b"fd first");
    // frame first
    let (mut a2, b2) = unix_pair();
    let id2 = conn_id();
    p.send_handoff_frame(id2, unix_info());
    sleep(Duration::from_millis(300));
    p.send_fds(&[id2], &[b2.as_raw_fd()]);
    drop(b2);
    echo_roundtrip(&mut a2, b"frame first");
    let s = p.stats();
    assert_eq!(s["active_connections"], 2, "{s:?}");
    assert_eq!(s["pending_fds"], 0, "{s:?}");
}

/// One test for both 5 s timeouts, so the suite waits only once.
#[test]
fn unpaired_fd_and_unpaired_frame_time_out() {
    let mut p = echo_port();
    let base = p.fd_count();
    let (lone_peer, lone) = unix_pair();
    let lone_id = conn_id();
    p.send_fds(&[lone_id], &[lone.as_raw_fd()]);
    drop(lone);
    let c = p.wait_fd_count(base + 1, Duration::from_secs(3));
    assert_eq!(c, base + 1, "the port did not take the descriptor (fds {base} -> {c})");
    assert_eq!(p.stat("pending_fds"), 1);

    let frame_id = conn_id();
    p.send_handoff_frame(frame_id, unix_info());

    // The fd: closed and reported after ~5 s.
    let text = p.wait_aux_error(Duration::from_secs(9));
    assert!(!text.is_empty());
    let c = p.wait_fd_count(base, Duration::from_secs(2));
    assert_eq!(c, base, "the unpaired descriptor was not closed (fd count {c}, baseline {base})");
    let r = sees_close(lone_peer.as_fd(), Duration::from_secs(2));
    assert!(r.is_ok(), "peer of the unpaired fd: {}", r.unwrap_err());

    // The frame: {closed, Id, fd_not_received}.
    let r = p.wait_closed_within(frame_id, Duration::from_secs(9));
    assert!(is_atom(&r, "fd_not_received"), "closed reason {}", show(&r));
    let s = p.stats();
    assert_eq!(s["pending_fds"], 0, "{s:?}");
    assert_eq!(s["active_connections"], 0, "{s:?}");

    // Late arrivals for a timed-out frame are not paired either: the port is fine.
    let (mut c2, _) = p.handoff_tcp();
    echo_roundtrip(&mut c2, b"still serving");
}

#[test]
fn duplicate_ids_are_refused() {
    let mut p = echo_port();
    let (mut a, b) = unix_pair();
    let id = conn_id();
    p.handoff(id, b.as_raw_fd(), unix_info());
    drop(b);
    echo_roundtrip(&mut a, b"first");
    let base = p.fd_count();

    // a descriptor for an id already in use
    let (dup_peer, dup) = unix_pair();
    p.send_fds(&[id], &[dup.as_raw_fd()]);
    drop(dup);
    let text = p.wait_aux_error(T);
    assert!(!text.is_empty());
    let r = sees_close(dup_peer.as_fd(), Duration::from_secs(3));
    assert!(r.is_ok(), "duplicate descriptor not closed: {}", r.unwrap_err());
    assert_eq!(p.wait_fd_count(base, Duration::from_secs(2)), base, "fd leaked");
    echo_roundtrip(&mut a, b"original still works");

    // two descriptors waiting under the same id: the second is refused,
    // the first pairs with the frame
    let (mut w1, x1) = unix_pair();
    let (w2, x2) = unix_pair();
    let wid = conn_id();
    p.send_fds(&[wid], &[x1.as_raw_fd()]);
    p.send_fds(&[wid], &[x2.as_raw_fd()]);
    drop(x1);
    drop(x2);
    p.wait_aux_error(T);
    let r = sees_close(w2.as_fd(), Duration::from_secs(3));
    assert!(r.is_ok(), "second waiting descriptor not closed: {}", r.unwrap_err());
    p.send_handoff_frame(wid, unix_info());
    echo_roundtrip(&mut w1, b"first waiting fd paired");

    // a second handoff frame for an id in use
    p.send_handoff_frame(id, unix_info());
    let r = p.wait_closed(id);
    assert!(is_atom(&r, "duplicate_id"), "closed reason for a duplicate handoff: {}", show(&r));
    echo_roundtrip(&mut a, b"original survives a duplicate frame");
    assert_eq!(p.stat("active_connections"), 2);
}

#[test]
fn messages_with_missing_or_extra_fds() {
    let mut p = echo_port();
    let base = p.fd_count();

    // no descriptor at all
    p.send_fds(&[conn_id()], &[]);
    p.wait_aux_error(T);
    assert!(p.stats().contains_key("active_connections"));

    // more descriptors than ids: the extra is closed
    let (mut a, x) = unix_pair();
    let (extra_peer, extra) = unix_pair();
    let id = conn_id();
    p.send_fds(&[id], &[x.as_raw_fd(), extra.as_raw_fd()]);
    drop(x);
    drop(extra);
    p.wait_aux_error(T);
    let r = sees_close(extra_peer.as_fd(), Duration::from_secs(3));
    assert!(r.is_ok(), "extra descriptor not closed: {}", r.unwrap_err());
    p.send_handoff_frame(id, unix_info());
    echo_roundtrip(&mut a, b"first fd of the message paired");

    // more ids than descriptors: the first id gets the descriptor
    let (mut c, y) = unix_pair();
    let (id1, id2) = (conn_id(), conn_id());
    let mut data = id1.to_be_bytes().to_vec();
    data.extend_from_slice(&id2.to_be_bytes());
    send_fds_on(p.aux_fd(), &data, &[y.as_raw_fd()]).expect("sendmsg");
    drop(y);
    p.wait_aux_error(T);
    p.send_handoff_frame(id1, unix_info());
    echo_roundtrip(&mut c, b"id1 paired");

    // a partial id (not a multiple of 8 bytes)
    let (_d, z) = unix_pair();
    send_fds_on(p.aux_fd(), &[1, 2, 3], &[z.as_raw_fd()]).expect("sendmsg");
    drop(z);
    p.wait_aux_error(T);

    assert_eq!(p.wait_fd_count(base + 2, Duration::from_secs(2)), base + 2, "fd count: 2 connections expected over baseline");
    assert_eq!(p.stat("active_connections"), 2);
}

#[test]
fn received_fds_are_nonblocking_and_cloexec() {
    let mut p = Port::start_std(
        r#"
import fcntl, os
import erlang.reactor as reactor
class Flags(reactor.Protocol):
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fdfl = fcntl.fcntl(fd, fcntl.F_GETFD)
        report("flags", fd, bool(fl & os.O_NONBLOCK), bool(fdfl & fcntl.FD_CLOEXEC), os.get_inheritable(fd))
    def data_received(self, data):
        return "close"
reactor.set_protocol_factory(Flags)
"#,
    );
    let (client, server) = tcp_pair();
    // our copy is blocking and has no close-on-exec flag of interest
    assert!(!is_nonblocking(server.as_fd()));
    let id = conn_id();
    p.handoff(id, server.as_raw_fd(), tcp_info(&server));
    let r = p.wait_report("flags");
    assert!(is_atom(&r[1], "true"), "O_NONBLOCK not set on the received fd: {}", show(&tup(r.clone())));
    assert!(is_atom(&r[2], "true"), "FD_CLOEXEC not set on the received fd: {}", show(&tup(r.clone())));
    assert!(is_atom(&r[3], "false"), "received fd is inheritable: {}", show(&tup(r.clone())));
    drop(server);
    drop(client);
    p.wait_closed(id);
}
