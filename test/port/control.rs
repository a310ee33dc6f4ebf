//! Control requests: setup, app_module/app_callable, stats, exec/eval/call,
//! max_connections, stop, and end of file on stdin.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

fn python_error(r: &Term) -> (String, String, String) {
    let e = elems(r).filter(|e| e.len() == 2 && is_atom(&e[0], "error")).map(|e| e[1].clone());
    let e = e.unwrap_or_else(|| panic!("{} is not {{error, _}}", show(r)));
    let p = elems(&e).filter(|p| p.len() == 4 && is_atom(&p[0], "python"));
    let p = p.unwrap_or_else(|| panic!("{} is not {{error, {{python, Type, Msg, Tb}}}}", show(r)));
    (
        as_text(&p[1]).expect("Type is a binary"),
        as_text(&p[2]).expect("Message is a binary"),
        as_text(&p[3]).expect("Traceback is a binary"),
    )
}

#[test]
fn setup_error_returns_the_python_exception() {
    let mut p = Port::start();
    let r = p.setup(vec![("setup_code", bin("x = 1\nraise ValueError('bad setup')\n"))]);
    let (ty, msg, tb) = python_error(&r);
    assert_eq!(ty, "ValueError");
    assert_eq!(msg, "bad setup");
    assert!(!tb.is_empty(), "empty traceback");
    assert!(tb.contains("line 2"), "the traceback does not locate the raise (line 2 of setup_code):\n{tb}");
    assert!(p.is_running());

    let mut p = Port::start();
    let r = p.setup(vec![("setup_code", bin("def broken(:\n"))]);
    let (ty, _, _) = python_error(&r);
    assert_eq!(ty, "SyntaxError");

    let mut p = Port::start();
    let r = p.setup(vec![("app_module", bin("no_such_module_for_py_reactor"))]);
    let (ty, msg, _) = python_error(&r);
    assert_eq!(ty, "ModuleNotFoundError");
    assert!(msg.contains("no_such_module_for_py_reactor"), "{msg}");
    assert!(msg.contains("looked for in sys.path") && msg.contains("python_path"), "{msg}");

    // Found, but what it imports is not: Python's message, no hint.
    let dir = TempDir::new("app_module_imports_missing");
    std::fs::write(dir.join("imports_missing.py"), "import no_such_dependency_for_py_reactor\n").unwrap();
    let mut p = Port::start();
    let r = p.setup(vec![
        ("python_path", list(vec![bin(dir.0.to_string_lossy().as_bytes())])),
        ("app_module", bin("imports_missing")),
    ]);
    let (ty, msg, _) = python_error(&r);
    assert_eq!(ty, "ModuleNotFoundError");
    assert_eq!(msg, "No module named 'no_such_dependency_for_py_reactor'");
}

#[test]
fn setup_only_once() {
    let mut p = Port::start();
    assert!(is_atom(&p.setup(vec![]), "ok"));
    let r = p.setup(vec![]);
    assert!(matches(&r, &tup(vec![atom("error"), atom("already_set_up")])), "{}", show(&r));
}

const APP: &str = r#"
import erlang.reactor as reactor

class AppEcho(reactor.Protocol):
    def data_received(self, data):
        self.write_buffer.extend(b"app:" + bytes(data))
        return "write_pending"
    def write_ready(self):
        n = self.write(bytes(self.write_buffer))
        del self.write_buffer[:n]
        return "continue" if self.write_buffer else "read_pending"

def make_protocol():
    return AppEcho()

not_callable = 42
"#;

#[test]
fn app_module_and_app_callable() {
    let dir = TempDir::new("app");
    fs::write(dir.join("py_reactor_test_app.py"), APP).unwrap();
    let path = list(vec![bin(dir.path().to_string_lossy().as_bytes())]);

    let mut p = Port::start();
    let r = p.setup(vec![
        ("python_path", path.clone()),
        ("app_module", bin("py_reactor_test_app")),
        ("app_callable", bin("make_protocol")),
        ("context_id", atom("ctx_for_test")),
    ]);
    assert!(is_atom(&r, "ok"), "setup: {}", show(&r));
    let (mut c, id) = p.handoff_tcp();
    c.write_all(b"hi").unwrap();
    assert_eq!(read_n(&mut c, 6), b"app:hi");
    drop(c);
    assert!(is_atom(&p.wait_closed(id), "eof"));
    // python_path comes after the erlang package directory
    p.exec_ok(&format!(
        "import sys, os, erlang\n_t_pos = (sys.path.index({:?}), sys.path.index(os.path.dirname(os.path.dirname(os.path.abspath(erlang.__file__)))))",
        dir.path().to_string_lossy()
    ));
    let v = p.eval_ok("_t_pos[0] > _t_pos[1]");
    assert!(is_atom(&v, "true"), "python_path is not after the erlang package directory: {}", show(&p.eval_ok("_t_pos")));

    for (callable, what) in [("missing_name", "missing"), ("not_callable", "not callable")] {
        let mut p = Port::start();
        let r = p.setup(vec![
            ("python_path", path.clone()),
            ("app_module", bin("py_reactor_test_app")),
            ("app_callable", bin(callable)),
        ]);
        let ok_shape = matches(&r, &tup(vec![atom("error"), tup(vec![atom("python"), any(), any(), any()])]))
            || matches(&r, &tup(vec![atom("error"), tup(vec![atom("bad_request"), any()])]));
        assert!(ok_shape, "app_callable {what}: {}", show(&r));
        assert!(show(&r).contains(callable), "the error does not name {callable}: {}", show(&r));
    }
}

