//! Lookups (`closest`, `populate`) over a small local network, and cancellation.

mod common;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use common::{echo, isolated, joining, network, serving, silent};
use krpc_tokio::{LookupOutcome, NodeId, Query, Rpc};

/// Polls a future once (so that it sends its command) and leaves it pending.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) {
    poll_fn(|cx| {
        assert!(future.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
}

async fn operations(rpc: &Rpc) -> usize {
    rpc.inspect(|endpoint| endpoint.operations()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closest_finds_a_node_in_a_local_network() {
    let nodes = network(8).await;
    let seeker = serving(joining(&nodes[0])).await;
    let joined = seeker.populate(seeker.id(), Query::find_node(&seeker.id())).await.unwrap();
    assert_eq!(joined.outcome, LookupOutcome::Completed);

    let target = nodes[5].id();
    let mut lookup = seeker.closest(target, Query::find_node(&target)).await.unwrap();
    let mut visited = 0;
    while let Some(reply) = lookup.next().await {
        assert!(reply.id().is_some());
        visited += 1;
    }
    let summary = lookup.end().unwrap();
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert_eq!(summary.replies, visited);
    assert_eq!(summary.closest[0].node.id, target, "{summary:?}");
    assert_eq!(summary.closest[0].node.addr, nodes[5].local_addr());
    // Nearest first.
    let distances: Vec<_> = summary.closest.iter().map(|n| n.node.id.distance(&target)).collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn populate_fills_the_routing_table() {
    let nodes = network(4).await;
    let rpc = serving(joining(&nodes[0])).await;
    assert!(rpc.routing_table().await.unwrap().is_empty());
    let summary = rpc.populate(rpc.id(), Query::find_node(&rpc.id())).await.unwrap();
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert!(summary.replies >= 1);
    let table = rpc.routing_table().await.unwrap();
    assert!(table.contains(&nodes[0].id()));
    assert!(table.len() >= summary.closest.len());
}

#[tokio::test]
async fn dropping_a_closest_stream_stops_the_lookup() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await; // answers pings only: the lookup waits for it
    a.ping(b.local_addr()).await.unwrap();
    let target = NodeId::from_array([9; 20]);
    let lookup = a.closest(target, Query::find_node(&target)).await.unwrap();
    assert_eq!(operations(&a).await, 1);
    drop(lookup);
    assert_eq!(operations(&a).await, 0);

    let mut lookup = a.closest(target, Query::find_node(&target)).await.unwrap();
    lookup.stop();
    assert!(lookup.next().await.is_none());
    assert_eq!(lookup.end().unwrap().outcome, LookupOutcome::Stopped);
    assert_eq!(operations(&a).await, 0);
}

#[tokio::test]
async fn dropping_a_query_future_cancels_the_query() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await; // never answers `echo`
    {
        let query = pin!(a.query(b.local_addr(), echo("lost")));
        poll_once(query).await;
        assert_eq!(operations(&a).await, 1);
    }
    assert_eq!(operations(&a).await, 0);
    assert_eq!(a.inspect(|e| e.stats().queries_out).await.unwrap(), 1, "it was sent before it was dropped");
}

#[tokio::test]
async fn dropping_a_populate_future_stops_it() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await;
    a.ping(b.local_addr()).await.unwrap();
    let target = a.id();
    {
        let populate = pin!(a.populate(target, Query::find_node(&target)));
        poll_once(populate).await;
        assert_eq!(operations(&a).await, 1);
    }
    assert_eq!(operations(&a).await, 0);
}
