//! The auxiliary Unix socket that carries descriptors from the VM.
//!
//! The socket lives in a fresh `mkdtemp` directory (mode 0700). Exactly one
//! peer is accepted: the one whose `SO_PEERCRED` shows the port's own uid and
//! the VM's OS pid. Then the path and its directory are removed, so no one
//! else can ever connect. Each `sendmsg` from the VM carries descriptors in
//! one `SCM_RIGHTS` message and, as data, one 8-byte big-endian id per
//! descriptor.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, recvmsg, sockopt, ControlMessageOwned, MsgFlags};

/// Most descriptors taken from one message; more are closed by the kernel
/// (`MSG_CTRUNC`) and reported.
pub const MAX_FDS_PER_MESSAGE: usize = 64;

/// Something wrong on the auxiliary socket.
#[derive(Debug, thiserror::Error)]
pub enum AuxError {
    #[error("cannot create the auxiliary socket in {dir}: {source}")]
    Create { dir: PathBuf, source: io::Error },
    #[error("refused a peer with uid {uid} and pid {pid} (expected uid {want_uid} and pid {want_pid})")]
    WrongPeer { uid: u32, pid: i32, want_uid: u32, want_pid: i32 },
    #[error("cannot read the peer's credentials: {0}")]
    Credentials(nix::errno::Errno),
    #[error("auxiliary socket I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// The listening socket, before the VM has connected.
#[derive(Debug)]
pub struct AuxListener {
    listener: UnixListener,
    dir: PathBuf,
    path: PathBuf,
    want_uid: u32,
    want_pid: i32,
}

impl AuxListener {
    /// Creates `sock` in a fresh private directory under `parent`.
    pub fn bind(parent: &Path, vm_pid: i32) -> Result<AuxListener, AuxError> {
        let create = |source| AuxError::Create { dir: parent.to_path_buf(), source };
        let dir = nix::unistd::mkdtemp(&parent.join("py_reactor.XXXXXX"))
            .map_err(|e| create(io::Error::from(e)))?;
        let path = dir.join("sock");
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(create(e));
            }
        };
        listener.set_nonblocking(true).map_err(create)?;
        Ok(AuxListener {
            listener,
            dir,
            path,
            want_uid: nix::unistd::getuid().as_raw(),
            want_pid: vm_pid,
        })
    }

    /// Where the VM must connect.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one pending connection. `Ok(None)` when none is waiting.
    /// A peer that fails the credential check is closed and reported as
    /// [`AuxError::WrongPeer`]; the listener stays open for the right one.
    pub fn accept(&self) -> Result<Option<AuxChannel>, AuxError> {
        let stream = match self.listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(e) => return Err(AuxError::Io(e)),
        };
        let cred = getsockopt(&stream, sockopt::PeerCredentials).map_err(AuxError::Credentials)?;
        if cred.uid() != self.want_uid || cred.pid() != self.want_pid {
            return Err(AuxError::WrongPeer {
                uid: cred.uid(),
                pid: cred.pid(),
                want_uid: self.want_uid,
                want_pid: self.want_pid,
            });
        }
        stream.set_nonblocking(true)?;
        Ok(Some(AuxChannel { stream }))
    }

    /// Removes the socket path and its directory.
    pub fn unlink(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl AsFd for AuxListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl Drop for AuxListener {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// The accepted connection from the VM.
#[derive(Debug)]
pub struct AuxChannel {
    stream: UnixStream,
}

/// What one `recvmsg` brought.
#[derive(Debug, Default)]
pub struct Received {
    /// Descriptors paired with their ids, in order.
    pub tagged: Vec<(u64, OwnedFd)>,
    /// Ids whose descriptor did not arrive, and why.
    pub missing: Vec<(u64, Missing)>,
    /// Problems found in this message (already handled: extras are closed).
    pub problems: Vec<String>,
    /// The VM closed the auxiliary socket.
    pub eof: bool,
}

/// Why a descriptor announced by its id did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The kernel could not install it: the port is at its descriptor limit
    /// (`EMFILE`, or `ENFILE` should the kernel ever report it).
    Limit(Errno),
    /// The control data was cut short (`MSG_CTRUNC`) with room to spare: more
    /// descriptors than one message may carry, or a security module refused one.
    Truncated,
    /// The message carried fewer descriptors than ids.
    NotSent,
}

impl Missing {
    fn describe(self) -> String {
        match self {
            Missing::Limit(errno) => format!("the port is at its descriptor limit ({errno})"),
            Missing::Truncated => "the control data was truncated (MSG_CTRUNC)".to_string(),
            Missing::NotSent => "the message carried no descriptor for them".to_string(),
        }
    }
}

impl AuxChannel {
    /// Reads one message. `Ok(None)` when nothing is waiting.
    ///
    /// Whatever went wrong with the descriptors is found here, when
    /// `recvmsg` returns: every descriptor the kernel installed is paired
    /// with its id or closed, and every id left without one is in
    /// [`Received::missing`] with the reason.
    pub fn recv(&self) -> Result<Option<Received>, AuxError> {
        let mut data = [0u8; 8 * MAX_FDS_PER_MESSAGE];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
        let mut iov = [IoSliceMut::new(&mut data)];
        let msg = match recvmsg::<()>(
            self.stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
            Err(e) => return Err(AuxError::Io(io::Error::from(e))),
        };
        let mut received = Received::default();
        let mut fds: Vec<OwnedFd> = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors in
                    // this process for us; nothing else refers to them, so
                    // each is owned exactly once from here on.
                    fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
        let len = msg.bytes;
        if len == 0 && fds.is_empty() && !truncated {
            received.eof = true;
            return Ok(Some(received));
        }
        let bytes = &data[..len];
        if len % 8 != 0 {
            received
                .problems
                .push(format!("{len} bytes of ids is not a multiple of 8; the partial id was ignored"));
        }
        let mut ids: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("chunks of 8")))
            .collect();
        // Installed descriptors come first, in the order sent: the ids past
        // them are the ones whose descriptor was lost.
        let why = if truncated { why_truncated(self.stream.as_fd()) } else { Missing::NotSent };
        if ids.len() > fds.len() {
            let lost = ids.split_off(fds.len());
            received.problems.push(format!(
                "{} of {} descriptors of one message not received: {}; connection ids {:?} refused",
                lost.len(),
                lost.len() + fds.len(),
                why.describe(),
                lost
            ));
            received.missing = lost.into_iter().map(|id| (id, why)).collect();
        } else if fds.len() > ids.len() {
            received.problems.push(format!(
                "{} descriptors but {} ids in one message; the untagged descriptors were closed",
                fds.len(),
                ids.len()
            ));
        }
        if truncated && received.missing.is_empty() {
            // Descriptors beyond the ids were sent and discarded by the kernel.
            received.problems.push(format!(
                "descriptors of one message not received: {}; {} ids, all paired",
                why.describe(),
                ids.len()
            ));
        }
        // Zipping drops (closes) the untagged extras.
        received.tagged = ids.into_iter().zip(fds).collect();
        Ok(Some(received))
    }
}

