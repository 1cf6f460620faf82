//! `decode`: one datagram as readable text (the `Debug` of `Message`) or as JSON.

use std::io::Read;

use krpc_tokio::wire::{Body, Decoder, Fields, Message, Value};
use serde_json::{Map, Value as Json, json};

use crate::out::{Failure, Out};

/// Where the datagram comes from.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// Given in hex on the command line.
    Hex(Vec<u8>),
    /// `-`: raw bytes on stdin.
    Stdin,
}

/// Hex digits, with optional spaces and `0x` prefix, to bytes.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let digits = digits.strip_prefix(b"0x").unwrap_or(&digits);
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(format!("not a hex digit: {:?}", char::from(b))),
    };
    digits.chunks(2).map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

pub(crate) fn parse_input(text: &str) -> Result<Input, String> {
    if text == "-" {
        return Ok(Input::Stdin);
    }
    parse_hex(text).map(Input::Hex).map_err(|error| {
        // Bencode text such as `d1:ad2:id20:...e` is the usual thing to paste: say how to
        // give it (raw bytes on stdin), since a datagram is binary and rarely printable.
        let bencode = matches!(text.as_bytes().first(), Some(b'd' | b'l')) && text.contains(':');
        if bencode {
            format!(
                "{error}: this looks like bencode text, not hex; give the raw bytes on stdin: \
                 printf '%s' '{text}' | krpc decode -"
            )
        } else {
            error
        }
    })
}

pub(crate) fn run(out: &Out, input: Input) -> Result<(), Failure> {
    let bytes = match input {
        Input::Hex(bytes) => bytes,
        Input::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|error| Failure::new(format!("cannot read stdin: {error}")))?;
            bytes
        }
    };
    let message = Decoder::new()
        .decode(&bytes)
        .map_err(|error| Failure::at(format!("cannot decode {} bytes: {error}", bytes.len()), error.offset))?;
    out.emit(message_json(&message, bytes.len()), || format!("{message:#?}"));
    if out.json() {
        out.emit(json!({ "event": "done", "command": "decode", "bytes": bytes.len() }), String::new);
    }
    Ok(())
}

/// `{"event":"message","y":...,"t":...,...}`: byte strings as text when printable ASCII, else
/// `0x` and hex; ids (`id`, `target`, `info_hash`) as plain hex; `nodes`, `nodes6`, `values`
/// and `ip` as addresses.
fn message_json(message: &Message<'_>, len: usize) -> Json {
    let mut object = Map::new();
    object.insert("event".into(), "message".into());
    object.insert("bytes".into(), len.into());
    let kind = match &message.body {
        Body::Query(_) => "q",
        Body::Response(_) => "r",
        Body::Error(_) => "e",
    };
    object.insert("y".into(), kind.into());
    object.insert("t".into(), bytes(message.transaction_id));
    match &message.body {
        Body::Query(query) => {
            object.insert("q".into(), bytes(query.method));
            object.insert("a".into(), fields(&query.args));
        }
        Body::Response(values) => {
            object.insert("r".into(), fields(values));
        }
        Body::Error(error) => {
            object.insert("e".into(), json!([error.code, bytes(error.message)]));
        }
    }
    if let Some(ip) = message.ip {
        object.insert("ip".into(), ip.to_string().into());
    }
    if message.read_only {
        object.insert("ro".into(), true.into());
    }
    if let Some(version) = message.version {
        object.insert("v".into(), bytes(version));
    }
    Json::Object(object)
}

fn fields(fields: &Fields<'_>) -> Json {
    let mut object = Map::new();
    for (key, value) in fields.dict().iter() {
        let rendered = match (key, value) {
            (b"id" | b"target" | b"info_hash", Value::Bytes(id)) => hex(id).into(),
            (b"nodes", _) => nodes(fields.nodes()),
            (b"nodes6", _) => nodes(fields.nodes6()),
            (b"values", Value::List(_)) => fields.values().map(|peer| Json::from(peer.to_string())).collect(),
            _ => generic(value),
        };
        object.insert(String::from_utf8_lossy(key).into_owned(), rendered);
    }
    Json::Object(object)
}

fn nodes(nodes: Option<krpc_tokio::wire::CompactNodes<'_>>) -> Json {
    nodes
        .into_iter()
        .flatten()
        .map(|node| json!({ "id": node.id.to_string(), "addr": node.addr.to_string() }))
        .collect()
}

fn generic(value: Value<'_>) -> Json {
    match value {
        Value::Int(n) => n.into(),
        Value::Bytes(b) => bytes(b),
        Value::List(list) => list.iter().map(generic).collect(),
        Value::Dict(dict) => {
            Json::Object(dict.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), generic(v))).collect())
        }
    }
}

fn bytes(b: &[u8]) -> Json {
    if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        String::from_utf8_lossy(b).into_owned().into()
    } else {
        format!("0x{}", hex(b)).into()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}
