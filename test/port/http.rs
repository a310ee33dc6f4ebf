//! HTTP/1.1 and WSGI end to end: the port binary serves the applications of
//! `test/python/wsgi_apps.py` (under `wsgiref.validate`) on real loopback
//! TCP connections handed over as the VM hands them, and a raw client
//! checks every byte of what comes back.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

/// A port serving `wsgi_apps.<callable>` with `extra` setup options.
fn start(callable: &str, extra: Vec<(&str, Term)>) -> Port {
    let mut p = Port::start();
    let apps = repo_root().join("test").join("python");
    let mut opts = vec![
        ("python_path", list(vec![bin(apps.to_string_lossy().as_bytes())])),
        ("app_module", bin("wsgi_apps")),
        ("app_callable", bin(callable)),
    ];
    opts.extend(extra);
    let r = p.setup(opts);
    assert!(is_atom(&r, "ok"), "setup: {}\n{}", show(&r), p.stderr_text());
    p
}

#[test]
fn keep_alive_serves_several_requests_and_counts_them() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    for _ in 0..3 {
        let r = c.get("/hello");
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!"));
        assert_eq!(r.header("content-length"), Some("13"));
        assert!(r.header("date").is_some());
    }
    assert_eq!(p.stat("total_requests"), 3);
    assert_eq!(p.stat("python_errors"), 0);
    assert_eq!(p.stat("active_connections"), 1);
}

const PIPELINE: &[u8] = b"GET /path/one HTTP/1.1\r\nHost: t\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n\
GET /path/two HTTP/1.1\r\nHost: t\r\n\r\n";

fn check_pipeline(c: &mut Client) {
    assert_eq!(c.reply(false).text(), "/path/one");
    assert_eq!(c.reply(false).text(), "hello");
    assert_eq!(c.reply(false).text(), "abcde");
    let head = c.reply(true);
    assert_eq!((head.status, head.header("content-length")), (200, Some("13")));
    assert_eq!(c.reply(false).text(), "/path/two");
}

#[test]
fn pipelined_requests_in_one_packet_are_answered_in_order() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(PIPELINE);
    check_pipeline(&mut c);
    assert_eq!(p.stat("total_requests"), 5);
}

#[test]
fn pipelined_requests_split_byte_by_byte_are_answered_in_order() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    for byte in PIPELINE {
        c.send(&[*byte]);
        // Each byte its own segment (no Nagle), and the server given a
        // chance to read it alone.
        std::thread::yield_now();
    }
    check_pipeline(&mut c);
}

#[test]
fn connection_close_and_http_1_0() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.reply(false);
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(c.closed());
    assert!(is_atom(&p.wait_closed(c.id), "normal"));

    let mut c = Client::new(&mut p);
    c.send(b"GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(c.reply(false).text(), "Hello, world!");
    assert!(c.closed(), "HTTP/1.0 closes by default");

    let mut c = Client::new(&mut p);
    for _ in 0..2 {
        c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.reply(false);
        assert_eq!((r.text().as_str(), r.header("connection")), ("Hello, world!", Some("keep-alive")));
    }
    // Without a length, an HTTP/1.0 response ends with the connection.
    c.send(b"GET /stream?n=2&size=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.reply(false);
    assert_eq!((r.text().as_str(), r.header("transfer-encoding")), ("AAABBB", None));
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.reply(true);
    let get = c.get("/hello");
    assert_eq!(head.status, get.status);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert_eq!(get.text(), "Hello, world!", "no stray body bytes before the next response");
}

#[test]
fn expect_100_continue_is_answered_when_the_app_reads() {
    let mut p = start("raw_app", vec![]);
    check_expect_100_continue(&mut Client::new(&mut p));
}

#[test]
fn request_bodies_read_with_readlines_and_iteration() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"POST /readlines HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\na\nbb\nccc");
    assert_eq!(c.reply(false).text(), "3:ccc");
    c.send(b"POST /iterate HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nx\ny\n\r\n2\r\nz\n\r\n0\r\n\r\n");
    assert_eq!(c.reply(false).text(), "x|y|z");
}

#[test]
fn responses_without_a_length_are_chunked_and_8_mib_arrive_whole() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    let r = c.get("/stream?n=128&size=65536");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 8 * 1024 * 1024);
    for (i, block) in r.body.chunks(65536).enumerate() {
        assert!(block.iter().all(|&b| b == 65 + (i % 26) as u8), "block {i} is wrong");
    }
    let r = c.get("/write");
    assert_eq!(r.text(), "written directly, then returned");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let closed = p.eval_ok("__import__('wsgi_apps').CLOSED");
    assert_eq!(as_int(&closed), Some(2), "close() of both iterables");
}

