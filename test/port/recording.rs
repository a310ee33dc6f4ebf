//! Recording real sessions through the port, then `replay` and `dump` on the
//! command line: matches, precise differences, sessions cut short by a crash,
//! and damaged files.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

fn recording_port(path: &Path, bytes: bool) -> Port {
    let mut args: Vec<OsString> = vec![
        "serve".into(),
        "--vm-pid".into(),
        std::process::id().to_string().into(),
        "--python-dir".into(),
        python_dir().into(),
        "--record".into(),
        path.into(),
    ];
    if bytes {
        args.push("--record-bytes".into());
    }
    Port::start_with(Opts { args: Some(args), ..Opts::default() })
}

fn cli(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(port_exe())
        .args(args)
        .arg("--python-dir")
        .arg(python_dir())
        .output()
        .expect("run py_reactor_port")
}

fn replay(path: &Path, extra: &[&str]) -> (i32, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["replay".as_ref(), path.as_os_str()];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    let out = cli(&args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn dump(path: &Path, json: bool) -> (i32, String) {
    let mut cmd = Command::new(port_exe());
    cmd.arg("dump").arg(path);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run dump");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Records an echo session with two connections and returns the file.
fn record_echo(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.join("echo.rec");
    let mut p = recording_port(&path, true);
    p.setup_std(ECHO, vec![]);
    for msg in [&b"hello"[..], b"second message"] {
        let (mut c, id) = p.handoff_tcp();
        echo_roundtrip(&mut c, msg);
        echo_roundtrip(&mut c, b"again");
        drop(c);
        p.wait_closed(id);
    }
    let r = p.stop();
    assert!(is_atom(&r, "ok"), "{}", show(&r));
    p.wait_exit(T).expect("port exit");
    path
}

#[test]
fn an_echo_session_replays_green() {
    let dir = TempDir::new("rec_echo");
    let path = record_echo(&dir);
    let (code, text) = replay(&path, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("replay matches"), "{text}");
    assert!(text.contains("2 connections"), "{text}");
    // It holds the clients' bytes: readable by its owner only.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "recording mode {mode:o}");
}

#[test]
fn record_bytes_with_a_wsgi_application_says_its_http_bytes_are_not_recorded() {
    let dir = TempDir::new("rec_wsgi");
    let mut p = recording_port(&dir.join("wsgi.rec"), true);
    let apps = repo_root().join("test").join("python");
    let r = p.setup(vec![
        ("python_path", list(vec![bin(apps.to_string_lossy().as_bytes())])),
        ("app_module", bin("wsgi_apps")),
        ("app_callable", bin("raw_app")),
    ]);
    assert!(is_atom(&r, "ok"), "setup: {}\n{}", show(&r), p.stderr_text());
    p.wait_log("the warning", |level, text| {
        level == "warning" && text.contains("record_bytes") && text.contains("not recorded")
    });
    // A protocol context records its bytes and says nothing of the kind.
    let echo = dir.join("echo.rec");
    let mut p = recording_port(&echo, true);
    p.setup_std(ECHO, vec![]);
    let (mut c, _) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"hello");
    assert!(!p.logs.iter().any(|(_, text)| text.contains("record_bytes")), "{:?}", p.logs);
}

#[test]
fn a_changed_protocol_shows_the_first_difference() {
    let dir = TempDir::new("rec_diff");
    let path = record_echo(&dir);
    let fixed = dir.join("upper.py");
    std::fs::write(&fixed, ECHO.replace("self.write_buffer.extend(data)", "self.write_buffer.extend(bytes(data).upper())"))
        .unwrap();
    assert!(std::fs::read_to_string(&fixed).unwrap().contains("upper()"), "the echo protocol changed shape");
    let (code, text) = replay(&path, &["--setup-code", fixed.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("differ at offset 0"), "{text}");
    assert!(text.contains("expected: \"helloagain\"") && text.contains("got:      \"HELLOAGAIN\""), "{text}");
}

#[test]
fn a_connection_closed_by_an_exception_replays_green() {
    let dir = TempDir::new("rec_exc");
    let path = dir.join("exc.rec");
    let code = r#"
import erlang.reactor as reactor
class Fragile(reactor.Protocol):
    def data_received(self, data):
        if b"boom" in data:
            raise ValueError("boom received")
        self.write_buffer.extend(data)
        return "write_pending"
reactor.set_protocol_factory(Fragile)
"#;
    let mut p = recording_port(&path, true);
    p.setup_std(code, vec![]);
    let (mut c, id) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"fine");
    std::io::Write::write_all(&mut c, b"boom").unwrap();
    let reason = p.wait_closed(id);
    assert!(show(&reason).contains("ValueError"), "{}", show(&reason));
    p.stop();
    p.wait_exit(T).expect("port exit");
    let (status, text) = replay(&path, &[]);
    assert_eq!(status, 0, "{text}");
    // Without the bug the connection is not closed: the replay must say so.
    let fixed = dir.join("fixed.py");
    std::fs::write(&fixed, code.replace("raise ValueError(\"boom received\")", "pass")).unwrap();
    let (status, text) = replay(&path, &["--setup-code", fixed.to_str().unwrap()]);
    assert_eq!(status, 1, "{text}");
    assert!(text.contains("frame") && text.contains("ValueError"), "{text}");
    // Checking the fix: the failing connection no longer fails, the rest matches.
    let (status, text) = replay(&path, &["--setup-code", fixed.to_str().unwrap(), "--expect-fixed"]);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("1 failing connections fixed"), "{text}");
    // The unfixed code does not pass that check.
    let (status, text) = replay(&path, &["--expect-fixed"]);
    assert_eq!(status, 1, "{text}");
    assert!(text.contains(&format!("connection {id} still fails")) && text.contains("ValueError"), "{text}");
}

#[test]
fn a_session_cut_short_by_a_crash_replays_up_to_the_crash() {
    let dir = TempDir::new("rec_crash");
    let path = dir.join("crash.rec");
    let mut p = recording_port(&path, true);
    p.setup_std(ECHO, vec![]);
    let (mut c, _id) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"before the crash");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.os_pid() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    p.wait_exit(T).expect("port exit");
    let (status, text) = dump(&path, false);
    assert_eq!(status, 0, "{text}");
    assert!(!text.contains(" end "), "a killed port wrote an end record: {text}");
    let (status, text) = replay(&path, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("cut short"), "{text}");
    // A last record cut in half, as a death in mid-write leaves it.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.rec");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let (status, text) = replay(&cut, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("incomplete record at offset"), "{text}");
}

