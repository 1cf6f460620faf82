//! Property tests of the wire codec:
//! (a) model round trip through the public encoders and the decoder;
//! (b) canonical re-encoding is exact and idempotent;
//! (c) differential against bendy's strict decoder;
//! (d) arbitrary bytes and mutated messages never panic, and what decodes re-encodes stably;
//! (e) every encoder's `encoded_len` is the length its `encode` writes.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bendy::decoding::{Decoder as BendyDecoder, Object};
use common::*;
use krpc_core::wire::{
    Body, BufferTooSmall, Dict, Dictionary, Entry, ErrorOut, Fields, Insert, Message, QueryOut, ResponseOut, Value,
    Want, fuzzing::check_decode,
};
use krpc_core::{NodeId, NodeInfo};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------------------
// A bencode model.

/// An owned bencode value; dictionaries keep wire order (and duplicates) until canonicalised.
#[derive(Clone, Debug, PartialEq, Eq)]
enum B {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<B>),
    Dict(Vec<(Vec<u8>, B)>),
}

fn bytes(b: &[u8]) -> B {
    B::Bytes(b.to_vec())
}

/// Writes `b` exactly as modelled (key order and duplicates included).
fn write(b: &B, out: &mut Vec<u8>) {
    match b {
        B::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
        B::Bytes(s) => out.extend_from_slice(&bstr(s)),
        B::List(items) => {
            out.push(b'l');
            items.iter().for_each(|i| write(i, out));
            out.push(b'e');
        }
        B::Dict(entries) => {
            out.push(b'd');
            for (k, v) in entries {
                out.extend_from_slice(&bstr(k));
                write(v, out);
            }
            out.push(b'e');
        }
    }
}

fn to_bytes(b: &B) -> Vec<u8> {
    let mut out = Vec::new();
    write(b, &mut out);
    out
}

/// Keys sorted, and of repeated keys only the first (in wire order) kept, at every level.
fn canonical(b: &B) -> B {
    match b {
        B::List(items) => B::List(items.iter().map(canonical).collect()),
        B::Dict(entries) => {
            let mut sorted: Vec<_> = entries.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the first of equal keys stays first
            sorted.dedup_by(|later, earlier| later.0 == earlier.0);
            B::Dict(sorted)
        }
        other => other.clone(),
    }
}

/// Our generic view, as a model.
fn from_view(v: Value<'_>) -> B {
    match v {
        Value::Int(n) => B::Int(n),
        Value::Bytes(s) => bytes(s),
        Value::List(l) => B::List(l.iter().map(from_view).collect()),
        Value::Dict(d) => B::Dict(d.iter().map(|(k, v)| (k.to_vec(), from_view(v))).collect()),
    }
}

fn from_dict(d: Dict<'_>) -> B {
    from_view(Value::Dict(d))
}

/// bendy's strict decoder (sorted unique keys, canonical integers), walked completely.
fn bendy_tree(input: &[u8]) -> Result<B, String> {
    let mut decoder = BendyDecoder::new(input).with_max_depth(128);
    let tree = match decoder.next_object().map_err(|e| format!("{e:?}"))? {
        Some(obj) => bendy_walk(obj)?,
        None => return Err("no object".into()),
    };
    match decoder.next_object() {
        Ok(None) => Ok(tree),
        Ok(Some(_)) => Err("trailing object".into()),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn bendy_walk(obj: Object<'_, '_>) -> Result<B, String> {
    Ok(match obj {
        Object::Integer(digits) => B::Int(digits.parse().map_err(|e| format!("{digits}: {e}"))?),
        Object::Bytes(s) => bytes(s),
        Object::List(mut list) => {
            let mut items = Vec::new();
            while let Some(item) = list.next_object().map_err(|e| format!("{e:?}"))? {
                items.push(bendy_walk(item)?);
            }
            B::List(items)
        }
        Object::Dict(mut dict) => {
            let mut entries = Vec::new();
            while let Some((k, v)) = dict.next_pair().map_err(|e| format!("{e:?}"))? {
                entries.push((k.to_vec(), bendy_walk(v)?));
            }
            B::Dict(entries)
        }
    })
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 16 * 1024];
    let n = msg.encode(&mut buf).expect("fits");
    buf.truncate(n);
    buf
}

fn is_typed(key: &[u8]) -> bool {
    TYPED_KEYS.iter().any(|k| k.as_bytes() == key)
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..6),
        1 => select(vec!["id", "port", "v", "values", "nodes", "token", "a", "zz", "want"]).prop_map(|s| s.as_bytes().to_vec()),
    ]
}