#[test]
fn a_64_mib_upload_streams_through_readline() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    const LINES: usize = 64 * 1024 * 1024 / 11;
    let total = LINES * 11;
    c.send(format!("POST /lines HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").as_bytes());
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut block = Vec::with_capacity(1 << 20);
        for i in 0..LINES {
            block.extend_from_slice(format!("{i:010}\n").as_bytes());
            if block.len() >= 1 << 20 {
                writer.write_all(&block).unwrap();
                block.clear();
            }
        }
        writer.write_all(&block).unwrap();
    });
    c.stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let r = c.reply(false);
    sender.join().unwrap();
    assert_eq!(r.text(), format!("lines={LINES} good={LINES}"));
    // The port kept a bounded buffer, not the upload.
    let rss: u64 = std::fs::read_to_string(format!("/proc/{}/status", p.os_pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap()))
        .unwrap();
    assert!(rss < 60 * 1024, "peak RSS {rss} kB: the upload was buffered");
}

#[test]
fn wsgi_file_wrapper_sends_the_file_without_python_reading_it() {
    let mut p = start("plain_app", vec![]);
    let dir = TempDir::new("sendfile");
    let path = dir.join("data.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let mut c = Client::new(&mut p);
    let r = c.get(&format!("/file?path={}&offset=1000", path.display()));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("2999000"));
    assert!(r.body == data[1000..], "the file's bytes from the offset");
    let counters = p.eval_ok("(__import__('wsgi_apps').FILE_READS, __import__('wsgi_apps').CLOSED)");
    assert_eq!(show(&counters), "{0, 1}", "sent by sendfile (no read), then closed");
    // HEAD: the length, no body.
    c.send(format!("HEAD /file?path={} HTTP/1.1\r\nHost: t\r\n\r\n", path.display()).as_bytes());
    assert_eq!(c.reply(true).header("content-length"), Some("3000000"));
    assert_eq!(c.get("/hello").text(), "Hello, world!");
}

/// Sends `request` and expects `status`, then the connection closed with
/// nothing more (a smuggled request after it is never answered).
fn refused(p: &mut Port, request: &[u8], status: u16) {
    let mut c = Client::new(p);
    c.send(request);
    let r = c.reply(false);
    assert_eq!(r.status, status, "{:?}: {}", String::from_utf8_lossy(request), r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed(), "{:?}: more after the error: {:?}", String::from_utf8_lossy(request), c.buf);
}

#[test]
fn request_smuggling_is_refused_and_the_connection_closed() {
    let mut p = start("raw_app", vec![]);
    let smuggled = "GET /path/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    for request in [
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"),
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"),
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n{smuggled}"),
        format!("GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n{smuggled}"),
        format!("GET / HTTP/1.1\r\n\r\n{smuggled}"),
    ] {
        refused(&mut p, request.as_bytes(), 400);
    }
    refused(&mut p, b"GARBAGE\r\n\r\n", 400);
    refused(&mut p, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    assert_eq!(p.stat("python_errors"), 0, "the client's fault, not the app's");
}

