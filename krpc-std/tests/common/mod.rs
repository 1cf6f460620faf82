//! Helpers shared by the driver's tests: local nodes on 127.0.0.1 and a query handler.
#![allow(dead_code, clippy::disallowed_methods)] // not every test uses every helper; tests own sockets

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use krpc_std::{Builder, Config, Dictionary, Error, IncomingQuery, Krpc, NodeInfo, Responder};

/// Where the test nodes bind: 127.0.0.1, a free port.
pub(crate) const LOCAL: &str = "127.0.0.1:0";

/// A builder with the default configuration and no bootstrap nodes.
pub(crate) fn local() -> Builder {
    local_with(Config::default())
}

/// A builder with this configuration.
pub(crate) fn local_with(config: Config) -> Builder {
    Builder::new(config)
}

/// A socket on 127.0.0.1 that never answers: queries to it stay outstanding.
pub(crate) fn black_hole() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Binds a plain socket (to show a port is free again, or to hold one).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr)
}

/// What the test nodes answer: `echo` returns its arguments, `fail` a KRPC error, `find_node`
/// and `get_peers` the closest nodes known, anything else 204.
pub(crate) fn serve(query: IncomingQuery, responder: Responder<'_>) {
    let args = query.args();
    match query.method() {
        b"echo" => {
            let mut values = Dictionary::from_dict(args.dict());
            values.remove(b"id");
            responder.respond(values, &[]).unwrap();
        }
        b"fail" => responder.error(201, "oh no").unwrap(),
        b"find_node" | b"get_peers" => {
            let target = args.target().or(args.info_hash()).unwrap();
            let nodes = responder.endpoint().routing_table().closest(&target, 8);
            responder.respond(Dictionary::new(), &nodes).unwrap();
        }
        _ => responder.error(204, "Method Unknown").unwrap(),
    }
}

/// A node answering with [`serve`].
pub(crate) fn server(builder: Builder) -> Krpc {
    let node = builder.bind(LOCAL).unwrap();
    node.on_query(serve).unwrap();
    node
}

/// `n` serving nodes: the first alone, each other bootstrapped from it.
pub(crate) fn network(n: usize) -> Vec<Krpc> {
    let first = server(local());
    let addr = first.local_addr().to_string();
    let mut nodes = vec![first];
    for _ in 1..n {
        let node = server(local().bootstrap_hosts([&addr]));
        node.bootstrap().unwrap();
        nodes.push(node);
    }
    nodes
}

/// The routing table's nodes, as `NodeInfo`s.
pub(crate) fn nodes(krpc: &Krpc) -> Result<Vec<NodeInfo>, Error> {
    Ok(krpc.routing_table()?.iter().map(|contact| NodeInfo::new(*contact.id(), contact.addr())).collect())
}
