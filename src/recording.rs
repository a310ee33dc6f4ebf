//! Recording a session: every frame in both directions, and optionally every
//! byte read from and written to each connection, with monotonic times.
//!
//! The file is a sequence of records, each a 4-byte big-endian length and one
//! ETF term (`docs/recording.md`), so Erlang reads it with `binary_to_term/1`.
//! Each record is written with a single `write(2)` and no user-space
//! buffering: when the port dies, everything recorded before the death is in
//! the file, and at worst the last record is cut short, which readers report
//! and skip.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eetf::Term;

use crate::terms::{self, as_atom, as_bytes, as_u64, atom, atom_map, binary, integer, tuple};

/// Version of the file format, in the header record.
pub const FORMAT_VERSION: u64 = 1;

/// The header's tag.
const MAGIC: &str = "py_reactor_recording";

/// Largest record a reader accepts (a frame plus a little).
pub const MAX_RECORD: usize = crate::framing::MAX_FRAME + 1024;

/// What kind of descriptor a connection was, so replay can recreate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    Tcp,
    Udp,
    UnixStream,
    UnixDatagram,
    Pipe,
    Other,
}

impl FdKind {
    pub fn name(self) -> &'static str {
        match self {
            FdKind::Tcp => "tcp",
            FdKind::Udp => "udp",
            FdKind::UnixStream => "unix_stream",
            FdKind::UnixDatagram => "unix_dgram",
            FdKind::Pipe => "pipe",
            FdKind::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<FdKind> {
        [FdKind::Tcp, FdKind::Udp, FdKind::UnixStream, FdKind::UnixDatagram, FdKind::Pipe, FdKind::Other]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// Whether reads keep message boundaries.
    pub fn is_datagram(self) -> bool {
        matches!(self, FdKind::Udp | FdKind::UnixDatagram)
    }

    /// Looks at a descriptor.
    pub fn of(fd: BorrowedFd<'_>) -> FdKind {
        use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};
        use std::os::fd::AsRawFd;
        use nix::sys::stat::{fstat, SFlag};
        let Ok(stat) = fstat(fd) else { return FdKind::Other };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFIFO {
            return FdKind::Pipe;
        }
        if kind != SFlag::S_IFSOCK {
            return FdKind::Other;
        }
        let ty = getsockopt(&fd, sockopt::SockType);
        let domain = getsockname::<SockaddrStorage>(fd.as_raw_fd()).map(|a| a.family().unwrap_or(AddressFamily::Unix));
        match (domain, ty) {
            (Ok(AddressFamily::Unix), Ok(SockType::Stream)) => FdKind::UnixStream,
            (Ok(AddressFamily::Unix), Ok(SockType::Datagram | SockType::SeqPacket)) => FdKind::UnixDatagram,
            (Ok(_), Ok(SockType::Stream)) => FdKind::Tcp,
            (Ok(_), Ok(SockType::Datagram)) => FdKind::Udp,
            _ => FdKind::Other,
        }
    }
}

/// One record of a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Header { version: u64, started_unix_us: u64, os_pid: u64, connection_bytes: bool },
    /// A frame from the VM, as received (even if invalid).
    In { t_us: u64, frame: Vec<u8> },
    /// A frame longer than the limit, skipped unread.
    InSkipped { t_us: u64, declared: u64 },
    /// A frame to the VM.
    Out { t_us: u64, frame: Vec<u8> },
    /// A descriptor arrived on the auxiliary socket, as number `number`.
    Fd { t_us: u64, conn_id: u64, kind: FdKind, number: u64 },
    /// Bytes read from a connection (empty: end of file).
    Read { t_us: u64, conn_id: u64, data: Vec<u8> },
    /// Bytes a protocol wrote to a connection.
    Write { t_us: u64, conn_id: u64, data: Vec<u8> },
    /// The port ended cleanly.
    End { t_us: u64, reason: String },
}

/// A recording that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    #[error("cannot read the recording: {0}")]
    Io(String),
    #[error("not a recording: a py_reactor recording starts with its header record")]
    NoHeader,
    #[error("recording format version {0} is not supported (this program reads version {FORMAT_VERSION})")]
    Version(u64),
    #[error("record at offset {offset} declares {declared} bytes, over the limit of {MAX_RECORD}")]
    TooLarge { offset: u64, declared: u64 },
    #[error("record at offset {offset} is not a valid term: {reason}")]
    BadTerm { offset: u64, reason: String },
    #[error("record at offset {offset} is not a known event: {term}")]
    BadRecord { offset: u64, term: String },
}

