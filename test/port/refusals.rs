//! What the port refuses, it refuses at once, with the true reason, and
//! without losing count: descriptors that cannot be received (the port at
//! its descriptor limit), frames that cannot be decoded (the request they
//! carry still gets its answer), and descriptors that are not connections
//! (a listening socket is left exactly as the VM had it).

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};

/// A list nested `depth` levels deep: `[[[...[]...]]]`.
fn nested(depth: usize) -> Term {
    let mut t = list(vec![]);
    for _ in 0..depth {
        t = list(vec![t]);
    }
    t
}

fn bad_term_text(r: &Term) -> String {
    match elems(r) {
        Some([e, reason]) if is_atom(e, "error") => match elems(reason) {
            Some([tag, text]) if is_atom(tag, "bad_term") => as_text(text).expect("bad_term text is a binary"),
            _ => panic!("not a bad_term: {}", show(r)),
        },
        _ => panic!("not an error: {}", show(r)),
    }
}

/// `prlimit --nofile=20:20` on the port, then 30 handoffs: those the port
/// has no descriptor for are refused at once with `{error, emfile}` (not
/// after the pairing timeout as `fd_not_received`), the log says why, and the
/// counts are exact at once. Once connections close, handoffs work again.
#[test]
fn handoffs_past_the_descriptor_limit_are_refused_at_once_with_emfile() {
    let mut p = Port::start_with(Opts { nofile: Some(20), ..Opts::default() });
    p.setup_std(ECHO, vec![]);
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let (mut client, id) = p.handoff_tcp();
        // The test's copy is closed: a connection the port did not get is
        // closed for the client, one it got echoes.
        let _ = std::io::Write::write_all(&mut client, b"ping");
        let mut buf = [0u8; 4];
        match std::io::Read::read(&mut client, &mut buf) {
            Ok(4) => {
                assert_eq!(&buf, b"ping");
                opened.push((client, id));
            }
            _ => {
                let reason = p.wait_closed_within(id, std::time::Duration::from_secs(3));
                assert!(
                    matches(&reason, &tup(vec![atom("error"), atom("emfile")])),
                    "handoff {id} refused with {} instead of {{error, emfile}}",
                    show(&reason)
                );
                refused += 1;
            }
        }
    }
    assert!(!opened.is_empty() && refused > 0, "{} opened, {refused} refused", opened.len());
    let stats = p.stats();
    assert_eq!(stats["active_connections"], opened.len() as i128, "{stats:?}");
    assert_eq!(stats["refused_handoffs"], refused as i128, "{stats:?}");
    assert_eq!(stats["pending_fds"], 0, "{stats:?}");
    p.drain();
    let errors: Vec<String> = p
        .history
        .iter()
        .filter_map(|t| match elems(t) {
            Some([tag, text]) if is_atom(tag, "aux_error") => as_text(text),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), refused, "one aux_error per lost descriptor: {errors:?}");
    for text in &errors {
        assert!(text.contains("descriptor limit") && text.contains("EMFILE"), "{text}");
        assert!(!text.contains("more than"), "{text}");
    }
    // Room again: the next handoff is served.
    for (client, id) in opened.drain(..) {
        drop(client);
        assert!(is_atom(&p.wait_closed(id), "eof"));
    }
    let (mut client, _id) = p.handoff_tcp();
    echo_roundtrip(&mut client, b"after the limit");
}

/// A message that announces more ids than it carries descriptors: the
/// handoffs without one are refused at once, not after the pairing timeout.
#[test]
fn ids_without_descriptors_are_refused_at_once() {
    let mut p = Port::start_std(ECHO);
    let (a, _a_peer) = unix_pair();
    let (first, second) = (conn_id(), conn_id());
    p.send_fds(&[first, second], &[a.as_raw_fd()]);
    p.send_handoff_frame(first, unix_info());
    p.send_handoff_frame(second, unix_info());
    let reason = p.wait_closed_within(second, std::time::Duration::from_secs(3));
    assert!(is_atom(&reason, "fd_not_received"), "{}", show(&reason));
    assert_eq!(p.stat("active_connections"), 1);
    assert_eq!(p.stat("pending_fds"), 0);
}

