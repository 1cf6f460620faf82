//! Golden vectors: BEP 5's example packets, BEP 42's `ip` field, the tolerance the decoder owes
//! to deployed peers, the fields of BEPs 32/33/44/51, and non-default id lengths.
//!
//! Every decoded packet is checked field by field (absent fields included), re-encoded with
//! `Message::encode`, and built again with the public encoders from a `Dictionary`.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use common::*;
use krpc_core::wire::{
    Body, DecodeErrorKind, Decoder, Dictionary, Entry, ErrorOut, Fields, Insert, Message, QueryOut, ResponseOut, Value,
    Want,
};
use krpc_core::{NodeId, NodeInfo};

// ---------------------------------------------------------------------------------------------
// Helpers

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = [0u8; 8192];
    let n = msg.encode(&mut buf).expect("message fits in 8 KiB");
    buf[..n].to_vec()
}

fn query_bytes(q: &QueryOut<'_>) -> Vec<u8> {
    let mut buf = [0u8; 8192];
    let n = q.encode(&mut buf).expect("query fits");
    buf[..n].to_vec()
}

fn response_bytes(r: &ResponseOut<'_>) -> Vec<u8> {
    let mut buf = [0u8; 8192];
    let n = r.encode(&mut buf).expect("response fits");
    buf[..n].to_vec()
}

fn error_bytes(e: &ErrorOut<'_>) -> Vec<u8> {
    let mut buf = [0u8; 8192];
    let n = e.encode(&mut buf).expect("error fits");
    buf[..n].to_vec()
}

fn query<'a>(msg: &Message<'a>) -> krpc_core::wire::QueryView<'a> {
    *msg.as_query().expect("a query")
}

fn response<'a>(msg: &Message<'a>) -> Fields<'a> {
    *msg.as_response().expect("a response")
}

fn keys(f: &Fields<'_>) -> Vec<Vec<u8>> {
    f.dict().iter().map(|(k, _)| k.to_vec()).collect()
}

fn id20(s: &[u8; 20]) -> NodeId {
    NodeId::from_array(*s)
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
}

fn v6(s: &str, port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(s.parse::<Ipv6Addr>().unwrap(), port, 0, 0))
}

fn compact(addr: &SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(a) => [&a.ip().octets()[..], &a.port().to_be_bytes()].concat(),
        SocketAddr::V6(a) => [&a.ip().octets()[..], &a.port().to_be_bytes()].concat(),
    }
}

const ABC: &[u8; 20] = b"abcdefghij0123456789";
const MNO: &[u8; 20] = b"mnopqrstuvwxyz123456";
const NUM: &[u8; 20] = b"0123456789abcdefghij";

// ---------------------------------------------------------------------------------------------
// BEP 5 golden vectors: decode every field, re-encode byte for byte.

#[test]
fn every_golden_vector_decodes_and_re_encodes_byte_for_byte() {
    for (name, bytes) in GOLDEN {
        let msg = Message::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(encode(&msg), bytes, "{name}");
        assert_eq!(msg.transaction_id, b"aa", "{name}");
        assert_eq!(msg.version, None, "{name}");
        assert_eq!(msg.ip, None, "{name}");
        assert!(!msg.read_only, "{name}");
    }
}

#[test]
fn the_error_example_decodes_to_code_201_and_its_message() {
    let msg = Message::decode(ERROR).unwrap();
    let e = msg.as_error().unwrap();
    assert_eq!(e.code, 201);
    assert_eq!(e.message, b"A Generic Error Ocurred");
    assert!(msg.as_query().is_none() && msg.as_response().is_none());
}

#[test]
fn the_ping_query_carries_only_the_querier_id() {
    let msg = Message::decode(PING_Q).unwrap();
    let q = query(&msg);
    assert_eq!(q.method, b"ping");
    assert_eq!(q.args.id(), Some(&ABC[..]));
    assert_eq!(q.args.node_id(), Some(id20(ABC)));
    assert_eq!(q.args.id_len(), 20);
    assert_eq!(present(&q.args), ["id"]);
    assert_eq!(keys(&q.args), [b"id".to_vec()]);
    assert_eq!(q.args.dict().as_bencode(), b"d2:id20:abcdefghij0123456789e");
}

#[test]
fn the_ping_and_announce_responses_carry_only_the_responder_id() {
    for bytes in [PING_R, ANNOUNCE_R] {
        let msg = Message::decode(bytes).unwrap();
        let r = response(&msg);
        assert_eq!(r.id(), Some(&MNO[..]));
        assert_eq!(r.node_id(), Some(id20(MNO)));
        assert_eq!(present(&r), ["id"]);
        assert_eq!(r.values().count(), 0);
    }
}

#[test]
fn the_find_node_query_carries_id_and_target() {
    let msg = Message::decode(FIND_NODE_Q).unwrap();
    let q = query(&msg);
    assert_eq!(q.method, b"find_node");
    assert_eq!(q.args.id(), Some(&ABC[..]));
    assert_eq!(q.args.target(), Some(id20(MNO)));
    assert_eq!(present(&q.args), ["id", "target"]);
}