#[test]
fn limits_give_413_414_431() {
    let limits = vec![
        ("max_request_line", int(200)),
        ("max_header_block", int(1000)),
        ("max_header_count", int(10)),
        ("max_body_size", int(100)),
    ];
    let mut p = start("raw_app", limits);
    refused(&mut p, format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(300)).as_bytes(), 414);
    refused(&mut p, format!("GET /{}", "a".repeat(300)).as_bytes(), 414);
    let many: String = (0..12).map(|i| format!("X-{i}: y\r\n")).collect();
    refused(&mut p, format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(), 431);
    refused(&mut p, format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "b".repeat(1200)).as_bytes(), 431);
    refused(&mut p, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n", 413);
    // A chunked body is counted as it comes.
    let chunks: String = (0..5).map(|_| format!("20\r\n{}\r\n", "c".repeat(32))).collect();
    refused(&mut p, format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n").as_bytes(), 413);
    // Within the limits all is well.
    let mut c = Client::new(&mut p);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    c.send(&[b'z'; 100]);
    assert_eq!(c.reply(false).body, vec![b'z'; 100]);
    assert_eq!(p.stat("python_errors"), 0);
}

#[test]
fn slowloris_gets_408_and_idle_keep_alive_connections_close() {
    let mut p = start("raw_app", vec![("header_timeout", int(300)), ("keepalive_timeout", int(300))]);
    let mut slow = Client::new(&mut p);
    slow.send(b"GET /hello HTTP/1.1\r\nHo");
    let mut idle = Client::new(&mut p);
    assert_eq!(idle.get("/hello").status, 200);
    let r = slow.reply(false);
    assert_eq!(r.status, 408);
    assert!(slow.closed());
    assert!(idle.closed(), "the idle keep-alive connection is closed");
    assert!(is_atom(&p.wait_closed(idle.id), "normal"));
    assert!(is_atom(&p.wait_closed(slow.id), "normal"));
    assert_eq!(p.stat("active_connections"), 0);
}

#[test]
fn a_sleeping_request_does_not_delay_twenty_others() {
    let mut p = start("raw_app", vec![]);
    let mut sleeper = Client::new(&mut p);
    sleeper.send(b"GET /sleep?s=600 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut others: Vec<Client> = (0..20).map(|_| Client::new(&mut p)).collect();
    for c in &mut others {
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for c in &mut others {
        assert_eq!(c.reply(false).text(), "Hello, world!");
    }
    // The sleeper has its thread still, and no answer.
    sleeper.stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(sleeper.stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock));
    assert_eq!(p.stat("total_requests"), 21);
}

#[test]
fn app_exceptions_give_500_or_a_closed_connection_and_the_context_goes_on() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    let r = c.get("/raise");
    assert_eq!((r.status, r.header("connection")), (500, Some("close")));
    assert!(c.closed());
    p.wait_log("the traceback", |level, text| level == "error" && text.contains("ZeroDivisionError: the app failed"));
    // Mid-stream: the head and the first part went out; the connection
    // ends without the last chunk, so the client sees the truncation.
    let mut c = Client::new(&mut p);
    c.send(b"GET /raise_midstream HTTP/1.1\r\nHost: t\r\n\r\n");
    let head_and_part = {
        while c.fill() {}
        String::from_utf8_lossy(&c.buf).into_owned()
    };
    assert!(head_and_part.starts_with("HTTP/1.1 200 OK\r\n"), "{head_and_part}");
    assert!(head_and_part.contains("first part") && !head_and_part.ends_with("0\r\n\r\n"), "{head_and_part}");
    p.wait_log("the mid-stream traceback", |level, text| level == "error" && text.contains("KeyError"));
    assert_eq!(p.stat("python_errors"), 2);
    let closed = p.eval_ok("__import__('wsgi_apps').CLOSED");
    assert_eq!(as_int(&closed), Some(1), "close() called on the failed iterable");
    // The context goes on serving.
    let mut c = Client::new(&mut p);
    assert_eq!(c.get("/hello").text(), "Hello, world!");
}

#[test]
fn start_response_with_exc_info_replaces_an_unsent_response() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    let r = c.get("/exc_info");
    assert_eq!((r.status, r.text().as_str()), (503, "recovered"));
    assert_eq!(p.stat("python_errors"), 0);
}

#[test]
fn environ_follows_pep_3333() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    let port = c.stream.local_addr().unwrap().port();
    c.send(
        b"POST /environ?a=1&b=%20 HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/x-test\r\n\
Content-Length: 4\r\nX-Twice: 1\r\nX-Twice: 2\r\nCookie: a=1\r\nCookie: b=2\r\nX_Under_Score: spoof\r\n\r\nbody",
    );
    let r = c.reply(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let expect = serde_json::json!({
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/environ", "QUERY_STRING": "a=1&b=%20",
        "CONTENT_TYPE": "text/x-test", "CONTENT_LENGTH": "4", "SERVER_NAME": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": port.to_string(),
        "HTTP_HOST": "example.test", "HTTP_X_TWICE": "1,2", "HTTP_COOKIE": "a=1; b=2", "HTTP_X_UNDER_SCORE": null,
        "wsgi.url_scheme": "http", "wsgi.multithread": true, "wsgi.multiprocess": false, "wsgi.run_once": false,
        "wsgi.version": [1, 0], "body": "body", "file_wrapper": "FileWrapper",
    });
    for (key, value) in expect.as_object().unwrap() {
        assert_eq!(&seen[key], value, "{key} in {seen}");
    }
    assert!(seen["SERVER_PORT"].as_str().unwrap().parse::<u16>().is_ok());
    // PATH_INFO is percent-decoded, as latin-1 text.
    assert_eq!(c.get("/path/caf%C3%A9%20x").body, "/path/café x".as_bytes());
}