/// Why the kernel cut a message's descriptors short. It stops installing at
/// the first descriptor it cannot give a number, so a probe for one more
/// number, right after `recvmsg`, fails the same way when the limit was the
/// cause.
fn why_truncated(any: BorrowedFd<'_>) -> Missing {
    use nix::fcntl::{fcntl, FcntlArg};
    match fcntl(any, FcntlArg::F_DUPFD_CLOEXEC(0)) {
        Ok(probe) => {
            // SAFETY: F_DUPFD_CLOEXEC just returned this descriptor; closing
            // it here is its only use.
            drop(unsafe { OwnedFd::from_raw_fd(probe) });
            Missing::Truncated
        }
        Err(errno @ (Errno::EMFILE | Errno::ENFILE)) => Missing::Limit(errno),
        Err(_) => Missing::Truncated,
    }
}

impl AsFd for AuxChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Why a received socket is not a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotConnection {
    /// A listening socket (`SO_ACCEPTCONN`).
    Listening,
    /// A stream socket with no peer: never connected, or reset already.
    NoPeer,
}

/// Whether a received descriptor is something a protocol can talk over.
///
/// Sockets must have a peer, except datagram sockets, which can be read
/// without one; anything that is not a socket (a pipe, a terminal) passes.
/// Only asks: the descriptor is not changed in any way. The usual case, a
/// connected socket, costs one `getpeername`.
pub fn check_connected(fd: BorrowedFd<'_>) -> Result<(), NotConnection> {
    use nix::sys::socket::{getpeername, SockType, SockaddrStorage};
    match getpeername::<SockaddrStorage>(fd.as_raw_fd()) {
        Err(Errno::ENOTCONN) => {}
        // Connected, not a socket, or something the first read will report.
        _ => return Ok(()),
    }
    if getsockopt(&fd, sockopt::AcceptConn) == Ok(true) {
        return Err(NotConnection::Listening);
    }
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Datagram | SockType::Raw) => Ok(()),
        _ => Err(NotConnection::NoPeer),
    }
}