#[test]
fn the_find_node_response_placeholder_nodes_decode_to_no_records() {
    let msg = Message::decode(FIND_NODE_R).unwrap();
    let r = response(&msg);
    assert_eq!(r.id(), Some(&NUM[..]));
    let nodes = r.nodes().unwrap();
    assert_eq!(nodes.as_bytes(), b"def456...");
    assert_eq!(nodes.count(), 0);
    assert_eq!(present(&r), ["id", "nodes"]);
}

#[test]
fn the_get_peers_query_carries_id_and_info_hash() {
    let msg = Message::decode(GET_PEERS_Q).unwrap();
    let q = query(&msg);
    assert_eq!(q.method, b"get_peers");
    assert_eq!(q.args.id(), Some(&ABC[..]));
    assert_eq!(q.args.info_hash(), Some(id20(MNO)));
    assert_eq!(present(&q.args), ["id", "info_hash"]);
}

#[test]
fn the_get_peers_response_with_values_yields_two_peers() {
    let msg = Message::decode(GET_PEERS_R_VALUES).unwrap();
    let r = response(&msg);
    assert_eq!(r.id(), Some(&ABC[..]));
    assert_eq!(r.token(), Some(&b"aoeusnth"[..]));
    // "axje.u" = 97.120.106.101, port 0x2e75; "idhtnm" = 105.100.104.116, port 0x6e6d.
    let peers: Vec<_> = r.values().collect();
    assert_eq!(peers, [v4([97, 120, 106, 101], 0x2e75), v4([105, 100, 104, 116], 0x6e6d)]);
    let raw: Vec<_> = r.values_list().unwrap().iter().collect();
    assert_eq!(raw, [Value::Bytes(b"axje.u"), Value::Bytes(b"idhtnm")]);
    assert_eq!(present(&r), ["id", "token", "values"]);
}

#[test]
fn the_get_peers_response_with_nodes_carries_token_and_placeholder_nodes() {
    let msg = Message::decode(GET_PEERS_R_NODES).unwrap();
    let r = response(&msg);
    assert_eq!(r.id(), Some(&ABC[..]));
    assert_eq!(r.token(), Some(&b"aoeusnth"[..]));
    assert_eq!(r.nodes().unwrap().as_bytes(), b"def456...");
    assert_eq!(r.nodes().unwrap().count(), 0);
    assert_eq!(r.values().count(), 0);
    assert_eq!(present(&r), ["id", "token", "nodes"]);
}

#[test]
fn the_announce_peer_query_carries_every_argument() {
    let msg = Message::decode(ANNOUNCE_Q).unwrap();
    let q = query(&msg);
    assert_eq!(q.method, b"announce_peer");
    assert_eq!(q.args.id(), Some(&ABC[..]));
    assert!(q.args.implied_port());
    assert_eq!(q.args.info_hash(), Some(id20(MNO)));
    assert_eq!(q.args.port(), Some(6881));
    assert_eq!(q.args.token(), Some(&b"aoeusnth"[..]));
    assert_eq!(present(&q.args), ["id", "info_hash", "token", "port", "implied_port"]);
    assert_eq!(
        keys(&q.args),
        [b"id".to_vec(), b"implied_port".to_vec(), b"info_hash".to_vec(), b"port".to_vec(), b"token".to_vec()]
    );
}

// ---------------------------------------------------------------------------------------------
// The same packets built with the public encoders.

fn q_out<'x>(method: &'x [u8], args: &'x Dictionary, extra: &'x [Entry<'x>]) -> QueryOut<'x> {
    QueryOut { transaction_id: b"aa", method, args, extra, read_only: false, version: None }
}

fn r_out<'x>(values: &'x Dictionary, extra: &'x [Entry<'x>]) -> ResponseOut<'x> {
    ResponseOut { transaction_id: b"aa", values, extra, ip: None, version: None }
}

#[test]
fn the_encoders_build_every_golden_vector_from_a_dictionary() {
    let error =
        ErrorOut { transaction_id: b"aa", code: 201, message: b"A Generic Error Ocurred", ip: None, version: None };
    assert_eq!(error_bytes(&error), ERROR);

    let ping = Dictionary::new().with_bytes("id", ABC);
    assert_eq!(query_bytes(&q_out(b"ping", &ping, &[])), PING_Q);

    let pong = Dictionary::new().with_bytes("id", MNO);
    assert_eq!(response_bytes(&r_out(&pong, &[])), PING_R);
    assert_eq!(response_bytes(&r_out(&pong, &[])), ANNOUNCE_R);

    let find = Dictionary::new().with_bytes("target", MNO).with_bytes("id", ABC);
    assert_eq!(query_bytes(&q_out(b"find_node", &find, &[])), FIND_NODE_Q);

    let found = Dictionary::new().with_bytes("nodes", "def456...").with_bytes("id", NUM);
    assert_eq!(response_bytes(&r_out(&found, &[])), FIND_NODE_R);

    let get = Dictionary::new().with_bytes("info_hash", MNO).with_bytes("id", ABC);
    assert_eq!(query_bytes(&q_out(b"get_peers", &get, &[])), GET_PEERS_Q);

    let got = Dictionary::new()
        .with_list_of_bytes("values", ["axje.u", "idhtnm"])
        .with_bytes("token", "aoeusnth")
        .with_bytes("id", ABC);
    assert_eq!(response_bytes(&r_out(&got, &[])), GET_PEERS_R_VALUES);

    let got_nodes =
        Dictionary::new().with_bytes("token", "aoeusnth").with_bytes("nodes", "def456...").with_bytes("id", ABC);
    assert_eq!(response_bytes(&r_out(&got_nodes, &[])), GET_PEERS_R_NODES);

    let announce = Dictionary::new()
        .with_bytes("token", "aoeusnth")
        .with_int("port", 6881)
        .with_bytes("info_hash", MNO)
        .with_int("implied_port", 1)
        .with_bytes("id", ABC);
    assert_eq!(query_bytes(&q_out(b"announce_peer", &announce, &[])), ANNOUNCE_Q);
}

