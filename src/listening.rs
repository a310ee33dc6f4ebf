//! A listening socket the port accepts on itself (a listener's
//! `accept => port`, `docs/protocol.md`: `listen`, `listen_control`).
//!
//! The VM keeps the listening socket and hands every port a duplicate once.
//! Each port accepts within its share of the listener's limit and only while
//! the VM has not paused it: the loop watches the socket only while
//! [`Listening::wants_accept`] holds, so a full or paused port leaves new
//! clients in the kernel's backlog for another port, or for later. The VM
//! stays the authority: it changes the share and the pause with
//! `listen_control`, and every accepted connection is reported to it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use eetf::Term;
use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, SockFlag, SockaddrLike, SockaddrStorage};

use crate::message::ListenOptions;
use crate::terms::{atom, atom_map, binary, integer};

/// Connection ids of accepted connections start here: the VM numbers the
/// connections it hands off from 1, far below.
pub const FIRST_ACCEPTED_ID: u64 = 1 << 63;

/// Connections accepted in one turn of the loop at most, so that a flood of
/// clients does not starve the connections already open.
pub const ACCEPT_BATCH: usize = 32;

/// Why a descriptor cannot be listened on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenError {
    #[error("the descriptor is not a listening socket")]
    NotListening,
    #[error("cannot use the listening socket: {0}")]
    Errno(#[from] Errno),
}

/// One accepted connection: its descriptor (non-blocking, close-on-exec),
/// its id and its `client_info`.
#[derive(Debug)]
pub struct Accepted {
    pub conn_id: u64,
    pub fd: OwnedFd,
    pub client_info: Term,
}

/// The listening socket and the VM's instructions for it.
#[derive(Debug)]
pub struct Listening {
    fd: OwnedFd,
    options: ListenOptions,
    next_id: u64,
}

impl Listening {
    /// Takes a descriptor received for `listen`. It must be a listening
    /// socket (`SO_ACCEPTCONN`); it is made non-blocking.
    pub fn new(fd: OwnedFd, options: ListenOptions) -> Result<Listening, ListenError> {
        if !socket::getsockopt(&fd, sockopt::AcceptConn)? {
            return Err(ListenError::NotListening);
        }
        crate::fdpass::prepare_received(fd.as_fd())?;
        Ok(Listening { fd, options, next_id: FIRST_ACCEPTED_ID })
    }

    /// New share and pause from `listen_control` (the `reactor_pid` given
    /// with `listen` stays).
    pub fn control(&mut self, options: ListenOptions) {
        self.options.max_connections = options.max_connections;
        self.options.paused = options.paused;
    }

    /// Whether the port should accept with `active` connections open.
    pub fn wants_accept(&self, active: u64) -> bool {
        !self.options.paused && active < self.options.max_connections
    }

    /// Accepts one connection; `Ok(None)` when none is waiting.
    pub fn accept(&mut self) -> Result<Option<Accepted>, Errno> {
        let raw = match socket::accept4(self.fd.as_raw_fd(), SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
            Ok(raw) => raw,
            // A client that reset before it was accepted: nothing to serve.
            Err(Errno::EAGAIN | Errno::ECONNABORTED | Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e),
        };
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let conn_id = self.next_id;
        self.next_id += 1;
        let mut info = peer_info(fd.as_fd());
        info.push(("conn_id", integer(conn_id)));
        if let Some(pid) = &self.options.reactor_pid {
            info.push(("reactor_pid", pid.clone()));
        }
        Ok(Some(Accepted { conn_id, fd, client_info: atom_map(info) }))
    }
}

impl AsFd for Listening {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `addr`, `port` and `type` of the peer, as the VM's `handoff_socket`
/// gives them: `addr` a binary such as `<<"127.0.0.1">>`, `type` `tcp` or
/// `unix` (a Unix peer has no port; its `addr` is its path, often empty).
fn peer_info(fd: BorrowedFd<'_>) -> Vec<(&'static str, Term)> {
    let Ok(peer) = socket::getpeername::<SockaddrStorage>(fd.as_raw_fd()) else {
        return vec![("addr", binary(Vec::new()))];
    };
    if let Some(v4) = peer.as_sockaddr_in() {
        return vec![
            ("addr", binary(v4.ip().to_string().into_bytes())),
            ("port", integer(u64::from(v4.port()))),
            ("type", atom("tcp")),
        ];
    }
    if let Some(v6) = peer.as_sockaddr_in6() {
        return vec![
            ("addr", binary(v6.ip().to_string().into_bytes())),
            ("port", integer(u64::from(v6.port()))),
            ("type", atom("tcp")),
        ];
    }
    if let Some(unix) = peer.as_unix_addr() {
        let path = unix.path().map(|p| p.as_os_str().as_encoded_bytes().to_vec()).unwrap_or_default();
        return vec![("addr", binary(path)), ("type", atom("unix"))];
    }
    vec![("addr", binary(format!("family {:?}", peer.family()).into_bytes()))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::{UnixListener, UnixStream};

    fn options(max: u64, paused: bool) -> ListenOptions {
        ListenOptions { max_connections: max, paused, reactor_pid: Some(atom("me")) }
    }

    fn owned<T: Into<OwnedFd>>(t: T) -> OwnedFd {
        t.into()
    }

    #[test]
    fn accepts_tcp_with_client_info() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut l = Listening::new(owned(listener), options(1, false)).unwrap();
        assert!(l.accept().unwrap().is_none(), "nothing waiting yet");
        let client = TcpStream::connect(addr).unwrap();
        let accepted = loop {
            if let Some(a) = l.accept().unwrap() {
                break a;
            }
        };
        assert_eq!(accepted.conn_id, FIRST_ACCEPTED_ID);
        let expected = atom_map(vec![
            ("addr", binary(b"127.0.0.1".to_vec())),
            ("port", integer(u64::from(client.local_addr().unwrap().port()))),
            ("type", atom("tcp")),
            ("conn_id", integer(FIRST_ACCEPTED_ID)),
            ("reactor_pid", atom("me")),
        ]);
        assert_eq!(accepted.client_info, expected);
    }

    #[test]
    fn accepts_unix_peers() {
        let dir = std::env::temp_dir().join(format!("py_reactor_listening_{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixListener::bind(&dir).unwrap();
        let mut l = Listening::new(owned(listener), options(1, false)).unwrap();
        let _client = UnixStream::connect(&dir).unwrap();
        let accepted = loop {
            if let Some(a) = l.accept().unwrap() {
                break a;
            }
        };
        let Term::Map(map) = &accepted.client_info else { panic!("not a map") };
        assert_eq!(map.map.get(&atom("type")), Some(&atom("unix")));
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn refuses_a_connected_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(Listening::new(owned(client), options(1, false)).unwrap_err(), ListenError::NotListening);
    }

    #[test]
    fn share_and_pause_decide_accepting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut l = Listening::new(owned(listener), options(2, false)).unwrap();
        assert!(l.wants_accept(1));
        assert!(!l.wants_accept(2));
        l.control(options(3, false));
        assert!(l.wants_accept(2));
        l.control(options(3, true));
        assert!(!l.wants_accept(0));
        l.control(options(0, false));
        assert!(!l.wants_accept(0));
    }
}
