//! Bad input from the VM's side, end to end: broken frame streams, terms the
//! VM would never send, and descriptors that cannot be used. Each case gets
//! its error (or its documented handling), leaks no descriptor, and leaves
//! the port serving real connections. The cases already covered elsewhere
//! (test/port/framing.rs, fdpass.rs, any_fd.rs) are not repeated here.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use nix::libc;

fn echo_port() -> Port {
    Port::start_std(ECHO)
}

/// The port serves a new connection end to end.
fn serves_a_connection(p: &mut Port, what: &str) {
    let (mut c, id) = p.handoff_tcp();
    echo_roundtrip(&mut c, format!("still serving after {what}").as_bytes());
    drop(c);
    let reason = p.wait_closed(id);
    assert!(is_atom(&reason, "eof"), "closed {id} after {what}: {}", show(&reason));
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn is_frame_error(t: &Term) -> bool {
    elems(t)
        .map(|e| e.len() == 2 && is_atom(&e[0], "frame_error"))
        .unwrap_or(false)
}

fn is_reply(t: &Term) -> bool {
    elems(t)
        .map(|e| e.len() == 3 && is_atom(&e[0], "reply"))
        .unwrap_or(false)
}

fn bad_request(r: &Term) -> String {
    match elems(r) {
        Some([e, reason]) if is_atom(e, "error") => match elems(reason) {
            Some([tag, text]) if is_atom(tag, "bad_request") => as_text(text).expect("bad_request text is a binary"),
            _ => panic!("not a bad_request: {}", show(r)),
        },
        _ => panic!("not an error: {}", show(r)),
    }
}

// ---------------------------------------------------------------------------
// The frame stream
// ---------------------------------------------------------------------------

/// End of file after a frame's header and part of its body: the port says
/// so (`frame_error`), closes its connections and exits with status 0.
#[test]
fn eof_inside_a_frame_body_reports_it_and_exits_zero() {
    let mut p = echo_port();
    let (c, _id) = p.handoff_tcp();
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&encode(&tup(vec![atom("stats"), int(1)])));
    p.write_raw(&partial);
    p.close_stdin();
    let text = p.wait_frame_error();
    assert!(text.contains("end of input inside a frame"), "frame_error: {text:?}");
    let unread = partial.len().to_string();
    assert!(
        text.contains(&unread),
        "frame_error does not count the {unread} unread bytes: {text:?}"
    );
    let r = sees_close(c.as_fd(), Duration::from_secs(5));
    assert!(
        r.is_ok(),
        "the connection was not closed at end of input: {}",
        r.unwrap_err()
    );
    let status = p.wait_exit(T).expect("the port did not exit at end of input");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        !p.history
            .iter()
            .any(|t| matches(t, &tup(vec![atom("reply"), int(1), any()]))),
        "the partial frame was served"
    );
}