#[test]
fn engine_owned_keys_merged_on_the_fly_give_the_same_bytes() {
    // The engine keeps the application's arguments and merges `id`, `token` and `values`.
    let empty = Dictionary::new();
    let id = [Entry { key: b"id", value: Insert::Bytes(ABC), replace: false }];
    assert_eq!(query_bytes(&q_out(b"ping", &empty, &id)), PING_Q);

    let find = Dictionary::new().with_bytes("target", MNO);
    assert_eq!(query_bytes(&q_out(b"find_node", &find, &id)), FIND_NODE_Q);

    let announce = Dictionary::new().with_int("port", 6881).with_bytes("info_hash", MNO).with_int("implied_port", 1);
    let extra = [
        Entry { key: b"id", value: Insert::Bytes(ABC), replace: false },
        Entry { key: b"token", value: Insert::Bytes(b"aoeusnth"), replace: false },
    ];
    assert_eq!(query_bytes(&q_out(b"announce_peer", &announce, &extra)), ANNOUNCE_Q);

    let peers = [v4([97, 120, 106, 101], 0x2e75), v4([105, 100, 104, 116], 0x6e6d)];
    let extra = [
        Entry { key: b"id", value: Insert::Bytes(ABC), replace: false },
        Entry { key: b"token", value: Insert::Bytes(b"aoeusnth"), replace: false },
        Entry { key: b"values", value: Insert::Peers(&peers), replace: false },
    ];
    assert_eq!(response_bytes(&r_out(&empty, &extra)), GET_PEERS_R_VALUES);
}

#[test]
fn a_merged_entry_replaces_the_dictionary_key_only_when_asked() {
    let args = Dictionary::new().with_bytes("id", MNO);
    let keep = [Entry { key: b"id", value: Insert::Bytes(ABC), replace: false }];
    let replace = [Entry { key: b"id", value: Insert::Bytes(ABC), replace: true }];
    let kept = query_bytes(&q_out(b"ping", &args, &keep));
    assert_eq!(Message::decode(&kept).unwrap().as_query().unwrap().args.id(), Some(&MNO[..]));
    assert_eq!(query_bytes(&q_out(b"ping", &args, &replace)), PING_Q);
}

#[test]
fn merged_compact_nodes_encode_as_one_string_of_26_byte_records() {
    let a = NodeInfo::new(id20(ABC), v4([10, 0, 0, 1], 6881));
    let b = NodeInfo::new(id20(MNO), v4([192, 0, 2, 7], 1));
    let c = NodeInfo::new(id20(NUM), v6("2001:db8::1", 6882));
    let all = [a, c, b];
    let extra = [
        Entry { key: b"id", value: Insert::Bytes(NUM), replace: false },
        Entry { key: b"nodes", value: Insert::NodesV4(&all), replace: false },
        Entry { key: b"nodes6", value: Insert::NodesV6(&all), replace: false },
    ];
    let bytes = response_bytes(&r_out(&Dictionary::new(), &extra));
    let nodes = cat(&[ABC, &[10, 0, 0, 1, 0x1a, 0xe1], MNO, &[192, 0, 2, 7, 0, 1]]);
    let nodes6 = cat(&[NUM, &compact(&c.addr)]);
    let expected =
        cat(&[b"d1:rd2:id", &bstr(NUM), b"5:nodes", &bstr(&nodes), b"6:nodes6", &bstr(&nodes6), b"e1:t2:aa1:y1:re"]);
    assert_eq!(bytes, expected);

    let msg = Message::decode(&bytes).unwrap();
    let r = response(&msg);
    assert_eq!(r.nodes().unwrap().collect::<Vec<_>>(), [a, b]);
    assert_eq!(r.nodes6().unwrap().collect::<Vec<_>>(), [c]);
    assert_eq!(encode(&msg), bytes);
}

