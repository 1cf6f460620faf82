//! Shutdown, dropping handles, subscriptions, and the ping/swap offer.

mod common;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use common::{echo, isolated, silent, text};
use krpc_tokio::wire::Dictionary;
use krpc_tokio::{Config, Error, Event, LookupOutcome, NodeId, NodeInfo, Peer, Query, QueryError, Rpc};

const SHUT_DOWN: Error = Error::Query(QueryError::ShutDown);

async fn poll_once<F: Future>(mut future: Pin<&mut F>) {
    poll_fn(|cx| {
        assert!(future.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_resolves_every_outstanding_future() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await; // answers pings only: everything else stays pending
    a.ping(b.local_addr()).await.unwrap();
    let mut incoming = a.incoming();
    let mut events = a.events();
    let target = NodeId::from_array([5; 20]);

    let mut query = pin!(a.query(b.local_addr(), echo("pending")));
    poll_once(query.as_mut()).await;
    let mut populate = pin!(a.populate(target, Query::find_node(&target)));
    poll_once(populate.as_mut()).await;
    let mut lookup = a.closest(target, Query::find_node(&target)).await.unwrap();
    let all = a.query_all([Peer::addr(b.local_addr())], echo("pending")).await.unwrap();
    assert_eq!(a.inspect(|e| e.operations()).await.unwrap(), 4);

    let clone = a.clone();
    clone.shutdown().await;

    assert_eq!(query.await.unwrap_err(), SHUT_DOWN);
    assert_eq!(populate.await.unwrap_err(), SHUT_DOWN);
    assert!(lookup.next().await.is_none());
    assert_eq!(lookup.end().unwrap().outcome, LookupOutcome::ShutDown);
    assert_eq!(all.finish().await, Err(QueryError::ShutDown));
    assert!(incoming.next().await.is_none());
    while events.next().await.is_some() {}

    // Every later call fails the same way, on every clone.
    assert_eq!(a.ping(b.local_addr()).await.unwrap_err(), SHUT_DOWN);
    assert_eq!(a.closest(target, Query::find_node(&target)).await.unwrap_err(), SHUT_DOWN);
    assert!(a.routing_table().await.unwrap_err().is_shut_down());
    assert!(a.incoming().next().await.is_none());
    a.shutdown().await; // a second shutdown returns at once
    // The socket is closed: its port is free again.
    Rpc::bind(a.local_addr(), isolated()).await.unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_ends_the_task() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await;
    let addr = a.local_addr();
    let mut events = a.events();
    let mut incoming = a.incoming();
    let target = NodeId::from_array([5; 20]);
    a.ping(b.local_addr()).await.unwrap();
    let mut lookup = a.closest(target, Query::find_node(&target)).await.unwrap();

    let clone = a.clone();
    drop(a);
    assert!(clone.ping(b.local_addr()).await.is_ok(), "a clone keeps the driver alive");
    drop(clone);

    // Streams and requests do not keep it alive: it closes, they end.
    assert!(lookup.next().await.is_none());
    assert_eq!(lookup.end().unwrap().outcome, LookupOutcome::ShutDown);
    assert!(incoming.next().await.is_none());
    while events.next().await.is_some() {}
    Rpc::bind(addr, isolated()).await.unwrap();
}

#[tokio::test]
async fn a_new_incoming_subscription_replaces_the_previous_one() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await;
    let mut first = a.incoming();
    let mut second = a.incoming();
    assert!(first.next().await.is_none());
    let serve = async {
        let request = second.next().await.unwrap();
        assert_eq!(request.method(), b"echo");
        assert_eq!(request.from(), b.local_addr());
        assert_eq!(request.sender_id(), Some(b.id()));
        request.respond(Dictionary::new().with_bytes("text", "second"), &[]).unwrap();
    };
    let (reply, ()) = tokio::join!(b.query(a.local_addr(), echo("x")), serve);
    assert_eq!(text(&reply.unwrap()), b"second");
}

#[tokio::test]
async fn ping_swap_is_offered_and_swap_resolves_it() {
    let id = |byte| NodeId::from_array([byte; 20]);
    let timeout = Duration::from_millis(100);
    // k = 1 and the far bucket not widened (`wide_buckets` 0), so one node fills it.
    let config = Config { id: Some(id(0)), k: 1, wide_buckets: 0, auto_ping_swap: false, timeout, ..isolated() };
    let a = silent(config).await;
    let mut events = a.events();
    let b = silent(Config { id: Some(id(0xff)), ..isolated() }).await;
    let c = silent(Config { id: Some(id(0xfe)), ..isolated() }).await;
    let (b_info, c_info) = (NodeInfo::new(b.id(), b.local_addr()), NodeInfo::new(c.id(), c.local_addr()));

    a.ping(b.local_addr()).await.unwrap();
    assert_eq!(events.next().await, Some(Event::NodeAdded(b_info)));
    // c belongs to b's bucket, which is full (k = 1): the application is asked.
    a.ping(c.local_addr()).await.unwrap();
    assert_eq!(events.next().await, Some(Event::PingSwap { oldest: vec![b_info], candidate: c_info }));

    // b answered a moment ago: it is good and stays.
    assert!(!a.swap(b.id(), c_info).await.unwrap());
    // b goes away and fails two pings: now it may be swapped out.
    b.shutdown().await;
    for _ in 0..2 {
        assert_eq!(a.query(b_info, Query::ping()).await.unwrap_err(), Error::Query(QueryError::Timeout));
    }
    assert!(a.swap(b.id(), c_info).await.unwrap());
    assert_eq!(events.next().await, Some(Event::NodeRemoved(b_info)));
    assert_eq!(events.next().await, Some(Event::NodeAdded(c_info)));

    assert!(a.remove_node(c.id()).await.unwrap());
    assert_eq!(events.next().await, Some(Event::NodeRemoved(c_info)));
    assert!(a.insert_node(c_info).await.unwrap());
    assert_eq!(events.next().await, Some(Event::NodeAdded(c_info)));
    assert_eq!(a.routing_table().await.unwrap().len(), 1);
}
