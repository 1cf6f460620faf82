//! BEP 44 through the engine: puts and gets across a small network of endpoints with the node
//! layer on, and a scripted endpoint fed forged replies.

mod support;

use std::time::Duration;

use krpc_core::dht::bep44::ed25519_dalek::SigningKey;
use krpc_core::dht::bep44::immutable_target;
use krpc_core::dht::{Item, ItemError, MutableItem};
use krpc_core::wire::Dictionary;
use krpc_core::{CommandError, Config, Event, NodeId, OpId, PutOutcome, QueryError};
use support::{Net, Script, config_with_id, id, net_addr, node, sa};

const N: usize = 24;

/// A joined network of `N` endpoints with the node layer on.
fn network(seed: u64) -> Net {
    let mut net = Net::new(N, seed, |i| Config {
        bootstrap: if i == 0 { vec![] } else { vec![net_addr(0)] },
        address_policy: krpc_core::AddressPolicy::Any,
        ..Config::dht()
    });
    for i in 1..N {
        let now = net.now;
        let op = net.ep(i).bootstrap(now).unwrap();
        net.run_until(Duration::from_secs(30), |net| {
            net.events.iter().any(|(_, j, e)| *j == i && matches!(e, Event::LookupDone { op: o, .. } if *o == op))
        });
    }
    net.run_for(Duration::from_secs(2));
    net
}

fn put_result(net: &Net, i: usize, op: OpId) -> Option<Result<PutOutcome, QueryError>> {
    net.events.iter().find_map(|(_, n, e)| match e {
        Event::PutItemDone { op: o, result } if *n == i && *o == op => Some(result.clone()),
        _ => None,
    })
}

fn get_result(net: &Net, i: usize, op: OpId) -> Option<Option<Item>> {
    net.events.iter().find_map(|(_, n, e)| match e {
        Event::GetItemDone { op: o, item, .. } if *n == i && *o == op => Some(item.clone()),
        _ => None,
    })
}

fn put(net: &mut Net, i: usize, start: impl FnOnce(&mut Net) -> Result<OpId, CommandError>) -> PutOutcome {
    let op = start(net).unwrap();
    net.run_until(Duration::from_secs(60), |net| put_result(net, i, op).is_some());
    put_result(net, i, op).unwrap().expect("the put reached nodes")
}

fn get(net: &mut Net, i: usize, start: impl FnOnce(&mut Net) -> Result<OpId, CommandError>) -> Option<Item> {
    let op = start(net).unwrap();
    net.run_until(Duration::from_secs(60), |net| get_result(net, i, op).is_some());
    get_result(net, i, op).unwrap()
}

#[test]
fn an_immutable_item_put_by_one_node_is_read_by_another() {
    let mut net = network(1);
    let value = b"12:Hello World!";
    let outcome = put(&mut net, 3, |net| {
        let now = net.now;
        net.ep(3).put_immutable(now, value)
    });
    assert!(outcome.stored >= 4, "stored on {} nodes", outcome.stored);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_eq!(outcome.target, immutable_target(value));
    let item = get(&mut net, 17, |net| {
        let now = net.now;
        net.ep(17).get_immutable(now, immutable_target(value))
    });
    assert_eq!(item, Some(Item::Immutable { value: value.to_vec() }));
    // Nothing stored under another target.
    let none = get(&mut net, 17, |net| {
        let now = net.now;
        net.ep(17).get_immutable(now, immutable_target(b"3:abc"))
    });
    assert_eq!(none, None);
}