/// The records of a file, and where it was cut short if it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub records: Vec<Record>,
    /// Offset of an incomplete final record (the port died while writing it).
    pub truncated_at: Option<u64>,
}

impl Recording {
    /// Whether the port ended cleanly (an `end` record).
    pub fn ended(&self) -> bool {
        matches!(self.records.last(), Some(Record::End { .. }))
    }
}

impl Record {
    pub fn to_term(&self) -> Term {
        match self {
            Record::Header { version, started_unix_us, os_pid, connection_bytes } => tuple(vec![
                atom(MAGIC),
                integer(*version),
                atom_map(vec![
                    ("started", integer(*started_unix_us)),
                    ("os_pid", integer(*os_pid)),
                    ("connection_bytes", atom(if *connection_bytes { "true" } else { "false" })),
                ]),
            ]),
            Record::In { t_us, frame } => tuple(vec![atom("in"), integer(*t_us), binary(frame.clone())]),
            Record::InSkipped { t_us, declared } => {
                tuple(vec![atom("in_skipped"), integer(*t_us), integer(*declared)])
            }
            Record::Out { t_us, frame } => tuple(vec![atom("out"), integer(*t_us), binary(frame.clone())]),
            Record::Fd { t_us, conn_id, kind, number } => tuple(vec![
                atom("fd"),
                integer(*t_us),
                integer(*conn_id),
                atom(kind.name()),
                integer(*number),
            ]),
            Record::Read { t_us, conn_id, data } => {
                tuple(vec![atom("read"), integer(*t_us), integer(*conn_id), binary(data.clone())])
            }
            Record::Write { t_us, conn_id, data } => {
                tuple(vec![atom("write"), integer(*t_us), integer(*conn_id), binary(data.clone())])
            }
            Record::End { t_us, reason } => tuple(vec![atom("end"), integer(*t_us), atom(reason)]),
        }
    }

    pub fn from_term(term: &Term) -> Option<Record> {
        let Term::Tuple(t) = term else { return None };
        let e = &t.elements;
        let tag = as_atom(e.first()?)?;
        let u = |i: usize| e.get(i).and_then(as_u64);
        let bytes = |i: usize| e.get(i).and_then(as_bytes).map(<[u8]>::to_vec);
        Some(match (tag, e.len()) {
            (MAGIC, 3) => {
                let Term::Map(m) = &e[2] else { return None };
                let get = |k: &str| m.map.get(&atom(k));
                Record::Header {
                    version: u(1)?,
                    started_unix_us: get("started").and_then(as_u64).unwrap_or(0),
                    os_pid: get("os_pid").and_then(as_u64).unwrap_or(0),
                    connection_bytes: get("connection_bytes").and_then(as_atom) == Some("true"),
                }
            }
            ("in", 3) => Record::In { t_us: u(1)?, frame: bytes(2)? },
            ("in_skipped", 3) => Record::InSkipped { t_us: u(1)?, declared: u(2)? },
            ("out", 3) => Record::Out { t_us: u(1)?, frame: bytes(2)? },
            ("fd", 5) => Record::Fd {
                t_us: u(1)?,
                conn_id: u(2)?,
                kind: FdKind::from_name(as_atom(&e[3])?)?,
                number: u(4)?,
            },
            ("read", 4) => Record::Read { t_us: u(1)?, conn_id: u(2)?, data: bytes(3)? },
            ("write", 4) => Record::Write { t_us: u(1)?, conn_id: u(2)?, data: bytes(3)? },
            ("end", 3) => Record::End { t_us: u(1)?, reason: as_atom(&e[2])?.to_string() },
            _ => return None,
        })
    }

    /// Time of the record in microseconds since the recording started.
    pub fn time_us(&self) -> u64 {
        match self {
            Record::Header { .. } => 0,
            Record::In { t_us, .. }
            | Record::InSkipped { t_us, .. }
            | Record::Out { t_us, .. }
            | Record::Fd { t_us, .. }
            | Record::Read { t_us, .. }
            | Record::Write { t_us, .. }
            | Record::End { t_us, .. } => *t_us,
        }
    }
}