/// End of file inside a frame's 4-byte header.
#[test]
fn eof_inside_a_frame_header_reports_it_and_exits_zero() {
    let mut p = Port::start_std("");
    // A whole frame first: it is served; then two bytes of the next header.
    let mut bytes = Vec::new();
    let whole = encode(&tup(vec![atom("stats"), int(5)]));
    bytes.extend_from_slice(&(whole.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&whole);
    bytes.extend_from_slice(&[0, 0]);
    p.write_raw(&bytes);
    p.close_stdin();
    p.wait_match(&tup(vec![atom("reply"), int(5), tup(vec![atom("ok"), any()])]));
    let text = p.wait_frame_error();
    assert!(
        text.contains("end of input inside a frame (2 bytes unread)"),
        "frame_error: {text:?}"
    );
    let status = p.wait_exit(T).expect("the port did not exit at end of input");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

/// A header declaring 0xFFFFFFF0 bytes: reported at once, then exactly that
/// many bytes are skipped as they stream past (the frames sent right after
/// it are part of it, so they get no reply), without the port's memory
/// growing; the first frame after them is served again.
#[test]
fn huge_declared_length_is_skipped_to_the_byte_without_buffering() {
    const DECLARED: u32 = 0xFFFF_FFF0;
    let mut p = echo_port();
    let rss_before = rss_kib(p.os_pid());
    p.write_raw(&DECLARED.to_be_bytes());
    let text = p.wait_frame_error();
    assert!(
        text.contains(&DECLARED.to_string()),
        "frame_error does not name the declared length: {text:?}"
    );

    // Frames that are really the oversized frame's first bytes.
    let mut swallowed = Vec::new();
    for t in [tup(vec![atom("stats"), int(901)]), tup(vec![atom("eval"), int(902), bin("1")])] {
        let b = encode(&t);
        swallowed.extend_from_slice(&(b.len() as u32).to_be_bytes());
        swallowed.extend_from_slice(&b);
    }
    p.write_raw(&swallowed);
    p.expect_no(
        "a reply to bytes inside the oversized frame",
        Duration::from_millis(300),
        is_reply,
    );

    // The rest of the declared length, in 1 MiB writes.
    let started = Instant::now();
    let chunk = vec![0u8; 1 << 20];
    let mut left = DECLARED as u64 - swallowed.len() as u64;
    let mut peak_rss = 0;
    let mut written = 0u64;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        p.write_raw(&chunk[..n]);
        left -= n as u64;
        written += n as u64;
        if written % (256 << 20) == 0 {
            peak_rss = peak_rss.max(rss_kib(p.os_pid()));
        }
    }
    let elapsed = started.elapsed();
    p.expect_no(
        "a reply to bytes inside the oversized frame",
        Duration::from_millis(100),
        is_reply,
    );
    // Served again, byte-exact: the next frame is a request.
    let s = p.stats();
    assert_eq!(s["active_connections"], 0, "{s:?}");
    let grown = peak_rss.max(rss_kib(p.os_pid())).saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "the port's memory grew by {grown} KiB while skipping 4 GiB"
    );
    assert!(
        !p.history
            .iter()
            .any(|t| matches(t, &tup(vec![atom("reply"), int(901), any()]))
                || matches(t, &tup(vec![atom("reply"), int(902), any()]))),
        "a frame inside the oversized frame was served"
    );
    // Nothing in or after the skipped bytes was taken for a frame.
    p.drain();
    let frame_errors: Vec<String> = p.history.iter().filter(|t| is_frame_error(t)).map(show).collect();
    assert_eq!(frame_errors.len(), 1, "frame errors: {frame_errors:?}");
    eprintln!("skipped {DECLARED} bytes in {elapsed:?}");
    serves_a_connection(&mut p, "a 4 GiB frame");
}

/// Thousands of distinct atoms in every frame: the port decodes atoms into
/// plain strings that die with the frame (nothing is interned, unlike the
/// VM's atom table), so a flood of new atoms leaves its memory where it was.
#[test]
fn an_atom_flood_does_not_grow_the_port() {
    const PER_FRAME: usize = 5000;
    let mut p = echo_port();
    let flood = |p: &mut Port, round: usize, frames: usize| {
        for f in 0..frames {
            let atoms: Vec<Term> = (0..PER_FRAME)
                .map(|i| atom(&format!("flood_{round}_{f}_{i}")))
                .collect();
            // As a call argument: each atom becomes a Python str.
            let r = p.call("builtins", "len", vec![list(atoms.clone())]);
            assert!(
                matches(&r, &tup(vec![atom("ok"), int(PER_FRAME as i64)])),
                "len of the atoms: {}",
                show(&r)
            );
            // As a Ref: echoed back in the reply.
            let reference = tup(atoms[..500].to_vec());
            p.send_term(&tup(vec![atom("stats"), reference.clone()]));
            p.wait_for("the reply echoing a Ref of 500 atoms", T, move |t| {
                elems(t)
                    .map(|e| e.len() == 3 && is_atom(&e[0], "reply") && e[1] == reference)
                    .unwrap_or(false)
            });
            // As an unknown message: named in the frame_error.
            p.send_term(&tup(atoms[..1000].to_vec()));
            p.wait_frame_error();
        }
    };
    // Warm up (Python's and the allocator's arenas), then measure.
    flood(&mut p, 0, 40);
    let before = rss_kib(p.os_pid());
    flood(&mut p, 1, 200);
    let after = rss_kib(p.os_pid());
    eprintln!("RSS {before} KiB before, {after} KiB after 1.2 million new atoms");
    // 1.2 million new atoms: kept, they would take well over 60 MiB.
    let grown = after.saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB over 1.2 million new atoms"
    );
    serves_a_connection(&mut p, "an atom flood");
}

