//! Our public IP address, learned by vote from the `ip` field of replies.
//!
//! BEP 42: "*all* DHT responses SHOULD include a *top-level* field called `ip`, containing a
//! compact binary representation of the requestor's IP and port", and a node that receives one
//! "SHOULD consider restarting its DHT node with a new node ID, taking this IP into account.
//! Since a single node can not be trusted, there should be some mechanism to determine whether
//! or not the node has a correct understanding of its external IP or not. This could be done by
//! voting". This module is that vote.
//!
//! # Voting rules
//!
//! - A *voter* is the network a reply came from, not the replying address: the source IP cut
//!   to its IPv4 /16 or its IPv6 /32. An attacker with a whole /24 (or an IPv6 /48, which
//!   hosting providers hand out freely) still holds one vote; moving the result takes
//!   [`MIN_VOTES`] different /16s (/32s) and a majority.
//! - Each voter holds one vote, its latest report, which it may change. Votes older than
//!   [`VOTE_LIFETIME`] are dropped.
//! - The table keeps at most [`MAX_VOTERS`] (64) voters; when it is full, the voter heard from
//!   least recently gives up its place. There is no separate table of candidates: the
//!   candidates are the addresses the voters currently report, so there are at most 64.
//! - An address wins when at least [`MIN_VOTES`] (4) voters report it *and* they are a strict
//!   majority of the live votes. Without a winner the last winner stays: a split vote does not
//!   erase what was learned.
//! - A report whose family differs from the voter's (an IPv4 responder reporting an IPv6
//!   address) is ignored, and so are unspecified, multicast and broadcast addresses. Use one
//!   [`ExternalAddressVote`] per socket (per address family).
//!
//! Recording costs one pass over at most 64 votes (Boyer–Moore majority) and never allocates.

use core::net::IpAddr;
use core::time::Duration;

use arrayvec::ArrayVec;

use crate::Instant;
use crate::wire::canonical_ip;

/// How many voters (distinct /16s or /32s) the table remembers.
pub const MAX_VOTERS: usize = 64;

/// How many distinct voters must agree before an address is adopted.
pub const MIN_VOTES: usize = 4;

/// How long a vote counts after it was cast.
pub const VOTE_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The network a voter speaks for: an IPv4 /16 or an IPv6 /32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Voter {
    V4([u8; 2]),
    V6([u8; 4]),
}