/// `call(Ctx, builtins, len, [List])` with a list nested 257 deep: the port
/// cannot decode the frame, and answers the request it carried.
#[test]
fn a_request_too_deep_to_decode_gets_its_error_reply() {
    let mut p = Port::start_std("");
    let r = p.call("builtins", "len", vec![nested(257)]);
    assert!(bad_term_text(&r).contains("deeper than 256"), "{}", show(&r));
    // The deepest list that fits: the request's tuple, its argument list and
    // 254 levels of the argument make 256.
    let r = p.call("builtins", "len", vec![nested(254)]);
    assert!(matches(&r, &tup(vec![atom("ok"), int(1)])), "{}", show(&r));
    let r = p.call("builtins", "len", vec![nested(255)]);
    assert!(bad_term_text(&r).contains("deeper"), "{}", show(&r));
    p.assert_serving();
}

/// A request of the wrong shape, or holding a term the port does not take
/// (a fun), is answered too.
#[test]
fn requests_of_the_wrong_shape_or_with_foreign_terms_are_answered() {
    let mut p = Port::start_std("");
    let r = p.request(|r| tup(vec![atom("call"), r, bin("builtins"), bin("len")]));
    assert!(matches(&r, &tup(vec![atom("error"), tup(vec![atom("bad_request"), any()])])), "{}", show(&r));
    let r = p.request(|r| tup(vec![atom("stats"), r, atom("extra")]));
    assert!(matches(&r, &tup(vec![atom("error"), tup(vec![atom("bad_request"), any()])])), "{}", show(&r));
    // {eval, 77, <<"1">>, Fun}: NEW_FUN_EXT (tag 112) after the Ref.
    let mut frame = vec![131, 104, 4, 100, 0, 4, b'e', b'v', b'a', b'l', 97, 77];
    frame.extend([109, 0, 0, 0, 1, b'1', 112, 0, 0, 0, 9, 0]);
    p.send_frame(&frame);
    let t = p.wait_match(&tup(vec![atom("reply"), int(77), any()]));
    let text = bad_term_text(&elems(&t).unwrap()[2]);
    assert!(text.contains("tag 112"), "{text}");
    p.assert_serving();
}

/// A `handoff` whose client info is too deep: refused with `bad_term`, its
/// descriptor closed, nothing counted.
#[test]
fn a_handoff_too_deep_to_decode_is_refused_and_its_descriptor_closed() {
    let mut p = Port::start_std(ECHO);
    let base = p.fd_count();
    let (mut peer, b) = unix_pair();
    let id = conn_id();
    p.send_fds(&[id], &[b.as_raw_fd()]);
    drop(b);
    p.send_handoff_frame(id, map(vec![(atom("deep"), nested(300))]));
    let reason = p.wait_closed(id);
    assert!(matches(&reason, &tup(vec![atom("bad_term"), any()])), "{}", show(&reason));
    assert_eq!(p.wait_fd_count(base, T), base, "the refused descriptor is still open");
    assert_eq!(read_to_eof(&mut peer), b"");
    let stats = p.stats();
    assert_eq!(stats["active_connections"], 0);
    assert_eq!(stats["refused_handoffs"], 1);
    // A handoff frame of the wrong shape that names its id: refused too.
    let (_peer, b) = unix_pair();
    let id = conn_id();
    p.send_fds(&[id], &[b.as_raw_fd()]);
    drop(b);
    p.send_term(&tup(vec![atom("handoff"), uint(id)]));
    let reason = p.wait_closed(id);
    assert!(matches(&reason, &tup(vec![atom("bad_term"), any()])), "{}", show(&reason));
    assert_eq!(p.wait_fd_count(base, T), base);
}

/// A listening socket handed off by mistake is refused and left as it was:
/// still blocking if it was, still accepting.
#[test]
fn a_listening_socket_is_refused_and_left_untouched() {
    let mut p = Port::start_std(ECHO);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(!is_nonblocking(listener.as_fd()));
    let id = conn_id();
    p.handoff(id, listener.as_raw_fd(), map(vec![]));
    let reason = p.wait_closed(id);
    assert!(is_atom(&reason, "listening_socket"), "{}", show(&reason));
    assert!(!is_nonblocking(listener.as_fd()), "the port changed the listening socket's flags");
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().expect("the listening socket no longer accepts");
    assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
    let stats = p.stats();
    assert_eq!(stats["active_connections"], 0);
    assert_eq!(stats["refused_handoffs"], 1);
}

/// A stream socket that was never connected is refused as `not_connected`.
#[test]
fn an_unconnected_stream_socket_is_refused() {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let mut p = Port::start_std(ECHO);
    let s = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let id = conn_id();
    p.handoff(id, s.as_raw_fd(), map(vec![]));
    let reason = p.wait_closed(id);
    assert!(is_atom(&reason, "not_connected"), "{}", show(&reason));
    assert_eq!(p.stat("active_connections"), 0);
}
