//! Pairs descriptors from the auxiliary socket with `handoff` frames.
//!
//! The two travel on different channels, so either may arrive first. Each
//! half waits here, keyed by its connection id, until the other comes or
//! [`PAIRING_TIMEOUT`] passes. An id is accepted once for the life of the
//! port: a second descriptor or frame with an id already seen is refused.
//! Remembering every id costs next to nothing because the VM numbers its
//! connections 1, 2, 3, ...: see [`SeenIds`].
//!
//! A descriptor can also be known lost before its frame comes (the port was
//! at its descriptor limit when the message arrived, say): the loss waits
//! here in its place, and the frame is refused with its reason the moment it
//! comes, rather than waiting out the timeout for a descriptor that cannot
//! come.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use eetf::Term;

use crate::message::CloseReason;

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
    /// The frame and the loss of its descriptor are both here: the handoff
    /// is refused with this reason.
    Refused(CloseReason),
}

/// Halves that timed out.
#[derive(Debug, Default)]
pub struct Expired {
    /// Descriptors whose frame never came (already closed when dropped).
    pub fds: Vec<(u64, OwnedFd)>,
    /// Frames whose descriptor never came.
    pub frames: Vec<u64>,
    /// Lost descriptors whose frame never came.
    pub lost: Vec<u64>,
}

/// The pairing table.
#[derive(Debug, Default)]
pub struct Pairing {
    fds: HashMap<u64, (OwnedFd, Instant)>,
    frames: HashMap<u64, (Term, Instant)>,
    lost: HashMap<u64, (CloseReason, Instant)>,
    seen: SeenIds,
}

/// Every connection id used so far, in constant space for ids that come in
/// order: a run `start..end` of consecutive ids, plus the ids outside it.
/// An id that fills the gap at the run's end joins the run, and so do the
/// ids after it that were waiting outside.
#[derive(Debug, Default)]
struct SeenIds {
    run: Option<(u64, u64)>,
    others: BTreeSet<u64>,
}

impl SeenIds {
    fn contains(&self, id: u64) -> bool {
        matches!(self.run, Some((start, end)) if start <= id && id < end) || self.others.contains(&id)
    }

    fn insert(&mut self, id: u64) {
        match &mut self.run {
            None if id < u64::MAX => self.run = Some((id, id + 1)),
            Some((_, end)) if id == *end && id < u64::MAX => {
                *end += 1;
                while *end < u64::MAX && self.others.remove(end) {
                    *end += 1;
                }
            }
            _ => {
                if !self.contains(id) {
                    self.others.insert(id);
                }
            }
        }
    }

    /// Ids kept one by one, outside the run.
    #[cfg(test)]
    fn scattered(&self) -> usize {
        self.others.len()
    }
}

impl Pairing {
    /// A descriptor arrived.
    pub fn offer_fd(&mut self, conn_id: u64, fd: OwnedFd, now: Instant) -> Offer {
        if let Some((client_info, _)) = self.frames.remove(&conn_id) {
            return Offer::Paired(Paired { conn_id, fd, client_info });
        }
        if self.fds.contains_key(&conn_id) || self.seen.contains(conn_id) {
            return Offer::Duplicate(Some(fd));
        }
        self.fds.insert(conn_id, (fd, now));
        Offer::Waiting
    }

    /// The descriptor for `conn_id` was lost on its way, for `reason`.
    pub fn offer_lost(&mut self, conn_id: u64, reason: CloseReason, now: Instant) -> Offer {
        if self.frames.remove(&conn_id).is_some() {
            return Offer::Refused(reason);
        }
        if self.fds.contains_key(&conn_id) || self.lost.contains_key(&conn_id) || self.seen.contains(conn_id) {
            return Offer::Duplicate(None);
        }
        self.lost.insert(conn_id, (reason, now));
        Offer::Waiting
    }

    /// A `handoff` frame arrived.
    pub fn offer_frame(&mut self, conn_id: u64, client_info: Term, now: Instant) -> Offer {
        if self.seen.contains(conn_id) || self.frames.contains_key(&conn_id) {
            return Offer::Duplicate(None);
        }
        self.seen.insert(conn_id);
        if let Some((reason, _)) = self.lost.remove(&conn_id) {
            return Offer::Refused(reason);
        }
        if let Some((fd, _)) = self.fds.remove(&conn_id) {
            return Offer::Paired(Paired { conn_id, fd, client_info });
        }
        self.frames.insert(conn_id, (client_info, now));
        Offer::Waiting
    }

    /// Whether the descriptor tagged `conn_id` has arrived with no frame.
    pub fn has_fd(&self, conn_id: u64) -> bool {
        self.fds.contains_key(&conn_id)
    }

    /// Takes the descriptor tagged `conn_id` for another use than a
    /// connection (a `call` argument); its id is used up.
    pub fn take_fd(&mut self, conn_id: u64) -> Option<OwnedFd> {
        let (fd, _) = self.fds.remove(&conn_id)?;
        self.seen.insert(conn_id);
        Some(fd)
    }