#[test]
fn version_and_read_only_flags_are_written_in_canonical_positions() {
    let args = Dictionary::new().with_bytes("id", ABC);
    let q = QueryOut {
        transaction_id: b"aa",
        method: b"ping",
        args: &args,
        extra: &[],
        read_only: true,
        version: Some(b"LT\x01\x02"),
    };
    let bytes = query_bytes(&q);
    assert_eq!(bytes, b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping2:roi1e1:t2:aa1:v4:LT\x01\x021:y1:qe");
    let msg = Message::decode(&bytes).unwrap();
    assert!(msg.read_only);
    assert_eq!(msg.version, Some(&b"LT\x01\x02"[..]));
    assert_eq!(encode(&msg), bytes);
}

#[test]
fn a_short_buffer_reports_the_exact_size_every_encoder_needs() {
    let args = Dictionary::new().with_bytes("id", ABC);
    let mut small = [0u8; 10];
    assert_eq!(q_out(b"ping", &args, &[]).encode(&mut small).unwrap_err().required, PING_Q.len());
    let msg = Message::decode(ERROR).unwrap();
    assert_eq!(msg.encode(&mut small).unwrap_err().required, ERROR.len());
    let error =
        ErrorOut { transaction_id: b"aa", code: 201, message: b"A Generic Error Ocurred", ip: None, version: None };
    assert_eq!(error.encode(&mut small).unwrap_err().required, ERROR.len());
    let mut exact = vec![0u8; PING_R.len()];
    let pong = Dictionary::new().with_bytes("id", MNO);
    assert_eq!(r_out(&pong, &[]).encode(&mut exact), Ok(PING_R.len()));
    assert_eq!(exact, PING_R);
}

#[test]
fn every_encoder_measures_the_golden_vectors_exactly() {
    let args = Dictionary::new().with_bytes("id", ABC);
    assert_eq!(q_out(b"ping", &args, &[]).encoded_len(), PING_Q.len());
    let pong = Dictionary::new().with_bytes("id", MNO);
    assert_eq!(r_out(&pong, &[]).encoded_len(), PING_R.len());
    let error =
        ErrorOut { transaction_id: b"aa", code: 201, message: b"A Generic Error Ocurred", ip: None, version: None };
    assert_eq!(error.encoded_len(), ERROR.len());
    for bytes in [PING_Q, PING_R, ERROR] {
        assert_eq!(Message::decode(bytes).unwrap().encoded_len(), bytes.len());
    }
}

// ---------------------------------------------------------------------------------------------
// BEP 42: the `ip` field, with the example addresses and node ids of BEP 42.

const BEP42: [([u8; 4], &str); 5] = [
    ([124, 31, 75, 21], "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
    ([21, 75, 31, 124], "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
    ([65, 23, 51, 170], "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
    ([84, 124, 73, 14], "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
    ([43, 213, 53, 83], "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
];

#[test]
fn a_six_byte_ip_field_round_trips_for_every_bep42_example_address() {
    for (i, (ip, id_hex)) in BEP42.iter().enumerate() {
        let id = hex(id_hex);
        let addr = v4(*ip, 6881 + i as u16);
        let bytes = cat(&[b"d2:ip", &bstr(&compact(&addr)), b"1:rd2:id", &bstr(&id), b"e1:t2:aa1:y1:re"]);
        let msg = Message::decode(&bytes).unwrap();
        assert_eq!(msg.ip, Some(addr));
        assert_eq!(response(&msg).id(), Some(&id[..]));
        assert_eq!(encode(&msg), bytes);

        let values = Dictionary::new().with_bytes("id", &id);
        let out = ResponseOut { transaction_id: b"aa", values: &values, extra: &[], ip: Some(addr), version: None };
        assert_eq!(response_bytes(&out), bytes);
    }
}

#[test]
fn an_eighteen_byte_ip_field_round_trips() {
    let id = hex(BEP42[0].1);
    for addr in [v6("2001:db8::1", 6881), v6("2a01:4f8:1c1c:abcd::1", 443)] {
        let bytes = cat(&[b"d2:ip", &bstr(&compact(&addr)), b"1:rd2:id", &bstr(&id), b"e1:t2:aa1:y1:re"]);
        assert_eq!(compact(&addr).len(), 18);
        let msg = Message::decode(&bytes).unwrap();
        assert_eq!(msg.ip, Some(addr));
        assert_eq!(encode(&msg), bytes);
        let values = Dictionary::new().with_bytes("id", &id);
        let out = ResponseOut { transaction_id: b"aa", values: &values, extra: &[], ip: Some(addr), version: None };
        assert_eq!(response_bytes(&out), bytes);
    }
}

#[test]
fn an_error_reply_carries_the_ip_field_too() {
    // libtorrent puts `ip` on its 203 "invalid node ID" errors.
    let addr = v4(BEP42[0].0, 6881);
    let out = ErrorOut { transaction_id: b"aa", code: 203, message: b"invalid node ID", ip: Some(addr), version: None };
    let bytes = error_bytes(&out);
    assert_eq!(bytes, cat(&[b"d1:eli203e15:invalid node IDe2:ip", &bstr(&compact(&addr)), b"1:t2:aa1:y1:ee"]));
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.ip, Some(addr));
    assert_eq!(msg.as_error().unwrap().code, 203);
    assert_eq!(encode(&msg), bytes);
}

#[test]
fn an_ipv4_mapped_ipv6_ip_field_is_re_encoded_as_ipv4() {
    // write_compact_addr's documented rule: `::ffff:a.b.c.d` goes out in the 6-byte form.
    let mapped = SocketAddr::new(IpAddr::V6(Ipv4Addr::new(124, 31, 75, 21).to_ipv6_mapped()), 6881);
    let bytes = cat(&[b"d2:ip", &bstr(&compact(&mapped)), b"1:rd2:id", &bstr(MNO), b"e1:t2:aa1:y1:re"]);
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.ip, Some(mapped));
    let again = encode(&msg);
    assert_eq!(Message::decode(&again).unwrap().ip, Some(v4([124, 31, 75, 21], 6881)));
}

// ---------------------------------------------------------------------------------------------
// Tolerance: what deployed peers send that is not by the book.

#[test]
fn unsorted_keys_decode_and_re_encode_in_canonical_order() {
    let bytes = b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee";
    let msg = Message::decode(bytes).unwrap();
    assert_eq!(query(&msg).args.id(), Some(&ABC[..]));
    assert_eq!(encode(&msg), PING_Q);

    let nested = b"d1:rd5:token8:aoeusnth6:valuesl6:axje.u6:idhtnme2:id20:abcdefghij0123456789e1:y1:r1:t2:aae";
    let msg = Message::decode(nested).unwrap();
    assert_eq!(response(&msg).token(), Some(&b"aoeusnth"[..]));
    assert_eq!(response(&msg).values().count(), 2);
    assert_eq!(encode(&msg), GET_PEERS_R_VALUES);
}

#[test]
fn unknown_keys_are_tolerated_at_every_level() {
    let bytes = b"d1:ad2:id20:abcdefghij01234567895:extrad3:subl1:xi1ed6:deeperi-7eeee6:zzzzzzi0ee3:fooi42e1:q8:x_method1:t2:aa3:xyz3:bar1:y1:qe";
    let msg = Message::decode(bytes).unwrap();
    let q = query(&msg);
    assert_eq!(q.method, b"x_method");
    assert_eq!(q.args.id(), Some(&ABC[..]));
    assert_eq!(present(&q.args), ["id"]);
    let extra = q.args.get(b"extra").unwrap().as_dict().unwrap();
    let sub: Vec<_> = extra.get(b"sub").unwrap().as_list().unwrap().iter().collect();
    assert_eq!(sub.len(), 3);
    assert_eq!(sub[0], Value::Bytes(b"x"));
    assert_eq!(sub[1], Value::Int(1));
    assert_eq!(sub[2].as_dict().unwrap().get(b"deeper"), Some(Value::Int(-7)));
    assert_eq!(q.args.get(b"zzzzzz"), Some(Value::Int(0)));
    // Unknown top-level keys are skipped and not written back; unknown argument keys stay,
    // in canonical order.
    assert_eq!(
        encode(&msg),
        b"d1:ad5:extrad3:subl1:xi1ed6:deeperi-7eeee2:id20:abcdefghij01234567896:zzzzzzi0ee1:q8:x_method1:t2:aa1:y1:qe"
    );
}

#[test]
fn a_duplicated_unknown_argument_keeps_its_first_value() {
    let bytes = b"d1:ad2:id20:abcdefghij01234567891:xi1e1:xi2ee1:q4:ping1:t2:aa1:y1:qe";
    let msg = Message::decode(bytes).unwrap();
    assert_eq!(query(&msg).args.get(b"x"), Some(Value::Int(1)));
    assert_eq!(encode(&msg), b"d1:ad2:id20:abcdefghij01234567891:xi1ee1:q4:ping1:t2:aa1:y1:qe");
}

#[test]
fn transaction_ids_of_1_2_4_8_and_32_bytes_are_echoed() {
    for len in [1usize, 2, 4, 8, 32] {
        let t: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        let bytes = cat(&[b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t", &bstr(&t), b"1:y1:qe"]);
        let msg = Message::decode(&bytes).unwrap();
        assert_eq!(msg.transaction_id, &t[..]);
        assert_eq!(encode(&msg), bytes);
        let values = Dictionary::new().with_bytes("id", MNO);
        let reply =
            ResponseOut { transaction_id: msg.transaction_id, values: &values, extra: &[], ip: None, version: None };
        let reply = response_bytes(&reply);
        assert_eq!(Message::decode(&reply).unwrap().transaction_id, &t[..]);
    }
}

#[test]
fn a_four_byte_version_is_kept_and_an_absent_one_is_none() {
    let bytes = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:v4:UT\xab\xcd1:y1:re";
    let msg = Message::decode(bytes).unwrap();
    assert_eq!(msg.version, Some(&b"UT\xab\xcd"[..]));
    assert_eq!(encode(&msg), bytes);
    assert_eq!(Message::decode(PING_R).unwrap().version, None);
}

#[test]
fn a_version_that_is_not_a_string_is_ignored() {
    let bytes = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:vli1ee1:y1:re";
    let msg = Message::decode(bytes).unwrap();
    assert_eq!(msg.version, None);
    assert_eq!(encode(&msg), PING_R);
}

#[test]
fn nodes_with_a_trailing_partial_record_yield_the_whole_records() {
    let a = NodeInfo::new(id20(ABC), v4([1, 2, 3, 4], 6881));
    let b = NodeInfo::new(id20(MNO), v4([5, 6, 7, 8], 80));
    let raw = cat(&[ABC, &compact(&a.addr), MNO, &compact(&b.addr), b"partial!!"]);
    let bytes = cat(&[b"d1:rd2:id", &bstr(NUM), b"5:nodes", &bstr(&raw), b"e1:t2:aa1:y1:re"]);
    let msg = Message::decode(&bytes).unwrap();
    let nodes = response(&msg).nodes().unwrap();
    assert_eq!(nodes.as_bytes(), &raw[..]);
    assert_eq!(nodes.collect::<Vec<_>>(), [a, b]);
    assert_eq!(encode(&msg), bytes);
}

#[test]
fn an_error_given_as_a_bare_string_decodes_with_code_zero() {
    let bytes = b"d1:e5:oops!1:t2:aa1:y1:ee";
    let msg = Message::decode(bytes).unwrap();
    let e = msg.as_error().unwrap();
    assert_eq!((e.code, e.message), (0, &b"oops!"[..]));
    // Written back in the BEP 5 list form.
    assert_eq!(encode(&msg), b"d1:eli0e5:oops!e1:t2:aa1:y1:ee");
}

#[test]
fn an_error_list_without_a_code_decodes_with_code_zero() {
    let msg = Message::decode(b"d1:el5:oops!e1:t2:aa1:y1:ee").unwrap();
    let e = msg.as_error().unwrap();
    assert_eq!((e.code, e.message), (0, &b"oops!"[..]));
    let msg = Message::decode(b"d1:eli202ee1:t2:aa1:y1:ee").unwrap();
    let e = msg.as_error().unwrap();
    assert_eq!((e.code, e.message), (202, &b""[..]));
    let msg = Message::decode(b"d1:eli203e3:bad5:extrali1eee1:t2:aa1:y1:ee").unwrap();
    let e = msg.as_error().unwrap();
    assert_eq!((e.code, e.message), (203, &b"bad"[..]));
}

#[test]
fn an_error_with_an_extra_r_dictionary_is_an_error() {
    let bytes = b"d1:eli201e23:A Generic Error Ocurrede1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:ee";
    let msg = Message::decode(bytes).unwrap();
    assert!(matches!(msg.body, Body::Error(e) if e.code == 201));
    assert_eq!(encode(&msg), ERROR);
}

#[test]
fn values_mixing_six_and_eighteen_byte_peers_yield_both_families() {
    let a = v4([192, 0, 2, 1], 6881);
    let b = v6("2001:db8::7", 51413);
    let c = v4([198, 51, 100, 2], 1);
    let values = cat(&[b"l", &bstr(&compact(&a)), &bstr(&compact(&b)), b"7:badpeer", &bstr(&compact(&c)), b"e"]);
    let bytes = cat(&[b"d1:rd2:id", &bstr(MNO), b"5:token2:tk6:values", &values, b"e1:t2:aa1:y1:re"]);
    let msg = Message::decode(&bytes).unwrap();
    let r = response(&msg);
    assert_eq!(r.values().collect::<Vec<_>>(), [a, b, c]);
    assert_eq!(r.values_list().unwrap().len(), 4);
    assert_eq!(encode(&msg), bytes);

    let peers = [a, b, c];
    let extra = [
        Entry { key: b"id", value: Insert::Bytes(MNO), replace: false },
        Entry { key: b"token", value: Insert::Bytes(b"tk"), replace: false },
        Entry { key: b"values", value: Insert::Peers(&peers), replace: false },
    ];
    let built = response_bytes(&r_out(&Dictionary::new(), &extra));
    assert_eq!(response(&Message::decode(&built).unwrap()).values().collect::<Vec<_>>(), peers);
}

#[test]
fn want_ignores_unknown_strings() {
    let bytes = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n52:n63:xyz2:n4ee1:q9:find_node1:t2:aa1:y1:qe";
    let msg = Message::decode(bytes).unwrap();
    assert_eq!(query(&msg).args.want(), Some(Want { n4: true, n6: true }));
    let only6 = b"d1:ad2:id20:abcdefghij01234567894:wantl2:n63:n44ee1:q9:find_node1:t2:aa1:y1:qe";
    assert_eq!(query(&Message::decode(only6).unwrap()).args.want(), Some(Want { n4: false, n6: true }));
    let none = b"d1:ad2:id20:abcdefghij01234567894:wantl2:n8ee1:q9:find_node1:t2:aa1:y1:qe";
    assert_eq!(query(&Message::decode(none).unwrap()).args.want(), Some(Want { n4: false, n6: false }));
    // Without `want`, BEP 32 answers with the family of the request.
    let from6 = v6("2001:db8::1", 1);
    assert_eq!(Want::for_request(None, &from6), Want { n4: false, n6: true });
    assert_eq!(Want::for_request(Some(Want { n4: true, n6: false }), &from6), Want { n4: true, n6: false });
}

#[test]
fn port_zero_records_are_skipped_by_the_iterators() {
    let zero = NodeInfo::new(id20(ABC), v4([1, 1, 1, 1], 0));
    let good = NodeInfo::new(id20(MNO), v4([2, 2, 2, 2], 2));
    let nodes = cat(&[ABC, &compact(&zero.addr), MNO, &compact(&good.addr)]);
    let values = cat(&[b"l", &bstr(&compact(&v4([3, 3, 3, 3], 0))), &bstr(&compact(&v4([4, 4, 4, 4], 4))), b"e"]);
    let bytes = cat(&[b"d1:rd2:id", &bstr(NUM), b"5:nodes", &bstr(&nodes), b"6:values", &values, b"e1:t2:aa1:y1:re"]);
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(response(&msg).nodes().unwrap().collect::<Vec<_>>(), [good]);
    assert_eq!(response(&msg).values().collect::<Vec<_>>(), [v4([4, 4, 4, 4], 4)]);
}

// ---------------------------------------------------------------------------------------------
// BEP 33, 43, 44, 51 fields.

#[test]
fn bep33_scrape_flags_and_bloom_filters_decode() {
    let q = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234566:noseedi1e6:scrapei1ee1:q9:get_peers1:t2:aa1:y1:qe";
    let msg = Message::decode(q).unwrap();
    let args = &query(&msg).args;
    assert!(args.scrape() && args.noseed() && !args.seed());
    assert_eq!(present(args), ["id", "info_hash", "scrape", "noseed"]);
    assert_eq!(encode(&msg), q);

    let seeds: Vec<u8> = (0..=255u8).collect();
    let peers: Vec<u8> = (0..=255u8).rev().collect();
    let values = Dictionary::new()
        .with_bytes("id", MNO)
        .with_bytes("BFsd", &seeds)
        .with_bytes("BFpe", &peers)
        .with_bytes("token", "tk");
    let bytes = response_bytes(&r_out(&values, &[]));
    assert_eq!(
        bytes,
        cat(&[
            b"d1:rd4:BFpe256:",
            &peers,
            b"4:BFsd256:",
            &seeds,
            b"2:id20:mnopqrstuvwxyz1234565:token2:tke1:t2:aa1:y1:re"
        ])
    );
    let msg = Message::decode(&bytes).unwrap();
    let r = response(&msg);
    assert_eq!(r.bloom_seeds(), Some(&seeds[..]));
    assert_eq!(r.bloom_peers(), Some(&peers[..]));
    assert_eq!(present(&r), ["id", "token", "BFsd", "BFpe"]);
    assert_eq!(encode(&msg), bytes);

    let announce = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti1e4:seedi1e5:token2:tke1:q13:announce_peer1:t2:aa1:y1:qe";
    let msg = Message::decode(announce).unwrap();
    assert!(query(&msg).args.seed());
    assert_eq!(query(&msg).args.port(), Some(1));
}

#[test]
fn flags_set_to_zero_read_as_false() {
    let q = b"d1:ad2:id20:abcdefghij012345678912:implied_porti0e6:noseedi0e6:scrapei0e4:seedi0ee1:q9:get_peers1:t2:aa1:y1:qe";
    let args = query(&Message::decode(q).unwrap()).args;
    assert!(!args.implied_port() && !args.scrape() && !args.noseed() && !args.seed());
}

#[test]
fn bep44_put_fields_decode_and_v_keeps_its_exact_bytes() {
    let k = [0x77u8; 32];
    let sig = [0x30u8; 64];
    let v = b"d1:bi2e1:ai1ee"; // an unsorted dictionary: the raw span must survive untouched
    let bytes = cat(&[
        b"d1:ad3:casi4e2:id",
        &bstr(ABC),
        b"1:k",
        &bstr(&k),
        b"4:salt6:foobar3:seqi5e3:sig",
        &bstr(&sig),
        b"5:token4:abcd1:v",
        v,
        b"e1:q3:put1:t2:aa1:y1:qe",
    ]);
    let msg = Message::decode(&bytes).unwrap();
    let q = query(&msg);
    assert_eq!(q.method, b"put");
    let a = &q.args;
    assert_eq!(a.cas(), Some(4));
    assert_eq!(a.public_key(), Some(&k[..]));
    assert_eq!(a.signature(), Some(&sig[..]));
    assert_eq!(a.salt(), Some(&b"foobar"[..]));
    assert_eq!(a.seq(), Some(5));
    assert_eq!(a.token(), Some(&b"abcd"[..]));
    assert_eq!(a.value_raw(), Some(&v[..]));
    let value = a.value().unwrap().as_dict().unwrap();
    assert_eq!(value.iter().map(|(k, _)| k).collect::<Vec<_>>(), [b"b", b"a"]);
    assert_eq!(present(a), ["id", "token", "k", "sig", "salt", "seq", "cas", "v"]);
    // Message::encode writes the canonical form, so `v`'s keys come out sorted.
    let again = encode(&msg);
    assert_eq!(again, cat(&[&bytes[..pos(&bytes, b"1:vd")], b"1:vd1:ai1e1:bi2eee1:q3:put1:t2:aa1:y1:qe"]));
}

#[test]
fn bep44_get_response_v_of_any_type_is_kept_raw() {
    for v in [&b"12:Hello World!"[..], b"i-12e", b"l1:ai1ee"] {
        let bytes = cat(&[b"d1:rd2:id", &bstr(MNO), b"5:nodes0:3:seqi1e5:token1:x1:v", v, b"e1:t2:aa1:y1:re"]);
        let msg = Message::decode(&bytes).unwrap();
        let r = response(&msg);
        assert_eq!(r.value_raw(), Some(v));
        assert_eq!(r.seq(), Some(1));
        assert_eq!(r.nodes().unwrap().count(), 0);
        assert_eq!(encode(&msg), bytes);
    }
    let mut values = Dictionary::new().with_bytes("id", MNO);
    values.insert_bencode("v", b"12:Hello World!").unwrap();
    let built = response_bytes(&r_out(&values, &[]));
    assert_eq!(built, cat(&[b"d1:rd2:id", &bstr(MNO), b"1:v12:Hello World!e1:t2:aa1:y1:re"]));
}

#[test]
fn bep51_sample_infohashes_fields_decode() {
    let samples = cat(&[ABC, MNO, b"short"]);
    let node = NodeInfo::new(id20(NUM), v4([10, 1, 2, 3], 4));
    let nodes = cat(&[NUM, &compact(&node.addr)]);
    let bytes = cat(&[
        b"d1:rd2:id",
        &bstr(MNO),
        b"8:intervali21600e5:nodes",
        &bstr(&nodes),
        b"3:numi1000e7:samples",
        &bstr(&samples),
        b"e1:t2:aa1:y1:re",
    ]);
    let msg = Message::decode(&bytes).unwrap();
    let r = response(&msg);
    assert_eq!(r.interval(), Some(21600));
    assert_eq!(r.num(), Some(1000));
    assert_eq!(r.samples_raw(), Some(&samples[..]));
    assert_eq!(r.samples().unwrap().collect::<Vec<_>>(), [id20(ABC), id20(MNO)]);
    assert_eq!(r.nodes().unwrap().collect::<Vec<_>>(), [node]);
    assert_eq!(present(&r), ["id", "nodes", "samples", "interval", "num"]);
    assert_eq!(encode(&msg), bytes);

    let values = Dictionary::new()
        .with_bytes("samples", &samples)
        .with_int("num", 1000)
        .with_bytes("nodes", &nodes)
        .with_int("interval", 21600)
        .with_bytes("id", MNO);
    assert_eq!(response_bytes(&r_out(&values, &[])), bytes);
}

// ---------------------------------------------------------------------------------------------
// Non-default id length.

#[test]
fn thirty_two_byte_ids_decode_with_a_configured_decoder() {
    let decoder = Decoder::new().with_id_len(32);
    assert_eq!(decoder.id_len(), 32);
    let me = [0x11u8; 32];
    let target = [0x22u8; 32];
    let q = cat(&[b"d1:ad2:id", &bstr(&me), b"6:target", &bstr(&target), b"e1:q9:find_node1:t2:aa1:y1:qe"]);
    let msg = decoder.decode(&q).unwrap();
    assert_eq!(query(&msg).args.id_len(), 32);
    assert_eq!(query(&msg).args.node_id(), Some(NodeId::from_bytes(&me).unwrap()));
    assert_eq!(query(&msg).args.target(), Some(NodeId::from_bytes(&target).unwrap()));
    assert_eq!(encode(&msg), q);

    // The default decoder wants 20 bytes.
    let err = Message::decode(&q).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::WrongLength { key: "id", expected: 20, found: 32 });
    assert_eq!(err.offset, 9);
}

#[test]
fn thirty_two_byte_ids_make_38_and_50_byte_node_records() {
    let decoder = Decoder::new().with_id_len(32);
    let a = NodeInfo::new(NodeId::from_bytes(&[0xaa; 32]).unwrap(), v4([10, 0, 0, 1], 1000));
    let b = NodeInfo::new(NodeId::from_bytes(&[0xbb; 32]).unwrap(), v4([10, 0, 0, 2], 2000));
    let c = NodeInfo::new(NodeId::from_bytes(&[0xcc; 32]).unwrap(), v6("2001:db8::c", 3000));
    let all = [a, b, c];
    let me = [0x11u8; 32];
    let extra = [
        Entry { key: b"id", value: Insert::Bytes(&me), replace: false },
        Entry { key: b"nodes", value: Insert::NodesV4(&all), replace: false },
        Entry { key: b"nodes6", value: Insert::NodesV6(&all), replace: false },
    ];
    let bytes = response_bytes(&r_out(&Dictionary::new(), &extra));
    let nodes = cat(&[a.id.as_bytes(), &compact(&a.addr), b.id.as_bytes(), &compact(&b.addr)]);
    let nodes6 = cat(&[c.id.as_bytes(), &compact(&c.addr)]);
    assert_eq!((nodes.len(), nodes6.len()), (76, 50));
    assert_eq!(
        bytes,
        cat(&[b"d1:rd2:id", &bstr(&me), b"5:nodes", &bstr(&nodes), b"6:nodes6", &bstr(&nodes6), b"e1:t2:aa1:y1:re"])
    );

    let msg = decoder.decode(&bytes).unwrap();
    let r = response(&msg);
    assert_eq!(r.nodes().unwrap().collect::<Vec<_>>(), [a, b]);
    assert_eq!(r.nodes6().unwrap().collect::<Vec<_>>(), [c]);
    assert_eq!(encode(&msg), bytes);
}

#[test]
fn id_lengths_outside_one_to_thirty_two_are_clamped() {
    assert_eq!(Decoder::new().with_id_len(0).id_len(), 1);
    assert_eq!(Decoder::new().with_id_len(33).id_len(), 32);
    assert_eq!(Decoder::default().id_len(), 20);
}
