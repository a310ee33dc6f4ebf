//! Replaying a recording offline.
//!
//! The recorded session is run again in this process, through the same
//! reactor, with no VM: each recorded frame from the VM is fed in order, each
//! handed-off descriptor is recreated as a socket pair (or a pipe), and each
//! recorded read is written into the peer end, after which the loop runs
//! until the protocol has read it and gone quiet. What the protocol produces
//! now, frames to the VM and bytes to each connection, is then compared with
//! the recording. Timing is not reproduced, only order.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, Instant};

use eetf::Term;
use pyo3::prelude::*;

use crate::message::brief;
use crate::python::native::Shared;
use crate::reactor::Reactor;
use crate::recording::{FdKind, Record, Recording};
use crate::terms::{self, as_atom};

/// What a replay may change, so a fix can be checked against a recording.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Replaces the recorded `setup_code`.
    pub setup_code: Option<String>,
    /// Replaces the recorded `app_module`.
    pub app_module: Option<String>,
    /// Prepended to the recorded `python_path`.
    pub python_path: Vec<String>,
    /// Leaves `{log, ...}` frames out of the comparison.
    pub ignore_logs: bool,
    /// How long one recorded read may take to be consumed.
    pub step_timeout: Duration,
    /// Checks a fix: connections the recording shows closed by a protocol
    /// error (an exception or a bad action) must not fail now; what they
    /// wrote before failing must still be written; everything else must
    /// match as usual.
    pub expect_fixed: bool,
}

/// The first difference between the recording and the replay.
#[derive(Debug, Clone, PartialEq)]
pub enum Divergence {
    /// The `index`-th frame to the VM (hello excluded) differs.
    Frame { index: usize, expected: Option<String>, got: Option<String> },
    /// Bytes written to connection `conn_id` differ from `offset` on.
    Bytes { conn_id: u64, offset: usize, expected: Vec<u8>, got: Vec<u8> },
    /// The protocol did not read recorded input within the step timeout.
    Stalled { conn_id: u64, record: usize, expected_total: usize, read_total: usize },
    /// With `expect_fixed`: a connection that failed in the recording fails again.
    StillFails { conn_id: u64, reason: String },
    /// The replay's process died, where the recorded port did not.
    Died { death: String },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "(nothing)".into());
        match self {
            Divergence::Frame { index, expected, got } => write!(
                f,
                "frame {index} to the VM differs\n  expected: {}\n  got:      {}",
                show(expected),
                show(got)
            ),
            Divergence::Bytes { conn_id, offset, expected, got } => write!(
                f,
                "bytes written to connection {conn_id} differ at offset {offset}\n  expected: {}\n  got:      {}",
                excerpt(expected),
                excerpt(got)
            ),
            Divergence::Stalled { conn_id, record, expected_total, read_total } => write!(
                f,
                "connection {conn_id} stopped reading at record {record}: the recording read {expected_total} bytes \
                 by then, the replay {read_total}"
            ),
            Divergence::StillFails { conn_id, reason } => {
                write!(f, "connection {conn_id} still fails as in the recording: {reason}")
            }
            Divergence::Died { death } => {
                write!(f, "the replay died ({death}), but the recorded session went on to a clean end")
            }
        }
    }
}

fn excerpt(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(end of data)".into();
    }
    let shown: Vec<u8> = bytes.iter().copied().take(64).collect();
    let more = if bytes.len() > 64 { format!(" ... ({} bytes in all)", bytes.len()) } else { String::new() };
    format!("{:?}{more}", String::from_utf8_lossy(&shown))
}

/// A replay that matched, in figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub records: usize,
    pub frames: usize,
    pub connections: usize,
    pub bytes: usize,
    /// The recording was cut short (the port died); extra output after its
    /// end was not compared.
    pub truncated: bool,
    /// Connections that failed in the recording and no longer do (`expect_fixed`).
    pub fixed: usize,
}

/// The peer end of a recreated connection.
enum Peer {
    Stream(UnixStream),
    Datagram(UnixDatagram),
    Pipe(Option<std::fs::File>),
}

