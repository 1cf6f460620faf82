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