#[test]
fn stats_count_connections_requests_and_bytes() {
    let mut p = Port::start_std(ECHO);
    let s = p.stats();
    for k in [
        "active_connections",
        "total_connections",
        "total_requests",
        "bytes_in",
        "bytes_out",
        "python_errors",
        "refused_handoffs",
        "pending_fds",
    ] {
        assert_eq!(s.get(k), Some(&0), "{k} at start: {s:?}");
    }
    let (mut c, id) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"abc");
    echo_roundtrip(&mut c, b"defg");
    let s = p.stats();
    assert_eq!(s["active_connections"], 1, "{s:?}");
    assert_eq!(s["total_connections"], 1, "{s:?}");
    assert_eq!(s["total_requests"], 2, "{s:?}");
    assert_eq!(s["bytes_in"], 7, "{s:?}");
    assert_eq!(s["bytes_out"], 7, "{s:?}");
    drop(c);
    p.wait_closed(id);
    let (mut c2, id2) = p.handoff_tcp();
    echo_roundtrip(&mut c2, b"12345");
    let s = p.stats();
    assert_eq!(s["active_connections"], 1, "{s:?}");
    assert_eq!(s["total_connections"], 2, "{s:?}");
    assert_eq!(s["total_requests"], 3, "{s:?}");
    assert_eq!(s["bytes_in"], 12, "{s:?}");
    assert_eq!(s["bytes_out"], 12, "{s:?}");
    drop(c2);
    p.wait_closed(id2);
    assert_eq!(p.stat("active_connections"), 0);
}

#[test]
fn protocol_read_and_write_helpers_count_bytes() {
    let mut p = Port::start_std(
        r#"
import erlang.reactor as reactor
class Reader(reactor.Protocol):
    def data_received(self, data):
        more = self.read(100)   # whatever else is there, b'' if nothing
        report("read", bytes(data), more)
        self.write(b"0123456789")
        return "continue"
reactor.set_protocol_factory(Reader)
"#,
    );
    let (mut c, id) = p.handoff_tcp();
    c.write_all(b"hello").unwrap();
    let r = p.wait_report("read");
    let total = as_bin(&r[0]).unwrap().len() + as_bin(&r[1]).unwrap().len();
    assert_eq!(total, 5);
    assert_eq!(read_n(&mut c, 10), b"0123456789");
    let s = p.stats();
    assert_eq!(s["bytes_in"], 5, "{s:?}");
    assert_eq!(s["bytes_out"], 10, "{s:?}");
    drop(c);
    p.wait_closed(id);
}

#[test]
fn max_connections_refuses_handoffs_above_it() {
    let mut p = Port::start();
    p.setup_std(ECHO, vec![("max_connections", int(2))]);
    let (mut a, ida) = p.handoff_tcp();
    let (mut b, _) = p.handoff_tcp();
    echo_roundtrip(&mut a, b"a");
    echo_roundtrip(&mut b, b"b");
    let base = p.fd_count();
    let (c, server) = tcp_pair();
    let idc = conn_id();
    p.handoff(idc, server.as_raw_fd(), tcp_info(&server));
    drop(server);
    let r = p.wait_closed(idc);
    assert!(is_atom(&r, "max_connections"), "{}", show(&r));
    let r = sees_close(c.as_fd(), Duration::from_secs(3));
    assert!(r.is_ok(), "refused connection not closed: {}", r.unwrap_err());
    assert_eq!(p.wait_fd_count(base, Duration::from_secs(2)), base, "refused fd leaked");
    let s = p.stats();
    assert_eq!(s["refused_handoffs"], 1, "{s:?}");
    assert_eq!(s["active_connections"], 2, "{s:?}");
    // room again after one closes
    drop(a);
    p.wait_closed(ida);
    let (mut d, _) = p.handoff_tcp();
    echo_roundtrip(&mut d, b"d");
}