fn value() -> impl Strategy<Value = B> {
    let leaf = prop_oneof![any::<i64>().prop_map(B::Int), vec(any::<u8>(), 0..10).prop_map(B::Bytes)];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![vec(inner.clone(), 0..5).prop_map(B::List), vec((key(), inner), 0..5).prop_map(B::Dict),]
    })
}

/// Keys the typed view does not interpret.
fn unknown_key() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..8).prop_filter("not a typed key", |k| !is_typed(k))
}

fn ipv6_global() -> impl Strategy<Value = Ipv6Addr> {
    // 2000::/3 is never IPv4-mapped, so the compact form keeps the family.
    (0x2000u16..0x4000, any::<[u16; 7]>())
        .prop_map(|(first, rest)| Ipv6Addr::new(first, rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6]))
}

fn socket_addr(min_port: u16) -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), min_port..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        (ipv6_global(), min_port..=u16::MAX).prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))),
    ]
}

fn node() -> impl Strategy<Value = NodeInfo> {
    (any::<[u8; 20]>(), socket_addr(1)).prop_map(|(id, addr)| NodeInfo::new(NodeId::from_array(id), addr))
}

/// A typed argument with a value of the right type and length.
fn typed_arg() -> impl Strategy<Value = (&'static str, B)> {
    let id20 = || any::<[u8; 20]>().prop_map(|a| bytes(&a));
    let blob = |max: usize| vec(any::<u8>(), 0..max).prop_map(B::Bytes);
    let fixed = |len: usize| vec(any::<u8>(), len).prop_map(B::Bytes);
    let int = || any::<i64>().prop_map(B::Int);
    let want = vec(prop_oneof![Just(b"n4".to_vec()), Just(b"n6".to_vec()), vec(any::<u8>(), 0..4)], 0..4)
        .prop_map(|items| B::List(items.into_iter().map(B::Bytes).collect()));
    let peers = vec(socket_addr(0), 0..4).prop_map(|addrs| B::List(addrs.iter().map(|a| bytes(&compact(a))).collect()));
    prop_oneof![
        id20().prop_map(|v| ("id", v)),
        id20().prop_map(|v| ("target", v)),
        id20().prop_map(|v| ("info_hash", v)),
        blob(20).prop_map(|v| ("token", v)),
        blob(80).prop_map(|v| ("nodes", v)),
        blob(80).prop_map(|v| ("nodes6", v)),
        peers.prop_map(|v| ("values", v)),
        want.prop_map(|v| ("want", v)),
        blob(70).prop_map(|v| ("samples", v)),
        fixed(256).prop_map(|v| ("BFsd", v)),
        fixed(256).prop_map(|v| ("BFpe", v)),
        fixed(32).prop_map(|v| ("k", v)),
        fixed(64).prop_map(|v| ("sig", v)),
        blob(64).prop_map(|v| ("salt", v)),
        value().prop_map(|v| ("v", v)),
        (0..=65535i64).prop_map(|p| ("port", B::Int(p))),
        int().prop_map(|v| ("implied_port", v)),
        int().prop_map(|v| ("seq", v)),
        int().prop_map(|v| ("cas", v)),
        int().prop_map(|v| ("interval", v)),
        int().prop_map(|v| ("num", v)),
        (0..3i64).prop_map(|v| ("scrape", B::Int(v))),
        (0..3i64).prop_map(|v| ("noseed", B::Int(v))),
        (0..3i64).prop_map(|v| ("seed", B::Int(v))),
    ]
}

fn compact(addr: &SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(a) => [&a.ip().octets()[..], &a.port().to_be_bytes()].concat(),
        SocketAddr::V6(a) => [&a.ip().octets()[..], &a.port().to_be_bytes()].concat(),
    }
}

