//! ASGI end to end: the port binary serves the applications of
//! `test/python/asgi_apps.py` (a raw ASGI application and a Starlette one)
//! on real loopback TCP connections handed over as the VM hands them, and a
//! raw client checks what comes back.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// A port serving `asgi_apps.<callable>` with `extra` setup options; its
/// applications leave marker files in `markers`.
fn start_in(markers: &TempDir, callable: &str, extra: Vec<(&str, Term)>) -> (Port, Term) {
    let mut p = Port::start();
    let apps = repo_root().join("test").join("python");
    let code = format!("import asgi_apps\nasgi_apps.MARKERS = {:?}\n", markers.path().to_string_lossy());
    let mut opts = vec![
        ("python_path", list(vec![bin(apps.to_string_lossy().as_bytes())])),
        ("setup_code", bin(code)),
        ("app_module", bin("asgi_apps")),
        ("app_callable", bin(callable)),
        ("max_connections", int(2000)),
    ];
    opts.extend(extra);
    let r = p.setup(opts);
    (p, r)
}

fn start(markers: &TempDir, callable: &str, extra: Vec<(&str, Term)>) -> Port {
    let (p, r) = start_in(markers, callable, extra);
    assert!(is_atom(&r, "ok"), "setup: {}\n{}", show(&r), p.stderr_text());
    p
}

/// Waits (at most 20 s) until `path` exists; returns its text.
fn wait_marker(dir: &TempDir, name: &str) -> String {
    let path = dir.join(name);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("marker {name} never appeared");
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap()))
        .unwrap()
}

