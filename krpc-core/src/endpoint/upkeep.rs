//! Timers and table upkeep: query timeouts, soft timeouts of lookup queries, bucket refresh,
//! entering verified nodes into the tables, and the ping/swap protocol of full buckets.

use alloc::vec::Vec;
use core::time::Duration;

use super::reachability::Reachability;
use super::rpc::InternalPing;
use super::tables::is_v6;
use super::timer::Timer;
use super::{Endpoint, MAINTENANCE_INTERVAL};
use crate::event::Event;
use crate::query::Query;
use crate::routing::{InsertOutcome, NodeState, SwapOutcome};
use crate::transaction::{Purpose, Tx, same_endpoint};
use crate::{Instant, NodeId, NodeInfo, QueryError};

/// At most this many ping/swap checks run at once (one per bucket and family anyway).
const MAX_SWAP_CHECKS: usize = 32;

/// Contacts offered in a [`Event::PingSwap`] (k-rpc offered 16, weakness W12).
const PING_SWAP_OFFER: usize = 3;

/// At most this many claims on known ids are checked at once; more are ignored.
const MAX_ADDRESS_CHECKS: usize = 16;

/// Claims refused because the entry's own address answered are remembered this many at a
/// time (the oldest is forgotten first), so one claimant costs one check, not one per query.
const MAX_REFUSED_CLAIMS: usize = 32;

/// How long a refused claim is not verified again. A claimant whose rival later dies gets in
/// through table upkeep anyway (the entry fails its pings and is removed); this only stops
/// a claimant from buying a ping of the old address with every query it sends.
const REFUSED_CLAIM_MEMORY: Duration = Duration::from_secs(15 * 60);

/// Another address answered for an id the table holds: the entry's own address is pinged,
/// and the claimant takes its place only if that ping fails.
#[derive(Clone, Copy, Debug)]
struct AddressCheck {
    id: NodeId,
    old: core::net::SocketAddr,
    claimant: core::net::SocketAddr,
}

/// One claim: under check (`refused_at` is `None`) or refused at that time.
#[derive(Clone, Copy, Debug)]
struct Claim {
    check: AddressCheck,
    refused_at: Option<Instant>,
}

/// The claims under check, at most [`MAX_ADDRESS_CHECKS`], one per id, and the claims
/// recently refused, at most [`MAX_REFUSED_CLAIMS`]. One list holds both, so an idle engine
/// pays for one empty `Vec`.
#[derive(Debug, Default)]
pub(crate) struct AddressChecks {
    claims: Vec<Claim>,
}

impl AddressChecks {
    /// Heap bytes held, for memory accounting.
    pub(crate) fn memory_footprint(&self) -> usize {
        self.claims.capacity() * core::mem::size_of::<Claim>()
    }

    /// At the maintenance tick: an emptied list gives its room back.
    pub(crate) fn relax(&mut self) {
        if self.claims.is_empty() {
            self.claims = Vec::new();
        }
    }

    fn open_checks(&self) -> impl Iterator<Item = &AddressCheck> {
        self.claims.iter().filter(|c| c.refused_at.is_none()).map(|c| &c.check)
    }

    /// Files a claim; false when one is already checked for this id or the cap is reached.
    fn open(&mut self, check: AddressCheck) -> bool {
        if self.open_checks().count() >= MAX_ADDRESS_CHECKS || self.open_checks().any(|c| c.id == check.id) {
            return false;
        }
        self.claims.push(Claim { check, refused_at: None });
        true
    }

    /// Takes the check whose ping went to `old` for `id`.
    fn take(&mut self, id: Option<NodeId>, old: &core::net::SocketAddr) -> Option<AddressCheck> {
        let i = self
            .claims
            .iter()
            .position(|c| c.refused_at.is_none() && Some(c.check.id) == id && same_endpoint(&c.check.old, old))?;
        Some(self.claims.swap_remove(i).check)
    }