#[test]
fn mutable_items_follow_seq_and_cas_and_read_modify_write_bumps_seq() {
    let mut net = network(2);
    let key = SigningKey::from_bytes(&[11; 32]);
    let pk = key.verifying_key().to_bytes();
    let first = MutableItem::sign(&key, b"s", 1, b"5:first").unwrap();
    let outcome = put(&mut net, 2, |net| {
        let now = net.now;
        net.ep(2).put_mutable(now, first.clone(), None)
    });
    assert!(outcome.stored >= 4 && outcome.errors.is_empty(), "{outcome:?}");
    assert_eq!(outcome.seq, Some(1));

    let read = |net: &mut Net, i: usize, salt: &'static [u8], min_seq: Option<i64>| {
        get(net, i, |net| {
            let now = net.now;
            net.ep(i).get_mutable(now, pk, salt, min_seq)
        })
    };
    assert_eq!(read(&mut net, 20, b"s", None), Some(Item::Mutable(first.clone())));
    assert_eq!(read(&mut net, 20, b"other salt", None), None, "the salt is the reader's");

    // Read-modify-write: seq 2, with cas 1.
    let outcome = put(&mut net, 5, |net| {
        let now = net.now;
        net.ep(5).put_mutable_next(now, &key, b"s", b"6:second")
    });
    assert_eq!(outcome.seq, Some(2));
    assert!(outcome.stored >= 4 && outcome.errors.is_empty(), "{outcome:?}");
    let latest = read(&mut net, 11, b"s", Some(2)).expect("seq 2 found");
    assert_eq!((latest.seq(), latest.value()), (Some(2), &b"6:second"[..]));
    assert_eq!(read(&mut net, 11, b"s", Some(3)), None, "nothing as new as seq 3");

    // An older item is refused with 302 by every node holding seq 2 ...
    let outcome = put(&mut net, 7, |net| {
        let now = net.now;
        net.ep(7).put_mutable(now, first.clone(), None)
    });
    assert!(outcome.errors.iter().any(|e| e.code == 302), "{outcome:?}");
    assert!(outcome.errors.iter().all(|e| e.code == 302));
    // ... and a put whose cas is not the stored seq with 301.
    let third = MutableItem::sign(&key, b"s", 3, b"5:third").unwrap();
    let outcome = put(&mut net, 7, |net| {
        let now = net.now;
        net.ep(7).put_mutable(now, third.clone(), Some(1))
    });
    assert!(outcome.errors.iter().any(|e| e.code == 301), "{outcome:?}");
}

#[test]
fn republishing_the_same_item_is_accepted() {
    let mut net = network(3);
    let key = SigningKey::from_bytes(&[12; 32]);
    let item = MutableItem::sign(&key, b"", 4, b"i42e").unwrap();
    for _ in 0..2 {
        let outcome = put(&mut net, 9, |net| {
            let now = net.now;
            net.ep(9).put_mutable(now, item.clone(), None)
        });
        assert!(outcome.stored >= 4 && outcome.errors.is_empty(), "{outcome:?}");
    }
}

#[test]
fn invalid_items_are_refused_before_anything_is_sent() {
    let mut s = Script::new(Config::dht());
    let now = s.now;
    let mut big = b"997:".to_vec();
    big.resize(1001, b'x');
    assert_eq!(s.ep.put_immutable(now, &big), Err(CommandError::InvalidItem(ItemError::ValueTooBig)));
    assert_eq!(s.ep.put_immutable(now, b"3:ab"), Err(CommandError::InvalidItem(ItemError::InvalidValue)));
    let key = SigningKey::from_bytes(&[1; 32]);
    let mut forged = MutableItem::sign(&key, b"", 1, b"i1e").unwrap();
    forged.seq = 2;
    assert_eq!(s.ep.put_mutable(now, forged, None), Err(CommandError::InvalidItem(ItemError::InvalidSignature)));
    assert_eq!(s.ep.get_mutable(now, [0; 32], &[0; 65], None), Err(CommandError::InvalidItem(ItemError::SaltTooBig)));
    assert!(s.sent().is_empty());
}

/// A scripted get: one node in the table; `reply` builds its answer's values.
fn scripted_get(start: impl FnOnce(&mut Script) -> OpId, values: Dictionary) -> (Vec<Event>, OpId) {
    let mut s = Script::new(config_with_id(id(0x80)));
    let peer = node(0x81, 1);
    s.insert(&[peer]);
    let op = start(&mut s);
    let q = s.sent().into_iter().find(|q| q.method() == b"get").expect("a get query");
    s.reply_with(&q, Some(&peer.id), &values, &[]);
    s.wait(Duration::from_secs(30));
    (s.events(), op)
}

#[test]
fn a_value_that_does_not_hash_to_the_target_is_never_surfaced() {
    let target = immutable_target(b"5:right");
    let mut values = Dictionary::new().with_bytes("token", b"tok");
    values.insert_bencode("v", b"5:wrong").unwrap();
    let (events, op) = scripted_get(
        |s| {
            let now = s.now;
            s.ep.get_immutable(now, target).unwrap()
        },
        values,
    );
    assert!(!events.iter().any(|e| matches!(e, Event::ItemFound { .. })));
    assert!(events.iter().any(|e| matches!(e, Event::GetItemDone { op: o, item: None, .. } if *o == op)));
}

