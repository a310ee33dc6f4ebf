//! The load generator of the ping-pong, bulk, lifecycle and idle-memory
//! workloads (`bench/run.py` runs it; `wrk` loads the HTTP workload). Each
//! subcommand talks to an echo server on `--host` (127.0.0.1) `--port`,
//! prints one line of JSON with its figures, and exits non-zero on any error
//! (a wrong echo included).
//!
//! ```text
//! bench_load pingpong  --port P --size BYTES --count N [--warmup N]
//! bench_load bulk      --port P --size BYTES --count N [--warmup N]
//! bench_load lifecycle --port P --size BYTES --count N [--warmup N]
//! bench_load idle      --port P --conns N [--pid PID]... [--settle-ms MS]
//! ```
//!
//! - `pingpong`: one connection, sequential round trips of `size` bytes; each
//!   one timed; p50, p99, mean, min and max in microseconds.
//! - `bulk`: one connection; messages of `size` bytes, each sent while its
//!   echo is read (one thread, non-blocking, `poll`), the next one once the
//!   whole echo is back; MB/s (10^6 bytes) of payload echoed.
//! - `lifecycle`: per operation, connect, one echo of `size` bytes, close;
//!   microseconds per operation (wall time over all of them), p50 and p99.
//! - `idle`: opens `conns` connections (256 at a time), each checked with one
//!   16-byte echo (so the server has really taken it), then reads the
//!   resident set size of each `--pid` before and after, and closes them all.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use py_reactor_bench::{raise_nofile_limit, rss_bytes, Args};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Connections opened at once by `idle`, well below the servers' backlog.
const IDLE_BATCH: usize = 256;

fn main() {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let result = Args::parse(argv).and_then(|args| match command.as_str() {
        "pingpong" => pingpong(&args),
        "bulk" => bulk(&args),
        "lifecycle" => lifecycle(&args),
        "idle" => idle(&args),
        _ => Err(format!("unknown command {command:?}: pingpong, bulk, lifecycle or idle")),
    });
    match result {
        Ok(json) => println!("{json}"),
        Err(message) => {
            eprintln!("bench_load {command}: {message}");
            std::process::exit(1);
        }
    }
}