/// A dictionary's entries as the application builds it: typed and unknown keys, later inserts
/// of the same key winning, as with `Dictionary::insert_*`.
fn dictionary_model() -> impl Strategy<Value = BTreeMap<Vec<u8>, B>> {
    (vec(typed_arg(), 0..8), vec((unknown_key(), value()), 0..4)).prop_map(|(typed, unknown)| {
        let mut map = BTreeMap::new();
        for (k, v) in typed {
            map.insert(k.as_bytes().to_vec(), v);
        }
        for (k, v) in unknown {
            map.insert(k, v);
        }
        map
    })
}

fn build_dictionary(model: &BTreeMap<Vec<u8>, B>) -> Dictionary {
    let mut d = Dictionary::new();
    for (k, v) in model {
        match v {
            B::Int(n) => d.insert_int(k, *n),
            B::Bytes(s) => d.insert_bytes(k, s),
            B::List(items) if items.iter().all(|i| matches!(i, B::Bytes(_))) => d.insert_list_of_bytes(
                k,
                items.iter().map(|i| match i {
                    B::Bytes(s) => s.clone(),
                    _ => unreachable!(),
                }),
            ),
            other => d.insert_bencode(k, &to_bytes(other)).expect("valid bencode"),
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Checking a decoded typed view against a model.

fn model_get<'m>(model: &'m BTreeMap<Vec<u8>, B>, key: &str) -> Option<&'m B> {
    model.get(key.as_bytes())
}

fn model_bytes<'m>(model: &'m BTreeMap<Vec<u8>, B>, key: &str) -> Option<&'m [u8]> {
    model_get(model, key).map(|v| match v {
        B::Bytes(s) => s.as_slice(),
        other => panic!("{key} modelled as {other:?}"),
    })
}

fn model_int(model: &BTreeMap<Vec<u8>, B>, key: &str) -> Option<i64> {
    model_get(model, key).map(|v| match v {
        B::Int(n) => *n,
        other => panic!("{key} modelled as {other:?}"),
    })
}

fn flag(model: &BTreeMap<Vec<u8>, B>, key: &str) -> bool {
    model_int(model, key).is_some_and(|n| n != 0)
}

/// Compares every typed accessor and the generic view of `f` with `model`.
fn check_fields(f: &Fields<'_>, model: &BTreeMap<Vec<u8>, B>) -> Result<(), TestCaseError> {
    let id = |key: &str| model_bytes(model, key).map(|b| NodeId::from_bytes(b).unwrap());
    prop_assert_eq!(f.id(), model_bytes(model, "id"));
    prop_assert_eq!(f.target(), id("target"));
    prop_assert_eq!(f.info_hash(), id("info_hash"));
    prop_assert_eq!(f.token(), model_bytes(model, "token"));
    prop_assert_eq!(f.nodes().map(|n| n.as_bytes()), model_bytes(model, "nodes"));
    prop_assert_eq!(f.nodes6().map(|n| n.as_bytes()), model_bytes(model, "nodes6"));
    prop_assert_eq!(f.samples_raw(), model_bytes(model, "samples"));
    prop_assert_eq!(f.bloom_seeds(), model_bytes(model, "BFsd"));
    prop_assert_eq!(f.bloom_peers(), model_bytes(model, "BFpe"));
    prop_assert_eq!(f.public_key(), model_bytes(model, "k"));
    prop_assert_eq!(f.signature(), model_bytes(model, "sig"));
    prop_assert_eq!(f.salt(), model_bytes(model, "salt"));
    prop_assert_eq!(f.port().map(i64::from), model_int(model, "port"));
    prop_assert_eq!(f.seq(), model_int(model, "seq"));
    prop_assert_eq!(f.cas(), model_int(model, "cas"));
    prop_assert_eq!(f.interval(), model_int(model, "interval"));
    prop_assert_eq!(f.num(), model_int(model, "num"));
    prop_assert_eq!(f.implied_port(), flag(model, "implied_port"));
    prop_assert_eq!(f.scrape(), flag(model, "scrape"));
    prop_assert_eq!(f.noseed(), flag(model, "noseed"));
    prop_assert_eq!(f.seed(), flag(model, "seed"));
    prop_assert_eq!(f.value_raw().map(<[u8]>::to_vec), model_get(model, "v").map(|v| to_bytes(&canonical(v))));
    match model_get(model, "want") {
        Some(B::List(items)) => {
            let has = |s: &[u8]| items.iter().any(|i| *i == bytes(s));
            prop_assert_eq!(f.want(), Some(Want { n4: has(b"n4"), n6: has(b"n6") }));
        }
        _ => prop_assert_eq!(f.want(), None),
    }
    match model_get(model, "values") {
        Some(B::List(items)) => {
            let expected: Vec<SocketAddr> = items
                .iter()
                .filter_map(|i| match i {
                    B::Bytes(s) => krpc_core::wire::parse_compact_addr(s),
                    _ => None,
                })
                .filter(|a| a.port() != 0)
                .collect();
            prop_assert_eq!(f.values().collect::<Vec<_>>(), expected);
        }
        _ => prop_assert!(f.values_list().is_none()),
    }
    // The generic view holds exactly the model, canonically.
    let expected = B::Dict(model.iter().map(|(k, v)| (k.clone(), canonical(v))).collect());
    prop_assert_eq!(from_dict(f.dict()), expected);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (a) Model round trip.

#[derive(Clone, Debug)]
enum IdPlacement {
    /// In the application's dictionary.
    Dictionary,
    /// Merged by the engine; the dictionary has none.
    Merged,
    /// Merged with `replace`, over a different id in the dictionary.
    Replacing([u8; 20]),
}

fn id_placement() -> impl Strategy<Value = IdPlacement> {
    prop_oneof![
        Just(IdPlacement::Dictionary),
        Just(IdPlacement::Merged),
        any::<[u8; 20]>().prop_map(IdPlacement::Replacing)
    ]
}

fn transaction_id() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..=32)
}

