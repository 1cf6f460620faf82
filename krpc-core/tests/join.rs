//! Joining a network with `bootstrap`: the lookup toward our own id, then the refresh of the
//! buckets it left thin.

mod support;

use std::time::Duration;

use krpc_core::{Config, Event};
use support::{Net, net_addr};

/// How full the non-own buckets of every node are, against what the network could fill them
/// with: the sum over buckets of `len` divided by the sum of `min(k, live nodes in range)`.
fn far_bucket_fill(net: &mut Net, n: usize, k: usize) -> f64 {
    let ids: Vec<_> = (0..n).map(|i| net.id(i)).collect();
    let (mut have, mut could) = (0usize, 0usize);
    for i in 0..n {
        let table = net.ep(i).routing_table().clone();
        let buckets: Vec<_> = table.buckets().collect();
        for b in &buckets[..buckets.len() - 1] {
            let live = ids.iter().enumerate().filter(|(j, id)| *j != i && b.covers(id)).count();
            have += b.len;
            could += live.min(k);
        }
    }
    have as f64 / could as f64
}

#[test]
fn after_joining_through_one_node_the_far_buckets_are_filled_too() {
    const N: usize = 120;
    let mut net = Net::new(N, 11, |i| Config {
        bootstrap: if i == 0 { vec![] } else { vec![net_addr(0)] },
        address_policy: krpc_core::AddressPolicy::Any,
        ..Config::dht()
    });
    // Nodes join one after another, each only through node 0, as a fresh network grows.
    for i in 1..N {
        let now = net.now;
        let op = net.ep(i).bootstrap(now).unwrap();
        net.run_until(Duration::from_secs(30), |net| {
            net.events.iter().any(|(_, j, e)| *j == i && matches!(e, Event::LookupDone { op: o, .. } if *o == op))
        });
    }
    // The refresh lookups run in the background; give them time, but less than the 15-minute
    // stale-bucket refresh, which would fill the tables anyway.
    net.run_for(Duration::from_secs(60));
    let fill = far_bucket_fill(&mut net, N, 8);
    assert!(fill >= 0.9, "far buckets {fill:.3} full");
}

/// A scripted network around one joiner whose id is all zeros: 8 nodes in each of its buckets
/// 0 (first bit 1), 2 (prefix 001) and 3 (prefix 0001), one at 0x08 (so that the table splits
/// down to bucket 4, prefix 0000, its own), and 32 in bucket 1 (prefix 01, first bytes
/// 0x40..0x7e). Every node answers `find_node` with the 8 nodes of this world nearest the
/// target.
struct World {
    nodes: Vec<krpc_core::NodeInfo>,
}

impl World {
    fn new() -> World {
        let node = |first: u8, i: u8| {
            let mut bytes = [0u8; 20];
            bytes[0] = first;
            bytes[1] = i;
            krpc_core::NodeInfo::new(krpc_core::NodeId::from_array(bytes), support::sa(&format!("10.0.{first}.{i}:1")))
        };
        let mut nodes: Vec<_> = (0..8).map(|i| node(0x80 + 16 * i, 1)).collect();
        nodes.extend((0..8).map(|i| node(0x20 + 2 * i, 1)));
        nodes.push(node(0x08, 1));
        nodes.extend((0..8).map(|i| node(0x10 + i, 1)));
        nodes.extend((0..32).map(|i| node(0x40 + 2 * i, 1)));
        World { nodes }
    }

    fn at(&self, addr: std::net::SocketAddr) -> Option<krpc_core::NodeInfo> {
        self.nodes.iter().copied().find(|n| n.addr == addr)
    }

    fn nearest(&self, target: &krpc_core::NodeId) -> Vec<krpc_core::NodeInfo> {
        let mut nodes = self.nodes.clone();
        nodes.sort_by(|a, b| target.cmp_distance(&a.id, &b.id));
        nodes.truncate(8);
        nodes
    }
}

/// The scripted node of [`World`], id all zeros, with k = 8 and any address accepted.
fn joiner_at_zero(config: Config) -> support::Script {
    support::Script::new(Config { k: 8, address_policy: krpc_core::AddressPolicy::Any, ..config })
}