#[test]
fn frames_only_recordings_replay_and_dump() {
    let dir = TempDir::new("rec_frames");
    let path = dir.join("frames.rec");
    let mut p = recording_port(&path, false);
    p.setup_std(ECHO, vec![]);
    let (mut c, id) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"x");
    drop(c);
    p.wait_closed(id);
    p.eval_ok("1 + 1");
    p.stop();
    p.wait_exit(T).expect("port exit");
    let (status, text) = dump(&path, false);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("connection bytes not recorded"), "{text}");
    assert!(text.contains("in    {eval,"), "{text}");
    assert!(!text.contains(" read "), "{text}");
    let (status, json) = dump(&path, true);
    assert_eq!(status, 0, "{json}");
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("event").is_some(), "{line}");
    }
}

#[test]
fn damaged_recordings_are_refused_with_an_offset_never_a_panic() {
    let dir = TempDir::new("rec_bad");
    let good = std::fs::read(record_echo(&dir)).unwrap();
    let bad = dir.join("bad.rec");
    std::fs::write(&bad, b"this is not a recording").unwrap();
    let (status, text) = replay(&bad, &[]);
    assert_eq!(status, 2, "{text}");
    assert!(text.contains("not a recording"), "{text}");
    // Deterministic pseudo-random damage: flipped bytes and forged lengths.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let mut damaged = good.clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % damaged.len();
            damaged[at] = next() as u8;
        }
        if round % 5 == 0 {
            let at = (next() as usize) % (damaged.len() - 4);
            damaged[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0xf0]);
        }
        std::fs::write(&bad, &damaged).unwrap();
        let (status, text) = dump(&bad, false);
        assert!(status == 0 || status == 2, "dump of damaged file: status {status}\n{text}");
        if status == 2 {
            // Damage in the header makes the file no recording, or is
            // reported as a bad format version; anything later comes with
            // the offset of the damaged record.
            assert!(
                text.contains("offset") || text.contains("format version") || text.contains("not a recording"),
                "{text}"
            );
        }
    }
}