fn version() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(vec(any::<u8>(), 0..6))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_query_model_survives_encoding_and_decoding(
        t in transaction_id(),
        v in version(),
        read_only in any::<bool>(),
        method in vec(any::<u8>(), 1..16),
        mut model in dictionary_model(),
        id in any::<[u8; 20]>(),
        placement in id_placement(),
    ) {
        let mut app = model.clone();
        app.remove(&b"id"[..]);
        if let IdPlacement::Dictionary = placement {
            app.insert(b"id".to_vec(), bytes(&id));
        }
        if let IdPlacement::Replacing(other) = placement {
            app.insert(b"id".to_vec(), bytes(&other));
        }
        model.insert(b"id".to_vec(), bytes(&id));
        let args = build_dictionary(&app);
        let merged = [Entry { key: b"id", value: Insert::Bytes(&id), replace: matches!(placement, IdPlacement::Replacing(_)) }];
        let extra: &[Entry<'_>] = if let IdPlacement::Dictionary = placement { &[] } else { &merged };
        let out = QueryOut { transaction_id: &t, method: &method, args: &args, extra, read_only, version: v.as_deref() };
        let mut buf = vec![0u8; 8192];
        let n = out.encode(&mut buf).unwrap();
        let wire = &buf[..n];

        let msg = Message::decode(wire).unwrap();
        prop_assert_eq!(msg.transaction_id, &t[..]);
        prop_assert_eq!(msg.version, v.as_deref());
        prop_assert_eq!(msg.read_only, read_only);
        prop_assert_eq!(msg.ip, None);
        let Body::Query(q) = msg.body else { panic!("not a query: {msg:?}") };
        prop_assert_eq!(q.method, &method[..]);
        check_fields(&q.args, &model)?;
        // Our encoders are canonical: decoding and re-encoding changes nothing, and bendy agrees.
        prop_assert_eq!(encode(&msg), wire);
        prop_assert!(bendy_tree(wire).is_ok(), "{:?}", bendy_tree(wire));
    }

    #[test]
    fn a_response_model_survives_encoding_and_decoding(
        t in transaction_id(),
        v in version(),
        ip in proptest::option::of(socket_addr(0)),
        id in any::<[u8; 20]>(),
        nodes in vec(node(), 0..10),
        (with_nodes, with_nodes6) in (any::<bool>(), any::<bool>()),
        token in proptest::option::of(vec(any::<u8>(), 0..20)),
        peers in proptest::option::of(vec(socket_addr(1), 0..60)),
        unknown in vec((unknown_key(), value()), 0..3),
    ) {
        let mut app = BTreeMap::new();
        for (k, v) in unknown {
            app.insert(k, v);
        }
        let values = build_dictionary(&app);
        let mut extra = vec![Entry { key: b"id", value: Insert::Bytes(&id), replace: false }];
        if with_nodes {
            extra.push(Entry { key: b"nodes", value: Insert::NodesV4(&nodes), replace: false });
        }
        if with_nodes6 {
            extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(&nodes), replace: false });
        }
        if let Some(token) = &token {
            extra.push(Entry { key: b"token", value: Insert::Bytes(token), replace: false });
        }
        if let Some(peers) = &peers {
            extra.push(Entry { key: b"values", value: Insert::Peers(peers), replace: false });
        }
        let out = ResponseOut { transaction_id: &t, values: &values, extra: &extra, ip, version: v.as_deref() };
        let mut buf = vec![0u8; 8192];
        let n = out.encode(&mut buf).unwrap();
        let wire = &buf[..n];

        let msg = Message::decode(wire).unwrap();
        prop_assert_eq!(msg.transaction_id, &t[..]);
        prop_assert_eq!(msg.version, v.as_deref());
        prop_assert_eq!(msg.ip, ip);
        prop_assert!(!msg.read_only);
        let Body::Response(r) = msg.body else { panic!("not a response: {msg:?}") };
        prop_assert_eq!(r.id(), Some(&id[..]));
        let v4: Vec<NodeInfo> = nodes.iter().copied().filter(|n| n.addr.is_ipv4()).collect();
        let v6: Vec<NodeInfo> = nodes.iter().copied().filter(|n| n.addr.is_ipv6()).collect();
        prop_assert_eq!(r.nodes().map(|n| n.collect::<Vec<_>>()), with_nodes.then(|| v4.clone()));
        prop_assert_eq!(r.nodes6().map(|n| n.collect::<Vec<_>>()), with_nodes6.then(|| v6.clone()));
        if with_nodes {
            prop_assert_eq!(r.nodes().unwrap().as_bytes().len(), 26 * v4.len());
        }
        if with_nodes6 {
            prop_assert_eq!(r.nodes6().unwrap().as_bytes().len(), 38 * v6.len());
        }
        prop_assert_eq!(r.token(), token.as_deref());
        prop_assert_eq!(r.values_list().map(|l| l.len()), peers.as_ref().map(Vec::len));
        prop_assert_eq!(r.values().collect::<Vec<_>>(), peers.clone().unwrap_or_default());
        for (k, v) in &app {
            prop_assert_eq!(r.get(k).map(from_view), Some(canonical(v)));
        }
        prop_assert_eq!(r.dict().len(), 1 + app.len() + usize::from(with_nodes) + usize::from(with_nodes6)
            + usize::from(token.is_some()) + usize::from(peers.is_some()));
        prop_assert_eq!(encode(&msg), wire);
        prop_assert!(bendy_tree(wire).is_ok(), "{:?}", bendy_tree(wire));
    }

    #[test]
    fn an_error_model_survives_encoding_and_decoding(
        t in transaction_id(),
        v in version(),
        ip in proptest::option::of(socket_addr(0)),
        code in any::<i64>(),
        message in vec(any::<u8>(), 0..64),
    ) {
        let out = ErrorOut { transaction_id: &t, code, message: &message, ip, version: v.as_deref() };
        let mut buf = [0u8; 512];
        let n = out.encode(&mut buf).unwrap();
        let wire = &buf[..n];
        let msg = Message::decode(wire).unwrap();
        prop_assert_eq!(msg.transaction_id, &t[..]);
        prop_assert_eq!(msg.version, v.as_deref());
        prop_assert_eq!(msg.ip, ip);
        let e = msg.as_error().unwrap();
        prop_assert_eq!((e.code, e.message), (code, &message[..]));
        prop_assert_eq!(encode(&msg), wire);
        prop_assert!(bendy_tree(wire).is_ok(), "{:?}", bendy_tree(wire));
    }

    // -----------------------------------------------------------------------------------------
    // (b) Canonical idempotence for arbitrary argument dictionaries (unsorted, duplicated keys).

    #[test]
    fn re_encoding_a_decoded_query_is_its_canonical_form_and_idempotent(
        entries in vec((key(), value()), 0..8),
        method in vec(any::<u8>(), 0..10),
    ) {
        let args = B::Dict(entries.clone());
        let x = cat(&[b"d1:a", &to_bytes(&args), b"1:q", &bstr(&method), b"1:t2:aa1:y1:qe"]);
        let decoded = Message::decode(&x);
        if !entries.iter().any(|(k, _)| is_typed(k)) {
            // Without typed keys nothing can break a KRPC rule.
            prop_assert!(decoded.is_ok(), "{:?}", decoded);
        }
        if let Ok(msg) = decoded {
            let y = encode(&msg);
            // Sorting an unsorted dictionary is measured, not only written.
            prop_assert_eq!(msg.encoded_len(), y.len());
            let expected = B::Dict(vec![
                (b"a".to_vec(), canonical(&args)),
                (b"q".to_vec(), bytes(&method)),
                (b"t".to_vec(), bytes(b"aa")),
                (b"y".to_vec(), bytes(b"q")),
            ]);
            prop_assert_eq!(&y, &to_bytes(&expected));
            let again = Message::decode(&y).unwrap();
            prop_assert_eq!(encode(&again), y.clone());
            prop_assert_eq!(bendy_tree(&y), Ok(expected));
        }
    }

    // -----------------------------------------------------------------------------------------
    // (c) Differential with bendy on canonical messages.

    #[test]
    fn bendy_and_our_generic_view_agree_on_canonical_messages(
        args in vec((unknown_key(), value()), 0..8),
        id in any::<[u8; 20]>(),
        t in transaction_id(),
        kind in 0..2u8,
    ) {
        let mut entries = args;
        entries.push((b"id".to_vec(), bytes(&id)));
        let inner = canonical(&B::Dict(entries));
        let message = if kind == 0 {
            B::Dict(vec![
                (b"a".to_vec(), inner.clone()),
                (b"q".to_vec(), bytes(b"x_method")),
                (b"t".to_vec(), bytes(&t)),
                (b"y".to_vec(), bytes(b"q")),
            ])
        } else {
            B::Dict(vec![(b"r".to_vec(), inner.clone()), (b"t".to_vec(), bytes(&t)), (b"y".to_vec(), bytes(b"r"))])
        };
        let wire = to_bytes(&message);

        let bendy = bendy_tree(&wire);
        prop_assert_eq!(bendy.as_ref(), Ok(&message));
        prop_assert_eq!(from_dict(Dict::parse(&wire).unwrap()), message.clone());
        let msg = Message::decode(&wire).unwrap();
        let fields = match msg.body {
            Body::Query(q) => q.args,
            Body::Response(r) => r,
            Body::Error(_) => unreachable!(),
        };
        prop_assert_eq!(from_dict(fields.dict()), inner);
        prop_assert_eq!(fields.id(), Some(&id[..]));
        // Canonical input re-encodes to itself.
        prop_assert_eq!(encode(&msg), wire);
    }

    #[test]
    fn bendy_accepts_every_owned_dictionary_we_build(model in dictionary_model()) {
        let d = build_dictionary(&model);
        let expected = B::Dict(model.iter().map(|(k, v)| (k.clone(), canonical(v))).collect());
        prop_assert_eq!(bendy_tree(d.as_bencode()), Ok(expected.clone()));
        prop_assert_eq!(from_dict(d.view()), expected);
        prop_assert_eq!(Dictionary::from_dict(d.view()), d);
    }

    #[test]
    fn dictionary_from_bencode_is_the_canonical_form(entries in vec((key(), value()), 0..8)) {
        let raw = to_bytes(&B::Dict(entries.clone()));
        let d = Dictionary::from_bencode(&raw).unwrap();
        let expected = canonical(&B::Dict(entries));
        prop_assert_eq!(d.as_bencode(), &to_bytes(&expected)[..]);
        prop_assert_eq!(bendy_tree(d.as_bencode()), Ok(expected));
    }

}

