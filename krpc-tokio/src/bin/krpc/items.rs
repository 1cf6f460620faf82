//! `put` and `get`: BEP 44 items. A value given on the command line is stored as a bencoded
//! byte string (`hello` as `5:hello`); one read back is shown as text when it is UTF-8, else
//! in hex.

use clap::Args;
use krpc_tokio::core::dht::bep44::check_value;
use krpc_tokio::ed25519_dalek::SigningKey;
use krpc_tokio::{Error, MutableItem, NodeId, PutOutcome, Rpc};
use serde_json::json;
use tokio::time::Instant;

use crate::ClientArgs;
use crate::decode::parse_hex;
use crate::net::joined_client;
use crate::out::{Failure, Out, Progress, count, done};

/// Options of `put`.
#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The value: its UTF-8 bytes are stored as a bencoded byte string (at most 1000 bytes
    /// once encoded).
    #[arg(value_parser = parse_value)]
    value: Bencoded,
    /// Store a mutable item signed with this ed25519 key: its 32-byte seed as 64 hex digits.
    /// Without it, the item is immutable and its target is the SHA-1 of the value.
    #[arg(long, value_name = "SEEDHEX", value_parser = parse_seed)]
    secret_key: Option<Seed>,
    /// The mutable item's salt (at most 64 bytes): one key can store many items.
    #[arg(long, requires = "secret_key", value_parser = parse_salt)]
    salt: Option<String>,
    /// The mutable item's sequence number (default: one more than the network's current one).
    #[arg(long, requires = "secret_key", value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    seq: Option<i64>,
    /// Compare-and-swap: nodes store the item only if their current `seq` is N (BEP 44, 301
    /// otherwise). Without `--seq`, the network's current `seq` is used.
    #[arg(long, requires = "secret_key", value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    cas: Option<i64>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Options of `get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// An immutable item's target, 40 hex digits (or `--public-key` for a mutable item).
    #[arg(value_parser = crate::parse_id, required_unless_present = "public_key", conflicts_with = "public_key")]
    target: Option<NodeId>,
    /// A mutable item's ed25519 public key, 64 hex digits.
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    public_key: Option<[u8; 32]>,
    /// The mutable item's salt.
    // `conflicts_with`: with `requires = "public_key"` instead, clap 4.6 accepted
    // `get TARGET --salt s` (seen in tests/cli_bep44.rs).
    #[arg(long, conflicts_with = "target", value_parser = parse_salt)]
    salt: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// A value as BEP 44 stores it (a type of its own: clap takes a `Vec` for many arguments).
#[derive(Clone, Debug)]
pub(crate) struct Bencoded(Vec<u8>);

/// A bencoded byte string of the text's UTF-8 bytes.
fn parse_value(text: &str) -> Result<Bencoded, String> {
    let mut value = format!("{}:", text.len()).into_bytes();
    value.extend_from_slice(text.as_bytes());
    check_value(&value).map_err(|_| format!("too long: {} bytes once bencoded, at most 1000", value.len()))?;
    Ok(Bencoded(value))
}

fn parse_key_hex(text: &str) -> Result<[u8; 32], String> {
    let bytes = parse_hex(text)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("expected 64 hex digits (32 bytes), got {} bytes", bytes.len()))
}

/// An ed25519 seed (the key itself is built when used: it is several times larger).
#[derive(Clone, Debug)]
pub(crate) struct Seed([u8; 32]);

fn parse_seed(text: &str) -> Result<Seed, String> {
    parse_key_hex(text).map(Seed)
}

fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    parse_key_hex(text)
}

/// BEP 44: the salt "MUST NOT be longer than 64 bytes".
fn parse_salt(text: &str) -> Result<String, String> {
    if text.len() > krpc_tokio::core::dht::MAX_SALT_LEN {
        return Err(format!("too long: {} bytes, at most 64", text.len()));
    }
    Ok(text.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored value as shown: the bytes of a bencoded byte string (the whole bencoding for
/// anything else), as text when they are UTF-8, else in hex. Returns the text and its
/// encoding, `utf-8` or `hex`.
fn shown(value: &[u8]) -> (String, &'static str) {
    let bytes = byte_string(value).unwrap_or(value);
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), "utf-8"),
        Err(_) => (hex(bytes), "hex"),
    }
}

/// The content of `<len>:<bytes>` when that is the whole value.
fn byte_string(value: &[u8]) -> Option<&[u8]> {
    let colon = value.iter().position(|&b| b == b':')?;
    let digits = std::str::from_utf8(&value[..colon]).ok()?;
    let len: usize = digits.parse().ok()?;
    let content = &value[colon + 1..];
    (digits.bytes().all(|b| b.is_ascii_digit()) && content.len() == len).then_some(content)
}

pub(crate) async fn put(out: &Out, args: PutArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (rpc, _bootstrap) = joined_client(out, &args.client).await?;
    let progress = Progress::start(out, &rpc, "put", None);
    let key = args.secret_key.as_ref().map(|seed| SigningKey::from_bytes(&seed.0));
    let result = match &key {
        None => rpc.put_immutable(&args.value.0).await,
        Some(key) => put_mutable(&rpc, key, &args).await,
    };
    progress.finish().await;
    let outcome = result.map_err(|error| Failure::new(format!("put: {error}")))?;
    for rejection in &outcome.errors {
        let message = String::from_utf8_lossy(&rejection.message);
        let (addr, code) = (rejection.from, rejection.code);
        if out.json() {
            out.emit(
                json!({ "event": "rejected", "addr": addr.to_string(), "code": code, "message": message }),
                String::new,
            );
        } else {
            out.note(&format!("{addr} refused: {code} {message}"));
        }
    }
    let target = outcome.target.to_string();
    let stored = count(outcome.stored, "node", "nodes");
    let mut extra = json!({ "target": target, "stored": outcome.stored, "rejected": outcome.errors.len() });
    let text = match &key {
        None => format!("{target} stored by {stored}"),
        Some(key) => {
            let public = hex(&key.verifying_key().to_bytes());
            extra["public_key"] = public.clone().into();
            extra["seq"] = outcome.seq.into();
            format!("{target} public key {public} seq {}: stored by {stored}", outcome.seq.unwrap_or_default())
        }
    };
    done(out, "put", &rpc, started, extra, Some(text)).await;
    rpc.shutdown().await;
    if outcome.stored == 0 { Err(Failure::new(format!("put: no node stored it{}", why(&outcome)))) } else { Ok(()) }
}

