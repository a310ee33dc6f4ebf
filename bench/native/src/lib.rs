//! What the benchmark's Rust binaries share: the minimal HTTP/1.1 keep-alive
//! responder (the same logic as `bench/protocols/bench_logic.py` and the
//! Erlang servers), command-line parsing and small system helpers.

use std::io;

/// What ends a request head. The benchmark's requests have no body, so every
/// occurrence ends one complete request.
pub const REQUEST_END: &[u8] = b"\r\n\r\n";

/// The answer to every request, identical in every system.
pub const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!";

/// The complete requests at the start of `buf`: how many there are (counted
/// without overlap, like Python's `bytes.count`) and the offset just past the
/// last one. Bytes after that offset belong to a request still coming.
pub fn complete_requests(buf: &[u8]) -> (usize, usize) {
    let mut count = 0;
    let mut end = 0;
    let mut from = 0;
    while let Some(pos) = buf[from..].iter().position(|&b| b == b'\n') {
        let newline = from + pos;
        if newline >= end + 3 && &buf[newline - 3..=newline] == REQUEST_END {
            count += 1;
            end = newline + 1;
        }
        from = newline + 1;
    }
    (count, end)
}

/// Command-line options of the form `--name value`, after a subcommand.
#[derive(Debug, Default)]
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Parses `--name value` pairs; anything else is an error.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut iter = args.into_iter();
        while let Some(name) = iter.next() {
            let Some(key) = name.strip_prefix("--") else {
                return Err(format!("unexpected argument {name:?}"));
            };
            let value = iter.next().ok_or_else(|| format!("--{key} needs a value"))?;
            pairs.push((key.to_string(), value));
        }
        Ok(Args { pairs })
    }

    /// The last value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// The value of `key` parsed as a number, or `default` when absent.
    pub fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| format!("--{key}: not a number: {text:?}")),
        }
    }
}

/// Raises the soft limit on open descriptors to the hard limit (the idle
/// workload holds 10,000 connections).
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The resident set size of process `pid`, in bytes (`VmRSS` of
/// `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no VmRSS for pid {pid}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_complete_requests() {
        let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(complete_requests(one), (1, one.len()));
        let mut two = one.to_vec();
        two.extend_from_slice(one);
        two.extend_from_slice(b"GET / HTTP/1.1\r\nHo");
        assert_eq!(complete_requests(&two), (2, 2 * one.len()));
        assert_eq!(complete_requests(b"GET / HTTP/1.1\r\n\r"), (0, 0));
        assert_eq!(complete_requests(b""), (0, 0));
        // Non-overlapping, like Python's bytes.count.
        assert_eq!(complete_requests(b"\r\n\r\n\r\n"), (1, 4));
        assert_eq!(complete_requests(b"\r\n\r\n\r\n\r\n"), (2, 8));
    }

    #[test]
    fn parses_args() {
        let args = Args::parse(["--port", "80", "--pid", "1", "--pid", "2"].map(String::from)).unwrap();
        assert_eq!(args.number("port", 0u16).unwrap(), 80);
        assert_eq!(args.all("pid"), ["1", "2"]);
        assert_eq!(args.number("count", 7u32).unwrap(), 7);
        assert!(Args::parse(["stray"].map(String::from)).is_err());
        assert!(Args::parse(["--port"].map(String::from)).is_err());
    }
}
