//! Nothing Python or C writes to "stdout" can corrupt the frame stream.
//!
//! The harness's frame reader fails the test on any frame that does not
//! decode exactly, so every stray byte on the real stdout would show up.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::Write;
use std::time::Duration;

const NOISY: &str = r#"
import os, sys, ctypes, ctypes.util
import erlang.reactor as reactor

print("setup-print-line")
sys.stdout.write("setup-stdout-write\n")
sys.stderr.write("setup-stderr-write\n")
os.write(1, b"setup-os-write-1\n")
_libc = ctypes.CDLL(None)
_libc.puts(b"setup-libc-puts")
_libc.fflush(None)
_libc.write(1, b"setup-libc-write-1\n", 19)

class Noisy(reactor.Protocol):
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        print("conn-made-print", fd)

    def data_received(self, data):
        print("data-print", bytes(data).decode().strip())
        sys.stdout.write("data-write-no-newline")
        sys.stdout.write(" continued\n")
        os.write(1, b"data-os-write-1\n")
        _libc.puts(b"data-libc-puts")
        _libc.fflush(None)
        _libc.write(1, b"data-libc-write-1\n", 18)
        # binary junk that would wreck a {packet,4} stream
        os.write(1, b"\x00\x00\x00\x05\x83junk\n")
        self.write_buffer.extend(data)
        return "write_pending"

    def write_ready(self):
        n = self.write(bytes(self.write_buffer))
        del self.write_buffer[:n]
        return "continue" if self.write_buffer else "read_pending"

reactor.set_protocol_factory(Noisy)
"#;

fn has_log(p: &Port, level: &str, text: &str) -> bool {
    p.logs.iter().any(|(l, t)| l == level && t == text)
}

#[test]
fn prints_become_log_notices_and_raw_fd1_goes_to_stderr() {
    let mut p = Port::start();
    p.setup_std(NOISY, vec![]);

    p.wait_log("setup-print-line", |l, t| l == "info" && t == "setup-print-line");
    p.wait_log("setup-stdout-write", |l, t| l == "info" && t == "setup-stdout-write");
    p.wait_log("setup-stderr-write", |l, t| l == "warning" && t == "setup-stderr-write");

    let (mut c, id) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"hello\n");
    p.wait_log("conn-made-print", |l, t| l == "info" && t.starts_with("conn-made-print "));
    p.wait_log("data-print hello", |l, t| l == "info" && t == "data-print hello");
    p.wait_log("the line written in two pieces", |l, t| l == "info" && t == "data-write-no-newline continued");

    // The stream still works after all of it.
    echo_roundtrip(&mut c, b"again\n");
    p.wait_log("data-print again", |l, t| l == "info" && t == "data-print again");
    assert!(p.stats().contains_key("bytes_in"));

    // Raw writes to fd 1 reach the port's stderr, not the frames.
    let ok = eventually(Duration::from_secs(5), || {
        let e = p.stderr_text();
        ["setup-os-write-1", "setup-libc-puts", "setup-libc-write-1", "data-os-write-1", "data-libc-puts", "data-libc-write-1"]
            .iter()
            .all(|m| e.contains(m))
    });
    assert!(ok, "raw fd-1 writes missing from stderr:\n{}", p.stderr_text());
    for m in ["setup-os-write-1", "data-libc-puts", "junk"] {
        assert!(!p.logs.iter().any(|(_, t)| t.contains(m)), "{m} came through the log notices: {:?}", p.logs);
    }
    assert!(!has_log(&p, "info", ""), "an empty log line was sent: {:?}", p.logs);

    drop(c);
    let r = p.wait_closed(id);
    assert!(is_atom(&r, "eof"), "closed reason {}", show(&r));
}

#[test]
fn print_without_newline_is_flushed_at_stop() {
    let mut p = Port::start();
    p.setup_std("import sys\nsys.stdout.write('partial line')\n", vec![]);
    let r = p.stop();
    assert!(is_atom(&r, "ok"), "stop: {}", show(&r));
    // The partial line is either logged or at least not lost: accept a log
    // notice, or text on stderr.
    let status = p.wait_exit(T).expect("port did not exit after stop");
    assert!(status.success(), "exit status {status:?}");
    p.drain();
    let logged = p.logs.iter().any(|(_, t)| t.contains("partial line"));
    assert!(
        logged || p.stderr_text().contains("partial line"),
        "an unterminated print was lost: logs {:?}\nstderr:\n{}",
        p.logs,
        p.stderr_text()
    );
}

#[test]
fn subprocess_output_cannot_reach_the_frames() {
    let mut p = Port::start();
    p.setup_std("import subprocess\nsubprocess.run(['echo', 'child-process-stdout'])\n", vec![]);
    let v = p.eval_ok("1 + 1");
    assert!(term_eq(&v, &int(2)));
    assert!(
        eventually(Duration::from_secs(5), || p.stderr_text().contains("child-process-stdout")),
        "child stdout not on stderr:\n{}",
        p.stderr_text()
    );
    let _ = std::io::stderr().flush();
}
