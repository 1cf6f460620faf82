//! Helpers shared by the integration tests: nodes on 127.0.0.1 and a query server.
#![allow(dead_code)] // each test binary uses a different part

use krpc_tokio::wire::Dictionary;
use krpc_tokio::{Config, Query, Request, Rpc, Subscription};

/// A node that knows no one.
pub(crate) fn isolated() -> Config {
    Config { bootstrap: vec![], ..Config::default() }
}

/// A node bootstrapping from `router`.
pub(crate) fn joining(router: &Rpc) -> Config {
    Config { bootstrap: vec![router.local_addr()], ..Config::default() }
}

/// A node on 127.0.0.1 that answers nothing but pings (the engine does those).
pub(crate) async fn silent(config: Config) -> Rpc {
    Rpc::bind("127.0.0.1:0", config).await.expect("bind on loopback")
}

/// A node on 127.0.0.1 that serves queries with [`serve`].
pub(crate) async fn serving(config: Config) -> Rpc {
    let rpc = silent(config).await;
    // Subscribe before anyone can query it.
    tokio::spawn(serve(rpc.clone(), rpc.incoming()));
    rpc
}

/// `echo` sends back `a.text`; `fail` answers with error 201; `find_node` and `get_peers`
/// answer with the nearest nodes; anything else gets 204.
pub(crate) async fn serve(rpc: Rpc, mut incoming: Subscription<Request>) {
    while let Some(request) = incoming.next().await {
        let args = request.args();
        let text = args.get(b"text").and_then(|v| v.as_bytes()).map(<[u8]>::to_vec);
        let target = args.target().or(args.info_hash());
        let method = request.method().to_vec();
        let _ = match (method.as_slice(), target) {
            (b"echo", _) => request.respond(Dictionary::new().with_bytes("text", text.unwrap_or_default()), &[]),
            (b"fail", _) => request.error(201, "nope"),
            (b"find_node" | b"get_peers", Some(target)) => {
                let nodes = rpc.closest_nodes(target, 8).await.unwrap_or_default();
                request.respond(Dictionary::new(), &nodes)
            }
            _ => request.error(204, "Method Unknown"),
        };
    }
}

/// `echo` with `text`.
pub(crate) fn echo(text: &str) -> Query {
    Query::new("echo", Dictionary::new().with_bytes("text", text)).expect("valid method")
}

/// The `text` of an echo reply.
pub(crate) fn text(reply: &krpc_tokio::Reply) -> Vec<u8> {
    reply.values().and_then(|r| r.get(b"text")).and_then(|v| v.as_bytes()).unwrap_or_default().to_vec()
}

/// A small network: a router that knows everyone and `n - 1` serving nodes, each joined
/// with `populate`.
pub(crate) async fn network(n: usize) -> Vec<Rpc> {
    let router = serving(isolated()).await;
    let mut nodes = vec![router.clone()];
    for _ in 1..n {
        let node = serving(joining(&router)).await;
        node.populate(node.id(), Query::find_node(&node.id())).await.expect("populate");
        // The router verifies queriers on its own; pinging makes sure it knows this one now.
        router.ping(node.local_addr()).await.expect("ping");
        nodes.push(node);
    }
    nodes
}