    /// Removes and returns every half older than [`PAIRING_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) -> Expired {
        let old = |since: &Instant| now.duration_since(*since) >= PAIRING_TIMEOUT;
        let mut expired = Expired::default();
        let stale: Vec<u64> = self.fds.iter().filter(|(_, (_, t))| old(t)).map(|(id, _)| *id).collect();
        for id in stale {
            if let Some((fd, _)) = self.fds.remove(&id) {
                // Used up, like an id whose frame came: a frame arriving
                // later is refused at once, and the run of seen ids has no
                // gap left behind.
                self.seen.insert(id);
                expired.fds.push((id, fd));
            }
        }
        let stale: Vec<u64> = self.frames.iter().filter(|(_, (_, t))| old(t)).map(|(id, _)| *id).collect();
        for id in stale {
            self.frames.remove(&id);
            expired.frames.push(id);
        }
        let stale: Vec<u64> = self.lost.iter().filter(|(_, (_, t))| old(t)).map(|(id, _)| *id).collect();
        for id in stale {
            self.lost.remove(&id);
            self.seen.insert(id);
            expired.lost.push(id);
        }
        expired
    }

    /// Refuses `conn_id` for good (its `handoff` frame could not be read):
    /// the id is used up, and its descriptor, if it is waiting, is handed
    /// back to be closed. A descriptor that comes later is refused as a
    /// duplicate.
    pub fn refuse(&mut self, conn_id: u64) -> Option<OwnedFd> {
        self.seen.insert(conn_id);
        self.lost.remove(&conn_id);
        self.frames.remove(&conn_id);
        self.fds.remove(&conn_id).map(|(fd, _)| fd)
    }

    /// Whether nothing waits for its other half.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty() && self.frames.is_empty() && self.lost.is_empty()
    }

    /// When the oldest waiting half expires, if any waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.fds
            .values()
            .map(|(_, t)| *t)
            .chain(self.frames.values().map(|(_, t)| *t))
            .chain(self.lost.values().map(|(_, t)| *t))
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
        self.lost.clear();
        (frames, fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_order_take_constant_space() {
        let mut seen = SeenIds::default();
        for id in 1..=100_000 {
            assert!(!seen.contains(id));
            seen.insert(id);
        }
        assert_eq!(seen.scattered(), 0);
        assert!((1..=100_000).all(|id| seen.contains(id)));
        assert!(!seen.contains(0) && !seen.contains(100_001));
    }

    #[test]
    fn ids_out_of_order_join_the_run_once_the_gap_is_filled() {
        let mut seen = SeenIds::default();
        for id in [5, 7, 8, 6, 3, 0, u64::MAX] {
            seen.insert(id);
        }
        assert_eq!(seen.scattered(), 3, "3, 0 and u64::MAX stay outside the run 5..9");
        for id in [0, 3, 5, 6, 7, 8, u64::MAX] {
            assert!(seen.contains(id), "{id}");
        }
        for id in [1, 2, 4, 9, u64::MAX - 1] {
            assert!(!seen.contains(id), "{id}");
        }
        seen.insert(5);
        assert_eq!(seen.scattered(), 3, "inserting a seen id changes nothing");
    }
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
    fn a_lost_descriptor_refuses_its_frame_whichever_comes_first() {
        let mut p = Pairing::default();
        let t = Instant::now();
        let emfile = CloseReason::Io(nix::errno::Errno::EMFILE);
        assert!(matches!(p.offer_frame(1, atom("a"), t), Offer::Waiting));
        assert!(matches!(p.offer_lost(1, emfile.clone(), t), Offer::Refused(CloseReason::Io(nix::errno::Errno::EMFILE))));
        assert!(matches!(p.offer_lost(2, emfile.clone(), t), Offer::Waiting));
        assert_eq!(p.next_deadline(), Some(t + PAIRING_TIMEOUT));
        assert!(matches!(p.offer_frame(2, atom("b"), t), Offer::Refused(_)));
        assert!(p.is_empty());
        // Used up, both.
        assert!(matches!(p.offer_frame(2, atom("b"), t), Offer::Duplicate(None)));
        assert!(matches!(p.offer_fd(1, fd(), t), Offer::Duplicate(Some(_))));
        // A loss whose frame never comes expires like a waiting descriptor.
        p.offer_lost(3, emfile, t);
        assert_eq!(p.expire(t + PAIRING_TIMEOUT).lost, vec![3]);
        assert!(matches!(p.offer_frame(3, atom("late"), t + PAIRING_TIMEOUT), Offer::Duplicate(None)));
    }

    #[test]
    fn a_refused_id_gives_back_its_descriptor_and_is_used_up() {
        let mut p = Pairing::default();
        let t = Instant::now();
        p.offer_fd(4, fd(), t);
        assert!(p.refuse(4).is_some());
        assert!(p.refuse(5).is_none());
        assert!(matches!(p.offer_fd(5, fd(), t), Offer::Duplicate(Some(_))));
        assert!(p.is_empty());
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
        // Both ids are used up: a late frame for the expired descriptor and a
        // late descriptor for the expired frame are refused at once.
        assert!(matches!(p.offer_frame(1, atom("late"), t + PAIRING_TIMEOUT), Offer::Duplicate(None)));
        assert!(matches!(p.offer_fd(2, fd(), t + PAIRING_TIMEOUT), Offer::Duplicate(Some(_))));
        assert!(p.is_empty());
    }
}