#[test]
fn a_coroutine_function_is_served_as_asgi_with_keep_alive() {
    let dir = TempDir::new("asgi_hello");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    for _ in 0..3 {
        let r = c.get("/hello");
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!"));
        // One body message: its length is known, so no chunks.
        assert_eq!(r.header("content-length"), Some("13"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert!(r.header("date").is_some());
    }
    assert_eq!(p.stat("total_requests"), 3);
    assert_eq!(p.stat("python_errors"), 0);
    assert_eq!(p.stat("active_connections"), 1);
    // Forced by app_interface too, with an access log.
    let mut p = start(&dir, "raw_app", vec![("app_interface", atom("asgi")), ("access_log", atom("true"))]);
    assert_eq!(Client::new(&mut p).get("/hello").status, 200);
    p.wait_log("the access log line", |l, t| l == "info" && t.ends_with("\"GET /hello HTTP/1.1\" 200 13"));
}

#[test]
fn the_http_scope_in_full() {
    let dir = TempDir::new("asgi_scope");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"GET /scope/a%20b/%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: test\r\nX-Custom: One\r\nX-Custom: two\r\n\r\n");
    let r = c.reply(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let scope: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(scope["type"], "http");
    assert_eq!(scope["asgi"]["version"], "3.0");
    assert_eq!(scope["asgi"]["spec_version"], "2.4");
    assert_eq!(scope["http_version"], "1.1");
    assert_eq!(scope["method"], "GET");
    assert_eq!(scope["scheme"], "http");
    assert_eq!(scope["path"], "/scope/a b/é");
    assert_eq!(scope["raw_path"], "/scope/a%20b/%C3%A9");
    assert_eq!(scope["query_string"], "x=1&y=%20");
    assert_eq!(scope["root_path"], "");
    let headers = scope["headers"].as_array().unwrap();
    let pairs: Vec<(String, String)> =
        headers.iter().map(|h| (h[0].as_str().unwrap().to_string(), h[1].as_str().unwrap().to_string())).collect();
    assert_eq!(
        pairs,
        vec![("host".into(), "test".into()), ("x-custom".into(), "One".into()), ("x-custom".into(), "two".into())]
    );
    let local = c.stream.local_addr().unwrap();
    let peer = c.stream.peer_addr().unwrap();
    assert_eq!(scope["client"][0], local.ip().to_string());
    assert_eq!(scope["client"][1], local.port());
    assert_eq!(scope["server"][0], peer.ip().to_string());
    assert_eq!(scope["server"][1], peer.port());
    // The lifespan's state, a shallow copy per request: what one request
    // adds is not seen by the next.
    assert_eq!(scope["state"], serde_json::json!({"started": "yes"}));
    let again: serde_json::Value = serde_json::from_slice(&c.get("/scope").body).unwrap();
    assert_eq!(again["state"], serde_json::json!({"started": "yes"}));
    c.send(b"GET /scope HTTP/1.0\r\n\r\n");
    let old: serde_json::Value = serde_json::from_slice(&c.reply(false).body).unwrap();
    assert_eq!(old["http_version"], "1.0");
}

const PIPELINE: &[u8] = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n\
GET /stream?n=3&size=2 HTTP/1.1\r\nHost: t\r\n\r\n\
GET /length HTTP/1.1\r\nHost: t\r\n\r\n";

fn check_pipeline(c: &mut Client) {
    assert_eq!(c.reply(false).text(), "Hello, world!");
    assert_eq!(c.reply(false).text(), "hello");
    assert_eq!(c.reply(false).text(), "abcde");
    let head = c.reply(true);
    assert_eq!((head.status, head.header("content-length")), (200, Some("13")));
    let streamed = c.reply(false);
    assert_eq!((streamed.text().as_str(), streamed.header("transfer-encoding")), ("aabbcc", Some("chunked")));
    let length = c.reply(false);
    assert_eq!((length.text().as_str(), length.header("content-length")), ("abcdef", Some("6")));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = TempDir::new("asgi_pipeline");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(PIPELINE);
    check_pipeline(&mut c);
    assert_eq!(p.stat("total_requests"), 6);
    let mut c = Client::new(&mut p);
    for byte in PIPELINE {
        c.send(&[*byte]);
        std::thread::yield_now();
    }
    check_pipeline(&mut c);
}

#[test]
fn a_body_the_app_did_not_read_is_dropped_up_to_a_limit() {
    let dir = TempDir::new("asgi_unread");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.reply(false).text(), "Hello, world!");
    c.send(b"POST /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c.reply(false).text(), "Hello, world!");
    assert_eq!(c.get("/hello").status, 200, "the connection goes on after both");
    // More than 1 MiB unread: the connection is closed rather than read on.
    c.send(b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n");
    assert_eq!(c.reply(false).text(), "Hello, world!");
    assert!(c.closed());
}

#[test]
fn http_1_0_and_connection_close() {
    let dir = TempDir::new("asgi_close");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(c.reply(false).text(), "Hello, world!");
    assert!(c.closed(), "HTTP/1.0 closes by default");
    let mut c = Client::new(&mut p);
    c.send(b"GET /stream?n=2&size=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.reply(false);
    assert_eq!((r.text().as_str(), r.header("transfer-encoding")), ("aaabbb", None), "ended by the close");
    let mut c = Client::new(&mut p);
    let r = c.get("/close");
    assert_eq!((r.text().as_str(), r.header("connection")), ("bye", Some("close")));
    assert!(c.closed());
    let mut c = Client::new(&mut p);
    for (code, length) in [(204, None), (304, None), (201, Some("0"))] {
        let r = c.get(&format!("/status?code={code}"));
        assert_eq!((r.status, r.header("content-length")), (code, length));
    }
}

#[test]
fn expect_100_continue_is_sent_when_the_app_first_receives() {
    let dir = TempDir::new("asgi_continue");
    let mut p = start(&dir, "raw_app", vec![]);
    check_expect_100_continue(&mut Client::new(&mut p));
}

#[test]
fn a_64_mib_upload_streams_through_receive() {
    let dir = TempDir::new("asgi_upload");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    let total = 64 * 1024 * 1024;
    c.send(format!("POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").as_bytes());
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let block = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            writer.write_all(&block).unwrap();
        }
    });
    c.stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let r = c.reply(false);
    sender.join().unwrap();
    let fields: Vec<u64> = r.text().split(' ').map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields[0], total as u64, "{}", r.text());
    assert!(fields[1] <= 64 * 1024, "an event of {} bytes: the body was not streamed", fields[1]);
    assert!(fields[2] >= 1024, "{} events", fields[2]);
    let peak = rss_kb(p.os_pid(), "VmHWM:");
    assert!(peak < 60 * 1024, "peak RSS {peak} kB: the upload was buffered");
    // A chunked upload too, and the connection goes on.
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
    assert!(c.reply(false).text().starts_with("8 "));
}