/// The refresh of a bucket a join left thin ends once that bucket holds k nodes: no further
/// query toward its target leaves, although nearer nodes named in the answers were never
/// asked (a lookup run to convergence would ask them). It starts with the nodes the join heard
/// of in the bucket's range.
#[test]
fn a_thin_bucket_refresh_stops_once_the_bucket_is_full() {
    use krpc_core::NodeId;
    let world = World::new();
    let mut s = joiner_at_zero(support::config_with_id(NodeId::from_array([0; 20])));
    let in_bucket_1 = |id: &NodeId| id.as_bytes()[0] >> 6 == 0b01;
    // Known before the join: all but the nodes of bucket 1, which is empty and the one bucket
    // left thin (a refresh of another bucket would fill it too, and share the α slots).
    s.insert(&world.nodes[..25]);
    assert_eq!(s.ep.routing_table().bucket_count(), 5);
    s.ep.bootstrap(s.now).unwrap();
    // The join asks the 8 nodes nearest our id; the first names 4 of bucket 1, which the join
    // never asks (they are farther than the 8 that all answer).
    let heard: Vec<_> = world.nodes[25..29].to_vec();
    let mut pending = s.sent();
    let mut named = heard.clone();
    while !s.events().iter().any(|e| matches!(e, Event::LookupDone { .. })) {
        let q = pending.remove(0);
        assert_eq!(q.target(), Some(NodeId::from_array([0; 20])), "only the join runs");
        let id = world.at(q.to).expect("asks only nodes of the world").id;
        assert!(!in_bucket_1(&id), "the join asks the 8 nodes nearest our id, not {id:?}");
        s.reply_with(&q, Some(&id), &krpc_core::wire::Dictionary::new(), &std::mem::take(&mut named));
        pending.extend(s.sent());
    }
    assert_eq!(s.bucket_ids(1).len(), 0, "bucket 1 is thin after the join");
    // The refreshes run; answers come back one at a time, nearest the world's answer.
    pending.extend(s.sent());
    let toward_1 = |sent: &[support::Sent]| sent.iter().filter(|q| q.target().is_some_and(|t| in_bucket_1(&t))).count();
    // Queries toward bucket 1's target sent and not yet answered.
    let mut open = toward_1(&pending);
    let (mut after_full, mut first_asked, mut most_open) = (0, None, open);
    while !pending.is_empty() {
        let q = pending.remove(0);
        let Some(target) = q.target() else { continue };
        let node = world.at(q.to).expect("asks only nodes of the world");
        if in_bucket_1(&target) {
            open -= 1;
            first_asked.get_or_insert(node.id);
        }
        s.reply_with(&q, Some(&node.id), &krpc_core::wire::Dictionary::new(), &world.nearest(&target));
        let room = 8 - s.bucket_ids(1).len();
        let sent = s.sent();
        let new = toward_1(&sent);
        if room == 0 {
            after_full += new;
        }
        open += new;
        if new > 0 {
            // Sent now: no more in flight than the bucket has room for.
            most_open = most_open.max(open);
            assert!(open <= room, "{open} queries in flight toward bucket 1's target, room for {room}");
        }
        pending.extend(sent);
    }
    assert_eq!(s.bucket_ids(1).len(), 8, "bucket 1 was filled");
    assert_eq!(after_full, 0, "no query toward bucket 1's target once it held k nodes");
    assert!(most_open > 1, "the lookup did run queries in parallel");
    assert!(heard.iter().any(|n| Some(n.id) == first_asked), "the nodes heard of during the join are asked first");
}

/// BEP 5's refresh of a stale bucket that has room fills it the way a join does: spread over
/// the bucket's range, not bunched around one random id. A node that found too few nodes when
/// it joined (a young network, or an adaptive node that joined while most of the DHT was
/// read-only) fills most of its buckets this way. The world's bucket 1 holds 4 nodes in each
/// of its 8 sub-ranges (the 3 bits after its prefix); a lookup of one random id would end with
/// the 8 nodes nearest it, in 2 or 3 sub-ranges.
#[test]
fn a_stale_thin_buckets_refresh_spreads_it_over_its_range() {
    use krpc_core::NodeId;
    let world = World::new();
    let refresh =
        Config { bucket_refresh: Duration::from_secs(15 * 60), ..support::config_with_id(NodeId::from_array([0; 20])) };
    let mut s = joiner_at_zero(refresh);
    let in_bucket_1 = |id: &NodeId| id.as_bytes()[0] >> 6 == 0b01;
    let subrange = |id: &NodeId| (id.as_bytes()[0] >> 3) & 7;
    // Everything but bucket 1, and no join: bucket 1 stays empty until its refresh.
    s.insert(&world.nodes[..25]);
    assert_eq!(s.bucket_ids(1).len(), 0);
    let mut toward_1 = 0;
    // Past BEP 5's 15 minutes every bucket is stale; answer everything as it leaves.
    s.advance(Duration::from_secs(15 * 60));
    for _ in 0..120 {
        s.advance(Duration::from_secs(5));
        let mut pending = s.sent();
        while !pending.is_empty() {
            let q = pending.remove(0);
            if !q.is_query() {
                continue;
            }
            let node = world.at(q.to).expect("asks only nodes of the world");
            match q.target() {
                Some(target) => {
                    if in_bucket_1(&target) {
                        toward_1 += 1;
                        assert!(s.bucket_ids(1).len() < 8, "no query toward bucket 1 once it is full");
                    }
                    s.reply_with(&q, Some(&node.id), &krpc_core::wire::Dictionary::new(), &world.nearest(&target));
                }
                None => s.reply(&q, &node.id),
            }
            pending.extend(s.sent());
        }
    }
    let ids = s.bucket_ids(1);
    assert_eq!(ids.len(), 8, "bucket 1 was filled");
    assert!(ids.iter().all(in_bucket_1));
    let covered = ids.iter().fold(0u8, |m, id| m | 1 << subrange(id)).count_ones();
    assert!(covered >= 7, "bucket 1 covers {covered} of its 8 sub-ranges after {toward_1} queries");
}
