//! Hostile and broken datagrams: each maps to one exact `DecodeErrorKind` and byte offset.
//!
//! Also covers the split between broken bencode (dropped silently) and well-formed bencode
//! that breaks a KRPC rule (answered with a 203), and salvaging the `t` of a broken query.

mod common;

use common::*;
use krpc_core::wire::{
    DecodeError, DecodeErrorKind as K, Decoder, Dict, Dictionary, Expected, Message, Value,
    salvage_query_transaction_id,
};

const ID: &[u8] = b"2:id20:abcdefghij0123456789";

struct Case {
    name: &'static str,
    input: Vec<u8>,
    decoder: Decoder,
    kind: K,
    offset: usize,
}

fn case(name: &'static str, input: impl Into<Vec<u8>>, kind: K, offset: usize) -> Case {
    Case { name, input: input.into(), decoder: Decoder::new(), kind, offset }
}

fn with(decoder: Decoder, name: &'static str, input: impl Into<Vec<u8>>, kind: K, offset: usize) -> Case {
    Case { name, input: input.into(), decoder, kind, offset }
}

/// A query whose argument dictionary holds `inner` (which starts at offset 5).
fn query(method: &[u8], inner: &[u8]) -> Vec<u8> {
    cat(&[b"d1:ad", inner, b"e1:q", &bstr(method), b"1:t2:aa1:y1:qe"])
}

/// A response whose `r` dictionary holds `inner` (which starts at offset 5).
fn response(inner: &[u8]) -> Vec<u8> {
    cat(&[b"d1:rd", inner, b"e1:t2:aa1:y1:re"])
}

/// The offset just past the first occurrence of `needle`.
fn after(hay: &[u8], needle: &[u8]) -> usize {
    pos(hay, needle) + needle.len()
}

fn wrong_type(key: &'static str, expected: Expected) -> K {
    K::WrongType { key, expected }
}

fn wrong_length(key: &'static str, expected: usize, found: usize) -> K {
    K::WrongLength { key, expected, found }
}

fn nested(open: &[u8], depth: usize, close: &[u8]) -> Vec<u8> {
    cat(&[open, &b"l".repeat(depth), &b"e".repeat(depth), close])
}