// -----------------------------------------------------------------------------------------------
// (d) Arbitrary input never panics; whatever decodes re-encodes stably. Cheap cases, so more.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..300)) {
        if check_decode(&data) {
            bendy_accepts_the_re_encoding(&data)?;
        }
    }

    #[test]
    fn bencode_token_soup_never_panics(data in token_soup()) {
        if check_decode(&data) {
            bendy_accepts_the_re_encoding(&data)?;
        }
    }

    #[test]
    fn mutated_messages_never_panic(seed in select(seeds()), edits in vec(edit(), 1..5)) {
        let mut data = seed.to_vec();
        for e in &edits {
            e.apply(&mut data);
        }
        if check_decode(&data) {
            bendy_accepts_the_re_encoding(&data)?;
        }
    }
}

/// Skeletons for the token soup: the soup goes between the two halves.
const SKELETONS: [(&[u8], &[u8]); 4] = [
    (b"d1:ad", b"e1:q4:ping1:t2:aa1:y1:qe"),
    (b"d1:rd", b"e1:t2:aa1:y1:re"),
    (b"d1:eli201e", b"e1:t2:aa1:y1:ee"),
    (b"d", b"e"),
];

/// Fragments of bencode: mostly whole key/value pairs, some bare container brackets.
const TOKENS: [&[u8]; 28] = [
    b"1:xi1e",
    b"1:xle",
    b"1:xde",
    b"1:x0:",
    b"1:yl",
    b"1:zd",
    b"l",
    b"d",
    b"e",
    b"i-5e",
    b"0:",
    b"2:id20:abcdefghij0123456789",
    b"5:nodes26:abcdefghij0123456789\x01\x02\x03\x04\x1a\xe1",
    b"6:nodes60:",
    b"6:valuesl6:\x01\x02\x03\x04\x05\x06e",
    b"6:valuesle",
    b"4:porti6881e",
    b"5:token2:tk",
    b"1:vd1:bi1e1:ai2ee",
    b"4:wantl2:n4e",
    b"1:t2:aa",
    b"1:y1:q",
    b"1:q4:ping",
    b"2:roi1e",
    b"2:ip6:\x01\x02\x03\x04\x05\x06",
    b"3:seqi1e",
    b"li1ei2ee",
    b"1:",
];

fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    (select(SKELETONS.to_vec()), vec(select(TOKENS.to_vec()), 0..12))
        .prop_map(|((head, tail), tokens)| cat(&[head, &tokens.concat(), tail]))
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = GOLDEN.iter().map(|(_, b)| b.to_vec()).collect();
    out.extend(BenchInputs::new().messages().into_iter().map(|(_, b)| b));
    out.push(b"d1:e5:oops!1:t2:aa1:y1:ee".to_vec());
    out.push(b"d1:y1:q2:roi1e1:t4:abcd1:v4:LT\x01\x021:q4:ping1:ad2:id20:abcdefghij0123456789ee".to_vec());
    out.push(cat(&[b"d2:ip6:", &[124, 31, 75, 21, 0x1a, 0xe1], b"1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"]));
    out
}

#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Edit::Flip(i, m)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

impl Edit {
    fn apply(&self, data: &mut Vec<u8>) {
        let len = data.len();
        match *self {
            Edit::Flip(i, mask) if len > 0 => data[i % len] ^= mask,
            Edit::Truncate(i) => data.truncate(i % (len + 1)),
            Edit::Insert(i, b) => data.insert(i % (len + 1), b),
            Edit::Delete(i) if len > 0 => {
                data.remove(i % len);
            }
            _ => {}
        }
    }
}

