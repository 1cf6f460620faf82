//! Timers and table upkeep: query timeouts, bucket refresh, the ping/swap protocol.

use alloc::vec::Vec;

use super::{Endpoint, InternalPing, MAINTENANCE_INTERVAL, Op, SwapCheck, is_v6};
use crate::event::Event;
use crate::query::Query;
use crate::routing::{NodeState, SwapOutcome};
use crate::transaction::{Purpose, Tx};
use crate::{Instant, NodeInfo, QueryError};

/// At most this many ping/swap checks run at once (one per bucket anyway).
const MAX_SWAP_CHECKS: usize = 32;

/// Contacts offered in a [`Event::PingSwap`] (k-rpc offered 16, weakness W12).
const PING_SWAP_OFFER: usize = 3;

impl Endpoint {
    /// Advances time: queries past their deadline fail with [`QueryError::Timeout`], stale
    /// buckets are refreshed (BEP 5: "Buckets that have not been changed in 15 minutes
    /// should be refreshed"), and an empty routing table is re-bootstrapped.
    ///
    /// Call this when the instant returned by `poll_timeout` has passed, with the current
    /// time (not the deadline).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.closed {
            return;
        }
        while let Some(tx) = self.txs.pop_expired(now) {
            self.stats.timeouts += 1;
            self.tx_failed(tx, QueryError::Timeout, now);
        }
        self.expire_soft_deadlines(now);
        self.dht_tick(now);
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE_INTERVAL;
            self.maintain(now);
        }
        self.dispatch();
    }

    /// Lookup queries past `lookup_soft_timeout` free their α slot (libtorrent's short
    /// timeout); they stay in flight until answered or timed out.
    fn expire_soft_deadlines(&mut self, now: Instant) {
        while let Some(&(deadline, r)) = self.soft_deadlines.front() {
            if deadline > now {
                break;
            }
            self.soft_deadlines.pop_front();
            let Some(tx) = self.txs.get(r) else { continue };
            let (addr, purpose) = (tx.addr, tx.purpose);
            if let Purpose::Lookup(op) = purpose {
                if let Some(Op::Lookup(lookup)) = self.ops.get_mut(&op) {
                    lookup.on_soft_timeout(&addr);
                }
            }
        }
    }

    fn maintain(&mut self, now: Instant) {
        if self.table.is_empty() && self.table6.is_empty() {
            if !self.config.bootstrap.is_empty() && self.lookup_order.is_empty() {
                let _ = self.bootstrap(now);
            }
            return;
        }
        // An empty table (a family this node does not use) has nothing to refresh.
        for v6 in [false, true] {
            let table = if v6 { &mut self.table6 } else { &mut self.table };
            if table.is_empty() {
                continue;
            }
            let stale: Vec<usize> = table.stale_buckets(now, self.config.bucket_refresh).take(2).collect();
            for bucket in stale {
                let table = if v6 { &mut self.table6 } else { &mut self.table };
                let target = table.random_id_in_bucket(bucket, &mut self.rng);
                table.mark_bucket_refreshed(bucket, now);
                let _ = self.start_lookup(now, target, Query::find_node(&target), true, false);
            }
        }
    }

    /// After a join: one background lookup per bucket with fewer than `k` nodes, in each
    /// family's table. Our own bucket (the last) is skipped: the lookup toward our id just
    /// filled it as well as it can be. Lookups beyond `max_lookups` are not started; the
    /// regular refresh of stale buckets catches up later.
    pub(crate) fn refresh_thin_buckets(&mut self, now: Instant) {
        for v6 in [false, true] {
            let table = if v6 { &self.table6 } else { &self.table };
            if table.is_empty() {
                continue;
            }
            let last = table.bucket_count() - 1;
            let thin: Vec<usize> = (0..last).filter(|&b| table.bucket_contacts(b).len() < self.config.k).collect();
            for bucket in thin {
                let table = if v6 { &mut self.table6 } else { &mut self.table };
                let target = table.random_id_in_bucket(bucket, &mut self.rng);
                table.mark_bucket_refreshed(bucket, now);
                if self.start_lookup(now, target, Query::find_node(&target), true, false).is_err() {
                    return;
                }
            }
        }
    }

    /// A full bucket refused a verified node.
    pub(crate) fn bucket_full(&mut self, bucket: usize, candidate: NodeInfo, now: Instant) {
        if !self.config.auto_ping_swap {
            let oldest = self.table_of(&candidate.addr).ping_candidates(bucket, PING_SWAP_OFFER, now).to_vec();
            self.push_event(Event::PingSwap { oldest, candidate });
            return;
        }
        let v6 = is_v6(&candidate.addr);
        if let Some(check) = self.swap_checks.iter_mut().find(|c| c.bucket == bucket && is_v6(&c.candidate.addr) == v6)
        {
            // One check per bucket; the newest candidate waits (bittorrent-dht keeps the
            // latest ping event too).
            check.candidate = candidate;
            return;
        }
        if self.swap_checks.len() >= MAX_SWAP_CHECKS {
            return;
        }
        self.swap_checks.push(SwapCheck { bucket, candidate, checking: None });
        self.next_check(self.swap_checks.len() - 1, now);
    }

    /// BEP 5: "If there are any questionable nodes in the bucket have not been seen in the
    /// last 15 minutes, the least recently seen node is pinged. [...] This continues until
    /// one fails to respond or all of the nodes in the bucket are known to be good."
    fn next_check(&mut self, index: usize, now: Instant) {
        let (bucket, family) = (self.swap_checks[index].bucket, self.swap_checks[index].candidate.addr);
        let table = self.table_of(&family);
        let policy = *table.policy();
        let pick = table
            .ping_candidates(bucket, crate::routing::MAX_K, now)
            .into_iter()
            .find(|n| table.get(&n.id).is_some_and(|c| c.state(now, &policy) != NodeState::Good));
        match pick {
            Some(node) => {
                self.swap_checks[index].checking = Some(node.id);
                self.queue_internal(InternalPing { addr: node.addr, expect: Some(node.id), purpose: Purpose::Check });
            }
            None => {
                // "If the bucket is full of good nodes, the new node is simply discarded."
                self.swap_checks.swap_remove(index);
            }
        }
    }

    pub(crate) fn check_result(&mut self, tx: &Tx, answered: bool, now: Instant) {
        let Some(index) = self.swap_checks.iter().position(|c| c.checking.is_some() && c.checking == tx.expect_id)
        else {
            return;
        };
        if answered {
            // It is good again (the reply refreshed it); look at the next questionable one.
            self.next_check(index, now);
            return;
        }
        let check = self.swap_checks[index].clone();
        let Some(dead) = check.checking else { return };
        let table = self.table_of(&check.candidate.addr);
        let failures = table.get(&dead).map(|c| c.failures);
        match failures {
            Some(f) if f < table.policy().max_failures => {
                // "A node that fails a ping should get one more try."
                self.queue_internal(InternalPing { addr: tx.addr, expect: Some(dead), purpose: Purpose::Check });
            }
            _ => {
                self.swap_checks.swap_remove(index);
                match self.table_of_mut(&check.candidate.addr).swap(&dead, check.candidate, now) {
                    SwapOutcome::Swapped { evicted } => {
                        self.push_event(Event::NodeRemoved(evicted.node));
                        self.push_event(Event::NodeAdded(check.candidate));
                    }
                    SwapOutcome::DeadNotFound => {
                        self.learn_verified(check.candidate, now);
                    }
                    SwapOutcome::DeadIsGood | SwapOutcome::Refused => {}
                }
            }
        }
    }
}