impl Peer {
    /// Creates a connection of `kind`: the port's end and the peer's.
    fn pair(kind: FdKind) -> std::io::Result<(OwnedFd, Peer)> {
        Ok(match kind {
            FdKind::Udp | FdKind::UnixDatagram => {
                let (a, b) = UnixDatagram::pair()?;
                b.set_nonblocking(true)?;
                (OwnedFd::from(a), Peer::Datagram(b))
            }
            FdKind::Pipe => {
                let (read_end, write_end) = nix::unistd::pipe()?;
                (read_end, Peer::Pipe(Some(std::fs::File::from(write_end))))
            }
            FdKind::Tcp | FdKind::UnixStream | FdKind::Other => {
                let (a, b) = UnixStream::pair()?;
                b.set_nonblocking(true)?;
                (OwnedFd::from(a), Peer::Stream(b))
            }
        })
    }

    fn feed(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Peer::Stream(s) => {
                if data.is_empty() {
                    s.shutdown(std::net::Shutdown::Write)
                } else {
                    s.set_nonblocking(false)?;
                    let r = s.write_all(data);
                    s.set_nonblocking(true)?;
                    r
                }
            }
            Peer::Datagram(d) => d.send(data).map(|_| ()),
            Peer::Pipe(end) => {
                if data.is_empty() {
                    end.take();
                    return Ok(());
                }
                match end {
                    Some(file) => file.write_all(data),
                    None => Ok(()),
                }
            }
        }
    }

    /// Reads and discards what the port wrote, so its writes never block.
    fn drain(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        match self {
            Peer::Stream(s) => while matches!(std::io::Read::read(s, &mut buf), Ok(n) if n > 0) {},
            Peer::Datagram(d) => while d.recv(&mut buf).is_ok() {},
            Peer::Pipe(_) => {}
        }
    }
}