fn nested(kind: &str, depth: usize) -> Term {
    let mut t = int(7);
    for _ in 0..depth {
        t = match kind {
            "list" => list(vec![t, int(1)]),
            "tuple" => tup(vec![t]),
            _ => map(vec![(int(0), t)]),
        };
    }
    t
}

/// Nesting beyond 256 levels is refused before anything is decoded (so
/// there is no `Ref` to reply to: `frame_error`), for lists, tuples and
/// maps alike; nesting within the limit is served.
#[test]
fn nesting_beyond_the_limit_is_refused_for_lists_tuples_and_maps() {
    let mut p = Port::start_std("");
    for kind in ["list", "tuple", "map"] {
        let r = p.new_ref();
        p.send_term(&tup(vec![
            atom("call"),
            r.clone(),
            bin("builtins"),
            bin("len"),
            list(vec![nested(kind, 300)]),
        ]));
        // Refused, and still answered: the caller does not wait for nothing.
        let reply = p.wait_match(&tup(vec![atom("reply"), r.clone(), any()]));
        let reason = &elems(&reply).unwrap()[2];
        assert!(
            matches(reason, &tup(vec![atom("error"), tup(vec![atom("bad_term"), any()])])),
            "{kind}: {}",
            show(reason)
        );
        let text = as_text(&elems(&elems(reason).unwrap()[1]).unwrap()[1]).unwrap();
        assert!(text.contains("nested deeper than 256"), "{kind}: {text:?}");
        // 250 levels, plus the request's tuple and the argument list: served.
        let r = p.call("builtins", "len", vec![nested(kind, 250)]);
        let want = if kind == "list" { 2 } else { 1 };
        assert!(
            matches(&r, &tup(vec![atom("ok"), int(want)])),
            "{kind} within the limit: {}",
            show(&r)
        );
    }
    p.assert_serving();
}

fn improper(items: Vec<Term>, tail: Term) -> Term {
    Term::from(eetf::ImproperList::from((items, tail)))
}

/// Improper lists have no Python form: refused where a value must reach
/// Python, and echoed unchanged where the port only carries them (a `Ref`).
#[test]
fn improper_lists_are_refused_where_python_needs_them() {
    let mut p = Port::start();
    // In setup's options: refused, and a good setup still works after it.
    let r = p.setup(vec![("python_path", improper(vec![bin("/x")], bin("/y")))]);
    assert!(bad_request(&r).contains("python_path"), "{}", show(&r));
    p.setup_std(ECHO, vec![]);

    // As call's argument list, and inside an argument.
    let r = p.request(|r| {
        tup(vec![
            atom("call"),
            r,
            bin("builtins"),
            bin("len"),
            improper(vec![int(1)], int(2)),
        ])
    });
    assert!(bad_request(&r).contains("args must be a list"), "{}", show(&r));
    let r = p.call("builtins", "len", vec![improper(vec![int(1), int(2)], int(3))]);
    assert!(bad_request(&r).contains("improper list"), "{}", show(&r));

    // As a Ref: any term is a Ref, and comes back as it was.
    let reference = improper(vec![atom("a"), int(1)], bin("tail"));
    p.send_term(&tup(vec![atom("stats"), reference.clone()]));
    let expected = reference.clone();
    p.wait_for("the reply to a stats request with an improper-list Ref", T, move |t| {
        elems(t)
            .map(|e| e.len() == 3 && is_atom(&e[0], "reply") && e[1] == expected)
            .unwrap_or(false)
    });

    // In a handoff's ClientInfo: the connection is closed with a TypeError,
    // its descriptor closed, nothing leaks.
    let base = p.fd_count();
    let (peer, server) = unix_pair();
    let id = conn_id();
    p.handoff(
        id,
        server.as_raw_fd(),
        map(vec![(atom("path"), improper(vec![int(1)], int(2)))]),
    );
    drop(server);
    let reason = p.wait_closed(id);
    match elems(&reason) {
        Some([tag, ty, msg, _]) if is_atom(tag, "python") => {
            assert_eq!(as_text(ty).as_deref(), Some("TypeError"), "{}", show(&reason));
            assert!(as_text(msg).unwrap().contains("improper list"), "{}", show(&reason));
        }
        _ => panic!("closed reason {}", show(&reason)),
    }
    let r = sees_close(peer.as_fd(), Duration::from_secs(3));
    assert!(r.is_ok(), "the refused connection's peer: {}", r.unwrap_err());
    assert_eq!(p.wait_fd_count(base, Duration::from_secs(3)), base, "descriptor leaked");
    serves_a_connection(&mut p, "improper lists");
}

