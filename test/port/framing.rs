//! Frames that are not valid requests get an error and never stop the port.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;

fn set_up() -> Port {
    let mut p = Port::start();
    let r = p.setup(vec![]);
    assert!(is_atom(&r, "ok"), "setup: {}", show(&r));
    p
}

#[test]
fn hello_announces_protocol_pid_socket_and_max_frame() {
    let p = Port::start_with(Opts { connect_aux: false, ..Opts::default() });
    assert_eq!(as_int(map_get_atom(&p.hello, "protocol").unwrap()), Some(1), "hello: {}", show(&p.hello));
    assert_eq!(
        as_int(map_get_atom(&p.hello, "os_pid").expect("os_pid")),
        Some(p.os_pid() as i128),
        "os_pid in hello is not the port's pid"
    );
    assert_eq!(p.max_frame, 16 * 1024 * 1024, "max_frame");
    assert!(p.socket_path.is_absolute(), "socket_path {:?}", p.socket_path);
}

#[test]
fn truncated_term_gives_frame_error_and_port_keeps_serving() {
    let mut p = set_up();
    let full = encode(&tup(vec![atom("stats"), int(1), bin("some payload")]));
    // Cut inside the request's name: nobody to answer, a frame_error.
    p.send_frame(&full[..6]);
    let text = p.wait_frame_error();
    assert!(!text.is_empty(), "empty frame_error text");
    p.expect_no("reply to a truncated frame", std::time::Duration::from_millis(100), |t| {
        matches(t, &tup(vec![atom("reply"), int(1), any()]))
    });
    assert!(p.stats().contains_key("active_connections"));
}

#[test]
fn truncated_term_after_its_ref_is_answered() {
    let mut p = set_up();
    let full = encode(&tup(vec![atom("stats"), int(1), bin("some payload")]));
    // The Ref is whole: its request gets the error.
    p.send_frame(&full[..full.len() - 3]);
    let r = p.wait_match(&tup(vec![atom("reply"), int(1), any()]));
    let reason = &elems(&r).unwrap()[2];
    assert!(
        matches(reason, &tup(vec![atom("error"), tup(vec![atom("bad_term"), any()])])),
        "{}",
        show(reason)
    );
    assert!(p.stats().contains_key("active_connections"));
}

#[test]
fn non_term_gives_frame_error_and_port_keeps_serving() {
    let mut p = set_up();
    p.send_frame(b"this is not a term");
    let text = p.wait_frame_error();
    assert!(!text.is_empty(), "empty frame_error text");
    // an empty frame is not a term either
    p.send_frame(b"");
    let text2 = p.wait_frame_error();
    assert!(!text2.is_empty(), "empty frame_error text");
    // a version byte followed by garbage
    p.send_frame(&[131, 255, 1, 2, 3]);
    p.wait_frame_error();
    assert!(p.stats().contains_key("active_connections"));
}

#[test]
fn unknown_message_gives_frame_error_naming_it() {
    let mut p = set_up();
    p.send_term(&tup(vec![atom("frobnicate"), int(7), bin("x")]));
    let text = p.wait_frame_error();
    assert!(text.contains("frobnicate"), "frame_error does not name the message: {text:?}");
    p.send_term(&atom("just_an_atom"));
    let text = p.wait_frame_error();
    assert!(text.contains("just_an_atom"), "frame_error does not name the message: {text:?}");
    p.send_term(&list(vec![int(1), int(2)]));
    p.wait_frame_error();
    assert!(p.stats().contains_key("active_connections"));
}

