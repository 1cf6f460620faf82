//! How a simulated node answers the queries the engine hands to the application.
//!
//! The engine answers `ping` itself and surfaces every other query as
//! [`Event::Query`](krpc_core::Event::Query). A DHT node answers `find_node` and `get_peers`
//! from its routing table; this module is that application, in one function, so that it can be
//! swapped for the node layer (`krpc_core::dht`) once that answers queries by itself: the
//! simulator only holds a [`Responder`].

use krpc_core::routing::NodeState;
use krpc_core::wire::Dictionary;
use krpc_core::{Endpoint, IncomingQuery, Instant, NodeId, NodeInfo};

/// What a node does with an incoming query it must answer itself; the last argument is how
/// many nodes an answer carries.
pub type Responder = fn(&mut Endpoint, &IncomingQuery, usize);

/// The write token a simulated node hands out: four bytes derived from the querier's address.
/// Nothing checks it (the simulation never announces); it only makes `get_peers` answers the
/// size they are on the real network.
pub fn token_for(q: &IncomingQuery) -> [u8; 4] {
    let addr = q.from();
    let mut h: u32 = 0x811c_9dc5;
    let port = addr.port().to_be_bytes();
    let ip = match addr.ip() {
        core::net::IpAddr::V4(v4) => v4.octets(),
        core::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    for b in ip.iter().chain(port.iter()) {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    h.to_be_bytes()
}

/// The default application: `find_node` and `get_peers` get the `count` closest contacts of the
/// responder's routing table to the target (and a token for `get_peers`, never values: nobody announces),
/// `ping` an empty answer (only reached when the engine's own ping answers are off), anything
/// else error 204. A full transmit queue refuses the answer; the querier then times out, as
/// it would if the datagram were lost.
pub fn answer_from_routing_table(ep: &mut Endpoint, q: &IncomingQuery, count: usize) {
    let k = count;
    let args = q.args();
    let _ = match q.method() {
        b"find_node" => match args.target() {
            Some(target) => {
                let nodes = ep.routing_table().closest(&target, k);
                ep.respond(q.reply_to(), Dictionary::new(), &nodes)
            }
            None => ep.error(q.reply_to(), 203, b"missing target"),
        },
        b"get_peers" => match args.info_hash() {
            Some(hash) => {
                let nodes = ep.routing_table().closest(&hash, k);
                let values = Dictionary::new().with_bytes("token", token_for(q));
                ep.respond(q.reply_to(), values, &nodes)
            }
            None => ep.error(q.reply_to(), 203, b"missing info_hash"),
        },
        b"ping" => ep.respond(q.reply_to(), Dictionary::new(), &[]),
        _ => ep.error(q.reply_to(), 204, b"Method Unknown"),
    };
}

/// The nodes a `get_peers` answer of `ep` carries: without the node layer, the `count` closest
/// contacts of its routing table (as [`answer_from_routing_table`]); with it, what the node
/// layer's own answer would carry: the `reply_nodes` closest contacts that are not bad. Nodes
/// that run the node layer hand `get_peers` to the simulator when targets have holders
/// (`Sim::answer_holder`); answering from the whole table instead would name contacts that
/// failed (NATed nodes, say) which the node layer leaves out, and lookups would ask them.
pub fn answer_nodes(ep: &Endpoint, target: &NodeId, count: usize, now: Instant) -> Vec<NodeInfo> {
    let table = ep.routing_table();
    match ep.config().dht.as_deref() {
        Some(dht) => {
            let policy = *table.policy();
            table.closest_filtered(target, dht.reply_nodes, |c| c.state(now, &policy) != NodeState::Bad).to_vec()
        }
        None => table.closest(target, count).to_vec(),
    }
}

/// A `get_peers` answer without values, with the nodes of [`answer_nodes`] and a token: what a
/// node that runs the node layer answers when it holds nothing for the target.
pub fn answer_get_peers(ep: &mut Endpoint, q: &IncomingQuery, count: usize, now: Instant) {
    let _ = match q.args().info_hash() {
        Some(hash) => {
            let nodes = answer_nodes(ep, &hash, count, now);
            let values = Dictionary::new().with_bytes("token", token_for(q));
            ep.respond(q.reply_to(), values, &nodes)
        }
        None => ep.error(q.reply_to(), 203, b"missing info_hash"),
    };
}