/// Every request tag with the wrong number of fields, or a field of the
/// wrong kind where the tag is decided: `frame_error` naming it, and no
/// effect. In particular a malformed `stop` does not stop the port, and a
/// malformed `setup` does not count as the one setup.
#[test]
fn right_tag_wrong_shape_is_refused_for_every_request() {
    let mut p = Port::start();
    let r = || int(77);
    let info = map(vec![]);
    // No `Ref` (or connection id) to answer: a frame_error.
    let cases: Vec<(Term, &str)> = vec![
        (tup(vec![atom("setup")]), "setup"),
        (tup(vec![atom("handoff"), int(-1), info.clone()]), "handoff"),
        (tup(vec![atom("handoff"), int(0), info.clone()]), "handoff"),
        (tup(vec![atom("handoff"), pow2(64, false), info.clone()]), "handoff"),
        (tup(vec![atom("handoff"), bin("1"), info.clone()]), "handoff"),
        (tup(vec![atom("handoff"), float(1.0), info.clone()]), "handoff"),
        (tup(vec![atom("stats")]), "stats"),
        (tup(vec![atom("stop")]), "stop"),
        (list(vec![atom("stats"), r()]), "stats"),
        (tup(vec![bin("stats"), r()]), "stats"),
        (tup(vec![]), "{}"),
    ];
    for (term, name) in &cases {
        p.send_term(term);
        let text = p.wait_frame_error();
        assert!(
            text.contains(name),
            "frame_error for {} does not name {name}: {text:?}",
            show(term)
        );
    }
    p.expect_no("a reply to a malformed request", Duration::from_millis(200), is_reply);
    assert!(p.is_running(), "a malformed request stopped the port");

    // The wrong number of fields after a `Ref`: the request is answered.
    let answered: Vec<(Term, &str)> = vec![
        (tup(vec![atom("setup"), r()]), "setup"),
        (tup(vec![atom("setup"), r(), map(vec![]), atom("extra")]), "setup"),
        (tup(vec![atom("stats"), r(), atom("extra")]), "stats"),
        (tup(vec![atom("exec"), r()]), "exec"),
        (tup(vec![atom("eval"), r(), bin("1"), atom("extra")]), "eval"),
        (tup(vec![atom("call"), r(), bin("math"), bin("sqrt")]), "call"),
        (
            tup(vec![atom("call"), r(), bin("math"), bin("sqrt"), list(vec![]), list(vec![]), atom("extra")]),
            "call",
        ),
        (tup(vec![atom("stop"), r(), atom("extra")]), "stop"),
    ];
    for (term, name) in &answered {
        p.send_term(term);
        let reply = p.wait_match(&tup(vec![atom("reply"), r(), any()]));
        let reason = &elems(&reply).unwrap()[2];
        assert!(bad_request(reason).contains(name), "{}: {}", show(term), show(reason));
    }
    // A handoff of the wrong shape that names its id: refused by id.
    for term in [
        tup(vec![atom("handoff"), int(1)]),
        tup(vec![atom("handoff"), int(1), info.clone(), atom("extra")]),
    ] {
        p.send_term(&term);
        let reason = p.wait_closed(1);
        assert!(matches(&reason, &tup(vec![atom("bad_term"), any()])), "{}: {}", show(&term), show(&reason));
    }
    assert!(p.is_running(), "a malformed request stopped the port");

    // The right shape with a field of the wrong kind: bad_request, naming it.
    let bad: Vec<(Term, &str)> = vec![
        (map(vec![(bin("setup_code"), bin("pass"))]), "not an atom"),
        (map(vec![(atom("python_path"), list(vec![int(1)]))]), "python_path"),
        (map(vec![(atom("app_module"), map(vec![]))]), "app_module"),
        (map(vec![(atom("max_connections"), int(-3))]), "max_connections"),
        (map(vec![(atom("setup_code"), bin(b"\xff\xfe"))]), "setup_code"),
    ];
    for (opts, word) in bad {
        let r = p.request(|r| tup(vec![atom("setup"), r, opts.clone()]));
        assert!(
            bad_request(&r).contains(word),
            "setup with {}: {}",
            show(&opts),
            show(&r)
        );
    }
    let r = p.request(|r| tup(vec![atom("call"), r, bin(b"\xff"), bin("f"), list(vec![])]));
    assert!(bad_request(&r).contains("module"), "{}", show(&r));

    // None of that was the one setup: this one is.
    p.setup_std(ECHO, vec![]);
    serves_a_connection(&mut p, "malformed requests");
}

