//! The `native` system of the benchmark: an epoll server in Rust with no
//! Python, running the same protocol logic as the other systems. It is the
//! practical limit the others are measured against.
//!
//! ```text
//! native_server --proto http|echo [--port 0] [--host 127.0.0.1]
//! ```
//!
//! Prints `READY <port> <pid>` once it listens, then serves until killed.
//! One thread, level-triggered epoll, one `read(2)` of up to 64 KiB per
//! readiness event (as the py_reactor port does), the answer written at once;
//! what the socket does not take is kept and the connection waits for
//! writability, without reading, until it is sent (back-pressure).

use std::io::{self, Write};
use std::os::fd::RawFd;

use py_reactor_bench::{complete_requests, raise_nofile_limit, Args, RESPONSE};

const READ_SIZE: usize = 64 * 1024;
const LISTENER: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http,
    Echo,
}

#[derive(Default)]
struct Conn {
    /// An HTTP request whose end has not arrived yet.
    pending: Vec<u8>,
    /// Bytes the socket has not taken yet; while any remain, the connection
    /// waits for writability instead of readability.
    out: Vec<u8>,
    sent: usize,
}

struct Server {
    proto: Proto,
    epoll: RawFd,
    conns: Vec<Option<Conn>>,
    buf: Vec<u8>,
    answer: Vec<u8>,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn listen(host: &str, port: u16) -> io::Result<(RawFd, u16)> {
    let ip: std::net::Ipv4Addr = host
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("not an IPv4 address: {host}")))?;
    // SAFETY: plain socket system calls on a descriptor this function owns,
    // with pointers to properly sized local structures.
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))?;
        let one: libc::c_int = 1;
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(ip).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len))?;
        check(libc::listen(fd, 4096))?;
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut bound_len = len;
        check(libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut bound_len))?;
        Ok((fd, u16::from_be(bound.sin_port)))
    }
}

impl Server {
    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: key };
        // SAFETY: a valid epoll descriptor and a pointer to a local event.
        check(unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut event) }).map(|_| ())
    }

    fn run(&mut self, listener: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, listener, libc::EPOLLIN as u32, LISTENER)?;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            // SAFETY: `events` is a live buffer of the length given.
            let n = unsafe { libc::epoll_wait(self.epoll, events.as_mut_ptr(), events.len() as libc::c_int, -1) };
            if n < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            for event in &events[..n as usize] {
                let (key, flags) = (event.u64, event.events);
                if key == LISTENER {
                    self.accept(listener);
                } else {
                    self.on_event(key as RawFd, flags);
                }
            }
        }
    }

    fn accept(&mut self, listener: RawFd) {
        loop {
            // SAFETY: accepting on a valid listening socket, no address wanted.
            let fd = unsafe {
                libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            };
            if fd < 0 {
                return; // EAGAIN, or an aborted connection: wait for the next event
            }
            let one: libc::c_int = 1;
            // SAFETY: a valid socket and a pointer to a local int.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            if self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, fd as u64).is_err() {
                // SAFETY: closing the descriptor accept4 just gave us.
                unsafe { libc::close(fd) };
                continue;
            }
            let slot = fd as usize;
            if self.conns.len() <= slot {
                self.conns.resize_with(slot + 1, || None);
            }
            self.conns[slot] = Some(Conn::default());
        }
    }

    fn close(&mut self, fd: RawFd) {
        if let Some(slot) = self.conns.get_mut(fd as usize) {
            *slot = None;
        }
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
        // SAFETY: the descriptor belongs to this connection, closed once.
        unsafe { libc::close(fd) };
    }

    fn on_event(&mut self, fd: RawFd, flags: u32) {
        let Some(Some(conn)) = self.conns.get(fd as usize) else { return };
        if !conn.out.is_empty() {
            if flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                self.flush(fd);
            }
        } else if flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            self.on_readable(fd);
        }
    }

    fn on_readable(&mut self, fd: RawFd) {
        // SAFETY: reading into the server's own buffer, at most its length.
        let n = unsafe { libc::read(fd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                self.close(fd);
            }
            return;
        }
        if n == 0 {
            return self.close(fd);
        }
        let n = n as usize;
        match self.proto {
            Proto::Echo => {
                let data = std::mem::take(&mut self.buf);
                self.send(fd, &data[..n]);
                self.buf = data;
            }
            Proto::Http => {
                let mut answer = std::mem::take(&mut self.answer);
                answer.clear();
                let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
                let count = if conn.pending.is_empty() {
                    let (count, end) = complete_requests(&self.buf[..n]);
                    conn.pending.extend_from_slice(&self.buf[end..n]);
                    count
                } else {
                    conn.pending.extend_from_slice(&self.buf[..n]);
                    let (count, end) = complete_requests(&conn.pending);
                    conn.pending.drain(..end);
                    count
                };
                for _ in 0..count {
                    answer.extend_from_slice(RESPONSE);
                }
                if !answer.is_empty() {
                    self.send(fd, &answer);
                }
                self.answer = answer;
            }
        }
    }

    /// Writes `data` at once; keeps what the socket does not take and waits
    /// for writability.
    fn send(&mut self, fd: RawFd, data: &[u8]) {
        // SAFETY: writing from a live slice, at most its length.
        let written = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        let written = if written < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                return self.close(fd);
            }
            0
        } else {
            written as usize
        };
        if written < data.len() {
            let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
            conn.out.extend_from_slice(&data[written..]);
            conn.sent = 0;
            if self.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLOUT as u32, fd as u64).is_err() {
                self.close(fd);
            }
        }
    }

    fn flush(&mut self, fd: RawFd) {
        let Some(Some(conn)) = self.conns.get_mut(fd as usize) else { return };
        let rest = &conn.out[conn.sent..];
        // SAFETY: writing from a live slice, at most its length.
        let written = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if written < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                self.close(fd);
            }
            return;
        }
        conn.sent += written as usize;
        if conn.sent == conn.out.len() {
            conn.out.clear();
            conn.sent = 0;
            if self.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32, fd as u64).is_err() {
                self.close(fd);
            }
        }
    }
}

fn main() {
    if let Err(message) = serve() {
        eprintln!("native_server: {message}");
        std::process::exit(2);
    }
}

fn serve() -> Result<(), String> {
    let args = Args::parse(std::env::args().skip(1))?;
    let proto = match args.get("proto") {
        Some("http") => Proto::Http,
        Some("echo") => Proto::Echo,
        other => return Err(format!("--proto http|echo is required, got {other:?}")),
    };
    let port: u16 = args.number("port", 0)?;
    let host = args.get("host").unwrap_or("127.0.0.1");
    raise_nofile_limit().map_err(|e| format!("cannot raise the descriptor limit: {e}"))?;
    let (listener, port) = listen(host, port).map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
    // SAFETY: creating an epoll instance has no preconditions.
    let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).map_err(|e| e.to_string())?;
    println!("READY {port} {}", std::process::id());
    io::stdout().flush().map_err(|e| e.to_string())?;
    let mut server = Server { proto, epoll, conns: Vec::new(), buf: vec![0; READ_SIZE], answer: Vec::new() };
    server.run(listener).map_err(|e| format!("epoll_wait failed: {e}"))
}
