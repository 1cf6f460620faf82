//! The widened far buckets (`Config::wide_buckets`): who may take the room beyond k. Nodes
//! that answer our own queries may; queriers are verified only into the first k places, so
//! the widening never makes us ping a node because it sent us a query.

mod support;

use krpc_core::{Config, NodeId, NodeInfo, Query};
use support::Script;

/// A node whose id starts with `first, i` (the rest zeros), at 10.0.`first`.`i`:1.
fn node(first: u8, i: u8) -> NodeInfo {
    let mut bytes = [0u8; 20];
    bytes[0] = first;
    bytes[1] = i;
    NodeInfo::new(NodeId::from_array(bytes), support::sa(&format!("10.0.{first}.{i}:1")))
}

/// Our id all zeros, k = 8 and `wide` wide buckets, the far half of the id space full (8
/// nodes) and split off as bucket 0, and one node near us in our own bucket (bucket 1).
fn with_a_full_far_half(wide: u8) -> Script {
    let our_id = NodeId::from_array([0; 20]);
    let mut s = Script::new(Config { k: 8, wide_buckets: wide, ..support::config_with_id(our_id) });
    let far: Vec<_> = (0..8).map(|i| node(0x80 + 16 * i, 1)).collect();
    s.insert(&far);
    s.insert(&[node(0x08, 1)]);
    assert_eq!(s.ep.routing_table().bucket_count(), 2);
    assert_eq!(s.bucket_ids(0).len(), 8);
    s
}

#[test]
fn a_node_that_answers_our_query_takes_a_wide_buckets_room_past_k() {
    let newcomer = node(0xc1, 2);
    let mut s = with_a_full_far_half(Config::default().wide_buckets);
    assert_eq!(s.ep.routing_table().capacity(0), 64, "k · 2^3 with the default 3 wide buckets");
    s.query(newcomer.addr, Query::ping());
    let q = s.one_sent();
    s.reply(&q, &newcomer.id);
    assert_eq!(s.bucket_ids(0).len(), 9);
    assert!(s.bucket_ids(0).contains(&newcomer.id));
    // Unwidened, the full bucket keeps its 8 and the newcomer stays out.
    let mut plain = with_a_full_far_half(0);
    plain.query(newcomer.addr, Query::ping());
    let q = plain.one_sent();
    plain.reply(&q, &newcomer.id);
    assert_eq!(plain.bucket_ids(0).len(), 8);
    assert!(!plain.bucket_ids(0).contains(&newcomer.id));
}

#[test]
fn a_querier_is_verified_only_into_a_buckets_first_k_places() {
    let mut s = with_a_full_far_half(Config::default().wide_buckets);
    // Bucket 0 holds k = 8 and has room for 56 more, but a querier is not pinged into it.
    let far = node(0xc1, 2);
    s.incoming_query(far.addr, b"v1", "x", Some(&far.id));
    assert!(s.sent().is_empty(), "no verification ping toward a bucket already holding k");
    assert_eq!(s.bucket_ids(0).len(), 8);
    // A querier whose bucket holds fewer than k is verified as before.
    let near = node(0x40, 3);
    s.incoming_query(near.addr, b"v2", "x", Some(&near.id));
    let ping = s.one_sent();
    assert_eq!((ping.to, ping.method()), (near.addr, b"ping".to_vec()));
    s.reply(&ping, &near.id);
    assert!(s.ep.routing_table().contains(&near.id));
}