#[test]
fn handoff_before_setup_is_refused() {
    let mut p = Port::start();
    let (c, server) = tcp_pair();
    let id = conn_id();
    p.handoff(id, server.as_raw_fd(), tcp_info(&server));
    drop(server);
    let r = p.wait_closed(id);
    assert!(is_atom(&r, "not_set_up"), "{}", show(&r));
    let r = sees_close(c.as_fd(), Duration::from_secs(3));
    assert!(r.is_ok(), "refused connection not closed: {}", r.unwrap_err());
}

#[test]
fn exec_eval_call() {
    let mut p = Port::start_std("base = 40\n");
    p.exec_ok("x = base + 1\ndef add(a, b):\n    return a + b\n");
    assert!(term_eq(&p.eval_ok("x + 1"), &int(42)));
    assert!(term_eq(&p.call_ok("__main__", "add", vec![int(2), int(3)]), &int(5)));
    assert!(term_eq(&p.call_ok("math", "sqrt", vec![int(16)]), &float(4.0)));
    assert!(term_eq(&p.call_ok("os.path", "join", vec![bin("a"), bin("b")]), &bin("a/b")));
    assert!(is_atom(&p.eval_ok("None"), "none"));

    let (ty, msg, _) = python_error(&p.exec("1/0"));
    assert_eq!(ty, "ZeroDivisionError");
    assert!(msg.contains("division"), "{msg}");
    let (ty, _, _) = python_error(&p.exec("def f(:"));
    assert_eq!(ty, "SyntaxError");
    let (ty, msg, _) = python_error(&p.eval("undefined_name_xyz"));
    assert_eq!(ty, "NameError");
    assert!(msg.contains("undefined_name_xyz"));
    let (ty, _, _) = python_error(&p.eval("y = 1"));
    assert_eq!(ty, "SyntaxError", "eval of a statement");
    let (ty, _, _) = python_error(&p.call("no_such_module_xyz", "f", vec![]));
    assert_eq!(ty, "ModuleNotFoundError");
    let (ty, _, _) = python_error(&p.call("math", "no_such_function", vec![]));
    assert_eq!(ty, "AttributeError");
    let (ty, _, tb) = python_error(&p.call("math", "sqrt", vec![int(-1)]));
    assert_eq!(ty, "ValueError");
    let _ = tb;
    let (ty, _, _) = python_error(&p.call("__main__", "add", vec![int(1)]));
    assert_eq!(ty, "TypeError");
    // custom exception: the qualified class name
    p.exec_ok("class AppError(Exception):\n    pass\ndef fail():\n    raise AppError('custom')\n");
    let (ty, msg, _) = python_error(&p.call("__main__", "fail", vec![]));
    assert!(ty == "AppError" || ty == "__main__.AppError", "custom type {ty}");
    assert_eq!(msg, "custom");
    // errors are not fatal, and do not count as connection errors
    assert!(term_eq(&p.eval_ok("x"), &int(41)));
    assert!(p.is_running());
}

const LOSTFILE: &str = r#"
import erlang.reactor as reactor
class Tracked(reactor.Protocol):
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self.n = client_info.get("n")
        report("made", self.n)
    def data_received(self, data):
        self.write_buffer.extend(data)
        return "write_pending"
    def write_ready(self):
        n = self.write(bytes(self.write_buffer))
        del self.write_buffer[:n]
        return "continue" if self.write_buffer else "read_pending"
    def connection_lost(self):
        with open(LOSTFILE, "a") as f:
            f.write("lost %s\n" % self.n)
        report("lost", self.n)
reactor.set_protocol_factory(Tracked)
"#;

fn tracked_port(dir: &TempDir) -> Port {
    Port::start_std(&format!("LOSTFILE = {}\n{}", dir.py("lost.txt"), LOSTFILE))
}

fn tracked_conns(p: &mut Port, n: usize) -> Vec<(std::net::TcpStream, u64)> {
    (0..n)
        .map(|i| {
            let (mut c, server) = tcp_pair();
            let id = conn_id();
            let info = map(vec![(atom("n"), int(i as i64))]);
            p.handoff(id, server.as_raw_fd(), info);
            drop(server);
            echo_roundtrip(&mut c, b"up");
            p.wait_report("made");
            (c, id)
        })
        .collect()
}