#[test]
fn a_mutable_item_with_a_bad_signature_or_key_is_never_surfaced() {
    let key = SigningKey::from_bytes(&[2; 32]);
    let good = MutableItem::sign(&key, b"", 3, b"i7e").unwrap();
    let values = |item: &MutableItem, k: [u8; 32], seq: i64| {
        let mut d = Dictionary::new()
            .with_bytes("k", k)
            .with_bytes("sig", item.signature)
            .with_int("seq", seq)
            .with_bytes("token", b"tok");
        d.insert_bencode("v", &item.value).unwrap();
        d
    };
    let get = |s: &mut Script| {
        let now = s.now;
        s.ep.get_mutable(now, good.key, b"", None).unwrap()
    };
    for forged in [values(&good, good.key, 4), values(&good, [9; 32], 3)] {
        let (events, op) = scripted_get(get, forged);
        assert!(!events.iter().any(|e| matches!(e, Event::ItemFound { .. })));
        assert!(events.iter().any(|e| matches!(e, Event::GetItemDone { op: o, item: None, .. } if *o == op)));
    }
    let (events, op) = scripted_get(get, values(&good, good.key, 3));
    assert!(events.iter().any(|e| matches!(e, Event::ItemFound { item: Item::Mutable(m), .. } if *m == good)));
    assert!(events.iter().any(|e| matches!(e, Event::GetItemDone { op: o, item: Some(_), .. } if *o == op)));
}

#[test]
fn a_get_query_is_answered_with_a_token() {
    // mainline's announce starts with a BEP 44 `get`, and only announces to nodes whose
    // answer carries a token.
    let mut s = Script::new(Config::dht());
    let target = NodeId::from_array([0x33; 20]);
    let q = support::query_bytes(
        b"aa",
        "get",
        &Dictionary::new().with_bytes("target", target.as_bytes()),
        Some(&id(1)),
        false,
    );
    s.deliver(sa("10.0.0.9:1000"), &q);
    let answer = s.sent().into_iter().find(|m| !m.is_query()).expect("an answer");
    assert!(answer.values().token().is_some());
}

#[test]
fn a_flood_of_puts_from_many_addresses_keeps_the_store_within_its_caps() {
    // 300 sources on public addresses, each fetching a token with `get` and putting a
    // 900-byte mutable item: the store fills up to its caps and stays there.
    let limits = krpc_core::dht::ItemStoreLimits { max_items: 100, max_bytes: 16 * 1024, ..Default::default() };
    let dht = krpc_core::dht::DhtConfig { item_store: limits, ..Default::default() };
    let mut s = Script::new(Config { dht: Some(dht.into()), ..Config::dht() });
    let mut value = b"896:".to_vec();
    value.resize(900, b'z');
    let mut peak = (0, 0);
    for n in 0..300u32 {
        s.wait(Duration::from_millis(50));
        let from = std::net::SocketAddr::from(([11, (n >> 16) as u8, (n >> 8) as u8, n as u8], 6881));
        let key = SigningKey::from_bytes(&[(n % 251) as u8; 32]);
        let item = MutableItem::sign(&key, &n.to_be_bytes(), 1, &value).unwrap();
        let get = Dictionary::new().with_bytes("target", item.target().as_bytes());
        s.deliver(from, &support::query_bytes(b"g", "get", &get, Some(&id(1)), false));
        let Some(token) = s.sent().iter().find_map(|m| m.values().token().map(<[u8]>::to_vec)) else { continue };
        let mut put = Dictionary::new()
            .with_bytes("k", item.key)
            .with_bytes("salt", &item.salt)
            .with_int("seq", 1)
            .with_bytes("sig", item.signature)
            .with_bytes("token", token);
        put.insert_bencode("v", &item.value).unwrap();
        s.deliver(from, &support::query_bytes(b"p", "put", &put, Some(&id(1)), false));
        let _ = s.sent();
        let (items, bytes) = s.ep.stored_items().unwrap();
        assert!(items <= limits.max_items && bytes <= limits.max_bytes, "{items} items, {bytes} bytes");
        peak = peak.max((items, bytes));
    }
    // The byte cap binds first: 16 KiB / (900 + 160) = 15 items.
    assert_eq!(peak.0, limits.max_bytes / (900 + krpc_core::dht::item_store::ITEM_OVERHEAD), "the store filled");
}