fn cases() -> Vec<Case> {
    let ping_with_id = |id_value: &[u8]| query(b"ping", &cat(&[b"2:id", id_value]));
    let mut many_keys = b"d1:ad".to_vec();
    for i in 0..257 {
        many_keys.extend_from_slice(format!("4:x{i:03}i0e").as_bytes());
    }
    many_keys.extend_from_slice(b"e1:q4:ping1:t2:aa1:y1:qe");
    let long_t = cat(&[b"d1:ad", ID, b"e1:q4:ping1:t", &bstr(&[b'T'; 33]), b"1:y1:qe"]);

    let int_id = ping_with_id(b"i5e");
    let list_id = ping_with_id(b"l1:xe");
    let id19 = ping_with_id(&bstr(&[b'a'; 19]));
    let id21 = ping_with_id(&bstr(&[b'a'; 21]));
    let info_hash = |v: &[u8]| query(b"get_peers", &cat(&[ID, b"9:info_hash", v]));
    let target = |v: &[u8]| query(b"find_node", &cat(&[ID, b"6:target", v]));
    let announce = |port: &[u8]| {
        query(b"announce_peer", &cat(&[ID, b"9:info_hash20:mnopqrstuvwxyz1234564:port", port, b"5:token2:tk"]))
    };
    let token_int = query(b"announce_peer", &cat(&[ID, b"5:tokeni7e"]));
    let nodes_int = response(&cat(&[ID, b"5:nodesi0e"]));
    let values_dict = response(&cat(&[ID, b"6:valuesd1:a6:123456e"]));
    let values_int_item = response(&cat(&[ID, b"6:valuesl6:123456i6ee"]));
    let want_string = query(b"find_node", &cat(&[ID, b"4:want2:n4"]));
    let want_int_item = query(b"find_node", &cat(&[ID, b"4:wantl2:n4i4ee"]));
    let implied_string = query(b"announce_peer", &cat(&[ID, b"12:implied_port1:1"]));
    let seq_string = query(b"put", &cat(&[ID, b"3:seq1:1"]));
    let k_int = query(b"put", &cat(&[ID, b"1:ki1e"]));
    let k31 = query(b"put", &cat(&[ID, b"1:k", &bstr(&[7; 31])]));
    let sig63 = query(b"put", &cat(&[ID, b"3:sig", &bstr(&[7; 63])]));
    let bfsd255 = response(&cat(&[b"4:BFsd", &bstr(&[0; 255]), ID]));
    let bfpe257 = response(&cat(&[b"4:BFpe", &bstr(&[0; 257]), ID]));
    let ip7 = cat(&[b"d2:ip7:1234567", b"1:rd", ID, b"e1:t2:aa1:y1:re"]);
    let ip4 = cat(&[b"d2:ip4:1234", b"1:rd", ID, b"e1:t2:aa1:y1:re"]);
    let ip_int = cat(&[b"d2:ipi1e", b"1:rd", ID, b"e1:t2:aa1:y1:re"]);
    let ro_string = cat(&[b"d1:ad", ID, b"e1:q4:ping2:ro1:11:t2:aa1:y1:qe"]);
    let deep_a = nested(b"d1:ad1:x", 200, b"e1:q4:ping1:t2:aa1:y1:qe");
    let deep_top = nested(b"d1:x", 200, b"1:t2:aa1:y1:qe");
    let port_neg_zero = announce(b"i-0e");
    let missing_t = cat(&[b"d1:ad", ID, b"e1:q4:ping1:y1:qe"]);
    let missing_y = cat(&[b"d1:ad", ID, b"e1:q4:ping1:t2:aae"]);
    let missing_q = cat(&[b"d1:ad", ID, b"e1:t2:aa1:y1:qe"]);
    let int_q = cat(&[b"d1:ad", ID, b"e1:qi1e1:t2:aa1:y1:qe"]);

    vec![
        // Size and shape.
        case("empty datagram", b"".to_vec(), K::Empty, 0),
        case("8193 bytes", vec![b'd'; 8193], K::TooLarge { max: 8192 }, 8192),
        with(Decoder::new().with_max_len(16), "longer than a custom max_len", PING_Q, K::TooLarge { max: 16 }, 16),
        case("a list", b"le".to_vec(), K::NotADictionary, 0),
        case("an integer", b"i42e".to_vec(), K::NotADictionary, 0),
        case("a string", b"4:spam".to_vec(), K::NotADictionary, 0),
        case("a stray byte", b"x".to_vec(), K::NotADictionary, 0),
        case("l-3: at the root", b"l-3:".to_vec(), K::NotADictionary, 0),
        // Truncations.
        case("only the opening d", b"d".to_vec(), K::UnexpectedEnd, 1),
        case("key length without colon", b"d1".to_vec(), K::UnexpectedEnd, 2),
        case("key cut after its colon", b"d1:".to_vec(), K::LengthPastEnd { declared: 1, remaining: 0 }, 1),
        case("t cut inside its value", b"d1:t2:a".to_vec(), K::LengthPastEnd { declared: 2, remaining: 1 }, 4),
        case("cut after the t value", b"d1:t2:aa".to_vec(), K::UnexpectedEnd, 8),
        case(
            "id cut inside its value",
            b"d1:ad2:id20:abc".to_vec(),
            K::LengthPastEnd { declared: 20, remaining: 3 },
            9,
        ),
        case("cut right after the id key", b"d1:ad2:id".to_vec(), K::UnexpectedEnd, 9),
        case("cut right after the port key", b"d1:ad4:port".to_vec(), K::UnexpectedEnd, 11),
        case("cut right after the values key", b"d1:rd6:values".to_vec(), K::UnexpectedEnd, 13),
        case("cut right after the ro key", b"d2:ro".to_vec(), K::UnexpectedEnd, 5),
        case("cut inside the error list", b"d1:eli201e".to_vec(), K::UnexpectedEnd, 10),
        case("cut inside an integer", b"d1:eli20".to_vec(), K::UnexpectedEnd, 8),
        case("missing the final e", &PING_Q[..PING_Q.len() - 1], K::UnexpectedEnd, PING_Q.len() - 1),
        case("integer id then cut", b"d1:ad2:idi5e".to_vec(), K::UnexpectedEnd, 12),
        // Negative and huge lengths.
        case("negative t length", b"d1:t-3:".to_vec(), K::NegativeLength, 4),
        case("negative id length", ping_with_id(b"-3:abc"), K::NegativeLength, 9),
        case("negative length in a skipped list", b"d1:xl-3:abce1:t2:aae".to_vec(), K::NegativeLength, 5),
        case("negative key length", b"d-3:abce".to_vec(), K::KeyNotAString, 1),
        case("length of 20 digits", b"d1:t99999999999999999999:".to_vec(), K::IntegerOverflow, 4),
        case("length past the end", b"d1:t99999:aa".to_vec(), K::LengthPastEnd { declared: 99999, remaining: 2 }, 4),
        // Integers.
        case("integer above i64::MAX", b"d1:xi9223372036854775808ee".to_vec(), K::IntegerOverflow, 5),
        case("integer below i64::MIN", b"d1:xi-9223372036854775809ee".to_vec(), K::IntegerOverflow, 6),
        case("integer with a leading zero", b"d1:xi03ee".to_vec(), K::LeadingZero, 5),
        case("negative integer with a leading zero", b"d1:xi-03ee".to_vec(), K::LeadingZero, 6),
        case("length with a leading zero", b"d1:t02:aa1:y1:qe".to_vec(), K::LeadingZero, 4),
        case("key length with a leading zero", b"d01:t2:aae".to_vec(), K::LeadingZero, 1),
        case("i-0e", b"d1:xi-0ee".to_vec(), K::NegativeZero, 5),
        case("i-0e as port", port_neg_zero.clone(), K::NegativeZero, after(&port_neg_zero, b"4:porti")),
        case("ie", b"d1:xiee".to_vec(), K::UnexpectedByte { found: b'e' }, 5),
        case("a byte that starts no value", ping_with_id(b"x"), K::UnexpectedByte { found: b'x' }, 9),
        // Trailing bytes.
        case("a byte after the message", cat(&[PING_Q, b"x"]), K::TrailingBytes, PING_Q.len()),
        case("two messages in one datagram", cat(&[PING_Q, PING_Q]), K::TrailingBytes, PING_Q.len()),
        case("an integer id and a trailing byte", cat(&[&int_id, b"e"]), K::TrailingBytes, int_id.len()),
        // Nesting and key budget.
        case("200 nested lists inside a", deep_a, K::TooDeep { max: 16 }, 8 + 14),
        case("200 nested lists at the top level", deep_top, K::TooDeep { max: 16 }, 4 + 15),
        with(
            Decoder::new().with_max_depth(3),
            "a list in a list at max_depth 3",
            query(b"ping", b"1:xllee"),
            K::TooDeep { max: 3 },
            9,
        ),
        with(
            Decoder::new().with_max_keys(4),
            "five keys at max_keys 4",
            PING_Q,
            K::TooManyKeys { max: 4 },
            pos(PING_Q, b"1:y"),
        ),
        case("258 keys", many_keys.clone(), K::TooManyKeys { max: 256 }, pos(&many_keys, b"4:x255")),
        // Keys.
        case("an integer key at the top", b"di1ei2ee".to_vec(), K::KeyNotAString, 1),
        case("an integer key in a", query(b"ping", b"i1ei2e"), K::KeyNotAString, 5),
        case("a list key in a nested dictionary", b"d1:xdlei1eee".to_vec(), K::KeyNotAString, 5),
        case("t twice", b"d1:t2:aa1:t2:bb1:y1:qe".to_vec(), K::DuplicateKey { key: "t" }, 11),
        case("y twice", b"d1:t2:aa1:y1:q1:y1:re".to_vec(), K::DuplicateKey { key: "y" }, 17),
        case("id twice", query(b"ping", &cat(&[ID, ID])), K::DuplicateKey { key: "id" }, 5 + ID.len() + 4),
        case("missing t", missing_t.clone(), K::MissingKey { key: "t" }, missing_t.len()),
        case("missing y", missing_y.clone(), K::MissingKey { key: "y" }, missing_y.len()),
        case("missing q", missing_q.clone(), K::MissingKey { key: "q" }, missing_q.len()),
        case("missing a", b"d1:q4:ping1:t2:aa1:y1:qe".to_vec(), K::MissingKey { key: "a" }, 24),
        case("missing r", b"d1:t2:aa1:y1:re".to_vec(), K::MissingKey { key: "r" }, 15),
        case("missing e", b"d1:t2:aa1:y1:ee".to_vec(), K::MissingKey { key: "e" }, 15),
        case("an empty dictionary", b"de".to_vec(), K::MissingKey { key: "t" }, 2),
        case("unknown y", b"d1:t2:aa1:y1:xe".to_vec(), K::UnknownMessageType, 11),
        case("y of two letters", b"d1:t2:aa1:y2:qqe".to_vec(), K::UnknownMessageType, 11),
        case("t of 33 bytes", long_t.clone(), K::TransactionIdTooLong { max: 32 }, after(&long_t, b"1:t")),
        with(
            Decoder::new().with_max_transaction_id_len(1),
            "t longer than a custom max",
            PING_Q,
            K::TransactionIdTooLong { max: 1 },
            after(PING_Q, b"1:t"),
        ),
        // Wrong types.
        case("integer id", int_id, wrong_type("id", Expected::ByteString), 9),
        case("list id", list_id, wrong_type("id", Expected::ByteString), 9),
        case("integer info_hash", info_hash(b"i1e"), wrong_type("info_hash", Expected::ByteString), 5 + ID.len() + 11),
        case("integer target", target(b"i1e"), wrong_type("target", Expected::ByteString), 5 + ID.len() + 8),
        case(
            "integer token",
            token_int.clone(),
            wrong_type("token", Expected::ByteString),
            after(&token_int, b"5:token"),
        ),
        case(
            "integer nodes",
            nodes_int.clone(),
            wrong_type("nodes", Expected::ByteString),
            after(&nodes_int, b"5:nodes"),
        ),
        case(
            "string port",
            announce(b"4:6881"),
            wrong_type("port", Expected::Integer),
            after(&announce(b"4:6881"), b"4:port"),
        ),
        case(
            "dictionary values",
            values_dict.clone(),
            wrong_type("values", Expected::List),
            after(&values_dict, b"6:values"),
        ),
        case(
            "integer inside values",
            values_int_item.clone(),
            wrong_type("values", Expected::ByteString),
            after(&values_int_item, b"6:123456"),
        ),
        case("string want", want_string.clone(), wrong_type("want", Expected::List), after(&want_string, b"4:want")),
        case(
            "integer inside want",
            want_int_item.clone(),
            wrong_type("want", Expected::ByteString),
            after(&want_int_item, b"2:n4"),
        ),
        case(
            "string implied_port",
            implied_string.clone(),
            wrong_type("implied_port", Expected::Integer),
            after(&implied_string, b"12:implied_port"),
        ),
        case("string seq", seq_string.clone(), wrong_type("seq", Expected::Integer), after(&seq_string, b"3:seq")),
        case("integer k", k_int.clone(), wrong_type("k", Expected::ByteString), after(&k_int, b"1:k")),
        case("integer e", b"d1:ei201e1:t2:aa1:y1:ee".to_vec(), wrong_type("e", Expected::List), 4),
        case("dictionary e", b"d1:ede1:t2:aa1:y1:ee".to_vec(), wrong_type("e", Expected::List), 4),
        case("integer ip", ip_int, wrong_type("ip", Expected::ByteString), 5),
        case("string ro", ro_string.clone(), wrong_type("ro", Expected::Integer), after(&ro_string, b"2:ro")),
        case("list a", b"d1:al1:xe1:q4:ping1:t2:aa1:y1:qe".to_vec(), wrong_type("a", Expected::Dictionary), 4),
        case("string r", b"d1:r2:id1:t2:aa1:y1:re".to_vec(), wrong_type("r", Expected::Dictionary), 4),
        case("integer q", int_q.clone(), wrong_type("q", Expected::ByteString), after(&int_q, b"e1:q")),
        case("integer t", b"d1:ti1e1:y1:qe".to_vec(), wrong_type("t", Expected::ByteString), 4),
        case("integer y", b"d1:t2:aa1:yi1ee".to_vec(), wrong_type("y", Expected::ByteString), 11),
        // Wrong lengths and ranges.
        case("19-byte id", id19, wrong_length("id", 20, 19), 9),
        case("21-byte id", id21, wrong_length("id", 20, 21), 9),
        case("19-byte info_hash", info_hash(&bstr(&[1; 19])), wrong_length("info_hash", 20, 19), 5 + ID.len() + 11),
        case("21-byte info_hash", info_hash(&bstr(&[1; 21])), wrong_length("info_hash", 20, 21), 5 + ID.len() + 11),
        case("19-byte target", target(&bstr(&[1; 19])), wrong_length("target", 20, 19), 5 + ID.len() + 8),
        case("21-byte target", target(&bstr(&[1; 21])), wrong_length("target", 20, 21), 5 + ID.len() + 8),
        case("255-byte BFsd", bfsd255, wrong_length("BFsd", 256, 255), 11),
        case("257-byte BFpe", bfpe257, wrong_length("BFpe", 256, 257), 11),
        case("31-byte k", k31.clone(), wrong_length("k", 32, 31), after(&k31, b"1:k")),
        case("63-byte sig", sig63.clone(), wrong_length("sig", 64, 63), after(&sig63, b"3:sig")),
        case("7-byte ip", ip7, wrong_length("ip", 18, 7), 5),
        case("4-byte ip", ip4, wrong_length("ip", 6, 4), 5),
    ]
}

