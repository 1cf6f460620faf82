//! Single queries and `query_all` between real drivers on 127.0.0.1.
#![allow(clippy::disallowed_methods)] // the tests spawn threads themselves

mod common;

use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::Duration;

use common::{LOCAL, black_hole, local, local_with, nodes, server};
use krpc_std::{Config, Dictionary, Error, Event, NodeInfo, Peer, Query, QueryError};

fn echo(hello: i64) -> Query {
    Query::new("echo", Dictionary::new().with_int("hello", hello)).unwrap()
}

fn hello(reply: &krpc_std::Reply) -> Option<i64> {
    reply.values()?.get(b"hello")?.as_int()
}

#[test]
fn ping_gets_the_peers_id_and_adds_it_to_the_routing_table() {
    let a = local().bind(LOCAL).unwrap();
    let b = local().bind(LOCAL).unwrap();
    let events = a.events().unwrap();
    let reply = a.query(b.local_addr(), Query::ping()).unwrap();
    assert_eq!(reply.id(), Some(b.id()));
    assert_eq!(reply.from(), b.local_addr());
    assert!(nodes(&a).unwrap().contains(&NodeInfo::new(b.id(), b.local_addr())));
    let added = events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(added, Event::NodeAdded(NodeInfo::new(b.id(), b.local_addr())));
}

#[test]
fn custom_query_is_answered_by_the_handler() {
    let server = server(local());
    let client = local().bind(LOCAL).unwrap();
    let reply = client.query(server.local_addr(), echo(42)).unwrap();
    assert_eq!(hello(&reply), Some(42));
    assert_eq!(reply.id(), Some(server.id()));
}

#[test]
fn queries_from_several_threads_share_one_handle() {
    let server = server(local());
    let client = local().bind(LOCAL).unwrap();
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let client = &client;
                let to = server.local_addr();
                s.spawn(move || client.query(to, echo(i)).map(|r| hello(&r)))
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.join().unwrap().unwrap(), Some(i as i64));
        }
    });
}

#[test]
fn remote_error_from_the_handler_is_query_error_remote() {
    let server = server(local());
    let client = local().bind(LOCAL).unwrap();
    let fail = Query::new("fail", Dictionary::new()).unwrap();
    match client.query(server.local_addr(), fail) {
        Err(Error::Query(QueryError::Remote { code, message })) => {
            assert_eq!(code, 201);
            assert_eq!(message, b"oh no");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn incoming_queries_can_be_answered_from_another_thread() {
    let server = local().bind(LOCAL).unwrap();
    let incoming = server.incoming().unwrap();
    let answering = server.clone();
    let answerer = std::thread::spawn(move || {
        // Two queries: the first gets an answer, the second a KRPC error.
        let query = incoming.recv().unwrap();
        assert_eq!(query.method(), b"echo");
        let hello = query.args().get(b"hello").and_then(|v| v.as_int()).unwrap();
        answering.respond(query.reply_to(), Dictionary::new().with_int("hello", hello + 1), &[]).unwrap();
        let query = incoming.recv().unwrap();
        answering.error(query.reply_to(), 202, "server error").unwrap();
    });
    let client = local().bind(LOCAL).unwrap();
    assert_eq!(hello(&client.query(server.local_addr(), echo(1)).unwrap()), Some(2));
    let err = client.query(server.local_addr(), echo(1)).unwrap_err();
    assert!(matches!(err, Error::Query(QueryError::Remote { code: 202, .. })), "{err:?}");
    answerer.join().unwrap();
}

#[test]
fn query_all_counts_successes_and_calls_back_for_each() {
    let servers: Vec<_> = (0..3).map(|_| server(local())).collect();
    let client = local().bind(LOCAL).unwrap();
    let mut seen = Vec::new();
    let hits = client
        .query_all(servers.iter().map(|s| s.local_addr()), echo(7), |reply| {
            seen.push(reply.from());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(hits, 3);
    seen.sort();
    let mut expected: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[test]
fn query_all_stops_calling_back_after_break() {
    let servers: Vec<_> = (0..4).map(|_| server(local())).collect();
    let client = local().bind(LOCAL).unwrap();
    let mut calls = 0;
    let hits = client
        .query_all(servers.iter().map(|s| Peer::node(NodeInfo::new(s.id(), s.local_addr()))), echo(7), |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert!(hits >= 1);
}

#[test]
fn query_all_without_nodes_is_refused() {
    let client = local().bind(LOCAL).unwrap();
    let err = client.query_all(Vec::<Peer>::new(), echo(1), |_| ControlFlow::Continue(())).unwrap_err();
    assert!(matches!(err, Error::Query(QueryError::NoNodes)), "{err:?}");
}

#[test]
fn unreachable_address_family_fails_at_once_with_send_failed() {
    // An IPv4 socket cannot send to [::1]: the send error fails the query instead of a
    // timeout (set to a minute here, so a timeout would not pass unnoticed).
    let config = Config { timeout: Duration::from_secs(60), ..Config::default() };
    let client = local_with(config).bind(LOCAL).unwrap();
    let err = client.query("[::1]:6881".parse::<std::net::SocketAddr>().unwrap(), Query::ping()).unwrap_err();
    assert!(matches!(err, Error::Query(QueryError::SendFailed)), "{err:?}");
}

#[test]
fn oversized_datagram_fails_with_send_failed() {
    // 70 000 bytes do not fit a UDP datagram (EMSGSIZE).
    let config = Config { timeout: Duration::from_secs(60), max_datagram_len: 100_000, ..Config::default() };
    let client = local_with(config).bind(LOCAL).unwrap();
    let (_hole, addr) = black_hole();
    let big = Query::new("echo", Dictionary::new().with_bytes("blob", vec![0u8; 70_000])).unwrap();
    let err = client.query(addr, big).unwrap_err();
    assert!(matches!(err, Error::Query(QueryError::SendFailed)), "{err:?}");
}

#[test]
fn blocking_calls_from_the_handler_return_on_driver_thread() {
    let server = local().bind(LOCAL).unwrap();
    let (report, reported) = mpsc::channel();
    let inner = server.clone();
    server
        .on_query(move |_, responder| {
            report.send(matches!(nodes(&inner), Err(Error::OnDriverThread))).unwrap();
            responder.respond(Dictionary::new(), &[]).unwrap();
        })
        .unwrap();
    let client = local().bind(LOCAL).unwrap();
    client.query(server.local_addr(), echo(1)).unwrap();
    assert!(reported.recv().unwrap());
    // The handler holds a handle, so only an explicit shutdown stops this driver.
    server.shutdown();
}
