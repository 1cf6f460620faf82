//! Single queries and `query_all` between real sockets on 127.0.0.1; sockets and addresses.

mod common;

use std::io;
use std::net::SocketAddr;

use common::{echo, isolated, serving, silent, text};
use krpc_tokio::{Error, Peer, Query, QueryError, Rpc};

#[tokio::test]
async fn ping_returns_the_peer_id_and_fills_the_table() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await;
    let reply = a.ping(b.local_addr()).await.unwrap();
    assert_eq!(reply.id(), Some(b.id()));
    assert_eq!(reply.from(), b.local_addr());
    let table = a.routing_table().await.unwrap();
    assert!(table.contains(&b.id()));
    assert_eq!(a.closest_nodes(b.id(), 8).await.unwrap()[0].addr, b.local_addr());
}

#[tokio::test]
async fn custom_query_is_answered_through_the_incoming_stream() {
    let a = silent(isolated()).await;
    let b = serving(isolated()).await;
    let reply = a.query(b.local_addr(), echo("hello")).await.unwrap();
    assert_eq!(text(&reply), b"hello");
    assert_eq!(reply.id(), Some(b.id()), "r.id is filled in by the engine");
    // Clones share one driver.
    let a2 = a.clone();
    assert_eq!(text(&a2.query(b.local_addr(), echo("again")).await.unwrap()), b"again");
}

#[tokio::test]
async fn remote_error_surfaces_as_query_error_remote() {
    let a = silent(isolated()).await;
    let b = serving(isolated()).await;
    let fail = Query::new("fail", Default::default()).unwrap();
    let error = a.query(b.local_addr(), fail).await.unwrap_err();
    assert_eq!(error, Error::Query(QueryError::Remote { code: 201, message: b"nope".to_vec() }));
    let unknown = Query::new("unknown_method", Default::default()).unwrap();
    let error = a.query(b.local_addr(), unknown).await.unwrap_err();
    assert!(matches!(error, Error::Query(QueryError::Remote { code: 204, .. })), "{error:?}");
}

#[tokio::test]
async fn expected_id_mismatch_is_reported() {
    let a = silent(isolated()).await;
    let b = silent(isolated()).await;
    let peer = Peer { id: Some(a.id()), ..Peer::addr(b.local_addr()) };
    let error = a.query(peer, Query::ping()).await.unwrap_err();
    assert!(matches!(error, Error::Query(QueryError::UnexpectedNodeId { .. })), "{error:?}");
}

#[tokio::test]
async fn query_all_streams_every_reply_then_the_count() {
    let a = silent(isolated()).await;
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(serving(isolated()).await);
    }
    let peers = servers.iter().map(|s| Peer::addr(s.local_addr()));
    let mut all = a.query_all(peers, echo("all")).await.unwrap();
    let mut from = Vec::new();
    while let Some(reply) = all.next().await {
        assert_eq!(text(&reply), b"all");
        from.push(reply.from());
    }
    assert_eq!(all.end(), Some(&Ok(3)));
    from.sort();
    let mut expected: Vec<SocketAddr> = servers.iter().map(Rpc::local_addr).collect();
    expected.sort();
    assert_eq!(from, expected);

    // finish() skips the replies and gives the result.
    let peers = servers.iter().map(|s| Peer::addr(s.local_addr()));
    assert_eq!(a.query_all(peers, echo("x")).await.unwrap().finish().await, Ok(3));

    let none = a.query_all(Vec::new(), echo("none")).await.unwrap_err();
    assert_eq!(none, Error::Query(QueryError::NoNodes));
}

#[tokio::test]
async fn invalid_and_refused_commands_fail_at_once() {
    let a = silent(isolated()).await;
    let port_zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert_eq!(a.ping(port_zero).await.unwrap_err(), Error::Query(QueryError::InvalidAddress));
    let short = krpc_tokio::NodeId::from_bytes(&[1, 2, 3]).unwrap();
    let error = a.closest(short, Query::find_node(&short)).await.unwrap_err();
    assert_eq!(error, Error::Refused(krpc_tokio::CommandError::WrongIdLength));
}