#[test]
fn every_hostile_input_maps_to_its_exact_error_kind_and_offset() {
    let cases = cases();
    assert!(cases.len() >= 45, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        match c.decoder.decode(&c.input) {
            Ok(msg) => failures.push(format!("{}: decoded as {msg:?}", c.name)),
            Err(err) => {
                let want = DecodeError { kind: c.kind, offset: c.offset };
                if err != want {
                    failures.push(format!(
                        "{}: got {:?} at {}, want {:?} at {}",
                        c.name, err.kind, err.offset, c.kind, c.offset
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_case_names_are_unique() {
    let cases = cases();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}

#[test]
fn boundary_values_just_inside_the_limits_decode() {
    let min = query(b"ping", &cat(&[b"1:xi-9223372036854775808e", ID]));
    assert_eq!(Message::decode(&min).unwrap().as_query().unwrap().args.get(b"x"), Some(Value::Int(i64::MIN)));
    let max = query(b"ping", &cat(&[b"1:xi9223372036854775807e", ID]));
    assert_eq!(Message::decode(&max).unwrap().as_query().unwrap().args.get(b"x"), Some(Value::Int(i64::MAX)));
    for port in [0u16, 65535] {
        let a = query(b"announce_peer", &cat(&[ID, format!("4:porti{port}e").as_bytes()]));
        assert_eq!(Message::decode(&a).unwrap().as_query().unwrap().args.port(), Some(port));
    }
    // 14 nested lists inside `a` reach depth 16 exactly.
    let deep = nested(b"d1:ad1:x", 14, b"e1:q4:ping1:t2:aa1:y1:qe");
    assert!(Message::decode(&deep).is_ok());
    let exact = vec![b'd'; 8192];
    assert_ne!(Message::decode(&exact).unwrap_err().kind, K::TooLarge { max: 8192 });
    let t32 = cat(&[b"d1:ad", ID, b"e1:q4:ping1:t", &bstr(&[b'T'; 32]), b"1:y1:qe"]);
    assert_eq!(Message::decode(&t32).unwrap().transaction_id.len(), 32);
}

#[test]
fn more_than_65535_keys_are_counted_without_overflow() {
    // `Value::parse` and `Dictionary::from_bencode` have no key limit: 70,000 keys parse.
    let big = cat(&[b"d", &b"0:i0e".repeat(70_000), b"e"]);
    let dict = Dict::parse(&big).unwrap();
    assert_eq!(dict.len(), 70_000);
    assert_eq!(Dictionary::from_bencode(&big).unwrap().len(), 1);
    // A decoder configured for the most keys a u16 allows still stops at that many.
    let decoder = Decoder::new().with_max_len(usize::MAX).with_max_keys(u16::MAX);
    let msg = cat(&[b"d1:ad", &b"0:i0e".repeat(70_000), b"e1:q4:ping1:t2:aa1:y1:qe"]);
    let err = decoder.decode(&msg).unwrap_err();
    assert_eq!(err.kind, K::TooManyKeys { max: u16::MAX });
    assert_eq!(err.offset, 5 + 65_534 * 5);
}

#[test]
fn broken_bencode_is_not_a_protocol_error_but_a_broken_krpc_rule_is() {
    let broken: [&[u8]; 9] = [
        b"",
        b"le",
        b"d1:t2:aa",
        b"d1:ad2:id",
        b"d1:ad2:idi5e",
        b"d1:t-3:",
        b"d1:ad2:id-3:abce1:q4:ping1:t2:aa1:y1:qe",
        b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qee",
        b"d1:xi03ee",
    ];
    for input in broken {
        let err = Message::decode(input).unwrap_err();
        assert!(!err.is_protocol_error(), "{:?}: {err}", String::from_utf8_lossy(input));
    }
    let krpc_rule: [&[u8]; 7] = [
        b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe",
        b"d1:t2:aa1:y1:xe",
        b"d1:t2:aa1:y1:re",
        b"d1:t2:aa1:t2:bb1:y1:qe",
        b"d1:ad2:id19:abcdefghij012345678e1:q4:ping1:t2:aa1:y1:qe",
        b"d1:ad2:id20:abcdefghij01234567896:target2:xxe1:q9:find_node1:t2:aa1:y1:qe",
        b"d1:ei201e1:t2:aa1:y1:ee",
    ];
    let long_t = cat(&[b"d1:t", &bstr(&[b'T'; 33]), b"1:y1:qe"]);
    for input in krpc_rule.iter().copied().chain([&long_t[..]]) {
        let err = Message::decode(input).unwrap_err();
        assert!(err.is_protocol_error(), "{:?}: {err}", String::from_utf8_lossy(input));
    }
}

#[test]
fn errors_display_their_kind_and_offset() {
    let err = Message::decode(b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe").unwrap_err();
    assert_eq!(err.to_string(), "`id` must be a byte string at offset 9");
    let err = Message::decode(b"d1:t99999:aa").unwrap_err();
    assert_eq!(err.to_string(), "string of 99999 bytes but only 2 remain at offset 4");
}

#[test]
fn the_transaction_id_of_a_broken_query_is_salvaged() {
    let int_info_hash = query(b"get_peers", &cat(&[ID, b"9:info_hashi1e"]));
    assert!(Message::decode(&int_info_hash).unwrap_err().is_protocol_error());
    assert_eq!(salvage_query_transaction_id(&int_info_hash, 32), Some(&b"aa"[..]));
    // t and y before a broken argument dictionary are still found.
    let broken_after = b"d1:t2:xy1:y1:q1:ad2:id-3:";
    assert_eq!(salvage_query_transaction_id(broken_after, 32), Some(&b"xy"[..]));
    let wrong_len = query(b"ping", b"2:id3:abc");
    assert_eq!(salvage_query_transaction_id(&wrong_len, 32), Some(&b"aa"[..]));
}

#[test]
fn nothing_is_salvaged_from_responses_or_unusable_datagrams() {
    let broken_response = response(&cat(&[b"2:idi5e"]));
    assert!(Message::decode(&broken_response).unwrap_err().is_protocol_error());
    assert_eq!(salvage_query_transaction_id(&broken_response, 32), None);
    let error = b"d1:ei201e1:t2:aa1:y1:ee";
    assert_eq!(salvage_query_transaction_id(error, 32), None);
    assert_eq!(salvage_query_transaction_id(b"le", 32), None);
    assert_eq!(salvage_query_transaction_id(b"", 32), None);
    // No y at all, or t behind a part that cannot be skipped.
    assert_eq!(salvage_query_transaction_id(b"d1:t2:aae", 32), None);
    assert_eq!(salvage_query_transaction_id(b"d1:ad2:id-3:e1:t2:aa1:y1:qe", 32), None);
    // A t longer than the caller's cap is not echoed.
    let long_t = query(b"ping", b"2:idi1e");
    assert_eq!(salvage_query_transaction_id(&long_t, 1), None);
}

fn every_prefix_is_an_error(name: &str, bytes: &[u8]) {
    for len in 0..bytes.len() {
        let err = match Message::decode(&bytes[..len]) {
            Ok(msg) => panic!("{name}: prefix of {len} bytes decoded as {msg:?}"),
            Err(err) => err,
        };
        assert!(
            matches!(err.kind, K::Empty | K::UnexpectedEnd | K::LengthPastEnd { .. }),
            "{name}: prefix of {len} bytes gave {err}"
        );
        assert!(!err.is_protocol_error(), "{name}: prefix of {len} bytes gave {err}");
        assert!(err.offset <= len, "{name}: offset {} past the {len}-byte prefix", err.offset);
    }
    assert!(Message::decode(bytes).is_ok(), "{name} itself decodes");
}

#[test]
fn every_truncation_of_every_golden_vector_is_an_end_of_input_error() {
    for (name, bytes) in GOLDEN {
        every_prefix_is_an_error(name, bytes);
    }
    for (name, bytes) in BenchInputs::new().messages() {
        every_prefix_is_an_error(name, &bytes);
    }
}

#[test]
fn every_golden_vector_with_a_byte_appended_has_trailing_bytes() {
    for (name, bytes) in GOLDEN {
        for extra in [b'e', b'd', b'0', 0] {
            let err = Message::decode(&cat(&[bytes, &[extra]])).unwrap_err();
            assert_eq!(err, DecodeError { kind: K::TrailingBytes, offset: bytes.len() }, "{name} + {extra}");
        }
    }
}

#[test]
fn generic_views_reject_broken_values_too() {
    assert_eq!(Value::parse(b"l-3:e").unwrap_err(), DecodeError { kind: K::NegativeLength, offset: 1 });
    assert_eq!(Value::parse(b"i1ei2e").unwrap_err(), DecodeError { kind: K::TrailingBytes, offset: 3 });
    assert_eq!(Value::parse(b"").unwrap_err().kind, K::Empty);
    assert_eq!(Dict::parse(b"li1ee").unwrap_err().kind, K::NotADictionary);
    let too_deep = cat(&[&b"l".repeat(65), &b"e".repeat(65)]);
    assert_eq!(Value::parse(&too_deep).unwrap_err(), DecodeError { kind: K::TooDeep { max: 64 }, offset: 64 });
    assert!(Dictionary::from_bencode(b"d1:ai1e").is_err());
    assert!(Dictionary::new().insert_bencode("x", b"i03e").is_err());
}

#[test]
fn an_out_of_range_port_decodes_and_reads_as_absent() {
    // BEP 5: with `implied_port` set, "the port argument should be ignored", so its range is
    // the node layer's business, not a decoding error.
    for port in [&b"i70000e"[..], b"i-1e", b"i65536e"] {
        let q = query(
            b"announce_peer",
            &cat(&[ID, b"12:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:port", port, b"5:token2:tk"]),
        );
        let msg = Message::decode(&q).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(port)));
        let krpc_core::wire::Body::Query(q) = msg.body else { panic!() };
        assert_eq!(q.args.port(), None);
        assert!(q.args.has_port());
        assert!(q.args.implied_port());
    }
}
