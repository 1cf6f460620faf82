//! BEP 44 operations: `get` of an item (a lookup with the `get` query) and `put` (a `get`
//! lookup collecting write tokens, then `put` to the `k` closest nodes that gave one, under
//! the same [`OpId`]: the shape of an announce). The state lives here; `ops.rs` holds it as
//! [`Op::GetItem`](super::ops::Op::GetItem) and [`Op::PutItem`](super::ops::Op::PutItem).

use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::dht::bep44::ed25519_dalek::SigningKey;
use crate::dht::bep44::{Item, MutableItem, immutable_target, verify};
use crate::event::{Event, OpId, PutOutcome, PutRejection};
use crate::lookup::Lookup;
use crate::query::Query;
use crate::wire::{Dictionary, Fields};
use crate::{NodeId, QueryError, Reply};

/// What a `get` is for, which decides how a reply's item is checked.
#[derive(Clone, Debug)]
pub(crate) enum ItemSpec {
    /// An immutable item: `v` must hash to the target.
    Immutable,
    /// A mutable item under this key and salt (the caller's salt: a reply's is never used).
    Mutable { key: [u8; 32], salt: Vec<u8>, min_seq: Option<i64> },
}

impl ItemSpec {
    /// The `get` query. With a minimum `seq`, BEP 44 lets nodes leave out items no newer
    /// than the `seq` sent, so `min_seq - 1` is sent.
    pub(crate) fn query(&self, target: &NodeId) -> Query {
        let mut args = Dictionary::new().with_bytes("target", target.as_bytes());
        if let ItemSpec::Mutable { min_seq: Some(min), .. } = self {
            if *min > 0 {
                args.insert_int("seq", min - 1);
            }
        }
        Query::new("get", args).unwrap_or_else(Query::ping)
    }

    /// The item in a reply, if there is one and it checks out. BEP 44: the requester checks
    /// that the value hashes to the target (immutable), or that `k` is the key asked for
    /// (so SHA-1(`k` ‖ salt) is the target) and the signature verifies (mutable).
    pub(crate) fn item(&self, target: &NodeId, f: &Fields<'_>) -> Option<Item> {
        let v = f.value_raw()?;
        match self {
            ItemSpec::Immutable => (immutable_target(v) == *target).then(|| Item::Immutable { value: v.to_vec() }),
            ItemSpec::Mutable { key, salt, min_seq } => {
                if f.public_key()? != key {
                    return None;
                }
                let signature: [u8; 64] = f.signature()?.try_into().ok()?;
                let seq = f.seq()?;
                if min_seq.is_some_and(|min| seq < min) || !verify(key, &signature, salt, seq, v) {
                    return None;
                }
                let item = MutableItem { key: *key, salt: salt.clone(), seq, value: v.to_vec(), signature };
                Some(Item::Mutable(item))
            }
        }
    }
}

/// A running `get_immutable` / `get_mutable`.
#[derive(Debug)]
pub(crate) struct GetItem {
    pub(crate) spec: ItemSpec,
    pub(crate) lookup: Lookup,
    /// The most recent item seen (the only one, for an immutable item).
    pub(crate) best: Option<Item>,
}

impl GetItem {
    /// A reply arrived: the event to surface, and whether the lookup is done (an immutable
    /// item needs one good copy).
    pub(crate) fn on_reply(&mut self, op: OpId, from: SocketAddr, f: &Fields<'_>) -> (Option<Event>, bool) {
        let Some(item) = self.spec.item(self.lookup.target(), f) else { return (None, false) };
        let newer = match (&self.best, item.seq()) {
            (Some(best), Some(seq)) => best.seq().is_none_or(|b| seq > b),
            (None, _) => true,
            (Some(_), None) => false,
        };
        if newer {
            self.best = Some(item.clone());
        }
        let done = matches!(self.spec, ItemSpec::Immutable);
        (Some(Event::ItemFound { op, from, item }), done)
    }
}

/// What a put stores.
#[derive(Debug)]
pub(crate) enum PutPayload {
    Immutable {
        value: Vec<u8>,
    },
    /// A signed item, stored as is (also how an item is republished).
    Mutable {
        item: MutableItem,
        cas: Option<i64>,
    },
    /// Read-modify-write: signed at the end of the lookup with `seq` one above the highest
    /// seen, and `cas` set to that `seq`.
    Next {
        key: SigningKey,
        salt: Vec<u8>,
        value: Vec<u8>,
        seen: Option<i64>,
    },
}