/// Where records go.
#[derive(Debug)]
enum Sink {
    File(File),
    /// Kept in memory (replay compares what the protocol does now with the
    /// file), and also written to `mirror` as it happens when there is one.
    Memory { records: Vec<Record>, mirror: Option<File> },
}

/// Writes records as the port runs.
#[derive(Debug)]
pub struct Recorder {
    sink: Mutex<Sink>,
    start: Instant,
    connection_bytes: bool,
}

impl Recorder {
    /// Creates (truncating) `path` and writes the header. A new file is
    /// readable by its owner only: it may hold every byte of every client.
    pub fn create(path: &Path, connection_bytes: bool) -> io::Result<Recorder> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        let recorder = Recorder { sink: Mutex::new(Sink::File(file)), start: Instant::now(), connection_bytes };
        let started_unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        recorder.push(Record::Header {
            version: FORMAT_VERSION,
            started_unix_us,
            os_pid: u64::from(std::process::id()),
            connection_bytes,
        })?;
        Ok(recorder)
    }

    /// A recorder that keeps everything in memory, connection bytes
    /// included, and writes each record to `mirror` too (with a header
    /// first), so another process sees what was captured even if this one
    /// dies.
    pub fn in_memory(mirror: Option<File>) -> io::Result<Recorder> {
        let mut mirror = mirror;
        if let Some(file) = &mut mirror {
            let header = Record::Header {
                version: FORMAT_VERSION,
                started_unix_us: 0,
                os_pid: u64::from(std::process::id()),
                connection_bytes: true,
            };
            write_record(file, &header)?;
        }
        Ok(Recorder {
            sink: Mutex::new(Sink::Memory { records: Vec::new(), mirror }),
            start: Instant::now(),
            connection_bytes: true,
        })
    }

    /// Microseconds since the recording started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Whether connection bytes are recorded.
    pub fn connection_bytes(&self) -> bool {
        self.connection_bytes
    }

    pub fn frame_in(&self, frame: &[u8]) {
        self.record(Record::In { t_us: self.now_us(), frame: frame.to_vec() });
    }

    pub fn frame_skipped(&self, declared: usize) {
        self.record(Record::InSkipped { t_us: self.now_us(), declared: declared as u64 });
    }

    pub fn frame_out(&self, frame: &[u8]) {
        self.record(Record::Out { t_us: self.now_us(), frame: frame.to_vec() });
    }

    pub fn fd(&self, conn_id: u64, fd: impl AsFd) {
        let fd = fd.as_fd();
        let number = std::os::fd::AsRawFd::as_raw_fd(&fd) as u64;
        self.record(Record::Fd { t_us: self.now_us(), conn_id, kind: FdKind::of(fd), number });
    }

    pub fn read(&self, conn_id: u64, data: &[u8]) {
        if self.connection_bytes {
            self.record(Record::Read { t_us: self.now_us(), conn_id, data: data.to_vec() });
        }
    }

    pub fn write(&self, conn_id: u64, data: &[u8]) {
        if self.connection_bytes {
            self.record(Record::Write { t_us: self.now_us(), conn_id, data: data.to_vec() });
        }
    }

    pub fn end(&self, reason: &str) {
        self.record(Record::End { t_us: self.now_us(), reason: reason.to_string() });
    }

    /// Takes the records kept in memory.
    pub fn take_memory(&self) -> Vec<Record> {
        match &mut *self.lock() {
            Sink::Memory { records, .. } => std::mem::take(records),
            Sink::File(_) => Vec::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, record: Record) {
        if let Err(e) = self.push(record) {
            // Recording is a diagnostic aid: losing it must not stop the
            // port, but it must not go unnoticed either.
            eprintln!("py_reactor_port: recording failed: {e}");
        }
    }

    fn push(&self, record: Record) -> io::Result<()> {
        match &mut *self.lock() {
            Sink::Memory { records, mirror } => {
                let mirrored = mirror.as_mut().map_or(Ok(()), |file| write_record(file, &record));
                records.push(record);
                mirrored
            }
            Sink::File(file) => write_record(file, &record),
        }
    }
}

/// One record, length first, in a single `write(2)`.
fn write_record(file: &mut File, record: &Record) -> io::Result<()> {
    let body = terms::encode(&record.to_term());
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    file.write_all(&bytes)
}