#[test]
fn a_slow_reader_makes_send_wait_and_memory_stays_bounded() {
    let dir = TempDir::new("asgi_slow");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    let before = rss_kb(p.os_pid(), "VmRSS:");
    // 256 MiB, streamed: a server that buffered it would grow by as much.
    let (n, size) = (4096usize, 65536usize);
    c.send(format!("GET /stream?n={n}&size={size} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    // The client reads nothing for a while: the socket fills, send waits.
    std::thread::sleep(Duration::from_millis(1500));
    let stalled = rss_kb(p.os_pid(), "VmRSS:");
    assert!(stalled < before + 32 * 1024, "RSS {before} kB -> {stalled} kB while the client did not read");
    // Then everything arrives, in order.
    c.stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let r = c.reply(false);
    assert_eq!(r.body.len(), n * size);
    for (i, block) in r.body.chunks(size).enumerate() {
        assert!(block.iter().all(|&b| b == 97 + (i % 26) as u8), "block {i} is wrong");
    }
    let peak = rss_kb(p.os_pid(), "VmHWM:");
    assert!(peak < before + 64 * 1024, "peak RSS {peak} kB");
}

#[test]
fn a_client_that_goes_away_is_seen_by_the_app() {
    let dir = TempDir::new("asgi_disconnect");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"POST /wait_disconnect HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    // The app has read the body and waits in receive() for what comes next.
    std::thread::sleep(Duration::from_millis(200));
    c.stream.shutdown(Shutdown::Both).unwrap();
    assert_eq!(wait_marker(&dir, "disconnect"), "http.disconnect");
    let mut other = Client::new(&mut p);
    assert_eq!(other.get("/disconnects").text(), "http.disconnect");
    assert_eq!(p.stat("python_errors"), 0);
}

#[test]
fn receive_after_the_response_and_send_after_the_client_left() {
    let dir = TempDir::new("asgi_after");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    assert_eq!(c.get("/after").text(), "done");
    assert_eq!(wait_marker(&dir, "after"), "http.disconnect");
    assert_eq!(c.get("/hello").status, 200, "the connection goes on");
    // A client that reads a little, then goes: the streaming app's send
    // raises ClientDisconnected (an OSError), which is not counted.
    let mut c = Client::new(&mut p);
    c.send(b"GET /until_gone HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut some = [0u8; 4096];
    assert!(c.stream.read(&mut some).unwrap() > 0);
    drop(c);
    assert_eq!(wait_marker(&dir, "gone"), "ClientDisconnected");
    assert_eq!(p.stat("python_errors"), 0);
    assert_eq!(Client::new(&mut p).get("/hello").status, 200);
}

#[test]
fn exceptions_give_500_before_the_response_and_a_close_after() {
    let dir = TempDir::new("asgi_errors");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    let r = c.get("/raise");
    assert_eq!(r.status, 500);
    assert!(c.closed());
    let (_, text) = p.wait_log("the traceback", |_, t| t.contains("ValueError: raised before the response"));
    assert!(text.contains("Traceback"), "{text}");
    assert_eq!(p.stat("python_errors"), 1);
    // After the response started: what was sent, then the close (no last chunk).
    let mut c = Client::new(&mut p);
    c.send(b"GET /raise_after HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut all = Vec::new();
    c.stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("partial"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    // Returning without a response is a 500 too.
    let mut c = Client::new(&mut p);
    assert_eq!(c.get("/nothing").status, 500);
    assert_eq!(p.stat("python_errors"), 3);
    assert_eq!(p.stat("total_requests"), 3);
    // The context goes on.
    assert_eq!(Client::new(&mut p).get("/hello").status, 200);
}

#[test]
fn limits_and_malformed_requests_get_their_status() {
    let dir = TempDir::new("asgi_limits");
    let mut p = start(
        &dir,
        "raw_app",
        vec![
            ("max_request_line", int(100)),
            ("max_header_count", int(5)),
            ("max_body_size", int(10)),
            ("header_timeout", int(300)),
            ("keepalive_timeout", int(300)),
        ],
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        (format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(200)).into_bytes(), 414),
        (b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\n\r\n".to_vec(), 431),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n".to_vec(), 413),
    ];
    for (request, status) in cases {
        let mut c = Client::new(&mut p);
        c.send(&request);
        assert_eq!(c.reply(false).status, status, "{}", String::from_utf8_lossy(&request));
        assert!(c.closed());
    }
    assert_eq!(p.stat("total_requests"), 5, "refused requests are counted");
    assert_eq!(p.stat("python_errors"), 0);
    // A chunked body over the limit reaches the app as a disconnect, and
    // the client gets 413.
    let mut c = Client::new(&mut p);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    assert_eq!(c.reply(false).status, 413);
    // A bad chunk: 400.
    let mut c = Client::new(&mut p);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(c.reply(false).status, 400);
    assert_eq!(p.stat("python_errors"), 0, "a client's bad body is not the application's fault");
    // A head that does not complete in time: 408.
    let mut c = Client::new(&mut p);
    c.send(b"GET / HTTP/1.1\r\nHo");
    assert_eq!(c.reply(false).status, 408);
    // A WebSocket handshake: the scope is not offered, and the client is told.
    let mut c = Client::new(&mut p);
    c.send(b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let r = c.reply(false);
    assert_eq!(r.status, 501);
    assert!(r.text().contains("WebSocket"), "{}", r.text());
    assert!(c.closed());
    p.wait_log("the refusal", |_, t| t.contains("websocket scope is not offered"));
    // An idle keep-alive connection is closed.
    let mut c = Client::new(&mut p);
    assert_eq!(c.get("/hello").status, 200);
    assert!(c.closed());
    assert!(is_atom(&p.wait_closed(c.id), "normal"));
}

#[test]
fn lifespan_startup_state_and_shutdown() {
    let dir = TempDir::new("asgi_lifespan");
    let mut p = start(&dir, "raw_app", vec![("lifespan", atom("on"))]);
    let scope: serde_json::Value = serde_json::from_slice(&Client::new(&mut p).get("/scope").body).unwrap();
    assert_eq!(scope["state"]["started"], "yes");
    assert!(!dir.join("shutdown").exists());
    assert!(is_atom(&p.stop(), "ok"));
    assert_eq!(wait_marker(&dir, "shutdown"), "");
    // Off: no lifespan scope, an empty state.
    let dir = TempDir::new("asgi_lifespan_off");
    let mut p = start(&dir, "raw_app", vec![("lifespan", atom("off"))]);
    let scope: serde_json::Value = serde_json::from_slice(&Client::new(&mut p).get("/scope").body).unwrap();
    assert_eq!(scope["state"], serde_json::json!({}));
    assert!(is_atom(&p.stop(), "ok"));
    assert!(!dir.join("shutdown").exists());
}

#[test]
fn lifespan_startup_failure_fails_the_setup() {
    let dir = TempDir::new("asgi_lifespan_failed");
    let (_p, r) = start_in(&dir, "failing_startup", vec![]);
    assert!(
        matches(&r, &tup(vec![atom("error"), tup(vec![atom("lifespan_startup_failed"), bin("no database")])])),
        "{}",
        show(&r)
    );
    // An app that raises on the lifespan scope: tolerated with auto...
    let (mut p, r) = start_in(&dir, "raising_startup", vec![]);
    assert!(is_atom(&r, "ok"), "{}", show(&r));
    assert_eq!(Client::new(&mut p).get("/").text(), "served without lifespan");
    p.wait_log("lifespan unsupported", |_, t| t.contains("lifespan") && t.contains("unsupported"));
    // ...and a failure with on.
    let (_p, r) = start_in(&dir, "raising_startup", vec![("lifespan", atom("on"))]);
    let text = show(&r);
    assert!(text.contains("lifespan_startup_failed") && text.contains("lifespan not supported here"), "{text}");
    // A bad mode is refused.
    let (_p, r) = start_in(&dir, "raw_app", vec![("lifespan", atom("maybe"))]);
    assert!(show(&r).contains("lifespan"), "{}", show(&r));
}

#[test]
fn a_thousand_sleeping_requests_are_served_together() {
    let dir = TempDir::new("asgi_thousand");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut clients: Vec<Client> = (0..1000).map(|_| Client::new(&mut p)).collect();
    let began = Instant::now();
    for c in &mut clients {
        c.send(b"GET /sleep?s=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for c in &mut clients {
        c.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        assert_eq!(c.reply(false).text(), "slept");
    }
    let took = began.elapsed();
    // One after the other would take 1,000 seconds; together, about one.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(p.stat("total_requests"), 1000);
}

#[test]
fn stop_cancels_running_requests_and_their_finally_blocks_run() {
    let dir = TempDir::new("asgi_cancel");
    let mut p = start(&dir, "raw_app", vec![]);
    let mut c = Client::new(&mut p);
    c.send(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.stat("total_requests") < 1 {
        assert!(Instant::now() < deadline, "the request never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(is_atom(&p.stop(), "ok"));
    assert_eq!(wait_marker(&dir, "cancelled"), "");
    assert!(c.closed());
    assert_eq!(wait_marker(&dir, "shutdown"), "", "lifespan shutdown after the requests");
}

#[test]
fn a_starlette_application() {
    let dir = TempDir::new("asgi_starlette");
    let mut p = start(&dir, "starlette_app", vec![("lifespan", atom("on"))]);
    let mut c = Client::new(&mut p);
    let r = c.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!"));
    c.send(b"GET /items/42?q=x HTTP/1.1\r\nHost: t\r\nUser-Agent: probe\r\n\r\n");
    let r = c.reply(false);
    let item: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(item["id"], "42");
    assert_eq!(item["q"], "x");
    assert_eq!(item["agent"], "probe");
    assert_eq!(item["greeting"], "hello from lifespan");
    assert_eq!(item["client"][1], c.stream.local_addr().unwrap().port());
    let body = vec![b'z'; 3 * 1024 * 1024 + 17];
    c.send(format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    c.send(&body);
    assert_eq!(c.reply(false).text(), body.len().to_string());
    let r = c.get("/stream");
    assert_eq!((r.text().as_str(), r.header("transfer-encoding")), ("0\n1\n2\n3\n4\n", Some("chunked")));
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.reply(true);
    assert_eq!((head.status, head.header("content-length")), (200, Some("13")));
    assert_eq!(c.get("/missing").status, 404);
    let r = c.get("/boom");
    assert_eq!(r.status, 500);
    p.wait_log("the traceback", |_, t| t.contains("KeyError") && t.contains("boom"));
    assert!(is_atom(&p.stop(), "ok"));
    assert_eq!(wait_marker(&dir, "starlette_shutdown"), "");
}