    /// Whether a query from `claimant` carrying `id` should not be verified: a check of
    /// that id is under way, or this claimant's claim on it was refused within
    /// [`REFUSED_CLAIM_MEMORY`]. Without this, two hosts that share an id (or an attacker
    /// repeating a claim) made every query cost a verification ping and a ping of the old
    /// address, and two such pairs pinging each other never stopped (fuzz finding 8).
    pub(crate) fn settled(&self, id: &NodeId, claimant: &core::net::SocketAddr, now: Instant) -> bool {
        self.claims.iter().any(|c| match c.refused_at {
            None => c.check.id == *id,
            Some(at) => {
                c.check.id == *id
                    && same_endpoint(&c.check.claimant, claimant)
                    && now.saturating_duration_since(at) < REFUSED_CLAIM_MEMORY
            }
        })
    }

    /// Remembers a refused claim, forgetting the oldest refusal when full.
    fn refuse(&mut self, check: AddressCheck, now: Instant) {
        let same = |c: &Claim| {
            c.refused_at.is_some() && c.check.id == check.id && same_endpoint(&c.check.claimant, &check.claimant)
        };
        if let Some(known) = self.claims.iter_mut().find(|c| same(c)) {
            known.refused_at = Some(now);
            return;
        }
        let refused = self.claims.iter().filter(|c| c.refused_at.is_some()).count();
        if refused >= MAX_REFUSED_CLAIMS {
            let oldest = (0..self.claims.len())
                .filter(|&i| self.claims[i].refused_at.is_some())
                .min_by_key(|&i| self.claims[i].refused_at);
            if let Some(oldest) = oldest {
                self.claims.swap_remove(oldest);
            }
        }
        self.claims.push(Claim { check, refused_at: Some(now) });
    }

    pub(crate) fn clear(&mut self) {
        self.claims.clear();
    }
}

/// A full bucket's pending ping/swap: `candidate` waits while `checking` is pinged.
#[derive(Clone, Debug)]
struct SwapCheck {
    bucket: usize,
    candidate: NodeInfo,
    checking: Option<NodeId>,
}

/// The ping/swap checks under way, at most [`MAX_SWAP_CHECKS`].
#[derive(Debug, Default)]
pub(crate) struct SwapChecks {
    checks: Vec<SwapCheck>,
}

impl SwapChecks {
    /// Heap bytes held, for memory accounting.
    pub(crate) fn memory_footprint(&self) -> usize {
        self.checks.capacity() * core::mem::size_of::<SwapCheck>()
    }

    /// At the maintenance tick: an emptied list gives its room back (a join fills many
    /// buckets at once, and each full bucket may open a check).
    pub(crate) fn relax(&mut self) {
        if self.checks.is_empty() {
            self.checks = Vec::new();
        }
    }

    /// Offers a candidate for a full bucket. One check per bucket and family: a newer
    /// candidate replaces the waiting one (bittorrent-dht keeps the latest ping event too).
    /// Returns the index of a new check to start, if one was opened.
    fn offer(&mut self, bucket: usize, candidate: NodeInfo) -> Option<usize> {
        let v6 = is_v6(&candidate.addr);
        if let Some(check) = self.checks.iter_mut().find(|c| c.bucket == bucket && is_v6(&c.candidate.addr) == v6) {
            check.candidate = candidate;
            return None;
        }
        if self.checks.len() >= MAX_SWAP_CHECKS {
            return None;
        }
        self.checks.push(SwapCheck { bucket, candidate, checking: None });
        Some(self.checks.len() - 1)
    }

    /// The check that pinged `id`.
    fn checking(&self, id: Option<NodeId>) -> Option<usize> {
        self.checks.iter().position(|c| c.checking.is_some() && c.checking == id)
    }