/// The canonical re-encoding of a decodable datagram passes bendy's strict decoder and
/// describes the same top-level message.
fn bendy_accepts_the_re_encoding(data: &[u8]) -> Result<(), TestCaseError> {
    let msg = Message::decode(data).unwrap();
    let y = encode(&msg);
    let tree = bendy_tree(&y);
    prop_assert!(tree.is_ok(), "bendy rejects {:?}: {:?}", String::from_utf8_lossy(&y), tree);
    prop_assert_eq!(tree.unwrap(), from_dict(Dict::parse(&y).unwrap()));
    Ok(())
}

#[test]
fn the_mutation_seeds_all_decode() {
    for seed in seeds() {
        assert!(check_decode(&seed), "{:?}", String::from_utf8_lossy(&seed));
    }
}

// -----------------------------------------------------------------------------------------------
// (e) `encoded_len` is the length `encode` writes, for arbitrary (not necessarily sensible)
// inputs: empty and long strings, negative and extreme integers, both address families and
// IPv4-mapped IPv6, non-canonical nested dictionaries, every kind of merged entry.

/// An owned [`Insert`].
#[derive(Clone, Debug)]
enum InsertModel {
    Bytes(Vec<u8>),
    Int(i64),
    NodesV4(Vec<NodeInfo>),
    NodesV6(Vec<NodeInfo>),
    Peers(Vec<SocketAddr>),
}