/// The refusals, summed up by code: ` (302 from 6 nodes)`.
fn why(outcome: &PutOutcome) -> String {
    let mut codes: Vec<(i64, usize)> = Vec::new();
    for rejection in &outcome.errors {
        match codes.iter_mut().find(|(code, _)| *code == rejection.code) {
            Some((_, n)) => *n += 1,
            None => codes.push((rejection.code, 1)),
        }
    }
    let parts: Vec<String> =
        codes.iter().map(|(code, n)| format!("{code} from {}", count(*n, "node", "nodes"))).collect();
    let hint = if codes.iter().any(|(code, _)| *code == 301 || *code == 302) {
        "; another writer was first: read the item and retry"
    } else {
        ""
    };
    if parts.is_empty() { String::new() } else { format!(" ({}{hint})", parts.join(", ")) }
}

async fn put_mutable(rpc: &Rpc, key: &SigningKey, args: &PutArgs) -> Result<PutOutcome, Error> {
    let salt = args.salt.as_deref().unwrap_or_default().as_bytes();
    let (seq, cas) = match (args.seq, args.cas) {
        // The engine's read-modify-write: seq + 1, with cas = the seq read.
        (None, None) => return rpc.put_mutable_next(key, salt, &args.value.0).await,
        (Some(seq), cas) => (seq, cas),
        (None, Some(cas)) => {
            let current = rpc.get_mutable(key.verifying_key().to_bytes(), salt, None).await?.most_recent().await;
            (current.map_or(1, |item| item.seq.saturating_add(1)), Some(cas))
        }
    };
    let item = MutableItem::sign(key, salt, seq, &args.value.0)
        .map_err(|error| Error::Refused(krpc_tokio::CommandError::InvalidItem(error)))?;
    rpc.put_mutable(item, cas).await
}

pub(crate) async fn get(out: &Out, args: GetArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (rpc, _bootstrap) = joined_client(out, &args.client).await?;
    let progress = Progress::start(out, &rpc, "get", None);
    let salt = args.salt.clone().unwrap_or_default().into_bytes();
    let (target, found) = match (args.target, args.public_key) {
        (Some(target), _) => (target, rpc.get_immutable(target).await.map(|value| value.map(|v| (v, None)))),
        (None, Some(key)) => {
            let target = MutableItem::target_of(&key, &salt);
            let found = match rpc.get_mutable(key, &salt, None).await {
                Ok(items) => Ok(items.most_recent().await.map(|item| (item.value, Some(item.seq)))),
                Err(error) => Err(error),
            };
            (target, found)
        }
        // clap requires one of them.
        (None, None) => return Err(Failure::new("get: a target or --public-key is needed")),
    };
    progress.finish().await;
    let found = found.map_err(|error| Failure::new(format!("get: {error}")))?;
    let mut extra = json!({ "target": target.to_string(), "found": found.is_some() });
    let mut summary = None;
    if let Some((value, seq)) = &found {
        let (text, encoding) = shown(value);
        let mut line = json!({ "event": "item", "target": target.to_string(), "value": text, "encoding": encoding });
        if let Some(seq) = seq {
            line["seq"] = (*seq).into();
            extra["seq"] = (*seq).into();
        }
        out.emit(line, || text.clone());
        summary = Some(match seq {
            Some(seq) => format!("seq {seq}"),
            None => target.to_string(),
        });
    }
    done(out, "get", &rpc, started, extra, summary).await;
    rpc.shutdown().await;
    match found {
        Some(_) => Ok(()),
        None => Err(Failure::new(format!("no item found for {target}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bencoded_byte_strings_and_shown_back() {
        assert_eq!(parse_value("hello").unwrap().0, b"5:hello");
        assert_eq!(parse_value("").unwrap().0, b"0:");
        assert_eq!(parse_value("é").unwrap().0, "2:é".as_bytes());
        assert!(parse_value(&"x".repeat(996)).is_ok()); // 4:... + 996 = 1000 bytes
        assert!(parse_value(&"x".repeat(997)).is_err());
        assert_eq!(shown(b"5:hello"), ("hello".to_owned(), "utf-8"));
        assert_eq!(shown(b"2:\xff\x00"), ("ff00".to_owned(), "hex"));
        // Not a byte string (another client's integer): the bencoding itself.
        assert_eq!(shown(b"i42e"), ("i42e".to_owned(), "utf-8"));
        assert_eq!(shown(b"3:ab"), ("3:ab".to_owned(), "utf-8"), "a length that does not match");
    }

    #[test]
    fn keys_and_salts_are_checked() {
        assert!(parse_seed(&"00".repeat(32)).is_ok());
        assert!(parse_seed(&"00".repeat(31)).is_err());
        assert!(parse_public_key("zz").is_err());
        assert!(parse_salt(&"s".repeat(64)).is_ok());
        assert!(parse_salt(&"s".repeat(65)).is_err());
    }
}
