//! One iterative lookup (`closest`, `populate`): candidates ordered by XOR distance to the
//! target, queried α at a time, finished when the k closest have all answered.
//!
//! Fixes against k-rpc (weakness W14): candidates that time out or fail lose their place among
//! the k closest instead of blocking it; bootstrap nodes are asked only through the same
//! concurrency budget; the lookup converges by rule (the k closest live candidates answered),
//! not by exhausting its table; and tokens are kept per responder.

use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::event::LookupNode;
use crate::query::{Query, Token};
use crate::transaction::same_endpoint;
use crate::{NodeId, NodeInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CandidateState {
    Fresh,
    InFlight,
    Replied,
    Failed,
}

#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// `None` for bootstrap nodes, whose id we learn from their reply.
    pub(crate) id: Option<NodeId>,
    pub(crate) addr: SocketAddr,
    pub(crate) state: CandidateState,
    pub(crate) token: Option<Token>,
}

#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) target: NodeId,
    pub(crate) query: Query,
    pub(crate) background: bool,
    /// `closest` reports each reply; `populate` only fills the routing table.
    pub(crate) report_replies: bool,
    /// Sorted by distance to `target`, nearest first; id-less (bootstrap) ones at the front.
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) in_flight: usize,
    pub(crate) replies: usize,
    pub(crate) queries_sent: usize,
    k: usize,
    alpha: usize,
    max_candidates: usize,
}

/// What the lookup wants next.
pub(crate) enum Step {
    /// Query this candidate (index into `candidates`); it is now in flight.
    Query(usize),
    /// Nothing to send now; answers are pending.
    Wait,
    /// The lookup is complete.
    Done,
}

impl Lookup {
    pub(crate) fn new(
        target: NodeId,
        query: Query,
        background: bool,
        report_replies: bool,
        k: usize,
        alpha: usize,
        max_candidates: usize,
    ) -> Lookup {
        Lookup {
            target,
            query,
            background,
            report_replies,
            candidates: Vec::new(),
            in_flight: 0,
            replies: 0,
            queries_sent: 0,
            k,
            alpha,
            max_candidates,
        }
    }

    fn position_of(&self, id: Option<&NodeId>, addr: &SocketAddr) -> Option<usize> {
        self.candidates.iter().position(|c| same_endpoint(&c.addr, addr) || (id.is_some() && c.id.as_ref() == id))
    }

    /// Adds a bootstrap node (no id): asked before any id-bearing candidate.
    pub(crate) fn add_seed_addr(&mut self, addr: SocketAddr) {
        if self.position_of(None, &addr).is_none() && self.candidates.len() < self.max_candidates {
            let at = self.candidates.iter().take_while(|c| c.id.is_none()).count();
            self.candidates.insert(at, Candidate { id: None, addr, state: CandidateState::Fresh, token: None });
        }
    }

    /// Adds a node learned from the routing table or from a reply's `nodes`. Duplicates (same
    /// id or same address) are ignored; when full, the farthest candidate that is not in
    /// flight makes room, or the new one is dropped if it is the farthest.
    pub(crate) fn add_node(&mut self, node: NodeInfo) {
        if self.position_of(Some(&node.id), &node.addr).is_some() {
            return;
        }
        let seeds = self.candidates.iter().take_while(|c| c.id.is_none()).count();
        let target = self.target;
        let at = seeds
            + self.candidates[seeds..]
                .partition_point(|c| c.id.as_ref().is_some_and(|id| target.cmp_distance(id, &node.id).is_lt()));
        if self.candidates.len() >= self.max_candidates {
            if at >= self.candidates.len() {
                return;
            }
            match self.candidates.iter().rposition(|c| c.state != CandidateState::InFlight && c.id.is_some()) {
                Some(far) if far >= at => {
                    self.candidates.remove(far);
                }
                _ => return,
            }
        }
        self.candidates
            .insert(at, Candidate { id: Some(node.id), addr: node.addr, state: CandidateState::Fresh, token: None });
    }

    /// The next action, given that `may_send` more queries can leave now.
    pub(crate) fn step(&mut self, may_send: bool) -> Step {
        // Bootstrap nodes first, within α.
        let mut window = 0;
        let mut all_replied = true;
        let mut pick = None;
        for (i, c) in self.candidates.iter().enumerate() {
            if c.id.is_none() {
                if c.state == CandidateState::Fresh && pick.is_none() {
                    pick = Some(i);
                }
                if matches!(c.state, CandidateState::Fresh | CandidateState::InFlight) {
                    all_replied = false;
                }
                continue;
            }
            if c.state == CandidateState::Failed {
                continue;
            }
            if window == self.k {
                break;
            }
            window += 1;
            match c.state {
                CandidateState::Fresh => {
                    all_replied = false;
                    if pick.is_none() {
                        pick = Some(i);
                    }
                }
                CandidateState::InFlight => all_replied = false,
                _ => {}
            }
        }
        if window == self.k && all_replied {
            return Step::Done;
        }
        match pick {
            Some(i) if may_send && self.in_flight < self.alpha => {
                self.candidates[i].state = CandidateState::InFlight;
                self.in_flight += 1;
                self.queries_sent += 1;
                Step::Query(i)
            }
            Some(_) => Step::Wait,
            None if self.in_flight > 0 => Step::Wait,
            None => Step::Done,
        }
    }