// ---------------------------------------------------------------------------
// The auxiliary socket
// ---------------------------------------------------------------------------

/// What a process running as `nobody` saw on the auxiliary socket.
#[derive(Debug, PartialEq, Eq)]
enum Foreign {
    /// `connect` failed with this errno.
    Refused(i32),
    /// Connected; then the port closed the connection.
    ConnectedThenClosed,
    /// Connected, and the connection stayed open for 10 s.
    ConnectedAndKept,
}

/// A forked child running as `nobody` (uid and gid 65534) that connects to
/// the paths it is sent, one at a time, and tells what happened. Forked
/// before the port starts, so that the port can be told its pid as the VM's.
struct Stranger {
    pid: nix::unistd::Pid,
    to_child: fs::File,
    from_child: fs::File,
}

impl Stranger {
    fn spawn() -> Stranger {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs as root, to become nobody"
        );
        // Close-on-exec, so that ports started meanwhile by other tests do
        // not hold the child's input open.
        let (go_rd, go_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (say_rd, say_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        // SAFETY: the child makes only raw system calls on its stack (no
        // allocation, no locks) and ends with `_exit`.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => unsafe {
                // The child keeps its two pipe ends as 0 and 1 and nothing
                // else. It was forked from a process whose other test threads
                // hold pipes and sockets (another stranger's input among
                // them); a copy kept here would keep them open, and two
                // strangers each holding the other's input never see EOF.
                let (input, out) = (0, 1);
                if libc::dup2(go_rd.as_raw_fd(), input) != input
                    || libc::dup2(say_wr.as_raw_fd(), out) != out
                    || libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0
                {
                    libc::_exit(3);
                }
                let say = |b: &[u8]| {
                    libc::write(out, b.as_ptr().cast(), b.len());
                };
                if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setgid, 65534) != 0
                    || libc::syscall(libc::SYS_setuid, 65534) != 0
                {
                    say(b"S");
                    libc::_exit(2);
                }
                loop {
                    // A path: one length byte, then the bytes.
                    let mut addr: libc::sockaddr_un = std::mem::zeroed();
                    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
                    let mut len = 0u8;
                    if libc::read(input, (&mut len as *mut u8).cast(), 1) != 1 {
                        libc::_exit(0);
                    }
                    let mut got = 0usize;
                    while got < usize::from(len) {
                        let n = libc::read(
                            input,
                            addr.sun_path.as_mut_ptr().add(got).cast(),
                            usize::from(len) - got,
                        );
                        if n <= 0 {
                            libc::_exit(0);
                        }
                        got += n as usize;
                    }
                    let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    let size = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                    if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), size) != 0 {
                        let e = *libc::__errno_location();
                        say(&[b'E', e as u8]);
                    } else {
                        let mut pfd = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        libc::poll(&mut pfd, 1, 10_000);
                        let mut b = [0u8; 1];
                        let n = libc::recv(fd, b.as_mut_ptr().cast(), 1, libc::MSG_DONTWAIT);
                        say(if n == 0 { b"C0" } else { b"CK" });
                    }
                    libc::close(fd);
                }
            },
            nix::unistd::ForkResult::Parent { child } => Stranger {
                pid: child,
                to_child: fs::File::from(go_wr),
                from_child: fs::File::from(say_rd),
            },
        }
    }

    fn connect(&mut self, path: &std::path::Path) -> Foreign {
        use std::io::{Read, Write};
        let bytes = path.as_os_str().as_encoded_bytes();
        assert!(bytes.len() < 108, "socket path too long: {path:?}");
        self.to_child.write_all(&[bytes.len() as u8]).unwrap();
        self.to_child.write_all(bytes).unwrap();
        let mut tag = [0u8; 2];
        self.from_child.read_exact(&mut tag).expect("the stranger's answer");
        match &tag {
            [b'E', e] => Foreign::Refused(i32::from(*e)),
            b"C0" => Foreign::ConnectedThenClosed,
            b"CK" => Foreign::ConnectedAndKept,
            other => panic!("the stranger said {other:?}"),
        }
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        // Killed rather than asked: the wait below must not depend on who
        // else still holds the child's input.
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// Opens the port's private directory (0700, root) to everyone, so that a
/// stranger reaches the socket and the port's own check is what refuses it.
fn open_up(path: &std::path::Path) {
    fs::set_permissions(path.parent().unwrap(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o777)).unwrap();
}

/// A connector with another uid but the VM's very pid (the port is told the
/// stranger's pid as the VM's): the uid check alone refuses it.
#[test]
fn a_connector_with_the_vm_pid_but_another_uid_is_refused() {
    let mut stranger = Stranger::spawn();
    let mut p = Port::start_with(Opts {
        vm_pid: Some(stranger.pid.as_raw() as u32),
        connect_aux: false,
        ..Opts::default()
    });
    let path = p.socket_path.clone();
    let base = p.fd_count();
    // The private directory alone keeps it out.
    assert_eq!(
        stranger.connect(&path),
        Foreign::Refused(libc::EACCES),
        "nobody reached the private socket"
    );
    open_up(&path);
    assert_eq!(
        stranger.connect(&path),
        Foreign::ConnectedThenClosed,
        "the port kept a peer with another uid"
    );
    let text = p.wait_aux_error(T);
    assert!(
        text.contains("uid 65534") && text.contains(&format!("pid {}", stranger.pid)),
        "aux_error does not name the stranger: {text:?}"
    );
    assert_eq!(
        p.wait_fd_count(base, Duration::from_secs(3)),
        base,
        "the refused peer's descriptor leaked"
    );
    assert!(path.exists(), "the socket path was removed after refusing a stranger");
    // Refused again, as often as it tries; the port serves its VM's frames.
    assert_eq!(stranger.connect(&path), Foreign::ConnectedThenClosed);
    p.wait_aux_error(T);
    let r = p.setup(vec![]);
    assert!(is_atom(&r, "ok"), "setup after refusing a stranger: {}", show(&r));
    p.assert_serving();
    // Setup creates the context's asyncio loop, whose self-pipe is two
    // descriptors.
    assert_eq!(p.wait_fd_count(base + 2, Duration::from_secs(3)), base + 2);
}

/// A stranger (another uid, another pid) before the VM connects is refused
/// and the VM is then accepted and served; once the VM is in, the path is
/// gone and a stranger cannot connect at all, the VM's connection untouched.
#[test]
fn a_stranger_before_and_after_the_vm_connects_does_not_disturb_it() {
    let mut stranger = Stranger::spawn();
    let mut p = Port::start_with(Opts {
        connect_aux: false,
        ..Opts::default()
    });
    let path = p.socket_path.clone();
    let base = p.fd_count();
    open_up(&path);
    assert_eq!(
        stranger.connect(&path),
        Foreign::ConnectedThenClosed,
        "the port kept a stranger"
    );
    let text = p.wait_aux_error(T);
    assert!(text.contains("uid 65534"), "aux_error: {text:?}");
    assert_eq!(
        p.wait_fd_count(base, Duration::from_secs(3)),
        base,
        "the refused peer's descriptor leaked"
    );

    p.aux = Some(connect_aux(&path).expect("the VM connects after the stranger"));
    p.setup_std(ECHO, vec![]);
    serves_a_connection(&mut p, "a stranger on the auxiliary socket");
    assert!(
        eventually(Duration::from_secs(3), || !path.exists()),
        "socket path left after the VM connected"
    );
    assert_eq!(stranger.connect(&path), Foreign::Refused(libc::ENOENT));
    serves_a_connection(&mut p, "a late stranger");
}

/// A message that carries ids but no descriptor: reported, nothing else.
#[test]
fn an_aux_message_without_a_descriptor_changes_nothing() {
    let mut p = echo_port();
    let base = p.fd_count();
    p.send_fds(&[conn_id(), conn_id()], &[]);
    let text = p.wait_aux_error(T);
    assert!(text.contains("no descriptor"), "aux_error: {text:?}");
    let s = p.stats();
    assert_eq!((s["pending_fds"], s["active_connections"]), (0, 0), "{s:?}");
    assert_eq!(p.fd_count(), base, "descriptor count changed");
    serves_a_connection(&mut p, "an aux message without a descriptor");
    assert_eq!(p.wait_fd_count(base, Duration::from_secs(3)), base);
}

/// Descriptors the loop cannot poll (a regular file, /dev/null, a
/// directory) or cannot even set non-blocking (an `O_PATH` descriptor):
/// each handoff is refused with `{closed, Id, {error, Errno}}`, and its
/// descriptor closed.
#[test]
fn descriptors_that_cannot_be_polled_are_refused_and_closed() {
    let mut p = echo_port();
    let base = p.fd_count();
    let tmp = TempDir::new("bad_fds");
    let file = tmp.join("regular");
    fs::write(&file, b"data").unwrap();
    let open = |path: &std::path::Path, flags: nix::fcntl::OFlag| -> OwnedFd {
        nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).unwrap_or_else(|e| panic!("open {path:?}: {e}"))
    };
    use nix::fcntl::OFlag;
    let cases: Vec<(&str, OwnedFd, &str)> = vec![
        ("a regular file", open(&file, OFlag::O_RDWR), "eperm"),
        ("/dev/null", open("/dev/null".as_ref(), OFlag::O_RDWR), "eperm"),
        (
            "a directory",
            open(tmp.path(), OFlag::O_RDONLY | OFlag::O_DIRECTORY),
            "eperm",
        ),
        ("an O_PATH descriptor", open(&file, OFlag::O_PATH), "ebadf"),
    ];
    for (what, fd, errno) in cases {
        let id = conn_id();
        p.handoff(id, fd.as_raw_fd(), map(vec![(atom("type"), bin(what))]));
        drop(fd);
        let reason = p.wait_closed(id);
        assert!(
            matches(&reason, &tup(vec![atom("error"), atom(errno)])),
            "{what}: closed with {} instead of {{error, {errno}}}",
            show(&reason)
        );
        assert_eq!(
            p.wait_fd_count(base, Duration::from_secs(3)),
            base,
            "{what}: descriptor leaked"
        );
    }
    let s = p.stats();
    assert_eq!((s["active_connections"], s["refused_handoffs"]), (0, 4), "{s:?}");
    serves_a_connection(&mut p, "unpollable descriptors");
}