/// Replays `recording` against the current Python code. `shared` must have
/// been installed with a memory outbound and an in-memory recorder.
pub fn replay(
    py: Python<'_>,
    shared: &'static Shared,
    recording: &Recording,
    options: &ReplayOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Result<Matched, Divergence>, crate::Error> {
    let recorder = shared.recorder.clone().expect("replay needs an in-memory recorder");
    let mut reactor = Reactor::detached(shared)?;
    let mut peers: HashMap<u64, Peer> = HashMap::new();
    let mut expected_reads: HashMap<u64, usize> = HashMap::new();
    let mut actual_reads: HashMap<u64, usize> = HashMap::new();
    let mut captured: Vec<Record> = Vec::new();
    let total = recording.records.len();

    for (index, record) in recording.records.iter().enumerate() {
        progress(index, total);
        match record {
            Record::In { frame, .. } => {
                let frame = patch_setup(frame, options);
                reactor.handle_frame(py, &frame);
            }
            Record::InSkipped { declared, .. } => reactor.handle_oversized_frame(*declared as usize),
            Record::Fd { conn_id, kind, number, .. } => {
                let (ours, peer) = Peer::pair(*kind)?;
                let ours = renumber(ours, *number);
                peers.insert(*conn_id, peer);
                reactor.offer_fd(py, *conn_id, ours);
            }
            Record::Read { conn_id, data, .. } => {
                let target = expected_reads.entry(*conn_id).or_default();
                *target += data.len().max(1);
                let target = *target;
                if let Some(peer) = peers.get_mut(conn_id) {
                    // A peer the port already closed cannot be fed; the
                    // comparison shows what happened instead.
                    let _ = peer.feed(data);
                }
                let deadline = Instant::now() + options.step_timeout;
                loop {
                    settle(py, &mut reactor, &mut peers)?;
                    absorb(&recorder, &mut captured, &mut actual_reads);
                    let read = actual_reads.get(conn_id).copied().unwrap_or(0);
                    if read >= target {
                        break;
                    }
                    if Instant::now() >= deadline || reactor.exit().is_some() {
                        return Ok(Err(Divergence::Stalled {
                            conn_id: *conn_id,
                            record: index,
                            expected_total: target,
                            read_total: read,
                        }));
                    }
                    reactor.turn(py, Some(Duration::from_millis(10)))?;
                }
            }
            Record::Header { .. } | Record::Out { .. } | Record::Write { .. } | Record::End { .. } => {}
        }
        settle(py, &mut reactor, &mut peers)?;
        if reactor.exit().is_some() {
            break;
        }
    }
    progress(total, total);
    settle(py, &mut reactor, &mut peers)?;
    if reactor.exit().is_none() && recording.ended() {
        reactor.finish(py);
    }
    absorb(&recorder, &mut captured, &mut actual_reads);
    let frames_now = shared.outbound.take_memory();
    Ok(compare(recording, &frames_now, &captured, options))
}

/// Moves `fd` to descriptor `number` when that number is free, so the
/// protocol sees the descriptor it saw when recorded (`self.fd` often shows
/// up in its output). Otherwise keeps `fd` as it is.
fn renumber(fd: OwnedFd, number: u64) -> OwnedFd {
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::fd::{AsRawFd, BorrowedFd};
    let Ok(target) = i32::try_from(number) else { return fd };
    if target <= 2 || target == fd.as_raw_fd() {
        return fd;
    }
    // SAFETY: only probes whether `target` is open; nothing is done with it.
    let open = fcntl(unsafe { BorrowedFd::borrow_raw(target) }, FcntlArg::F_GETFD).is_ok();
    if open {
        return fd;
    }
    // SAFETY: `target` is not open in this process (checked just above, and
    // the replay is single-threaded), so the new descriptor is owned by the
    // returned value alone. Close-on-exec, like a descriptor received from
    // the VM.
    unsafe { nix::unistd::dup3_raw(&fd, target, nix::fcntl::OFlag::O_CLOEXEC) }.unwrap_or(fd)
}

/// Runs the loop without waiting until nothing is left to do.
fn settle(py: Python<'_>, reactor: &mut Reactor, peers: &mut HashMap<u64, Peer>) -> std::io::Result<()> {
    for _ in 0..10_000 {
        for peer in peers.values_mut() {
            peer.drain();
        }
        if reactor.turn(py, Some(Duration::ZERO))? == 0 {
            break;
        }
    }
    Ok(())
}

/// Moves the replay's own reads and writes out of the in-memory recorder.
fn absorb(recorder: &crate::recording::Recorder, captured: &mut Vec<Record>, reads: &mut HashMap<u64, usize>) {
    for record in recorder.take_memory() {
        if let Record::Read { conn_id, data, .. } = &record {
            *reads.entry(*conn_id).or_default() += data.len().max(1);
        }
        captured.push(record);
    }
}

/// Applies the replay's overrides to a recorded `setup` frame.
fn patch_setup(frame: &[u8], options: &ReplayOptions) -> Vec<u8> {
    if options.setup_code.is_none() && options.app_module.is_none() && options.python_path.is_empty() {
        return frame.to_vec();
    }
    let Ok(Term::Tuple(mut t)) = terms::decode(frame) else { return frame.to_vec() };
    if t.elements.len() != 3 || t.elements.first().and_then(as_atom) != Some("setup") {
        return frame.to_vec();
    }
    let Term::Map(map) = &mut t.elements[2] else { return frame.to_vec() };
    if let Some(code) = &options.setup_code {
        map.map.insert(terms::atom("setup_code"), terms::binary(code.as_bytes()));
    }
    if let Some(module) = &options.app_module {
        map.map.insert(terms::atom("app_module"), terms::binary(module.as_bytes()));
    }
    if !options.python_path.is_empty() {
        let mut paths: Vec<Term> = options.python_path.iter().map(|p| terms::binary(p.as_bytes())).collect();
        if let Some(Term::List(old)) = map.map.get(&terms::atom("python_path")) {
            paths.extend(old.elements.iter().cloned());
        }
        map.map.insert(terms::atom("python_path"), terms::list(paths));
    }
    terms::encode(&Term::Tuple(t))
}

fn frame_terms(frames: impl Iterator<Item = Vec<u8>>, ignore_logs: bool) -> Vec<Term> {
    frames
        .map(|f| terms::decode(&f).unwrap_or_else(|e| terms::atom(&format!("undecodable frame: {e}"))))
        .filter(|t| {
            let tag = match t {
                Term::Tuple(t) => t.elements.first().and_then(as_atom),
                _ => None,
            };
            tag != Some("hello") && !(ignore_logs && tag == Some("log"))
        })
        .collect()
}

fn written(records: &[Record]) -> BTreeMap<u64, Vec<u8>> {
    let mut out: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for r in records {
        if let Record::Write { conn_id, data, .. } = r {
            out.entry(*conn_id).or_default().extend_from_slice(data);
        }
    }
    out
}

/// Marks the end of a replay that finished (the last mirrored record).
pub const FINISHED: &str = "replay_finished";

/// Whether a mirrored stream ends with the mark of a finished replay.
pub fn finished(mirrored: &Recording) -> bool {
    matches!(mirrored.records.last(), Some(Record::End { reason, .. }) if reason == FINISHED)
}

/// Judges a replay whose process died before it finished, from what it
/// mirrored while it ran. Dying is what the recorded port did too when the
/// recording has no clean end, and then what the replay produced up to its
/// death is compared; after a clean recorded end, dying is a difference.
pub fn judge_death(
    recording: &Recording,
    mirrored: &Recording,
    options: &ReplayOptions,
    death: &str,
) -> Result<Matched, Divergence> {
    if recording.ended() {
        return Err(Divergence::Died { death: death.to_string() });
    }
    let frames: Vec<Vec<u8>> = mirrored
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Out { frame, .. } => Some(frame.clone()),
            _ => None,
        })
        .collect();
    compare(recording, &frames, &mirrored.records, options)
}