impl InsertModel {
    fn as_insert(&self) -> Insert<'_> {
        match self {
            InsertModel::Bytes(b) => Insert::Bytes(b),
            InsertModel::Int(n) => Insert::Int(*n),
            InsertModel::NodesV4(n) => Insert::NodesV4(n),
            InsertModel::NodesV6(n) => Insert::NodesV6(n),
            InsertModel::Peers(p) => Insert::Peers(p),
        }
    }
}

/// Any address, IPv4-mapped IPv6 included (written in the IPv4 compact form).
fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        socket_addr(0),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
            SocketAddr::V6(SocketAddrV6::new(Ipv4Addr::from(ip).to_ipv6_mapped(), port, 0, 0))
        }),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(s, port)| SocketAddr::V6(SocketAddrV6::new(s.into(), port, 0, 0))),
    ]
}

fn any_node() -> impl Strategy<Value = NodeInfo> {
    (vec(any::<u8>(), 1..=20), any_addr())
        .prop_map(|(id, addr)| NodeInfo::new(NodeId::from_bytes(&id).expect("1 to 20 bytes"), addr))
}

fn insert_model() -> impl Strategy<Value = InsertModel> {
    prop_oneof![
        vec(any::<u8>(), 0..300).prop_map(InsertModel::Bytes),
        any::<i64>().prop_map(InsertModel::Int),
        vec(any_node(), 0..12).prop_map(InsertModel::NodesV4),
        vec(any_node(), 0..12).prop_map(InsertModel::NodesV6),
        vec(any_addr(), 0..40).prop_map(InsertModel::Peers),
    ]
}

/// `encode` writes exactly `len` bytes into a buffer with room to spare and into one of
/// exactly that size, and one byte less is refused with `len` as the size needed.
fn encodes_to(len: usize, encode: impl Fn(&mut [u8]) -> Result<usize, BufferTooSmall>) -> Result<(), TestCaseError> {
    prop_assert_eq!(encode(&mut vec![0u8; len + 100]), Ok(len));
    prop_assert_eq!(encode(&mut vec![0u8; len]), Ok(len));
    prop_assert_eq!(encode(&mut vec![0u8; len - 1]), Err(BufferTooSmall { required: len }));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_len_is_the_length_encode_writes(
        t in vec(any::<u8>(), 0..40),
        method in vec(any::<u8>(), 0..20),
        entries in vec((key(), value()), 0..6),
        mut merged in vec((key(), insert_model(), any::<bool>()), 0..5),
        read_only in any::<bool>(),
        v in version(),
        ip in proptest::option::of(any_addr()),
        code in any::<i64>(),
        message in vec(any::<u8>(), 0..300),
    ) {
        // `insert_bencode` takes values as they come (unsorted, repeated nested keys) and
        // keeps them canonical, as the encoders require of `args` and `values`.
        let mut dict = Dictionary::new();
        for (k, value) in &entries {
            dict.insert_bencode(k, &to_bytes(value)).expect("valid bencode");
        }
        // Merged entries are documented as sorted ascending by key.
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        merged.dedup_by(|later, earlier| later.0 == earlier.0);
        let extra: Vec<Entry<'_>> =
            merged.iter().map(|(key, value, replace)| Entry { key, value: value.as_insert(), replace: *replace }).collect();

        let query = QueryOut { transaction_id: &t, method: &method, args: &dict, extra: &extra, read_only, version: v.as_deref() };
        encodes_to(query.encoded_len(), |buf| query.encode(buf))?;
        let response = ResponseOut { transaction_id: &t, values: &dict, extra: &extra, ip, version: v.as_deref() };
        encodes_to(response.encoded_len(), |buf| response.encode(buf))?;
        let error = ErrorOut { transaction_id: &t, code, message: &message, ip, version: v.as_deref() };
        encodes_to(error.encoded_len(), |buf| error.encode(buf))?;

        // And a decoded message's own re-encoding (its length is checked against the bytes
        // on every decoded input by `check_decode` in (d) as well).
        let mut wire = vec![0u8; query.encoded_len()];
        query.encode(&mut wire).unwrap();
        if let Ok(msg) = Message::decode(&wire) {
            encodes_to(msg.encoded_len(), |buf| msg.encode(buf))?;
        }
    }
}
