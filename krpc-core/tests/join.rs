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

/// A scripted network around one joiner whose id is all zeros: a bootstrap node far away
/// (first byte 0xff), one node at 0x08 and 8 at 0x10..0x17 (so that the joiner's table
/// splits down to a bucket 3 of prefix 0001 and bucket 1, prefix 01, is not its own), and 32
/// in its bucket 1 (first bytes 0x40..0x7e). Every node answers `find_node` with the 8 nodes of
/// this world nearest the target.
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
        let mut nodes = vec![node(0xff, 1), node(0x08, 1)];
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

/// The refresh of a bucket a join left thin ends once that bucket holds k nodes: no further
/// query toward its target leaves, although nearer nodes named in the answers were never
/// asked (a lookup run to convergence would ask them). It starts with the nodes the join heard
/// of in the bucket's range.
#[test]
fn a_thin_bucket_refresh_stops_once_the_bucket_is_full() {
    use krpc_core::NodeId;
    let world = World::new();
    let mut s = support::Script::new(Config {
        k: 8,
        address_policy: krpc_core::AddressPolicy::Any,
        ..support::config_with_id(NodeId::from_array([0; 20]))
    });
    let in_bucket_1 = |id: &NodeId| id.as_bytes()[0] >> 6 == 0b01;
    // Known before the join: the far node and the 9 nearest our id, which split the table
    // down to bucket 4 (prefix 0000); buckets 1 and 2 are empty.
    s.insert(&world.nodes[..10]);
    assert_eq!(s.ep.routing_table().bucket_count(), 5);
    s.ep.bootstrap(s.now).unwrap();
    // The join asks the 8 nodes nearest our id; the first names 4 of bucket 1, which the join
    // never asks (they are farther than the 8 that all answer).
    let heard: Vec<_> = world.nodes[10..14].to_vec();
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
    let (mut asked_in_1, mut after_full, mut first_asked) = (0, 0, None);
    while !pending.is_empty() {
        let q = pending.remove(0);
        let Some(target) = q.target() else { continue };
        let Some(node) = world.at(q.to) else { continue };
        if in_bucket_1(&target) {
            asked_in_1 += 1;
            first_asked.get_or_insert(node.id);
        }
        s.reply_with(&q, Some(&node.id), &krpc_core::wire::Dictionary::new(), &world.nearest(&target));
        let full = s.bucket_ids(1).len() >= 8;
        for sent in s.sent() {
            if full && sent.target().is_some_and(|t| in_bucket_1(&t)) {
                after_full += 1;
            }
            pending.push(sent);
        }
    }
    assert_eq!(s.bucket_ids(1).len(), 8, "bucket 1 was filled");
    assert_eq!(after_full, 0, "no query toward bucket 1's target once it held k nodes");
    assert!(asked_in_1 <= 8 + 4, "{asked_in_1} queries: the k that filled it and at most α in flight");
    assert!(heard.iter().any(|n| Some(n.id) == first_asked), "the nodes heard of during the join are asked first");
}
