//! The KRPC wire format: a zero-copy decoder and an allocation-free canonical encoder.
//!
//! BEP 5: "The KRPC protocol is a simple RPC mechanism consisting of bencoded dictionaries
//! sent over UDP. A single query packet is sent out and a single packet is sent in response."
//!
//! # Layers
//! - A bounded bencode cursor (private) reads integers, strings and nested values in one
//!   pass, with an explicit depth limit and no recursion.
//! - [`Message`] is one decoded datagram. It borrows the datagram; its [`Fields`] give typed
//!   access to every key the DHT BEPs define (BEP 5, 32, 33, 42, 43, 44, 51), already checked
//!   for type and id length, and [`Fields::dict`] gives generic access to everything else.
//! - [`Dictionary`] is an owned, canonical dictionary for what an application sends.
//! - [`QueryOut`], [`ResponseOut`] and [`ErrorOut`] write a datagram into a caller's buffer,
//!   merging the keys the engine owns (`id`, `token`, `nodes`) into the application's
//!   dictionary on the fly. They never allocate and report [`BufferTooSmall`] with the size
//!   needed; `encoded_len` gives that size up front, measured by the same code without
//!   writing.
//!
//! # Example
//! ```
//! use krpc_core::wire::{Body, Dictionary, Entry, Insert, Message, QueryOut};
//!
//! let args = Dictionary::new().with_bytes("info_hash", [0x11; 20]);
//! let extra = [Entry { key: b"id", value: Insert::Bytes(&[0x22; 20]), replace: false }];
//! let query = QueryOut {
//!     transaction_id: b"aa",
//!     method: b"get_peers",
//!     args: &args,
//!     extra: &extra,
//!     read_only: false,
//!     version: None,
//! };
//! let mut buf = [0u8; 1500];
//! let len = query.encode(&mut buf).unwrap();
//!
//! let msg = Message::decode(&buf[..len]).unwrap();
//! let Body::Query(q) = msg.body else { unreachable!() };
//! assert_eq!(q.method, b"get_peers");
//! assert_eq!(q.args.info_hash().unwrap().as_bytes(), &[0x11; 20]);
//! assert_eq!(q.args.id(), Some(&[0x22; 20][..]));
//! ```

mod compact;
mod cursor;
mod dictionary;
mod encode;
mod error;
mod fields;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod message;
mod value;
mod writer;

pub use compact::{CompactNodes, CompactPeers, canonical_ip, parse_compact_addr, write_compact_addr};
pub use cursor::MAX_DEPTH_LIMIT;
pub use dictionary::Dictionary;
pub use encode::{Entry, ErrorOut, Insert, QueryOut, ResponseOut};
pub use error::{BufferTooSmall, DecodeError, DecodeErrorKind, Expected};
pub use fields::{Fields, Want};
pub use message::{Body, Decoder, KrpcError, Message, QueryView, salvage_query_transaction_id};
pub use value::{Dict, DictIter, List, ListIter, Value};