#[tokio::test]
async fn send_error_fails_the_query_at_once() {
    // An IPv4 socket cannot send to an IPv6 address: the send fails and so does the query,
    // with SendFailed rather than a timeout (k-rpc weakness W8).
    let a = silent(isolated()).await;
    let v6: SocketAddr = "[::1]:6881".parse().unwrap();
    assert_eq!(a.ping(v6).await.unwrap_err(), Error::Query(QueryError::SendFailed));
    // The driver keeps working.
    let b = silent(isolated()).await;
    assert!(a.ping(b.local_addr()).await.is_ok());
}

#[tokio::test]
async fn second_bind_on_the_same_port_fails() {
    let a = silent(isolated()).await;
    let error = Rpc::bind(a.local_addr(), isolated()).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn invalid_config_is_an_invalid_input_error() {
    let config = krpc_tokio::Config { k: 0, ..isolated() };
    let error = Rpc::bind("127.0.0.1:0", config).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // the test is the application: it opens its own socket
async fn bring_your_own_std_socket() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let a = Rpc::builder(isolated()).std_socket(socket).await.unwrap();
    assert_eq!(a.local_addr(), addr);
    let b = serving(isolated()).await;
    assert_eq!(text(&a.query(b.local_addr(), echo("byo")).await.unwrap()), b"byo");
    assert_eq!(b.ping(addr).await.unwrap().id(), Some(a.id()));
}

#[tokio::test]
async fn bring_your_own_tokio_socket_with_a_fixed_seed() {
    let id_of = |seed| async move {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Rpc::builder(isolated()).seed(seed).socket(socket).await.unwrap().id()
    };
    assert_eq!(id_of([3; 32]).await, id_of([3; 32]).await, "same seed, same random id");
    assert_ne!(id_of([3; 32]).await, id_of([4; 32]).await);
}

#[tokio::test]
async fn bootstrap_host_names_are_resolved() {
    let b = serving(isolated()).await;
    let port = b.local_addr().port();
    let a = Rpc::builder(isolated())
        .bootstrap_hosts([format!("localhost:{port}"), format!("[::1]:{port}")])
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let bootstrap = a.inspect(|e| e.config().bootstrap.clone()).await.unwrap();
    assert!(bootstrap.contains(&SocketAddr::from(([127, 0, 0, 1], port))), "{bootstrap:?}");
    assert!(bootstrap.contains(&SocketAddr::new("::1".parse().unwrap(), port)), "{bootstrap:?}");
    // The resolved node seeds a lookup ([::1] fails at once from this IPv4 socket).
    let summary = a.populate(a.id(), Query::find_node(&a.id())).await.unwrap();
    assert_eq!(summary.closest[0].node.id, b.id());
}

#[tokio::test]
async fn unresolvable_bootstrap_host_fails_the_bind() {
    // No port: the resolver refuses it without asking any server.
    let error = Rpc::builder(isolated()).bootstrap_host("localhost").bind("127.0.0.1:0").await.unwrap_err();
    assert!(error.to_string().contains("resolving bootstrap host localhost"), "{error}");
}

#[tokio::test]
async fn handles_streams_and_futures_can_move_between_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let a = silent(isolated()).await;
    let b = serving(isolated()).await;
    send_sync(&a);
    send(&a.incoming());
    send(&a.events());
    let target = a.id();
    let populate = a.populate(target, Query::find_node(&target));
    send(&populate);
    drop(populate);
    let lookup = a.closest(target, Query::find_node(&target)).await.unwrap();
    send(&lookup);
    let spawned = tokio::spawn(async move { a.query(b.local_addr(), echo("spawned")).await });
    assert_eq!(text(&spawned.await.unwrap().unwrap()), b"spawned");
}

#[tokio::test]
async fn a_dual_stack_socket_sees_ipv4_peers_as_ipv4() {
    let Ok(a) = Rpc::bind("[::]:0", isolated()).await else { return }; // no IPv6 here
    let b = serving(isolated()).await;
    let reply = a.query(b.local_addr(), echo("v4")).await.unwrap();
    assert_eq!(reply.from(), b.local_addr(), "not [::ffff:127.0.0.1]");
    assert_eq!(text(&reply), b"v4");
    assert_eq!(a.routing_table().await.unwrap().get(&b.id()).unwrap().addr(), b.local_addr());
    // And the other way round.
    let a_v4 = SocketAddr::from(([127, 0, 0, 1], a.local_addr().port()));
    assert_eq!(b.ping(a_v4).await.unwrap().id(), Some(a.id()));
}
