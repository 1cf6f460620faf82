//! Construction, errors at setup, shutdown and drop.
#![allow(clippy::disallowed_methods)] // the tests spawn threads and bind sockets themselves

mod common;

use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::thread;

use common::{LOCAL, bind, black_hole, local, local_with, nodes, server};
use krpc_std::{Config, Error, NodeId, Query};

#[test]
fn shutdown_returns_shut_down_to_every_waiting_call_on_other_threads() {
    let (hole, hole_addr) = black_hole();
    let config = Config { timeout: std::time::Duration::from_secs(60), ..Config::default() };
    let client = local_with(config).bootstrap_hosts([&hole_addr.to_string()]).bind(LOCAL).unwrap();
    let target = NodeId::from_array([7; 20]);
    let calls = vec![
        thread::spawn({
            let client = client.clone();
            move || client.query(hole_addr, Query::ping()).map(drop)
        }),
        thread::spawn({
            let client = client.clone();
            move || client.closest(target, Query::find_node(&target), |_| ControlFlow::Continue(())).map(drop)
        }),
        thread::spawn({
            let client = client.clone();
            move || client.populate(target, Query::find_node(&target)).map(drop)
        }),
    ];
    // All three have sent their query: each call is now waiting for an answer that never comes.
    let mut buf = [0; 1500];
    for _ in 0..calls.len() {
        hole.recv_from(&mut buf).unwrap();
    }
    client.shutdown();
    for call in calls {
        assert!(call.join().unwrap().unwrap_err().is_shut_down());
    }
    assert!(client.query(hole_addr, Query::ping()).unwrap_err().is_shut_down());
    assert!(nodes(&client).unwrap_err().is_shut_down());
    client.shutdown(); // again: nothing happens
    // The socket is closed: its port is free again.
    bind(client.local_addr()).unwrap();
}

#[test]
fn dropping_the_last_handle_stops_the_driver_and_closes_the_socket() {
    let krpc = local().bind(LOCAL).unwrap();
    let addr = krpc.local_addr();
    let other = krpc.clone();
    drop(krpc);
    assert!(nodes(&other).is_ok(), "one handle left: still running");
    drop(other);
    bind(addr).unwrap();
}

#[test]
fn bind_conflict_is_an_error() {
    let (_taken, addr) = black_hole();
    let err = local().bind(addr).unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == ErrorKind::AddrInUse), "{err:?}");
}

#[test]
fn driver_runs_on_an_existing_socket() {
    let (socket, addr) = black_hole();
    let krpc = local().socket(socket).unwrap();
    assert_eq!(krpc.local_addr(), addr);
    let peer = server(local());
    assert_eq!(krpc.query(peer.local_addr(), Query::ping()).unwrap().id(), Some(peer.id()));
    // And it answers queries on that socket.
    assert_eq!(peer.query(addr, Query::ping()).unwrap().id(), Some(krpc.id()));
}

#[test]
fn bootstrap_hosts_that_do_not_resolve_are_errors() {
    // No port: refused by the resolver without any lookup.
    let err = local().bootstrap_hosts(["localhost"]).bind(LOCAL).unwrap_err();
    assert!(matches!(&err, Error::Resolve { host, .. } if host == "localhost"), "{err:?}");
    // An IPv6 address cannot be reached from an IPv4 socket.
    let err = local().bootstrap_host("[::1]:6881").bind(LOCAL).unwrap_err();
    assert!(matches!(&err, Error::Resolve { source, .. } if source.kind() == ErrorKind::NotFound), "{err:?}");
}

#[test]
fn invalid_configuration_is_an_error() {
    let err = local_with(Config { k: 0, ..Config::default() }).bind(LOCAL).unwrap_err();
    assert!(matches!(err, Error::Config(krpc_std::core::ConfigError::K)), "{err:?}");
}

#[test]
fn handles_are_cloneable_and_shareable_across_threads() {
    fn assert_handle<T: Clone + Send + Sync + 'static>() {}
    assert_handle::<krpc_std::Krpc>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
}

#[test]
fn a_fixed_seed_gives_the_same_node_id() {
    let seed = [9; 32];
    let a = local().seed(seed).bind(LOCAL).unwrap();
    let b = local().seed(seed).bind(LOCAL).unwrap();
    let c = local().bind(LOCAL).unwrap();
    assert_eq!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
}