/// Passing a descriptor that is not open fails in the sender's `sendmsg`
/// (EBADF), the whole message with it: the port receives nothing.
#[test]
fn sending_a_closed_descriptor_fails_at_the_sender_and_the_port_is_unaffected() {
    let mut p = echo_port();
    let base = p.fd_count();
    // A descriptor number that is certainly closed: dup to a high number no
    // other test reaches (descriptors are allocated lowest first), close it.
    let (keep, _other) = unix_pair();
    let closed = 4000;
    // SAFETY: plain descriptor calls on a number this test owns.
    unsafe {
        assert_eq!(libc::dup2(keep.as_raw_fd(), closed), closed, "dup2");
        assert_eq!(libc::close(closed), 0);
        assert_eq!(libc::fcntl(closed, libc::F_GETFD), -1, "descriptor {closed} still open");
    }

    let r = send_fds_on(p.aux_fd(), &conn_id().to_be_bytes(), &[closed]);
    assert_eq!(r, Err(nix::errno::Errno::EBADF), "sendmsg of a closed descriptor");
    // With a good descriptor beside it, the message still fails whole.
    let (peer, good) = unix_pair();
    let mut ids = conn_id().to_be_bytes().to_vec();
    ids.extend_from_slice(&conn_id().to_be_bytes());
    let r = send_fds_on(p.aux_fd(), &ids, &[good.as_raw_fd(), closed]);
    assert_eq!(
        r,
        Err(nix::errno::Errno::EBADF),
        "sendmsg of a good and a closed descriptor"
    );

    p.expect_no(
        "a notice about a message that was never sent",
        Duration::from_millis(300),
        |t| {
            elems(t)
                .map(|e| is_atom(&e[0], "aux_error") || is_atom(&e[0], "closed"))
                .unwrap_or(false)
        },
    );
    assert_eq!(p.stat("pending_fds"), 0);
    assert_eq!(p.fd_count(), base, "the port's descriptors changed");
    // The good descriptor never left: its peer is still connected to us.
    drop(good);
    assert!(sees_close(peer.as_fd(), Duration::from_secs(2)).is_ok());
    serves_a_connection(&mut p, "a failed sendmsg");
}