/// `{closed, ConnId, Reason}` as its parts.
fn closed_notice(term: &Term) -> Option<(u64, &Term)> {
    let Term::Tuple(t) = term else { return None };
    match t.elements.as_slice() {
        [tag, id, reason] if as_atom(tag) == Some("closed") => terms::as_u64(id).map(|id| (id, reason)),
        _ => None,
    }
}

/// A close reason that blames the protocol: `{python, ...}` or `{bad_action, _}`.
fn is_protocol_error(reason: &Term) -> bool {
    let Term::Tuple(t) = reason else { return false };
    matches!(t.elements.first().and_then(as_atom), Some("python" | "bad_action"))
}

fn tag_of(term: &Term) -> Option<&str> {
    match term {
        Term::Tuple(t) => t.elements.first().and_then(as_atom),
        _ => None,
    }
}

/// A stats reply with its figures taken out: a fix legitimately changes
/// them (errors, bytes, open connections), so only the reply itself is
/// compared.
fn without_error_count(term: Term) -> Term {
    let Term::Tuple(mut reply) = term else { return term };
    if reply.elements.len() == 3 && as_atom(&reply.elements[0]) == Some("reply") {
        if let Term::Tuple(result) = &mut reply.elements[2] {
            if let [ok, stats @ Term::Map(_)] = result.elements.as_mut_slice() {
                let is_stats = matches!(&*stats, Term::Map(m) if m.map.contains_key(&terms::atom("python_errors")));
                if as_atom(ok) == Some("ok") && is_stats {
                    *stats = terms::atom("stats");
                }
            }
        }
    }
    Term::Tuple(reply)
}

fn compare(
    recording: &Recording,
    frames_now: &[Vec<u8>],
    captured: &[Record],
    options: &ReplayOptions,
) -> Result<Matched, Divergence> {
    let truncated = !recording.ended();
    let mut expected = frame_terms(
        recording.records.iter().filter_map(|r| match r {
            Record::Out { frame, .. } => Some(frame.clone()),
            _ => None,
        }),
        options.ignore_logs,
    );
    let mut got = frame_terms(frames_now.iter().cloned(), options.ignore_logs);
    let mut faulty = std::collections::BTreeSet::new();
    if options.expect_fixed {
        faulty = expected
            .iter()
            .filter_map(closed_notice)
            .filter(|(_, reason)| is_protocol_error(reason))
            .map(|(id, _)| id)
            .collect();
        if let Some((conn_id, reason)) = got
            .iter()
            .filter_map(closed_notice)
            .find(|(id, reason)| faulty.contains(id) && is_protocol_error(reason))
        {
            return Err(Divergence::StillFails { conn_id, reason: brief(reason) });
        }
        let unrelated = |t: &Term| {
            let faulty_close = closed_notice(t).is_some_and(|(id, _)| faulty.contains(&id));
            let error_log = tag_of(t) == Some("log")
                && matches!(t, Term::Tuple(l) if l.elements.get(1).and_then(as_atom) == Some("error"));
            !faulty_close && !error_log
        };
        expected = expected.into_iter().filter(unrelated).map(without_error_count).collect();
        got = got.into_iter().filter(unrelated).map(without_error_count).collect();
    }
    let compared = if truncated { expected.len() } else { expected.len().max(got.len()) };
    for index in 0..compared {
        let (e, g) = (expected.get(index), got.get(index));
        if e != g {
            return Err(Divergence::Frame { index, expected: e.map(brief), got: g.map(brief) });
        }
    }
    let expected_bytes = written(&recording.records);
    let got_bytes = written(captured);
    let ids: std::collections::BTreeSet<u64> = expected_bytes.keys().chain(got_bytes.keys()).copied().collect();
    let mut bytes = 0;
    for conn_id in ids {
        let e = expected_bytes.get(&conn_id).map(Vec::as_slice).unwrap_or(&[]);
        let g = got_bytes.get(&conn_id).map(Vec::as_slice).unwrap_or(&[]);
        // Past the recording's end (a crash) or past a failure the fix
        // removed, the replay may go on writing: compare what was recorded.
        let open_ended = truncated || faulty.contains(&conn_id);
        let g_cmp = if open_ended && g.len() > e.len() { &g[..e.len()] } else { g };
        if e != g_cmp {
            let offset = e.iter().zip(g_cmp).take_while(|(a, b)| a == b).count();
            return Err(Divergence::Bytes {
                conn_id,
                offset,
                expected: e[offset..].to_vec(),
                got: g_cmp[offset..].to_vec(),
            });
        }
        bytes += e.len();
    }
    Ok(Matched {
        records: recording.records.len(),
        frames: expected.len(),
        connections: recording.records.iter().filter(|r| matches!(r, Record::Fd { .. })).count(),
        bytes,
        truncated,
        fixed: faulty.len(),
    })
}

