//! Saved state (issue 14): the id and both tables' nodes survive a restart; restored nodes are
//! questionable until they answer (pkarr#304: never restore them as good); a broken or foreign
//! file is refused with a clear error, never a panic.

mod support;

use std::net::SocketAddr;

use krpc_core::routing::NodeState;
use krpc_core::{Config, Endpoint, Instant, NodeId, NodeInfo, SavedState, StateError};
use support::{Script, id_with, sa};

fn dht() -> Config {
    Config { bootstrap: vec![], ..Config::dht() }
}

fn node(i: u8) -> NodeInfo {
    NodeInfo::new(id_with(&[i.wrapping_mul(37), i]), SocketAddr::from(([198, 51, i, 7], 6881)))
}

#[test]
fn a_saved_state_round_trips_with_both_families_best_first() {
    let mut s = Script::new(dht());
    let v6 = NodeInfo::new(id_with(&[0x55, 1]), sa("[2001:db8:1::7]:6881"));
    s.insert(&[node(1), node(2), v6]);
    let state = s.ep.save_state();
    assert_eq!(state.id, s.id());
    assert_eq!(state.nodes.len(), 3);
    let bytes = state.encode();
    let back = SavedState::decode(&bytes).unwrap();
    assert_eq!(back.id, state.id);
    let mut a = back.nodes.clone();
    let mut b = state.nodes.clone();
    a.sort_by_key(|n| n.addr);
    b.sort_by_key(|n| n.addr);
    assert_eq!(a, b);
}

#[test]
fn restored_nodes_are_questionable_until_they_answer() {
    let mut s = Script::new(dht());
    s.insert(&[node(1), node(2)]);
    let state = s.ep.save_state();
    let now = Instant::from_millis(1);
    let mut restored = Endpoint::restore(dht(), [9; 32], now, &state).unwrap();
    assert_eq!(restored.id(), &state.id);
    let table = restored.routing_table();
    assert_eq!(table.len(), 2);
    let policy = *table.policy();
    assert!(table.iter().all(|c| c.state(now, &policy) == NodeState::Questionable), "never restored as good");
    assert!(table.iter().all(|c| c.last_reply.is_none()));
    // Ranking: a good node is saved before a questionable one.
    restored.insert_node(now, node(3));
    let ranked = restored.save_state().nodes;
    assert_eq!(ranked[0], node(3), "the only good node comes first");
}

#[test]
fn a_restarted_node_rejoins_through_its_restored_nodes_without_a_bootstrap_host() {
    let mut s = Script::new(dht());
    s.insert(&[node(1), node(2), node(3)]);
    let state = s.ep.save_state();
    let mut r = Script { ep: Endpoint::restore(dht(), [9; 32], s.now, &state).unwrap(), ..Script::new(dht()) };
    assert!(r.ep.config().bootstrap.is_empty());
    r.ep.bootstrap(r.now).unwrap();
    let asked: Vec<SocketAddr> = r.sent().into_iter().filter(|m| m.method() == b"find_node").map(|m| m.to).collect();
    assert_eq!(asked.len(), 3, "the join asks the restored nodes: {asked:?}");
}

#[test]
fn a_broken_or_foreign_state_is_refused_with_a_clear_error() {
    let good = SavedState { id: NodeId::from_array([7; 20]), nodes: vec![node(1)] }.encode();
    assert_eq!(SavedState::decode(b"").unwrap_err(), StateError::Malformed);
    assert_eq!(SavedState::decode(b"garbage").unwrap_err(), StateError::Malformed);
    for cut in 1..good.len() {
        assert!(SavedState::decode(&good[..cut]).is_err(), "a file cut at {cut} bytes");
    }
    let mut v2 = good.clone();
    let at = v2.windows(12).position(|w| w == b"7:versioni1e").unwrap();
    v2[at + 10] = b'2';
    assert_eq!(SavedState::decode(&v2).unwrap_err(), StateError::Version(2));
    assert_eq!(SavedState::decode(b"d7:versioni1ee").unwrap_err(), StateError::Field("id"));
    let bad_nodes = b"d2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes3:xyz7:versioni1ee";
    assert_eq!(SavedState::decode(bad_nodes).unwrap_err(), StateError::Field("nodes"));
    assert!(StateError::Version(2).to_string().contains("version 2"));
}

#[test]
fn status_reports_id_tables_and_a_size_estimate() {
    let mut s = Script::new(dht());
    assert_eq!(s.ep.status().dht_size_estimate, None, "an empty table says nothing");
    s.insert(&[node(1), node(2), node(3)]);
    s.insert(&[NodeInfo::new(id_with(&[0x55, 1]), sa("[2001:db8:1::7]:6881"))]);
    let status = s.ep.status();
    assert_eq!(status.id, s.id());
    assert_eq!(status.table_sizes, [3, 1]);
    assert_eq!(status.good_nodes, [3, 1], "they all just answered");
    assert!(status.dht_size_estimate.is_some());
    assert!(!status.read_only);
    assert_eq!(status.external_address, [None, None]);
}