fn lost_lines(dir: &TempDir) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_to_string(dir.join("lost.txt")).unwrap_or_default().lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn stop_closes_every_connection_then_replies_and_exits_zero() {
    let dir = TempDir::new("stop");
    let mut p = tracked_port(&dir);
    let conns = tracked_conns(&mut p, 3);
    p.drain();
    let h0 = p.history.len();
    let r = p.stop();
    assert!(is_atom(&r, "ok"), "stop: {}", show(&r));
    // every connection reported {closed, Id, stopped} before the reply
    let after: Vec<Term> = p.history[h0..].to_vec();
    let reply_pos = after
        .iter()
        .position(|t| matches(t, &tup(vec![atom("reply"), any(), atom("ok")])))
        .expect("reply in history");
    for (_, id) in &conns {
        let pos = after.iter().position(|t| matches(t, &tup(vec![atom("closed"), uint(*id), any()])));
        let pos = pos.unwrap_or_else(|| panic!("no closed notice for {id} before the stop reply"));
        assert!(pos < reply_pos, "closed {id} came after the stop reply");
        assert!(
            matches(&after[pos], &tup(vec![atom("closed"), uint(*id), atom("stopped")])),
            "{}",
            show(&after[pos])
        );
    }
    let status = p.wait_exit(T).expect("port did not exit after stop");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert_eq!(lost_lines(&dir), vec!["lost 0", "lost 1", "lost 2"], "connection_lost did not run for every connection");
    // the erlang.send notices from connection_lost were delivered too
    p.drain();
    assert_eq!(p.take_reports("lost").len(), 3, "reports from connection_lost lost at stop");
    for (c, _) in &conns {
        let r = sees_close(c.as_fd(), Duration::from_secs(3));
        assert!(r.is_ok(), "peer did not see the close at stop: {}", r.unwrap_err());
    }
    assert!(p.wait_eof(T), "stdout not closed after exit");
}

#[test]
fn eof_on_stdin_closes_connections_and_exits_zero() {
    let dir = TempDir::new("eof");
    let mut p = tracked_port(&dir);
    let conns = tracked_conns(&mut p, 2);
    p.close_stdin();
    for (c, _) in &conns {
        let r = sees_close(c.as_fd(), Duration::from_secs(5));
        assert!(r.is_ok(), "peer did not see the close after stdin EOF: {}", r.unwrap_err());
    }
    let status = p.wait_exit(T).expect("port did not exit after stdin EOF");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert_eq!(lost_lines(&dir), vec!["lost 0", "lost 1"], "connection_lost did not run at EOF");
}

#[test]
fn stop_without_connections_and_before_setup() {
    let mut p = Port::start();
    let r = p.stop();
    assert!(
        is_atom(&r, "ok") || matches(&r, &tup(vec![atom("error"), atom("not_set_up")])),
        "stop before setup: {}",
        show(&r)
    );
    if is_atom(&r, "ok") {
        assert_eq!(p.wait_exit(T).and_then(|s| s.code()), Some(0));
    }
    let mut p = Port::start_std("");
    assert!(is_atom(&p.stop(), "ok"));
    assert_eq!(p.wait_exit(T).and_then(|s| s.code()), Some(0));
}

#[test]
fn eof_on_stdin_before_setup_exits_zero() {
    let mut p = Port::start_with(Opts { connect_aux: false, ..Opts::default() });
    let path = p.socket_path.clone();
    p.close_stdin();
    let status = p.wait_exit(T).expect("port did not exit after stdin EOF");
    assert_eq!(status.code(), Some(0));
    assert!(!path.exists(), "socket path {path:?} left behind");
    assert!(!path.parent().unwrap().exists(), "socket directory left behind");
}

#[test]
fn a_stuck_callback_does_not_keep_the_port_alive_after_the_vm_has_gone() {
    let mut p = Port::start_std(
        r#"
import erlang.reactor as reactor
class Stuck(reactor.Protocol):
    def data_received(self, data):
        report("stuck")
        while True:
            pass
reactor.set_protocol_factory(Stuck)
"#,
    );
    let (mut c, _id) = p.handoff_tcp();
    std::io::Write::write_all(&mut c, b"x").unwrap();
    p.wait_report("stuck");
    let started = std::time::Instant::now();
    p.close_stdin();
    let status = p.wait_exit(Duration::from_secs(10)).expect("a stuck port outlived its VM");
    assert_eq!(status.code(), Some(3), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    let r = sees_close(c.as_fd(), Duration::from_secs(2));
    assert!(r.is_ok(), "peer did not see the close: {}", r.unwrap_err());
}