#[test]
fn frame_over_max_frame_is_skipped_and_reported() {
    let mut p = set_up();
    let n = p.max_frame as usize + 1;
    // The announced length, then that many bytes that even look like a term.
    let mut payload = vec![b'x'; n];
    payload[0] = 131;
    p.send_frame(&payload);
    let text = p.wait_frame_error();
    assert!(
        text.contains(&n.to_string()) || text.contains("large") || text.contains("max") || text.contains("limit"),
        "frame_error does not say the frame was too large: {text:?}"
    );
    // The stream is still in sync: a normal request right after works.
    let s = p.stats();
    assert_eq!(s.get("active_connections"), Some(&0));
    // And a frame exactly at the limit is not refused as too large.
    let mut t = encode(&tup(vec![atom("eval"), int(77), bin("1")]));
    // pad with a binary so the term fills max_frame exactly
    let pad = p.max_frame as usize - t.len() - 10;
    t = encode(&tup(vec![atom("eval"), int(77), bin(format!("1{}", " ".repeat(pad)))]));
    assert!(t.len() <= p.max_frame as usize);
    p.send_frame(&t);
    let r = p.wait_match(&tup(vec![atom("reply"), int(77), any()]));
    assert!(matches(&r, &tup(vec![atom("reply"), int(77), tup(vec![atom("ok"), int(1)])])), "{}", show(&r));
}

#[test]
fn wrong_field_types_get_bad_request() {
    let mut p = set_up();
    let bad = |r: &Term| matches(r, &tup(vec![atom("error"), tup(vec![atom("bad_request"), any()])]));
    let r = p.request(|r| tup(vec![atom("exec"), r, int(42)]));
    assert!(bad(&r), "exec with an integer code: {}", show(&r));
    let r = p.request(|r| tup(vec![atom("eval"), r, tup(vec![atom("a")])]));
    assert!(bad(&r), "eval with a tuple expr: {}", show(&r));
    let r = p.request(|r| tup(vec![atom("call"), r, bin("math"), bin("sqrt"), int(4)]));
    assert!(bad(&r), "call with non-list args: {}", show(&r));
    let r = p.request(|r| tup(vec![atom("call"), r, int(1), bin("sqrt"), list(vec![])]));
    assert!(bad(&r), "call with an integer module: {}", show(&r));
    // the bad_request text is a binary
    if let Some([_, e]) = elems(&r) {
        assert!(as_bin(&elems(e).unwrap()[1]).is_some(), "bad_request text is not a binary: {}", show(&r));
    }
    let r = p.request(|r| tup(vec![atom("setup"), r, int(5)]));
    assert!(
        bad(&r) || matches(&r, &tup(vec![atom("error"), atom("already_set_up")])),
        "second setup with a non-map: {}",
        show(&r)
    );
    assert!(p.stats().contains_key("active_connections"));
}

#[test]
fn setup_with_bad_option_types_gets_bad_request() {
    let mut p = Port::start();
    let bad = |r: &Term| matches(r, &tup(vec![atom("error"), tup(vec![atom("bad_request"), any()])]));
    let r = p.request(|r| tup(vec![atom("setup"), r, int(5)]));
    assert!(bad(&r), "setup with a non-map: {}", show(&r));
    let r = p.setup(vec![("setup_code", int(3))]);
    assert!(bad(&r), "setup_code as an integer: {}", show(&r));
    let r = p.setup(vec![("max_connections", bin("many"))]);
    assert!(bad(&r), "max_connections as a binary: {}", show(&r));
    // after refused setups, a good one still works
    let r = p.setup(vec![]);
    assert!(is_atom(&r, "ok"), "setup after bad ones: {}", show(&r));
}

#[test]
fn requests_before_setup_get_not_set_up() {
    let mut p = Port::start();
    let r = p.eval("1");
    assert!(matches(&r, &tup(vec![atom("error"), atom("not_set_up")])), "{}", show(&r));
    let r = p.exec("x = 1");
    assert!(matches(&r, &tup(vec![atom("error"), atom("not_set_up")])), "{}", show(&r));
    // stats is answered at any time (the VM may ask before setup has finished).
    let r = p.request(|r| tup(vec![atom("stats"), r]));
    assert!(matches(&r, &tup(vec![atom("ok"), any()])), "{}", show(&r));
}