    pub(crate) fn clear(&mut self) {
        self.checks.clear();
    }
}

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
        self.rearm();
        if self.timers.is_due(Timer::QueryTimeout, now) {
            while let Some(tx) = self.rpc.pop_expired(now) {
                self.stats.timeouts += 1;
                self.tx_failed(tx, QueryError::Timeout, now);
            }
        }
        if self.timers.is_due(Timer::SoftTimeout, now) {
            // Lookup queries past `lookup_soft_timeout` free their α slot (libtorrent's short
            // timeout); they stay in flight until answered or timed out.
            while let Some((addr, op)) = self.rpc.pop_soft_expired(now) {
                if let Some(lookup) = self.ops.lookup_mut(op) {
                    lookup.on_soft_timeout(&addr);
                }
            }
        }
        // Peer expiry runs at every tick, token rotation when due: both are cheap no-ops
        // otherwise, and expiry frees memory while no announces arrive.
        if let Some(node) = self.node.as_deref_mut() {
            node.tick(now, &mut self.rng);
        }
        if self.timers.is_due(Timer::Maintenance, now) {
            self.timers.set(Timer::Maintenance, Some(now + MAINTENANCE_INTERVAL));
            self.maintain(now);
        }
        self.finish_input();
    }

    fn maintain(&mut self, now: Instant) {
        self.update_mode(now);
        self.probe(now);
        // An engine that nobody queries any more never reaches the limiter's own check, and
        // its emptied queues keep a few slots each until now.
        self.rpc.relax(now, &self.config);
        self.swap_checks.relax();
        self.address_checks.relax();
        if self.tables.is_empty() {
            if !self.config.bootstrap.is_empty() && self.ops.lookups() == 0 {
                let _ = self.bootstrap(now);
            }
            return;
        }
        // An empty table (a family this node does not use) has nothing to refresh.
        for v6 in [false, true] {
            if self.tables.family(v6).is_empty() {
                continue;
            }
            let stale: Vec<usize> =
                self.tables.family(v6).stale_buckets(now, self.config.bucket_refresh).take(2).collect();
            for bucket in stale {
                self.refresh_bucket(v6, bucket, now);
            }
        }
    }

    /// Adaptive read-only mode: read-only until reachable with a confirmed external address,
    /// read-only again once firewalled (see [`reachability`](super::reachability)).
    pub(super) fn update_mode(&mut self, now: Instant) {
        if !self.config.adaptive_read_only || self.config.read_only {
            return;
        }
        // The vote settled: our id is final (BEP 42 may change it when it does), and a full
        // node should know the address others see.
        let confirmed = self.external_address().iter().any(Option::is_some);
        let Some(reach) = self.reach.as_mut() else { return };
        let state = reach.state(now);
        if self.read_only && state == Reachability::Reachable && confirmed {
            self.read_only = false;
            reach.findable(now);
            self.push_event(Event::ModeChanged { read_only: false });
            // A join as a full node: the nodes near our id hear from us without `ro=1`, verify
            // us and add us.
            let id = self.id;
            let _ = self.start_lookup(now, id, Query::find_node(&id), true, false, super::ops::LookupKind::Plain);
        } else if !self.read_only && state == Reachability::Firewalled {
            self.read_only = true;
            reach.retry_later(now);
            self.push_event(Event::ModeChanged { read_only: true });
        }
    }

    /// The probe of a read-only node in adaptive mode: a lookup of our own id without `ro=1`,
    /// as a joining full node does. The nodes near our id that have room verify us and add
    /// us, and then hand us out to strangers.
    fn probe(&mut self, now: Instant) {
        if !self.read_only || !self.config.adaptive_read_only || self.config.read_only || self.tables.is_empty() {
            return;
        }
        if !self.reach.as_ref().is_some_and(|r| r.probe_due(now)) {
            return;
        }
        let id = self.id;
        if self.start_lookup(now, id, Query::find_node(&id), true, false, super::ops::LookupKind::Probe).is_ok() {
            if let Some(reach) = self.reach.as_mut() {
                reach.probe_started(now);
            }
        }
    }

    /// A background `find_node` lookup of a random id in `bucket`'s range.
    ///
    /// A bucket with room (other than our own, the last) is refreshed the way a join fills
    /// one ([`LookupKind::FillBucket`](super::ops::LookupKind::FillBucket)): spread over the
    /// range, and ended once it is full. A plain lookup of one random id would put the nodes
    /// it meets near that id in the bucket, bunched in one corner of its range, and Kademlia
    /// keeps them. A node whose join found too few nodes (a young network, or an adaptive node
    /// that joined while most of the DHT was still read-only) fills most of its buckets here.
    fn refresh_bucket(&mut self, v6: bool, bucket: usize, now: Instant) -> bool {
        let table = self.tables.family_mut(v6);
        let target = table.random_id_in_bucket(bucket, &mut self.rng);
        table.mark_bucket_refreshed(bucket, now);
        let kind = if fillable(table, bucket) {
            super::ops::LookupKind::FillBucket { v6 }
        } else {
            super::ops::LookupKind::Plain
        };
        self.start_lookup(now, target, Query::find_node(&target), true, false, kind).is_ok()
    }

    /// After a join: one background lookup per bucket with fewer than `k` nodes, in each
    /// family's table: BEP 5's refresh ("picking a random ID in the range of the bucket and
    /// performing a find_nodes search on it"), except that it ends once the bucket holds `k`
    /// ([`LookupKind::FillBucket`]), which is all it is for. Each is seeded with the one table
    /// node nearest its target and the nodes in that bucket's range that the join heard of but
    /// never asked (`heard`): those answer from inside the range at once, and each answer
    /// fills a slot. Our own bucket (the last) is skipped: the lookup toward our id just
    /// filled it as well as it can be. Lookups beyond `max_lookups` are not started; the
    /// regular refresh of stale buckets catches up later.
    ///
    /// [`LookupKind::FillBucket`]: super::ops::LookupKind::FillBucket
    pub(super) fn refresh_thin_buckets(&mut self, now: Instant, heard: &[NodeInfo]) {
        'families: for v6 in [false, true] {
            let table = self.tables.family(v6);
            if table.is_empty() {
                continue;
            }
            let thin: Vec<usize> = (0..table.bucket_count()).filter(|&b| fillable(table, b)).collect();
            for bucket in thin {
                let table = self.tables.family_mut(v6);
                let target = table.random_id_in_bucket(bucket, &mut self.rng);
                table.mark_bucket_refreshed(bucket, now);
                let query = Query::find_node(&target);
                // One node of the table, the nearest the target, besides those heard of in the
                // range: the table's other near nodes lie outside the range (or in it and
                // known already), so their answers would add nothing to the bucket; one
                // answer is enough to name the nodes of the range.
                let Ok(mut lookup) = self.new_lookup_seeded(now, target, query, true, false, 1) else {
                    break 'families;
                };
                let table = self.tables.family(v6);
                for node in heard {
                    if is_v6(&node.addr) == v6
                        && table.bucket_for(&node.id) == Some(bucket)
                        && !table.contains(&node.id)
                    {
                        lookup.add_node(*node);
                    }
                }
                self.ops.start_lookup(lookup, super::ops::LookupKind::FillBucket { v6 });
            }
        }
        self.finish_input();
    }

    /// Inserts a verified node and reports the change; runs the ping/swap protocol when its
    /// bucket is full. Returns whether the node is in the table afterwards.
    pub(super) fn learn_verified(&mut self, node: NodeInfo, now: Instant) -> bool {
        if self.node.as_deref().is_some_and(|n| !n.admits(&node)) {
            return false;
        }
        // An entry is never displaced by a claim from another address (BEP 5: "Good nodes
        // are never replaced"; libtorrent ignores such claims): answering a ping from a host
        // of one's own proves nothing about the id's owner. The entry's own address is asked;
        // the claim wins only if it stays silent (`address_check_result`).
        let existing = self.tables.of(&node.addr).get(&node.id).map(|c| c.addr());
        if let Some(old) = existing.filter(|old| !same_endpoint(old, &node.addr)) {
            let check = AddressCheck { id: node.id, old, claimant: node.addr };
            if self.address_checks.open(check) {
                self.rpc.queue_internal(InternalPing {
                    addr: old,
                    expect: Some(node.id),
                    purpose: Purpose::AddressCheck,
                });
            }
            return false;
        }
        if !self.diversity_admits(&node) {
            self.stats.diversity_refused += 1;
            return false;
        }
        match self.tables.of_mut(&node.addr).insert_verified(node, now) {
            InsertOutcome::Added => {
                self.push_event(Event::NodeAdded(node));
                true
            }
            InsertOutcome::Refreshed => true,
            InsertOutcome::AddressChanged { previous } => {
                self.push_event(Event::NodeUpdated { node, previous });
                true
            }
            InsertOutcome::Replaced { evicted } => {
                self.push_event(Event::NodeRemoved(evicted.node));
                self.push_event(Event::NodeAdded(node));
                true
            }
            InsertOutcome::BucketFull { bucket } => {
                self.bucket_full(bucket, node, now);
                false
            }
            InsertOutcome::IsLocal | InsertOutcome::WrongIdLength => false,
        }
    }

    /// The diversity rules for a node not yet in its table (libtorrent's
    /// `dht_restrict_routing_ips`): no other entry at its IP address in the table, and none
    /// from its IPv4 /24 or IPv6 /64 in its bucket. One host, or one subnet, cannot fill a
    /// bucket near a target with ids of its choosing.
    pub(super) fn diversity_admits(&self, node: &NodeInfo) -> bool {
        self.diversity_admits_replacing(node, None)
    }

    /// [`diversity_admits`](Self::diversity_admits) for a node about to take the slot of
    /// `replacing` (a ping/swap, or an entry moving to a new address): that entry does not
    /// count against it. Replacements happen a ping timeout or more after the candidate was
    /// first admitted, and the table may have changed since (another node of its IP or /24
    /// entered), so they are checked again at that moment.
    pub(super) fn diversity_admits_replacing(&self, node: &NodeInfo, replacing: Option<&NodeId>) -> bool {
        if !self.config.restrict_routing_ips {
            return true;
        }
        let ip = crate::wire::canonical_ip(node.addr.ip());
        if crate::address::is_local(ip) && !self.config.restrict_local_ips {
            return true;
        }
        let table = self.tables.of(&node.addr);
        if table.get(&node.id).is_some() {
            // Already in: a refresh, or an address claim handled before this.
            return true;
        }
        let subnet = |addr: &core::net::SocketAddr| match crate::wire::canonical_ip(addr.ip()) {
            core::net::IpAddr::V4(v4) => u128::from(u32::from(v4) >> 8),
            core::net::IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
        };
        // The bucket a node ends up in once the table has split as far as it will: its
        // shared prefix with our id (only our own bucket splits). Comparing on that, not on
        // today's bucket, keeps one subnet out of a bucket that has yet to split off.
        let last = self.config.id_len * 8 - 1;
        let depth = |id: &NodeId| self.id.common_prefix_len(id).min(last);
        let (own_subnet, own_depth) = (subnet(&node.addr), depth(&node.id));
        !table.iter().filter(|c| Some(c.id()) != replacing).any(|c| {
            crate::wire::canonical_ip(c.addr().ip()) == ip
                || (subnet(&c.addr()) == own_subnet && depth(&c.node.id) == own_depth)
        })
    }

    /// A full bucket refused a verified node.
    fn bucket_full(&mut self, bucket: usize, candidate: NodeInfo, now: Instant) {
        if !self.config.auto_ping_swap {
            let oldest = self.tables.of(&candidate.addr).ping_candidates(bucket, PING_SWAP_OFFER, now).to_vec();
            self.push_event(Event::PingSwap { oldest, candidate });
            return;
        }
        if let Some(index) = self.swap_checks.offer(bucket, candidate) {
            self.next_check(index, now);
        }
    }

    /// BEP 5: "If there are any questionable nodes in the bucket have not been seen in the
    /// last 15 minutes, the least recently seen node is pinged. [...] This continues until
    /// one fails to respond or all of the nodes in the bucket are known to be good."
    fn next_check(&mut self, index: usize, now: Instant) {
        let check = &self.swap_checks.checks[index];
        let (bucket, family) = (check.bucket, check.candidate.addr);
        let table = self.tables.of(&family);
        let policy = *table.policy();
        let pick = table
            .ping_candidates(bucket, crate::routing::MAX_K, now)
            .into_iter()
            .find(|n| table.get(&n.id).is_some_and(|c| c.state(now, &policy) != NodeState::Good));
        match pick {
            Some(node) => {
                self.swap_checks.checks[index].checking = Some(node.id);
                self.rpc.queue_internal(InternalPing {
                    addr: node.addr,
                    expect: Some(node.id),
                    purpose: Purpose::Check,
                });
            }
            None => {
                // "If the bucket is full of good nodes, the new node is simply discarded."
                self.swap_checks.checks.swap_remove(index);
            }
        }
    }

    /// The ping to an entry whose id another address claimed was answered (by that id), or
    /// not. Only silence, or another id answering, hands the entry to the claimant.
    pub(super) fn address_check_result(&mut self, tx: &Tx, answered: bool, now: Instant) {
        let Some(check) = self.address_checks.take(tx.expect_id, &tx.addr) else { return };
        if answered {
            self.address_checks.refuse(check, now);
            return;
        }
        let table = self.tables.of_mut(&check.old);
        if table.get(&check.id).is_some_and(|c| same_endpoint(&c.addr(), &check.old)) {
            table.remove(&check.id);
        }
        let node = NodeInfo::new(check.id, check.claimant);
        if self.tables.of(&check.claimant).get(&check.id).is_some() {
            return;
        }
        if !self.diversity_admits(&node) {
            // The old entry is gone (its address stayed silent), and the claimant's IP or
            // subnet already has its entry: the id leaves the table.
            self.stats.diversity_refused += 1;
            self.push_event(Event::NodeRemoved(NodeInfo::new(check.id, check.old)));
            return;
        }
        if self.learn_verified_quietly(node, now) {
            self.push_event(Event::NodeUpdated { node, previous: check.old });
        }
    }

    /// `learn_verified` for a node whose entry just moved: the change is reported by the
    /// caller as one update rather than a removal and an addition.
    fn learn_verified_quietly(&mut self, node: NodeInfo, now: Instant) -> bool {
        matches!(
            self.tables.of_mut(&node.addr).insert_verified(node, now),
            InsertOutcome::Added | InsertOutcome::Refreshed | InsertOutcome::Replaced { .. }
        )
    }

    /// The ping of a check was answered, or not.
    pub(super) fn check_result(&mut self, tx: &Tx, answered: bool, now: Instant) {
        let Some(index) = self.swap_checks.checking(tx.expect_id) else { return };
        if answered {
            // It is good again (the reply refreshed it); look at the next questionable one.
            self.next_check(index, now);
            return;
        }
        let check = self.swap_checks.checks[index].clone();
        let Some(dead) = check.checking else { return };
        let table = self.tables.of(&check.candidate.addr);
        let entry = table.get(&dead);
        if entry.is_some_and(|c| !same_endpoint(&c.addr(), &tx.addr)) {
            // The entry moved while we pinged its old address (a claim on its id won): the
            // silence there says nothing about it, and its failures are no longer counted
            // at that address, so "one more try" there would never end (fuzz finding 9).
            // Look at the bucket again instead.
            self.next_check(index, now);
            return;
        }
        match entry.map(|c| c.failures) {
            Some(f) if f < table.policy().max_failures => {
                // "A node that fails a ping should get one more try."
                self.rpc.queue_internal(InternalPing { addr: tx.addr, expect: Some(dead), purpose: Purpose::Check });
            }
            _ => {
                self.swap_checks.checks.swap_remove(index);
                if !self.diversity_admits_replacing(&check.candidate, Some(&dead)) {
                    self.stats.diversity_refused += 1;
                    return;
                }
                match self.tables.of_mut(&check.candidate.addr).swap(&dead, check.candidate, now) {
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

/// Whether a bucket fill ([`LookupKind::FillBucket`](super::ops::LookupKind::FillBucket)) can
/// serve `bucket`: it has room, and it is not our own (the last), which is a neighbourhood
/// rather than one range to spread over. Room means fewer than k, the table's own: a wide far
/// bucket's room beyond k (`Config::wide_buckets`) is left to the nodes that answer us.
fn fillable(table: &crate::routing::RoutingTable, bucket: usize) -> bool {
    bucket + 1 < table.bucket_count() && table.bucket_len(bucket) < table.k()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8, addr: &str) -> NodeInfo {
        NodeInfo::new(NodeId::from_array([b; 20]), addr.parse().unwrap())
    }

    #[test]
    fn one_check_per_bucket_and_family_the_newest_candidate_waits() {
        let mut checks = SwapChecks::default();
        assert_eq!(checks.offer(3, node(1, "10.0.0.1:1")), Some(0));
        assert_eq!(checks.offer(3, node(2, "10.0.0.2:1")), None, "same bucket, same family");
        assert_eq!(checks.checks[0].candidate.id, NodeId::from_array([2; 20]));
        assert_eq!(checks.offer(3, node(3, "[2001:db8::1]:1")), Some(1), "the IPv6 table's bucket 3");
        checks.checks[1].checking = Some(NodeId::from_array([9; 20]));
        assert_eq!(checks.checking(Some(NodeId::from_array([9; 20]))), Some(1));
        assert_eq!(checks.checking(None), None);
        for b in 4..100 {
            let _ = checks.offer(b, node(4, "10.0.0.4:1"));
        }
        assert_eq!(checks.checks.len(), MAX_SWAP_CHECKS, "capped");
    }
}