    /// Index of the in-flight candidate at `addr`.
    pub(crate) fn in_flight_at(&self, addr: &SocketAddr) -> Option<usize> {
        self.candidates.iter().position(|c| c.state == CandidateState::InFlight && same_endpoint(&c.addr, addr))
    }

    /// Records an answer from the candidate at `addr`.
    pub(crate) fn on_reply(&mut self, addr: &SocketAddr, id: Option<NodeId>, token: Option<Token>) {
        let Some(i) = self.in_flight_at(addr) else { return };
        self.in_flight -= 1;
        let mut c = self.candidates.remove(i);
        c.state = CandidateState::Replied;
        c.token = token;
        if id.is_some() {
            self.replies += 1;
        }
        if c.id.is_none() {
            // A bootstrap node told us who it is: it now has a place by distance, unless
            // another candidate already holds that id.
            match id {
                Some(id) if !self.candidates.iter().any(|o| o.id == Some(id)) => c.id = Some(id),
                _ => {
                    self.candidates.insert(0, c);
                    return;
                }
            }
        }
        let target = self.target;
        let seeds = self.candidates.iter().take_while(|o| o.id.is_none()).count();
        let at = match c.id {
            Some(cid) => {
                seeds
                    + self.candidates[seeds..]
                        .partition_point(|o| o.id.as_ref().is_some_and(|oid| target.cmp_distance(oid, &cid).is_lt()))
            }
            None => seeds,
        };
        self.candidates.insert(at, c);
    }

    /// Records a failure (timeout, error, wrong id, send failure) of the candidate at `addr`.
    pub(crate) fn on_failure(&mut self, addr: &SocketAddr) {
        if let Some(i) = self.in_flight_at(addr) {
            self.in_flight -= 1;
            self.candidates[i].state = CandidateState::Failed;
        }
    }

    /// The k closest responders, nearest first.
    pub(crate) fn closest_responders(&self) -> Vec<LookupNode> {
        self.candidates
            .iter()
            .filter(|c| c.state == CandidateState::Replied)
            .filter_map(|c| Some(LookupNode { node: NodeInfo::new(c.id?, c.addr), token: c.token.clone() }))
            .take(self.k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        let mut a = [0u8; 20];
        a[0] = b;
        NodeId::from_array(a)
    }

    fn node(b: u8) -> NodeInfo {
        NodeInfo::new(id(b), SocketAddr::from(([10, 0, 0, b], 1000 + u16::from(b))))
    }

    fn lookup(k: usize, alpha: usize, max: usize) -> Lookup {
        Lookup::new(id(0), Query::ping(), false, true, k, alpha, max)
    }

    #[test]
    fn candidates_stay_sorted_by_distance_and_unique() {
        let mut l = lookup(2, 2, 10);
        for b in [9, 3, 7, 3, 1] {
            l.add_node(node(b));
        }
        let ids: Vec<u8> = l.candidates.iter().map(|c| c.id.unwrap().as_bytes()[0]).collect();
        assert_eq!(ids, [1, 3, 7, 9]);
    }

    #[test]
    fn the_farthest_candidate_makes_room_when_full() {
        let mut l = lookup(2, 2, 3);
        for b in [1, 5, 9] {
            l.add_node(node(b));
        }
        l.add_node(node(12)); // farther than all: dropped
        l.add_node(node(2)); // evicts 9
        let ids: Vec<u8> = l.candidates.iter().map(|c| c.id.unwrap().as_bytes()[0]).collect();
        assert_eq!(ids, [1, 2, 5]);
    }

    #[test]
    fn queries_go_nearest_first_within_alpha_and_finish_when_k_closest_replied() {
        let mut l = lookup(2, 2, 10);
        for b in [4, 2, 8] {
            l.add_node(node(b));
        }
        let Step::Query(i) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[i].addr, node(2).addr);
        let Step::Query(j) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[j].addr, node(4).addr);
        assert!(matches!(l.step(true), Step::Wait), "alpha reached");
        l.on_failure(&node(2).addr);
        // 2 failed: 8 enters the window of the k=2 closest live candidates.
        let Step::Query(m) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[m].addr, node(8).addr);
        l.on_reply(&node(4).addr, Some(id(4)), None);
        l.add_node(node(1)); // learned from the reply: nearer than everything
        let Step::Query(n) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[n].addr, node(1).addr);
        l.on_reply(&node(1).addr, Some(id(1)), Token::new(b"tok"));
        // window = {1, 4}, both replied: done even though 8 is still in flight.
        assert!(matches!(l.step(true), Step::Done));
        let closest = l.closest_responders();
        assert_eq!(closest.len(), 2);
        assert_eq!(closest[0].node, node(1));
        assert_eq!(closest[0].token, Token::new(b"tok"));
        assert_eq!(l.replies, 2);
    }

    #[test]
    fn bootstrap_seeds_are_asked_first_and_placed_by_id_after_replying() {
        let mut l = lookup(1, 1, 10);
        let seed: SocketAddr = "10.9.9.9:6881".parse().unwrap();
        l.add_node(node(7));
        l.add_seed_addr(seed);
        let Step::Query(i) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[i].addr, seed);
        l.on_reply(&seed, Some(id(3)), None);
        assert_eq!(l.candidates[0].id, Some(id(3)));
        assert!(matches!(l.step(true), Step::Done), "k=1 and the closest (3) replied");
    }

    #[test]
    fn an_empty_lookup_is_done_at_once() {
        let mut l = lookup(8, 3, 10);
        assert!(matches!(l.step(true), Step::Done));
    }
}
