//! The per-input check shared by the `decode` fuzz target (`fuzz/fuzz_targets/decode.rs`) and
//! the corpus replay test (`krpc-core/tests/fuzz_corpus.rs`). Not a stable API.

use alloc::vec;
use alloc::vec::Vec;

use super::compact::canonical_ip;
use super::message::{Body, Decoder, Message};

/// Decodes `data` with the default [`Decoder`] and, when that succeeds, checks the canonical
/// re-encoding: it must decode again, describe the same message, and re-encode to the very
/// same bytes. Panics on any violation; returns whether `data` decoded.
///
/// The second decode allows a slightly longer datagram than the first: canonical form can
/// grow by a few bytes (an `e` sent as a bare string is written as `[0, message]`).
pub fn check_decode(data: &[u8]) -> bool {
    let decoder = Decoder::new();
    let Ok(msg) = decoder.decode(data) else { return false };
    let first = encode(&msg);
    let again = decoder.with_max_len(first.len().max(decoder.max_len())).decode(&first);
    let again = match again {
        Ok(m) => m,
        Err(err) => panic!("the re-encoding of a decoded message does not decode: {err}"),
    };
    assert_eq!(again.transaction_id, msg.transaction_id, "t changed");
    assert_eq!(again.version, msg.version, "v changed");
    assert_eq!(again.read_only, msg.read_only, "ro changed");
    let canonical = |ip: Option<core::net::SocketAddr>| ip.map(|a| (canonical_ip(a.ip()), a.port()));
    assert_eq!(canonical(again.ip), canonical(msg.ip), "ip changed");
    match (&msg.body, &again.body) {
        (Body::Query(a), Body::Query(b)) => assert_eq!(a.method, b.method, "q changed"),
        (Body::Response(_), Body::Response(_)) => {}
        (Body::Error(a), Body::Error(b)) => assert_eq!((a.code, a.message), (b.code, b.message), "e changed"),
        _ => panic!("the message kind changed"),
    }
    assert_eq!(encode(&again), first, "re-encoding is not idempotent");
    true
}

/// `Message::encode` into a buffer of exactly the size `encoded_len` reports.
fn encode(msg: &Message<'_>) -> Vec<u8> {
    let needed = msg.encoded_len();
    let mut out = vec![0; needed];
    assert_eq!(msg.encode(&mut out), Ok(needed), "the measured size does not fit");
    out
}