impl Voter {
    fn of(ip: IpAddr) -> Voter {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Voter::V4([o[0], o[1]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Voter::V6([o[0], o[1], o[2], o[3]])
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Vote {
    voter: Voter,
    reported: IpAddr,
    cast: Instant,
}

/// A vote on our external address among the nodes that answer us (BEP 42, "the `ip` field").
///
/// ```
/// use core::net::IpAddr;
/// use krpc_core::Instant;
/// use krpc_core::dht::ExternalAddressVote;
///
/// let ours: IpAddr = "203.0.113.77".parse().unwrap();
/// let mut vote = ExternalAddressVote::new();
/// // One network repeating itself changes nothing.
/// for last in 0..50u8 {
///     assert_eq!(vote.record(ours, [198, 51, 100, last].into(), Instant::ZERO), None);
/// }
/// // Four independent networks agree: adopted.
/// assert_eq!(vote.record(ours, [8, 8, 8, 8].into(), Instant::ZERO), None);
/// assert_eq!(vote.record(ours, [9, 9, 9, 9].into(), Instant::ZERO), None);
/// assert_eq!(vote.record(ours, [1, 1, 1, 1].into(), Instant::ZERO), Some(ours));
/// assert_eq!(vote.current(), Some(ours));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ExternalAddressVote {
    votes: ArrayVec<Vote, MAX_VOTERS>,
    current: Option<IpAddr>,
}

impl ExternalAddressVote {
    /// An empty vote with no known address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a reply from `voter` (the reply's source IP) saying our address is `reported`.
    ///
    /// Returns the new address when this vote changed the result, `None` otherwise.
    pub fn record(&mut self, reported: IpAddr, voter: IpAddr, now: Instant) -> Option<IpAddr> {
        let reported = canonical_ip(reported);
        let voter = canonical_ip(voter);
        if reported.is_ipv4() != voter.is_ipv4() || !is_plausible(reported) {
            return None;
        }
        self.votes.retain(|v| now.saturating_duration_since(v.cast) < VOTE_LIFETIME);
        let voter = Voter::of(voter);
        let vote = Vote { voter, reported, cast: now };
        if let Some(existing) = self.votes.iter_mut().find(|v| v.voter == voter) {
            *existing = vote;
        } else if let Err(full) = self.votes.try_push(vote) {
            if let Some(stalest) = self.votes.iter_mut().min_by_key(|v| v.cast) {
                *stalest = full.element();
            }
        }
        let winner = self.winner()?;
        if self.current == Some(winner) {
            return None;
        }
        self.current = Some(winner);
        Some(winner)
    }

    /// The address the vote has settled on, if any.
    pub fn current(&self) -> Option<IpAddr> {
        self.current
    }

    /// How many voters currently hold a vote (at most [`MAX_VOTERS`]; votes past
    /// [`VOTE_LIFETIME`] are dropped at the next [`ExternalAddressVote::record`]).
    pub fn voters(&self) -> usize {
        self.votes.len()
    }

    /// The address reported by a strict majority of at least [`MIN_VOTES`] voters, if any.
    fn winner(&self) -> Option<IpAddr> {
        // Boyer–Moore: the only possible strict-majority element, then a count to confirm it.
        let mut candidate = None;
        let mut lead = 0usize;
        for v in &self.votes {
            match candidate {
                _ if lead == 0 => {
                    candidate = Some(v.reported);
                    lead = 1;
                }
                Some(c) if c == v.reported => lead += 1,
                _ => lead -= 1,
            }
        }
        let candidate = candidate?;
        let count = self.votes.iter().filter(|v| v.reported == candidate).count();
        (count >= MIN_VOTES && 2 * count > self.votes.len()).then_some(candidate)
    }
}

/// Addresses that can never be ours as seen from outside.
fn is_plausible(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};

    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn secs(s: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(s)
    }

    const OURS: [u8; 4] = [203, 0, 113, 77];
    const FAKE: [u8; 4] = [192, 0, 2, 66];

    #[test]
    fn a_single_voter_cannot_set_the_address() {
        let mut vote = ExternalAddressVote::new();
        for i in 0..1000u32 {
            assert_eq!(vote.record(FAKE.into(), v4(198, 51, (i >> 8) as u8, i as u8), secs(i.into())), None);
        }
        assert_eq!(vote.current(), None);
        assert_eq!(vote.voters(), 1, "one /16 holds one vote");
    }

    #[test]
    fn a_single_voter_cannot_move_an_established_address() {
        let mut vote = ExternalAddressVote::new();
        for a in 1..=10u8 {
            vote.record(OURS.into(), v4(a, 1, 1, 1), secs(0));
        }
        assert_eq!(vote.current(), Some(OURS.into()));
        for i in 0..500u32 {
            assert_eq!(vote.record(FAKE.into(), v4(99, 99, (i >> 8) as u8, i as u8), secs(1)), None);
        }
        assert_eq!(vote.current(), Some(OURS.into()));
    }

    #[test]
    fn four_distinct_prefixes_in_the_majority_set_the_address() {
        let mut vote = ExternalAddressVote::new();
        assert_eq!(vote.record(OURS.into(), v4(1, 2, 3, 4), secs(0)), None);
        assert_eq!(vote.record(OURS.into(), v4(1, 3, 3, 4), secs(0)), None);
        assert_eq!(vote.record(OURS.into(), v4(5, 2, 3, 4), secs(0)), None);
        assert_eq!(vote.record(OURS.into(), v4(7, 2, 3, 4), secs(0)), Some(OURS.into()));
        // Confirming votes report no change.
        assert_eq!(vote.record(OURS.into(), v4(8, 2, 3, 4), secs(0)), None);
        assert_eq!(vote.current(), Some(OURS.into()));
    }

    #[test]
    fn four_votes_without_a_majority_are_not_enough() {
        let mut vote = ExternalAddressVote::new();
        // Three networks report three unrelated addresses, then ours and a fake one alternate.
        for a in 1..=3u8 {
            vote.record(v4(100, a, 0, 1), v4(a, 9, 0, 1), secs(0));
        }
        for a in 1..=4u8 {
            assert_eq!(vote.record(OURS.into(), v4(a, 0, 0, 1), secs(0)), None);
            assert_eq!(vote.record(FAKE.into(), v4(a + 100, 0, 0, 1), secs(0)), None);
        }
        // 4 of 11 each: enough votes, no majority.
        assert_eq!(vote.current(), None);
        // More votes for ours: adopted exactly when they become a strict majority (8 of 15).
        for a in 5..=8u8 {
            let changed = vote.record(OURS.into(), v4(a, 0, 0, 1), secs(0));
            assert_eq!(changed, (a == 8).then_some(OURS.into()), "after vote {a}");
        }
    }

    #[test]
    fn a_new_majority_moves_the_address_when_ours_changes() {
        let mut vote = ExternalAddressVote::new();
        for a in 1..=6u8 {
            vote.record(OURS.into(), v4(a, 0, 0, 1), secs(0));
        }
        // Our ISP gives us a new address; the same voters now report it.
        let mut changed = None;
        for a in 1..=6u8 {
            changed = changed.or(vote.record(FAKE.into(), v4(a, 0, 0, 1), secs(60)));
        }
        assert_eq!(changed, Some(FAKE.into()));
        assert_eq!(vote.current(), Some(FAKE.into()));
    }

    #[test]
    fn stale_votes_expire() {
        let mut vote = ExternalAddressVote::new();
        for a in 1..=3u8 {
            vote.record(OURS.into(), v4(a, 0, 0, 1), secs(0));
        }
        // The fourth vote comes after the first three have expired: only one live vote.
        let late = secs(0) + VOTE_LIFETIME;
        assert_eq!(vote.record(OURS.into(), v4(4, 0, 0, 1), late), None);
        assert_eq!(vote.voters(), 1);
        assert_eq!(vote.current(), None);
    }

    #[test]
    fn ipv6_voters_are_grouped_by_slash_32() {
        let ours: IpAddr = "2001:db8:aaaa::1".parse().unwrap();
        let mut vote = ExternalAddressVote::new();
        for i in 0..20u16 {
            let voter = IpAddr::V6(Ipv6Addr::new(0x2a01, 0x4f8, i, 0, 0, 0, 0, 1));
            assert_eq!(vote.record(ours, voter, secs(0)), None);
        }
        assert_eq!(vote.voters(), 1);
        let mut changed = None;
        for i in 1..=3u16 {
            let voter = IpAddr::V6(Ipv6Addr::new(0x2a02, i, 0, 0, 0, 0, 0, 1));
            changed = changed.or(vote.record(ours, voter, secs(0)));
        }
        assert_eq!(changed, Some(ours));
    }

    #[test]
    fn mismatched_families_and_impossible_addresses_are_ignored() {
        let mut vote = ExternalAddressVote::new();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        for a in 1..=10u8 {
            assert_eq!(vote.record(v6, v4(a, 0, 0, 1), secs(0)), None);
            assert_eq!(vote.record(Ipv4Addr::UNSPECIFIED.into(), v4(a, 0, 0, 1), secs(0)), None);
            assert_eq!(vote.record(Ipv4Addr::BROADCAST.into(), v4(a, 0, 0, 1), secs(0)), None);
            assert_eq!(vote.record(v4(224, 0, 0, 1), v4(a, 0, 0, 1), secs(0)), None);
        }
        assert_eq!(vote.voters(), 0);
        // An IPv4-mapped report from an IPv4-mapped voter counts as IPv4.
        let mapped = IpAddr::V6(Ipv4Addr::from(OURS).to_ipv6_mapped());
        for a in 1..=4u8 {
            vote.record(mapped, IpAddr::V6(Ipv4Addr::new(a, 0, 0, 1).to_ipv6_mapped()), secs(0));
        }
        assert_eq!(vote.current(), Some(OURS.into()));
    }

    #[test]
    fn a_flood_of_random_votes_stays_within_the_caps_and_moves_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut vote = ExternalAddressVote::new();
        for a in 1..=8u8 {
            vote.record(OURS.into(), v4(a, 0, 0, 1), secs(0));
        }
        for i in 0..100_000u64 {
            let reported = IpAddr::V4(Ipv4Addr::from(rng.next_u32()));
            let voter = IpAddr::V4(Ipv4Addr::from(rng.next_u32()));
            vote.record(reported, voter, secs(i / 100));
            assert!(vote.voters() <= MAX_VOTERS);
        }
        // Random reports never agree, so no address reaches a majority and the old one stays.
        assert_eq!(vote.current(), Some(OURS.into()));
        assert!(core::mem::size_of::<ExternalAddressVote>() < 64 * 64);
    }

    #[test]
    fn the_least_recently_heard_voter_gives_up_its_place() {
        let mut vote = ExternalAddressVote::new();
        for i in 0..MAX_VOTERS as u64 {
            vote.record(FAKE.into(), v4(i as u8, 1, 0, 1), secs(i));
        }
        assert_eq!(vote.voters(), MAX_VOTERS);
        // The table is full; newcomers replace the oldest voters one by one.
        let mut changed = None;
        for i in 0..(MAX_VOTERS as u64 / 2 + 1) {
            changed = changed.or(vote.record(OURS.into(), v4(i as u8, 2, 0, 1), secs(100 + i)));
        }
        assert_eq!(vote.voters(), MAX_VOTERS);
        assert_eq!(changed, Some(OURS.into()), "33 of 64 is a majority");
    }
}
