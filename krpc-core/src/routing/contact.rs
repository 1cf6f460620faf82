//! One routing-table entry and the BEP 5 node states.

use core::net::SocketAddr;
use core::time::Duration;

use crate::{Instant, NodeId, NodeInfo};

/// The thresholds that turn a [`Contact`]'s history into a [`NodeState`].
///
/// The defaults are the values BEP 5 suggests; see [`NodeStatePolicy::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStatePolicy {
    /// How long a reply (or a query after an earlier reply) keeps a node good. Default: 15
    /// minutes. BEP 5: "A good node is a node has responded to one of our queries within the
    /// last 15 minutes. A node is also good if it has ever responded to one of our queries and
    /// has sent us a query within the last 15 minutes. After 15 minutes of inactivity, a node
    /// becomes questionable."
    ///
    /// The table keeps times rounded down to [`TIME_RESOLUTION`](super::TIME_RESOLUTION)
    /// (about 4.29 s), so a node goes questionable up to that much before `fresh_for` has
    /// passed, and a `fresh_for` shorter than that may leave it questionable right after it
    /// answers.
    pub fresh_for: Duration,
    /// Consecutive timeouts after which a node is bad. Default: 2, because BEP 5 says "Nodes
    /// become bad when they fail to respond to multiple queries in a row" and "If a node in the
    /// bucket fails to respond to a ping, it is suggested to try once more before discarding
    /// the node". A value of 0 makes every node bad, so use at least 1. A
    /// [`RoutingTable`](super::RoutingTable) counts up to [`MAX_FAILURES`](super::MAX_FAILURES)
    /// and lowers a larger value to it.
    pub max_failures: u8,
}

impl NodeStatePolicy {
    /// BEP 5's values: good for 15 minutes, bad after 2 consecutive failures.
    pub const DEFAULT: NodeStatePolicy = NodeStatePolicy { fresh_for: Duration::from_secs(15 * 60), max_failures: 2 };
}

impl Default for NodeStatePolicy {
    fn default() -> Self {
        NodeStatePolicy::DEFAULT
    }
}

/// A node's standing in the routing table (BEP 5, "Routing Table").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// It answered us recently, or it answered us once and keeps querying us.
    Good,
    /// Nothing recent is known about it; BEP 5 pings such nodes before trusting or dropping them.
    Questionable,
    /// It failed to answer [`NodeStatePolicy::max_failures`] queries in a row; BEP 5 replaces
    /// such nodes first.
    Bad,
}

/// A node in the routing table with the history BEP 5's node states are computed from.
///
/// The table stores contacts packed (35 bytes for a BEP 5 id and an IPv4 address, see
/// `routing/bucket.rs`) and hands out this type as a copy, built on access. Its times come
/// back rounded down to [`TIME_RESOLUTION`](super::TIME_RESOLUTION): never later than
/// recorded, so a node is never taken as good for longer than BEP 5 allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The node's id and its verified address.
    pub node: NodeInfo,
    /// When we last heard from it (a reply or a query).
    pub last_seen: Instant,
    /// When it last answered one of our queries.
    pub last_reply: Option<Instant>,
    /// When it last sent us a query.
    pub last_query: Option<Instant>,
    /// Consecutive queries to it that timed out; a reply resets this to 0. A
    /// [`RoutingTable`](super::RoutingTable) counts up to [`MAX_FAILURES`](super::MAX_FAILURES).
    pub failures: u8,
}

impl Contact {
    /// A contact for a node that has just answered one of our queries.
    pub(super) fn verified(node: NodeInfo, now: Instant) -> Contact {
        Contact { node, last_seen: now, last_reply: Some(now), last_query: None, failures: 0 }
    }

    /// A contact restored from a saved table: questionable until it answers (it has never
    /// answered this run), so it is never mistaken for a good node.
    pub(super) fn restored(node: NodeInfo, now: Instant) -> Contact {
        Contact { node, last_seen: now, last_reply: None, last_query: None, failures: 0 }
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.node.id
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.node.addr
    }

    /// The node's BEP 5 state at `now`.
    ///
    /// Failures are checked first: a node that stopped answering is bad even if it answered a
    /// minute before, since a reply resets the count and so every counted failure came later.
    pub fn state(&self, now: Instant, policy: &NodeStatePolicy) -> NodeState {
        if self.failures >= policy.max_failures {
            return NodeState::Bad;
        }
        let fresh = |t: Instant| now.saturating_duration_since(t) < policy.fresh_for;
        match self.last_reply {
            Some(reply) if fresh(reply) || self.last_query.is_some_and(fresh) => NodeState::Good,
            _ => NodeState::Questionable,
        }
    }

    /// Records a reply: the node is alive at this (verified) address.
    pub(super) fn mark_reply(&mut self, addr: SocketAddr, now: Instant) {
        self.node.addr = addr;
        self.last_seen = now;
        self.last_reply = Some(now);
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(last_reply: Option<u64>, last_query: Option<u64>, failures: u8) -> Contact {
        let secs = |s: u64| Instant::ZERO + Duration::from_secs(s);
        let node = NodeInfo::new(NodeId::from_array([1; 20]), SocketAddr::from(([192, 0, 2, 1], 6881)));
        Contact {
            node,
            last_seen: secs(last_reply.unwrap_or(0).max(last_query.unwrap_or(0))),
            last_reply: last_reply.map(secs),
            last_query: last_query.map(secs),
            failures,
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    const P: NodeStatePolicy = NodeStatePolicy::DEFAULT;

    #[test]
    fn defaults_are_the_bep5_values() {
        assert_eq!(
            NodeStatePolicy::default(),
            NodeStatePolicy { fresh_for: Duration::from_secs(900), max_failures: 2 }
        );
    }

    #[test]
    fn node_that_replied_is_good_until_fifteen_minutes_have_passed() {
        let c = contact(Some(100), None, 0);
        assert_eq!(c.state(at(100), &P), NodeState::Good);
        assert_eq!(c.state(at(1000).saturating_sub(Duration::from_nanos(1)), &P), NodeState::Good);
        assert_eq!(c.state(at(1000), &P), NodeState::Questionable);
    }

    #[test]
    fn node_that_replied_once_stays_good_while_it_keeps_querying() {
        let c = contact(Some(0), Some(1200), 0);
        assert_eq!(c.state(at(1500), &P), NodeState::Good);
        assert_eq!(c.state(at(2100), &P), NodeState::Questionable);
    }

    #[test]
    fn queries_alone_never_make_a_node_good() {
        let c = contact(None, Some(100), 0);
        assert_eq!(c.state(at(100), &P), NodeState::Questionable);
    }

    #[test]
    fn failures_reaching_the_limit_make_a_node_bad_even_after_a_recent_reply() {
        assert_eq!(contact(Some(100), None, 1).state(at(100), &P), NodeState::Good);
        assert_eq!(contact(Some(100), None, 2).state(at(100), &P), NodeState::Bad);
        assert_eq!(contact(None, None, 2).state(at(100), &P), NodeState::Bad);
        let lenient = NodeStatePolicy { max_failures: 3, ..P };
        assert_eq!(contact(Some(100), None, 2).state(at(100), &lenient), NodeState::Good);
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_make_a_node_stale() {
        let c = contact(Some(1000), None, 0);
        assert_eq!(c.state(at(10), &P), NodeState::Good);
    }
}