#[test]
fn wsgi_errors_and_the_access_log_reach_the_logger() {
    let mut p = start("raw_app", vec![("access_log", atom("true"))]);
    let mut c = Client::new(&mut p);
    assert_eq!(c.get("/errors").text(), "logged");
    p.wait_log("wsgi.errors", |level, text| level == "error" && text == "an error line from the app");
    assert_eq!(c.get("/hello").status, 200);
    p.wait_log("the access log line", |level, text| {
        level == "info" && text.starts_with("127.0.0.1 \"GET /hello HTTP/1.1\" 200 13")
    });
}

#[test]
fn a_flask_app_under_the_validator() {
    let mut p = start("flask_validated", vec![]);
    let mut c = Client::new(&mut p);
    let r = c.get("/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!"));
    let r = c.get("/json/ada?x=1");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({"name": "ada", "args": {"x": "1"}}));
    c.send(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2");
    assert_eq!(c.reply(false).text(), "1+2");
    c.send(b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.reply(false).text(), "5");
    let r = c.get("/stream");
    assert_eq!((r.text().as_str(), r.header("transfer-encoding")), ("part0;part1;part2;", Some("chunked")));
    assert_eq!(c.get("/missing").status, 404);
    assert_eq!(p.stat("python_errors"), 0);
    assert_eq!(p.stat("total_requests"), 6);
    assert!(!p.stderr_text().contains("Warning"), "{}", p.stderr_text());

    // A chunked upload, which werkzeug reads only when the server says the
    // input ends (`wsgi.input_terminated`), and then with `read()` and no
    // size, which the validator refuses: so without the validator.
    let mut p = start("flask_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"PUT /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c.reply(false).text(), "8");
}

#[test]
fn a_flask_exception_is_logged_as_one_event_with_its_traceback() {
    // Flask answers 500 itself and logs the exception to `wsgi.errors`,
    // one write of several lines: one log event, not one per line.
    let mut p = start("flask_app", vec![]);
    let mut c = Client::new(&mut p);
    assert_eq!(c.get("/raise").status, 500);
    let (_, text) = p.wait_log("Flask's logged exception", |level, text| level == "error" && text.contains("Exception on /raise"));
    assert!(text.contains("\nTraceback (most recent call last):\n"), "{text}");
    assert!(text.ends_with("ZeroDivisionError: division by zero"), "{text}");
    assert!(!p.logs.iter().any(|(_, t)| t.starts_with("Traceback")), "no line logged on its own: {:?}", p.logs);
}

#[test]
fn app_interface_picks_the_kind_of_app() {
    // A coroutine function, or an object whose __call__ is one, is served
    // as ASGI (test/port/asgi.rs): these answer nothing, hence a 500.
    for callable in ["asgi_app", "asgi_object"] {
        let mut p = start(callable, vec![]);
        let mut c = Client::new(&mut p);
        assert_eq!(c.get("/").status, 500, "{callable}");
    }
    // Forced to protocol, a WSGI app is a factory that fails per connection:
    // the option is obeyed.
    let mut p = start("raw_app", vec![("app_interface", atom("protocol"))]);
    let (_c, id) = p.handoff_tcp();
    assert!(show(&p.wait_closed(id)).contains("python"));
    let mut p = Port::start();
    let r = p.setup(vec![("app_interface", atom("cgi"))]);
    assert!(show(&r).contains("app_interface"), "{}", show(&r));
}

#[test]
fn stop_with_a_request_in_the_app_closes_everything() {
    let mut p = start("raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"GET /sleep?s=600 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut other = Client::new(&mut p);
    assert_eq!(other.get("/hello").status, 200);
    let r = p.stop();
    assert!(is_atom(&r, "ok"), "stop: {}", show(&r));
    c.stream.shutdown(Shutdown::Write).unwrap();
    assert!(c.closed());
    assert!(other.closed());
}

#[test]
fn idle_timeout_spares_a_connection_inside_the_application() {
    // The application holds the connection past the context's idle_timeout:
    // no readiness event comes meanwhile, but the connection is busy, not idle.
    let mut p = start("raw_app", vec![("idle_timeout", int(200))]);
    let mut c = Client::new(&mut p);
    let r = c.get("/sleep?s=0.7");
    assert_eq!((r.status, r.text()), (200, "slept".to_string()));
    // Idle again after the response: the timeout runs from there.
    assert_eq!(c.get("/hello").text(), "Hello, world!");
    assert!(c.closed());
    assert!(is_atom(&p.wait_closed(c.id), "idle_timeout"), "closed for idleness");
    assert_eq!(p.stat("total_requests"), 2);
}
