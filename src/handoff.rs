//! Pairs descriptors from the auxiliary socket with `handoff` frames.
//!
//! The two travel on different channels, so either may arrive first. Each
//! half waits here, keyed by its connection id, until the other comes or
//! [`PAIRING_TIMEOUT`] passes. An id is accepted once for the life of the
//! port: a second descriptor or frame with an id already seen is refused.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use eetf::Term;

/// How long one half of a handoff waits for the other.
pub const PAIRING_TIMEOUT: Duration = Duration::from_secs(5);

/// A descriptor and its `handoff` frame, together.
#[derive(Debug)]
pub struct Paired {
    pub conn_id: u64,
    pub fd: OwnedFd,
    pub client_info: Term,
}

/// Outcome of offering one half.
#[derive(Debug)]
pub enum Offer {
    /// Both halves are here.
    Paired(Paired),
    /// Waiting for the other half.
    Waiting,
    /// The id was already seen; a refused descriptor is handed back to be
    /// closed by the caller (it is dropped with this value otherwise).
    Duplicate(Option<OwnedFd>),
}

/// Halves that timed out.
#[derive(Debug, Default)]
pub struct Expired {
    /// Descriptors whose frame never came (already closed when dropped).
    pub fds: Vec<(u64, OwnedFd)>,
    /// Frames whose descriptor never came.
    pub frames: Vec<u64>,
}

/// The pairing table.
#[derive(Debug, Default)]
pub struct Pairing {
    fds: HashMap<u64, (OwnedFd, Instant)>,
    frames: HashMap<u64, (Term, Instant)>,
    seen: HashSet<u64>,
}

impl Pairing {
    /// A descriptor arrived.
    pub fn offer_fd(&mut self, conn_id: u64, fd: OwnedFd, now: Instant) -> Offer {
        if let Some((client_info, _)) = self.frames.remove(&conn_id) {
            return Offer::Paired(Paired { conn_id, fd, client_info });
        }
        if self.fds.contains_key(&conn_id) || self.seen.contains(&conn_id) {
            return Offer::Duplicate(Some(fd));
        }
        self.fds.insert(conn_id, (fd, now));
        Offer::Waiting
    }

    /// A `handoff` frame arrived.
    pub fn offer_frame(&mut self, conn_id: u64, client_info: Term, now: Instant) -> Offer {
        if self.seen.contains(&conn_id) || self.frames.contains_key(&conn_id) {
            return Offer::Duplicate(None);
        }
        self.seen.insert(conn_id);
        if let Some((fd, _)) = self.fds.remove(&conn_id) {
            return Offer::Paired(Paired { conn_id, fd, client_info });
        }
        self.frames.insert(conn_id, (client_info, now));
        Offer::Waiting
    }

    /// Removes and returns every half older than [`PAIRING_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) -> Expired {
        let old = |since: &Instant| now.duration_since(*since) >= PAIRING_TIMEOUT;
        let mut expired = Expired::default();
        let stale: Vec<u64> = self.fds.iter().filter(|(_, (_, t))| old(t)).map(|(id, _)| *id).collect();
        for id in stale {
            if let Some((fd, _)) = self.fds.remove(&id) {
                expired.fds.push((id, fd));
            }
        }
        let stale: Vec<u64> = self.frames.iter().filter(|(_, (_, t))| old(t)).map(|(id, _)| *id).collect();
        for id in stale {
            self.frames.remove(&id);
            expired.frames.push(id);
        }
        expired
    }

    /// Whether nothing waits for its other half.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty() && self.frames.is_empty()
    }

    /// When the oldest waiting half expires, if any waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.fds
            .values()
            .map(|(_, t)| *t)
            .chain(self.frames.values().map(|(_, t)| *t))
            .min()
            .map(|t| t + PAIRING_TIMEOUT)
    }

    /// Descriptors waiting for their frame.
    pub fn waiting_fds(&self) -> usize {
        self.fds.len()
    }

    /// Frames waiting for their descriptor, and the descriptors waiting for
    /// their frame, taken out (at shutdown).
    pub fn drain(&mut self) -> (Vec<u64>, Vec<OwnedFd>) {
        let frames = self.frames.drain().map(|(id, _)| id).collect();
        let fds = self.fds.drain().map(|(_, (fd, _))| fd).collect();
        (frames, fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terms::atom;
    use std::os::unix::net::UnixStream;

    fn fd() -> OwnedFd {
        OwnedFd::from(UnixStream::pair().unwrap().0)
    }

    #[test]
    fn pairs_whichever_half_comes_first() {
        let mut p = Pairing::default();
        let t = Instant::now();
        assert!(matches!(p.offer_fd(1, fd(), t), Offer::Waiting));
        assert!(matches!(p.offer_frame(1, atom("a"), t), Offer::Paired(Paired { conn_id: 1, .. })));
        assert!(matches!(p.offer_frame(2, atom("b"), t), Offer::Waiting));
        assert!(matches!(p.offer_fd(2, fd(), t), Offer::Paired(Paired { conn_id: 2, .. })));
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn duplicates_are_refused_for_the_life_of_the_port() {
        let mut p = Pairing::default();
        let t = Instant::now();
        assert!(matches!(p.offer_fd(1, fd(), t), Offer::Waiting));
        assert!(matches!(p.offer_fd(1, fd(), t), Offer::Duplicate(Some(_))));
        assert!(matches!(p.offer_frame(1, atom("a"), t), Offer::Paired(_)));
        assert!(matches!(p.offer_frame(1, atom("a"), t), Offer::Duplicate(None)));
        assert!(matches!(p.offer_fd(1, fd(), t), Offer::Duplicate(Some(_))));
    }

    #[test]
    fn halves_expire() {
        let mut p = Pairing::default();
        let t = Instant::now();
        p.offer_fd(1, fd(), t);
        p.offer_frame(2, atom("x"), t);
        assert_eq!(p.next_deadline(), Some(t + PAIRING_TIMEOUT));
        let e = p.expire(t + PAIRING_TIMEOUT / 2);
        assert!(e.fds.is_empty() && e.frames.is_empty());
        let e = p.expire(t + PAIRING_TIMEOUT);
        assert_eq!(e.fds.len(), 1);
        assert_eq!(e.frames, vec![2]);
        assert_eq!(p.waiting_fds(), 0);
    }
}
