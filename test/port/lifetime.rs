//! How long the port lives, and who it serves: a process forked by Python
//! never serves, the port dies with its parent even when its stdin is held
//! open elsewhere, and when it has to end itself it says what happened.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with('Z') || s.starts_with('X')),
        Err(_) => false,
    }
}

const FORKING: &str = r#"
import os
import erlang.reactor as reactor
class Forking(reactor.Protocol):
    def data_received(self, data):
        if bytes(data) == b"fork":
            child = os.fork()
            if child == 0:
                # The child goes straight back into the port.
                return "continue"
            report("child", child)
        self.write(b"%d\n" % os.getpid())
        return "continue"
reactor.set_protocol_factory(Forking)
"#;

/// `os.fork()` in a callback, and the child returns into the port: the child
/// ends there, every later answer comes from the port itself, and `stop`
/// ends the port at once (no child holds the frame stream open).
#[test]
fn a_child_forked_in_a_callback_never_serves() {
    let mut p = Port::start_std(FORKING);
    let port_pid = p.os_pid();
    let (mut client, _id) = p.handoff_tcp();
    client.write_all(b"fork").unwrap();
    let child = as_int(&p.wait_report("child")[0]).expect("child pid") as i64;
    assert!(eventually(T, || !alive(child)), "the forked child {child} is still running");
    let mut lines = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), port_pid.to_string(), "the answer to the fork itself");
    for _ in 0..5 {
        client.write_all(b"who").unwrap();
        line.clear();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), port_pid.to_string(), "answered by another process");
    }
    assert!(is_atom(&p.stop(), "ok"));
    let status = p.wait_exit(T).expect("the port did not exit after stop");
    assert!(status.success(), "{status:?}");
    assert!(p.stderr_text().contains("forked by Python"), "{}", p.stderr_text());
}

/// A child forked by a request (`exec`) that comes back is ended before it
/// can write the reply: the VM gets exactly one reply, from the port.
#[test]
fn a_child_forked_by_a_request_never_replies() {
    let mut p = Port::start_std("");
    p.exec_ok("import os\n_t_child = os.fork()");
    let child = as_int(&p.eval_ok("_t_child")).unwrap() as i64;
    assert!(child > 0, "the port's own `_t_child` is the child's pid");
    assert!(eventually(T, || !alive(child)), "the forked child {child} is still running");
    p.assert_serving();
    p.drain();
    let replies = p.history.iter().filter(|t| matches(t, &tup(vec![atom("reply"), any(), atom("ok")]))).count();
    assert_eq!(replies, 3, "setup, the prelude's exec and this one, each answered once");
}

/// The port's parent dies while the port's stdin is held open by another
/// process (here, this test): the parent-death signal ends the port.
#[test]
fn the_port_dies_with_its_parent_even_when_stdin_stays_open() {
    // A shell plays the VM's `erl_child_setup`: the port's parent, which it
    // outlives unless told. The port's stdin is this test's pipe (fd 3 in the
    // shell, as a background job's stdin would be /dev/null).
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg("exec 3<&0; \"$0\" serve --vm-pid $$ --python-dir \"$1\" <&3 3<&- & wait")
        .arg(port_exe())
        .arg(python_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = shell.stdin.take().unwrap();
    let mut stdout = shell.stdout.take().unwrap();
    // The hello frame says the port's pid.
    let mut len = [0u8; 4];
    stdout.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stdout.read_exact(&mut frame).unwrap();
    let hello = Term::decode(std::io::Cursor::new(frame)).unwrap();
    let info = &elems(&hello).unwrap()[1];
    let port_pid = as_int(map_get_atom(info, "os_pid").unwrap()).unwrap() as i64;
    assert!(alive(port_pid));
    shell.kill().unwrap();
    shell.wait().unwrap();
    let gone = eventually(T, || !alive(port_pid));
    if !gone {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(port_pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    drop(stdin);
    assert!(gone, "the port outlived its parent");
}

/// The VM closes the port while the setup code is stuck: the port ends
/// itself after the grace period and says that the VM closed its input, not
/// that the VM is gone (this test, the VM, is alive).
#[test]
fn a_stuck_port_says_the_vm_closed_it_when_the_vm_is_alive() {
    let mut p = Port::start();
    let setup = map(vec![(atom("setup_code"), bin("import time\ntime.sleep(600)"))]);
    p.send_term(&tup(vec![atom("setup"), int(1), setup]));
    p.close_stdin();
    let status = p.wait_exit(T).expect("the stuck port did not exit");
    assert_eq!(status.code(), Some(3), "{status:?}");
    let stderr = p.stderr_text();
    assert!(stderr.contains(&format!("the VM (os pid {}) closed the port's input", std::process::id())), "{stderr}");
    assert!(!stderr.contains("is gone"), "{stderr}");
}