/// One record as a line of text, terms in Erlang syntax.
pub fn describe(record: &Record) -> String {
    let term_of = |frame: &[u8]| match terms::decode(frame) {
        Ok(t) => terms::erlang_syntax(&t),
        Err(e) => format!("<<invalid frame: {e}>>"),
    };
    let t = record.time_us() as f64 / 1e6;
    match record {
        Record::Header { version, started_unix_us, os_pid, connection_bytes } => format!(
            "recording version {version}, started at {started_unix_us} us (Unix time), port pid {os_pid}, connection bytes {}",
            if *connection_bytes { "recorded" } else { "not recorded" }
        ),
        Record::In { frame, .. } => format!("{t:12.6} in    {}", term_of(frame)),
        Record::InSkipped { declared, .. } => format!("{t:12.6} in    (frame of {declared} bytes, over the limit, skipped)"),
        Record::Out { frame, .. } => format!("{t:12.6} out   {}", term_of(frame)),
        Record::Fd { conn_id, kind, .. } => format!("{t:12.6} fd    connection {conn_id} ({})", kind.name()),
        Record::Read { conn_id, data, .. } if data.is_empty() => format!("{t:12.6} read  connection {conn_id}: end of file"),
        Record::Read { conn_id, data, .. } => format!("{t:12.6} read  connection {conn_id}: {} bytes {}", data.len(), excerpt(data)),
        Record::Write { conn_id, data, .. } => format!("{t:12.6} write connection {conn_id}: {} bytes {}", data.len(), excerpt(data)),
        Record::End { reason, .. } => format!("{t:12.6} end   {reason}"),
    }
}

/// One record as a JSON object.
pub fn to_json(record: &Record) -> serde_json::Value {
    use serde_json::json;
    let term_of = |frame: &[u8]| match terms::decode(frame) {
        Ok(t) => json!(terms::erlang_syntax(&t)),
        Err(e) => json!({ "invalid": e.to_string() }),
    };
    let hex = |data: &[u8]| data.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let t = record.time_us();
    match record {
        Record::Header { version, started_unix_us, os_pid, connection_bytes } => json!({
            "event": "header", "version": version, "started_unix_us": started_unix_us,
            "os_pid": os_pid, "connection_bytes": connection_bytes,
        }),
        Record::In { frame, .. } => json!({ "event": "in", "t_us": t, "term": term_of(frame) }),
        Record::InSkipped { declared, .. } => json!({ "event": "in_skipped", "t_us": t, "declared": declared }),
        Record::Out { frame, .. } => json!({ "event": "out", "t_us": t, "term": term_of(frame) }),
        Record::Fd { conn_id, kind, .. } => json!({ "event": "fd", "t_us": t, "conn_id": conn_id, "kind": kind.name() }),
        Record::Read { conn_id, data, .. } => json!({ "event": "read", "t_us": t, "conn_id": conn_id, "len": data.len(), "hex": hex(data) }),
        Record::Write { conn_id, data, .. } => json!({ "event": "write", "t_us": t, "conn_id": conn_id, "len": data.len(), "hex": hex(data) }),
        Record::End { reason, .. } => json!({ "event": "end", "t_us": t, "reason": reason }),
    }
}