/// A running put.
#[derive(Debug)]
pub(crate) struct PutItem {
    pub(crate) target: NodeId,
    pub(crate) payload: PutPayload,
    pub(crate) phase: PutPhase,
}

#[derive(Debug)]
pub(crate) enum PutPhase {
    Lookup(Lookup),
    Store(PutStore),
}

/// The store phase of a put: `put` queries to the token holders.
#[derive(Debug)]
pub(crate) struct PutStore {
    pub(crate) query: Query,
    outstanding: usize,
    seq: Option<i64>,
    stored: usize,
    failed: usize,
    errors: Vec<PutRejection>,
}

impl PutItem {
    /// A reply in the lookup phase: a read-modify-write put learns the highest `seq`.
    pub(crate) fn on_reply(&mut self, f: &Fields<'_>) {
        if let PutPayload::Next { key, salt, seen, .. } = &mut self.payload {
            let spec = ItemSpec::Mutable { key: key.verifying_key().to_bytes(), salt: salt.clone(), min_seq: None };
            if let Some(seq) = spec.item(&self.target, f).and_then(|i| i.seq()) {
                *seen = Some(seen.map_or(seq, |s| s.max(seq)));
            }
        }
    }

    /// The `put` query for the store phase, and the `seq` it stores.
    pub(crate) fn store_query(&self) -> Result<(Query, Option<i64>), QueryError> {
        let mut args = Dictionary::new();
        let seq = match &self.payload {
            PutPayload::Immutable { value } => {
                let _ = args.insert_bencode("v", value);
                None
            }
            PutPayload::Mutable { item, cas } => {
                mutable_args(&mut args, item, *cas);
                Some(item.seq)
            }
            PutPayload::Next { key, salt, value, seen } => {
                let seq = seen.map_or(Some(1), |s| s.checked_add(1)).ok_or(QueryError::AllFailed)?;
                let item = MutableItem::sign(key, salt, seq, value).map_err(|_| QueryError::AllFailed)?;
                mutable_args(&mut args, &item, *seen);
                Some(seq)
            }
        };
        // Not in BEP 44, but the `mainline` crate drops a `put` without `target`; other nodes
        // ignore the extra key.
        args.insert_bytes("target", self.target.as_bytes());
        Ok((Query::new("put", args).unwrap_or_else(Query::ping), seq))
    }

    pub(crate) fn begin_store(&mut self, query: Query, seq: Option<i64>) {
        self.phase = PutPhase::Store(PutStore { query, outstanding: 0, seq, stored: 0, failed: 0, errors: Vec::new() });
    }

    pub(crate) fn set_outstanding(&mut self, n: usize) {
        if let PutPhase::Store(s) = &mut self.phase {
            s.outstanding = n;
        }
    }

    /// One `put` got its result; the final event when it was the last.
    pub(crate) fn on_result(&mut self, op: OpId, from: SocketAddr, result: Result<Reply, QueryError>) -> Option<Event> {
        let PutPhase::Store(s) = &mut self.phase else { return None };
        s.outstanding = s.outstanding.saturating_sub(1);
        match result {
            Ok(_) => s.stored += 1,
            Err(QueryError::Remote { code, message }) => s.errors.push(PutRejection { from, code, message }),
            Err(_) => s.failed += 1,
        }
        (s.outstanding == 0).then(|| self.done(op, None))
    }

    /// The final event: the outcome so far, or `error` when stopped before anything was sent.
    pub(crate) fn done(&mut self, op: OpId, error: Option<QueryError>) -> Event {
        let result = match (&mut self.phase, error) {
            (PutPhase::Store(s), error) if error.is_none() || s.stored > 0 || !s.errors.is_empty() => Ok(PutOutcome {
                target: self.target,
                seq: s.seq,
                stored: s.stored,
                failed: s.failed + s.outstanding,
                errors: core::mem::take(&mut s.errors),
            }),
            (_, error) => Err(error.unwrap_or(QueryError::AllFailed)),
        };
        Event::PutItemDone { op, result }
    }
}

fn mutable_args(args: &mut Dictionary, item: &MutableItem, cas: Option<i64>) {
    args.insert_bytes("k", item.key);
    args.insert_bytes("sig", item.signature);
    args.insert_int("seq", item.seq);
    // BEP 44: "an empty salt is the same as no salt"; it is not sent.
    if !item.salt.is_empty() {
        args.insert_bytes("salt", &item.salt);
    }
    if let Some(cas) = cas {
        args.insert_int("cas", cas);
    }
    let _ = args.insert_bencode("v", &item.value);
}