/// Reads a whole recording file.
pub fn read_file(path: &Path) -> Result<Recording, FormatError> {
    // The caller names the file: the message says only what went wrong.
    let bytes = std::fs::read(path).map_err(|e| FormatError::Io(e.to_string()))?;
    parse(&bytes)
}

/// Parses the bytes of a recording. Bytes whose first record is not a
/// recording's header, whatever else they are, give [`FormatError::NoHeader`].
pub fn parse(bytes: &[u8]) -> Result<Recording, FormatError> {
    match parse_records(bytes) {
        Err(FormatError::TooLarge { offset: 0, .. } | FormatError::BadTerm { offset: 0, .. })
        | Err(FormatError::BadRecord { offset: 0, .. }) => Err(FormatError::NoHeader),
        other => other,
    }
}

fn parse_records(bytes: &[u8]) -> Result<Recording, FormatError> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut truncated_at = None;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < 4 {
            truncated_at = Some(offset as u64);
            break;
        }
        let declared = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if declared > MAX_RECORD {
            return Err(FormatError::TooLarge { offset: offset as u64, declared: declared as u64 });
        }
        if rest.len() < 4 + declared {
            truncated_at = Some(offset as u64);
            break;
        }
        let term = terms::decode(&rest[4..4 + declared])
            .map_err(|e| FormatError::BadTerm { offset: offset as u64, reason: e.to_string() })?;
        let record = Record::from_term(&term)
            .ok_or_else(|| FormatError::BadRecord { offset: offset as u64, term: crate::message::brief(&term) })?;
        match (&record, records.is_empty()) {
            (Record::Header { version, .. }, true) if *version != FORMAT_VERSION => {
                return Err(FormatError::Version(*version))
            }
            (Record::Header { .. }, true) => {}
            (_, true) => return Err(FormatError::NoHeader),
            (Record::Header { .. }, false) => {
                return Err(FormatError::BadRecord { offset: offset as u64, term: "a second header".into() })
            }
            _ => {}
        }
        records.push(record);
        offset += 4 + declared;
    }
    if records.is_empty() {
        return Err(FormatError::NoHeader);
    }
    Ok(Recording { records, truncated_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn sample(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("r.rec");
        let rec = Recorder::create(&path, true).unwrap();
        rec.frame_in(b"\x83\x6a");
        let (a, _b) = UnixStream::pair().unwrap();
        rec.fd(3, &a);
        rec.read(3, b"ping");
        rec.write(3, b"pong");
        rec.frame_out(b"\x83\x6a");
        rec.end("stopped");
        path
    }

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("py_reactor_rec_{name}_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trips_every_record() {
        let dir = tmpdir("rt");
        let r = read_file(&sample(&dir)).unwrap();
        assert_eq!(r.truncated_at, None);
        assert!(r.ended());
        assert!(matches!(r.records[0], Record::Header { version: FORMAT_VERSION, connection_bytes: true, .. }));
        assert!(matches!(&r.records[2], Record::Fd { conn_id: 3, kind: FdKind::UnixStream, .. }));
        assert!(matches!(&r.records[3], Record::Read { data, .. } if data == b"ping"));
        assert!(matches!(&r.records[4], Record::Write { data, .. } if data == b"pong"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_cut_short_file_keeps_its_complete_records() {
        let dir = tmpdir("cut");
        let bytes = std::fs::read(sample(&dir)).unwrap();
        let full = parse(&bytes).unwrap().records.len();
        let mut seen_truncation = false;
        for cut in 1..bytes.len() {
            match parse(&bytes[..cut]) {
                Ok(r) => {
                    assert!(r.records.len() < full);
                    seen_truncation |= r.truncated_at.is_some();
                }
                Err(e) => assert_eq!(e, FormatError::NoHeader, "cut at {cut}"),
            }
        }
        assert!(seen_truncation);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn garbage_at_the_start_is_not_a_recording() {
        assert_eq!(parse(b"hello world"), Err(FormatError::NoHeader));
        assert_eq!(parse(&[0, 0, 0, 2, 131, 99]), Err(FormatError::NoHeader));
        let not_header = {
            let body = terms::encode(&atom("x"));
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend(body);
            v
        };
        assert_eq!(parse(&not_header), Err(FormatError::NoHeader));
    }
}
