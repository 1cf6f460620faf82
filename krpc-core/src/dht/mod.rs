//! The node layer's primitives: what a BEP 5 node keeps besides its routing table.
//!
//! Each module is a standalone, sans-IO building block with hard caps. None of them reads a clock
//! (every call that needs time takes `now`) or owns a random generator (randomness comes in as
//! `&mut impl rand_core::Rng`), and none sends anything: the endpoint decides when to call them.
//!
//! | module | protocol noun | BEP |
//! |---|---|---|
//! | [`token`] | write tokens handed out by `get_peers` and checked by `announce_peer` | 5 |
//! | [`peer_store`] | the peers stored by `announce_peer` and served by `get_peers` | 5, 33 |
//! | [`scrape`] | the seed and peer Bloom filters of a scrape reply | 33 |
//! | [`security`] | node ids bound to IP addresses, and the policy that enforces them | 42 |
//! | [`external_address`] | our public address, learned by vote from the `ip` field of replies | 42 |
//! | [`bep44`] | immutable and mutable items: targets, signatures, the checks of a `put` | 44 |
//! | [`item_store`] | the items stored by `put` and served by `get` | 44 |
//!
//! Everything is re-exported here, so `krpc_core::dht::Tokens` and
//! `krpc_core::dht::token::Tokens` name the same type.
//!
//! ```
//! use core::net::{IpAddr, Ipv4Addr};
//! use krpc_core::Instant;
//! use krpc_core::dht::{Tokens, generate_secure_id, is_secure_id};
//! use rand_chacha::ChaCha12Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha12Rng::seed_from_u64(7);
//! let querier = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
//!
//! // get_peers hands out a token; announce_peer from the same address must bring it back.
//! let tokens = Tokens::new(&mut rng, Instant::ZERO);
//! let token = tokens.issue(querier, &[0x11; 20]);
//! assert!(tokens.verify(querier, &[0x11; 20], &token, Instant::ZERO));
//!
//! // BEP 42: an id derived from our address verifies against that address only.
//! let id = generate_secure_id(querier, &mut rng, 20).unwrap();
//! assert!(is_secure_id(&id, querier));
//! assert!(!is_secure_id(&id, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))));
//! ```

pub mod bep44;
pub mod config;
pub mod external_address;
pub mod item_store;
pub mod peer_store;
pub mod scrape;
pub mod security;
pub mod token;

pub use bep44::{Item, ItemError, MAX_SALT_LEN, MAX_VALUE_LEN, MutableItem};
pub use config::{DhtConfig, MAX_SAMPLE_INTERVAL, UnknownMethods};
pub use external_address::{ExternalAddressVote, MAX_VOTERS, MIN_VOTES, VOTE_LIFETIME};
pub use item_store::{ItemStore, ItemStoreLimits, PutRefused};
pub use peer_store::{
    DEFAULT_MAX_HASHES, DEFAULT_MAX_PEERS, DEFAULT_MAX_PEERS_PER_HASH, DEFAULT_MAX_PEERS_PER_IP, DEFAULT_PEER_TTL,
    Family, PeerRequest, PeerStore, PeerStoreLimits, Refused, Stored, SwarmCounts,
};
pub use scrape::{BLOOM_BYTES, bloom_estimate, bloom_insert};
pub use security::{SecureIdPolicy, crc32c, generate_secure_id, is_exempt, is_secure_id, is_verified, secure_prefix};
pub use token::{ROTATION_INTERVAL, TOKEN_LEN, TOKEN_LIFETIME, Tokens};