/// Makes a received descriptor non-blocking.
///
/// Close-on-exec needs no call: `recvmsg` sets it on arrival
/// (`MSG_CMSG_CLOEXEC`). `O_NONBLOCK` belongs to the open file description,
/// which the VM's copy shares, and the VM's sockets are non-blocking already,
/// so usually there is nothing to change either.
pub fn prepare_received(fd: BorrowedFd<'_>) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::io::IoSlice;
    use std::os::unix::fs::PermissionsExt;

    fn send(stream: &UnixStream, ids: &[u64], fds: &[RawFd]) {
        let data: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
        let iov = [IoSlice::new(&data)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(stream.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).unwrap();
    }

    fn connected() -> (AuxListener, AuxChannel, UnixStream) {
        let tmp = std::env::temp_dir();
        let listener = AuxListener::bind(&tmp, std::process::id() as i32).unwrap();
        let mode = std::fs::metadata(listener.path().parent().unwrap()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let client = UnixStream::connect(listener.path()).unwrap();
        let channel = loop {
            if let Some(c) = listener.accept().unwrap() {
                break c;
            }
        };
        (listener, channel, client)
    }

    fn recv_blocking(channel: &AuxChannel) -> Received {
        loop {
            if let Some(r) = channel.recv().unwrap() {
                return r;
            }
        }
    }

    #[test]
    fn pairs_ids_with_descriptors_in_order() {
        let (listener, channel, client) = connected();
        let (a, _a2) = UnixStream::pair().unwrap();
        let (b, _b2) = UnixStream::pair().unwrap();
        send(&client, &[7, 8], &[a.as_raw_fd(), b.as_raw_fd()]);
        let r = recv_blocking(&channel);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.tagged.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![7, 8]);
        let flags = nix::fcntl::fcntl(&r.tagged[0].1, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC));
        listener.unlink();
        assert!(!listener.path().exists());
    }

    #[test]
    fn untagged_descriptors_and_fdless_messages_are_reported() {
        let (_listener, channel, client) = connected();
        let (a, _a2) = UnixStream::pair().unwrap();
        let (b, _b2) = UnixStream::pair().unwrap();
        send(&client, &[1], &[a.as_raw_fd(), b.as_raw_fd()]);
        let r = recv_blocking(&channel);
        assert_eq!(r.tagged.len(), 1);
        assert!(r.problems[0].contains("untagged"), "{:?}", r.problems);
        send(&client, &[5], &[]);
        let r = recv_blocking(&channel);
        assert!(r.tagged.is_empty());
        assert_eq!(r.missing, vec![(5, Missing::NotSent)]);
        assert!(r.problems[0].contains("no descriptor"), "{:?}", r.problems);
        drop(client);
        assert!(recv_blocking(&channel).eof);
    }

    #[test]
    fn a_peer_with_another_pid_is_refused() {
        let listener = AuxListener::bind(&std::env::temp_dir(), 1).unwrap();
        let _client = UnixStream::connect(listener.path()).unwrap();
        let err = loop {
            match listener.accept() {
                Ok(None) => continue,
                Ok(Some(_)) => panic!("accepted a peer with the wrong pid"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, AuxError::WrongPeer { want_pid: 1, .. }), "{err}");
    }
}
