//! Counters: everything the engine dropped or did, for observability.

/// Counters since the endpoint was created. Every datagram dropped is counted under a reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams_in: u64,
    /// Datagrams that did not decode (bad bencode, wrong types, limits).
    pub malformed: u64,
    /// Of those, queries answered with a 203 error.
    pub malformed_answered: u64,
    /// Datagrams from port 0 (never a valid sender).
    pub invalid_source: u64,
    /// Queries received.
    pub queries_in: u64,
    /// Queries dropped: read-only mode or closed.
    pub queries_ignored: u64,
    /// Replies (responses and errors) that matched one of our queries.
    pub replies_in: u64,
    /// Replies whose `t` matched none of our queries.
    pub unsolicited_replies: u64,
    /// Replies whose `t` matched but came from another address (spoofing or NAT trouble).
    pub mismatched_replies: u64,
    /// Our queries that timed out.
    pub timeouts: u64,
    /// Queries sent.
    pub queries_out: u64,
    /// Responses and errors sent.
    pub replies_out: u64,
    /// Outbound datagrams dropped: queue full or larger than the caller's buffer.
    pub transmits_dropped: u64,
    /// Routing events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Nodes refused from `nodes` lists by the address policy.
    pub nodes_filtered: u64,
    /// Queries (and malformed datagrams we would have answered) dropped unanswered because
    /// their source is over [`RateLimit::queries`](crate::RateLimit::queries).
    pub rate_limited: u64,
    /// Times a source went over the limit and was blocked.
    pub sources_blocked: u64,
    /// Answers dropped because the reply byte budget was spent.
    pub replies_over_budget: u64,
    /// Verifications of unknown queriers not queued, or displaced from the queue by a
    /// querier from a less crowded subnet.
    pub verifications_dropped: u64,
    /// Verified nodes kept out of the routing table by the diversity rules
    /// ([`Config::restrict_routing_ips`](crate::Config::restrict_routing_ips)).
    pub diversity_refused: u64,
    /// Queries from addresses we had not sent to for at least
    /// [`CONTACT_MEMORY`](crate::reachability::CONTACT_MEMORY): proof that we are reachable
    /// (counted with the node layer only).
    pub unsolicited_queries: u64,
}