fn connect(args: &Args) -> Result<TcpStream, String> {
    let host = args.get("host").unwrap_or("127.0.0.1");
    let port: u16 = args.number("port", 0)?;
    let stream = TcpStream::connect((host, port)).map_err(|e| format!("connect {host}:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// A message whose bytes depend on their offset, so that an echo out of
/// order or from the wrong place is seen.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Sends `msg` and reads its echo into `buf` (same length), blocking.
fn round_trip(stream: &mut TcpStream, msg: &[u8], buf: &mut [u8]) -> Result<(), String> {
    stream.write_all(msg).map_err(|e| format!("write: {e}"))?;
    stream.read_exact(buf).map_err(|e| format!("read: {e}"))
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn latency_json(samples: &mut [u64]) -> String {
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
    format!(
        "\"count\": {}, \"p50_us\": {:.3}, \"p99_us\": {:.3}, \"mean_us\": {:.3}, \"min_us\": {:.3}, \"max_us\": {:.3}",
        samples.len(),
        us(percentile(samples, 50.0)),
        us(percentile(samples, 99.0)),
        mean / 1000.0,
        us(samples.first().copied().unwrap_or(0)),
        us(samples.last().copied().unwrap_or(0)),
    )
}

fn pingpong(args: &Args) -> Result<String, String> {
    let size: usize = args.number("size", 64)?;
    let count: usize = args.number("count", 1000)?;
    let warmup: usize = args.number("warmup", 100)?;
    let mut stream = connect(args)?;
    let msg = pattern(size);
    let mut buf = vec![0u8; size];
    for _ in 0..warmup {
        round_trip(&mut stream, &msg, &mut buf)?;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        round_trip(&mut stream, &msg, &mut buf)?;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    if buf != msg {
        return Err("the echo differs from the message".into());
    }
    Ok(format!("{{\"size\": {size}, {}}}", latency_json(&mut samples)))
}

/// Sends `msg` while reading its echo, without blocking on either.
fn echo_message(stream: &mut TcpStream, msg: &[u8], buf: &mut [u8]) -> Result<(), String> {
    const CHUNK: usize = 256 * 1024;
    let (mut sent, mut received) = (0, 0);
    while received < msg.len() {
        let mut progress = false;
        if sent < msg.len() {
            let end = (sent + CHUNK).min(msg.len());
            match stream.write(&msg[sent..end]) {
                Ok(n) => {
                    sent += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        let want = buf.len().min(sent - received).max(1);
        match stream.read(&mut buf[..want]) {
            Ok(0) => return Err(format!("end of file after {received} of {} bytes", msg.len())),
            Ok(n) => {
                if received + n > msg.len() || buf[..n] != msg[received..received + n] {
                    return Err(format!("the echo differs from the message at offset {received}"));
                }
                received += n;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if !progress {
            let mut events = libc::POLLIN;
            if sent < msg.len() {
                events |= libc::POLLOUT;
            }
            let mut fds = libc::pollfd { fd: stream.as_raw_fd(), events, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut fds, 1, IO_TIMEOUT.as_millis() as libc::c_int) };
            if ready == 0 {
                return Err(format!("no progress for {IO_TIMEOUT:?} ({received} of {} bytes back)", msg.len()));
            }
            if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(format!("poll: {}", io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

fn bulk(args: &Args) -> Result<String, String> {
    let size: usize = args.number("size", 1 << 20)?;
    let count: usize = args.number("count", 32)?;
    let warmup: usize = args.number("warmup", 2)?;
    let mut stream = connect(args)?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let msg = pattern(size);
    let mut buf = vec![0u8; 256 * 1024];
    for _ in 0..warmup {
        echo_message(&mut stream, &msg, &mut buf)?;
    }
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let one = Instant::now();
        echo_message(&mut stream, &msg, &mut buf)?;
        samples.push(one.elapsed().as_nanos() as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes = (size * count) as f64;
    Ok(format!(
        "{{\"size\": {size}, \"mb_per_s\": {:.3}, \"seconds\": {seconds:.6}, {}}}",
        bytes / seconds / 1e6,
        latency_json(&mut samples)
    ))
}

fn lifecycle(args: &Args) -> Result<String, String> {
    let size: usize = args.number("size", 64)?;
    let count: usize = args.number("count", 1000)?;
    let warmup: usize = args.number("warmup", 50)?;
    let msg = pattern(size);
    let mut buf = vec![0u8; size];
    let one = |buf: &mut [u8]| -> Result<(), String> {
        let mut stream = connect(args)?;
        round_trip(&mut stream, &msg, buf)
        // dropped here: closed
    };
    for _ in 0..warmup {
        one(&mut buf)?;
    }
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        one(&mut buf)?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"size\": {size}, \"us_per_op\": {:.3}, \"ops_per_s\": {:.1}, {}}}",
        seconds * 1e6 / count as f64,
        count as f64 / seconds,
        latency_json(&mut samples)
    ))
}

fn idle(args: &Args) -> Result<String, String> {
    let conns: usize = args.number("conns", 10_000)?;
    if conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    let settle_ms: u64 = args.number("settle-ms", 500)?;
    let pids: Vec<u32> = args
        .all("pid")
        .into_iter()
        .map(|p| p.parse().map_err(|_| format!("--pid: not a pid: {p:?}")))
        .collect::<Result<_, _>>()?;
    let limit = raise_nofile_limit().map_err(|e| format!("cannot raise the descriptor limit: {e}"))?;
    if limit < conns as u64 + 64 {
        return Err(format!("the descriptor limit ({limit}) is too low for {conns} connections"));
    }
    let rss = |pids: &[u32]| -> Result<Vec<u64>, String> {
        pids.iter().map(|&p| rss_bytes(p).map_err(|e| format!("pid {p}: {e}"))).collect()
    };
    let before = rss(&pids)?;
    let msg = pattern(16);
    let mut buf = [0u8; 16];
    let mut open: Vec<TcpStream> = Vec::with_capacity(conns);
    let start = Instant::now();
    // In batches well below the listen backlog: connect them all, send on
    // each, then read each echo, so the server accepts and serves in bursts.
    while open.len() < conns {
        let first = open.len();
        let batch = IDLE_BATCH.min(conns - first);
        for i in first..first + batch {
            open.push(connect(args).map_err(|e| format!("connection {i}: {e}"))?);
        }
        for (i, stream) in open[first..].iter_mut().enumerate() {
            stream.write_all(&msg).map_err(|e| format!("connection {}: write: {e}", first + i))?;
        }
        for (i, stream) in open[first..].iter_mut().enumerate() {
            stream.read_exact(&mut buf).map_err(|e| format!("connection {}: read: {e}", first + i))?;
            if buf[..] != msg[..] {
                return Err(format!("connection {}: the echo differs from the message", first + i));
            }
        }
    }
    let open_seconds = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(settle_ms));
    let after = rss(&pids)?;
    // One more echo on the first and the last connection: all still open.
    for i in [0, conns - 1] {
        round_trip(&mut open[i], &msg, &mut buf).map_err(|e| format!("connection {i} after the wait: {e}"))?;
    }
    drop(open);
    let per_pid: Vec<String> = pids
        .iter()
        .zip(before.iter().zip(after.iter()))
        .map(|(pid, (b, a))| format!("{{\"pid\": {pid}, \"rss_before\": {b}, \"rss_after\": {a}}}"))
        .collect();
    Ok(format!(
        "{{\"conns\": {conns}, \"open_seconds\": {open_seconds:.3}, \"processes\": [{}]}}",
        per_pid.join(", ")
    ))
}
