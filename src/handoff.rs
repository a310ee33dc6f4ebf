//! Pairs descriptors from the auxiliary socket with `handoff` frames.
//!
//! The two travel on different channels, so either may arrive first. Each
//! half waits here, keyed by its connection id, until the other comes or
//! [`PAIRING_TIMEOUT`] passes. An id is accepted once for the life of the
//! port: a second descriptor or frame with an id already seen is refused.
//! Remembering every id costs next to nothing because the VM numbers its
//! connections 1, 2, 3, ...: see [`SeenIds`].

use std::collections::{BTreeSet, HashMap};
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

    /// A `handoff` frame arrived.
    pub fn offer_frame(&mut self, conn_id: u64, client_info: Term, now: Instant) -> Offer {
        if self.seen.contains(conn_id) || self.frames.contains_key(&conn_id) {
            return Offer::Duplicate(None);
        }
        self.seen.insert(conn_id);
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