/// A second `handoff` frame for an id still waiting for its descriptor, and
/// an id used again after its connection closed: each duplicate is refused
/// (`duplicate_id`, the descriptor closed with `aux_error`) while the first
/// use is untouched.
#[test]
fn duplicate_handoffs_while_waiting_and_after_close_are_refused() {
    let mut p = echo_port();
    let base = p.fd_count();

    // Frame, same frame again, then the descriptor: the second frame is
    // refused, the first pairs with the descriptor.
    let id = conn_id();
    p.send_handoff_frame(id, unix_info());
    p.send_handoff_frame(id, unix_info());
    let reason = p.wait_closed(id);
    assert!(
        is_atom(&reason, "duplicate_id"),
        "second frame while waiting: {}",
        show(&reason)
    );
    let (mut a, b) = unix_pair();
    p.send_fds(&[id], &[b.as_raw_fd()]);
    drop(b);
    echo_roundtrip(&mut a, b"the first frame paired");
    drop(a);
    let reason = p.wait_closed(id);
    assert!(is_atom(&reason, "eof"), "{}", show(&reason));
    assert_eq!(p.wait_fd_count(base, Duration::from_secs(3)), base);

    // The same id again, after its connection is gone: descriptor and frame
    // are both refused.
    let (peer, again) = unix_pair();
    p.handoff(id, again.as_raw_fd(), unix_info());
    drop(again);
    let text = p.wait_aux_error(T);
    assert!(
        text.contains(&id.to_string()),
        "aux_error does not name the id: {text:?}"
    );
    let reason = p.wait_closed(id);
    assert!(
        is_atom(&reason, "duplicate_id"),
        "id reused after close: {}",
        show(&reason)
    );
    let r = sees_close(peer.as_fd(), Duration::from_secs(3));
    assert!(r.is_ok(), "peer of the refused descriptor: {}", r.unwrap_err());
    assert_eq!(p.wait_fd_count(base, Duration::from_secs(3)), base, "descriptor leaked");
    let s = p.stats();
    assert_eq!(
        (s["active_connections"], s["pending_fds"], s["refused_handoffs"]),
        (0, 0, 2),
        "{s:?}"
    );
    serves_a_connection(&mut p, "duplicate handoffs");
}
