//! The `krpc put` and `krpc get` commands (BEP 44), run as processes against `krpc serve`
//! nodes on loopback: immutable and mutable items, 302 reaching the caller, exit codes.
//! (A file of its own, beside tests/cli.rs, so that the two change independently.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use krpc_tokio::ed25519_dalek::SigningKey;
use krpc_tokio::{Config, Rpc, immutable_target};
use serde_json::Value;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn krpc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_krpc"))
}

fn run(args: &[&str]) -> Output {
    krpc().args(args).stdin(Stdio::null()).output().expect("run krpc")
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `krpc --json serve` node on loopback for a few seconds, with its address.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(bootstrap: Option<&str>) -> Server {
        let mut command = krpc();
        command.args(["--json", "serve", "--bind", "127.0.0.1:0", "--for", "5"]);
        if let Some(addr) = bootstrap {
            command.args(["--bootstrap", addr]);
        }
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().expect("start krpc serve");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped stdout")).read_line(&mut first).expect("listening line");
        let listening: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
        let addr = listening["addr"].as_str().expect("addr").to_owned();
        Server { child, addr }
    }

    fn wait(mut self) -> bool {
        self.child.wait().expect("wait for krpc serve").success()
    }
}

#[test]
fn put_then_get_immutable_and_mutable_items_through_served_nodes() {
    let seed = Server::start(None);
    let other = Server::start(Some(&seed.addr));

    // Immutable: the target is SHA-1 of `5:hello`.
    let output = run(&["--json", "put", "hello", "--bootstrap", &seed.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let done = json_lines(&output).pop().expect("a done line");
    let target = immutable_target(b"5:hello").to_string();
    assert_eq!((done["command"].as_str(), done["target"].as_str()), (Some("put"), Some(&*target)), "{done}");
    assert!(done["stored"].as_u64().is_some_and(|n| n >= 1), "{done}");

    let output = run(&["--json", "get", &target, "--bootstrap", &other.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!((lines[0]["event"].as_str(), lines[0]["value"].as_str()), (Some("item"), Some("hello")), "{lines:?}");
    assert_eq!(lines[0]["encoding"], "utf-8");
    let output = run(&["get", &target, "--bootstrap", &other.addr]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().next(), Some("hello"));

    // Mutable, without --seq: seq 1, then the seq after the network's.
    let seed_hex = "11".repeat(32);
    let public = hex(&SigningKey::from_bytes(&[0x11; 32]).verifying_key().to_bytes());
    for (value, seq) in [("first", 1), ("second", 2)] {
        let output =
            run(&["--json", "put", value, "--secret-key", &seed_hex, "--salt", "s", "--bootstrap", &seed.addr]);
        assert!(output.status.success(), "{}", stderr(&output));
        let done = json_lines(&output).pop().expect("a done line");
        assert_eq!((done["seq"].as_i64(), done["public_key"].as_str()), (Some(seq), Some(&*public)), "{done}");
        assert!(done["stored"].as_u64().is_some_and(|n| n >= 1), "{done}");
    }
    let output = run(&["--json", "get", "--public-key", &public, "--salt", "s", "--bootstrap", &other.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let item = &json_lines(&output)[0];
    assert_eq!((item["value"].as_str(), item["seq"].as_i64()), (Some("second"), Some(2)), "{item}");
    // The salt is part of the target: nothing under another one.
    let output = run(&["get", "--public-key", &public, "--salt", "t", "--bootstrap", &other.addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no item found"), "{}", stderr(&output));

    // An explicit older seq: every node holds seq 2 and refuses with 302; the caller sees it.
    let output = run(&[
        "--json",
        "put",
        "old",
        "--secret-key",
        &seed_hex,
        "--salt",
        "s",
        "--seq",
        "1",
        "--bootstrap",
        &seed.addr,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = json_lines(&output);
    let rejected: Vec<&Value> = lines.iter().filter(|l| l["event"] == "rejected").collect();
    assert!(!rejected.is_empty() && rejected.iter().all(|l| l["code"] == 302), "{lines:?}");
    assert_eq!(lines.last().expect("an error line")["event"], "error");
    assert!(stderr(&output).contains("302"), "{}", stderr(&output));
    // A cas that is not the current seq: 301.
    let output =
        run(&["put", "new", "--secret-key", &seed_hex, "--salt", "s", "--cas", "1", "--bootstrap", &seed.addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("301"), "{}", stderr(&output));

    assert!(seed.wait() && other.wait());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_is_not_utf8_is_shown_in_hex() {
    let server = Server::start(None);
    let config = Config { bootstrap: vec![server.addr.parse().unwrap()], ..Config::dht() };
    let writer = Rpc::bind("127.0.0.1:0", config).await.unwrap();
    let outcome = writer.put_immutable(b"2:\xff\x00").await.unwrap();
    assert_eq!(outcome.stored, 1);
    writer.shutdown().await;

    let target = outcome.target.to_string();
    let output = run(&["--json", "get", &target, "--bootstrap", &server.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let item = &json_lines(&output)[0];
    assert_eq!((item["value"].as_str(), item["encoding"].as_str()), (Some("ff00"), Some("hex")), "{item}");
    assert!(server.wait());
}

#[test]
fn put_and_get_usage_errors_exit_with_2() {
    let key = "11".repeat(32);
    let long_value = "x".repeat(1000);
    let long_salt = "s".repeat(65);
    for args in [
        &["put", "v", "--seq", "1", "--bootstrap", "127.0.0.1:6881"][..], // --seq needs --secret-key
        &["put", "v", "--secret-key", "1234", "--bootstrap", "127.0.0.1:6881"], // not 32 bytes
        &["put", &long_value, "--bootstrap", "127.0.0.1:6881"],           // over 1000 bytes bencoded
        &["put", "v", "--secret-key", &key, "--salt", &long_salt, "--bootstrap", "127.0.0.1:6881"],
        &["put", "v", "--secret-key", &key, "--seq", "-1", "--bootstrap", "127.0.0.1:6881"],
        &["put", "v"],                             // --bootstrap is required
        &["get", "--bootstrap", "127.0.0.1:6881"], // neither a target nor a key
        &["get", "0123456789abcdef0123456789abcdef01234567", "--public-key", &key, "--bootstrap", "127.0.0.1:6881"],
        &["get", "0123", "--bootstrap", "127.0.0.1:6881"],
        &["get", "--public-key", "zz", "--bootstrap", "127.0.0.1:6881"],
        &["get", "0123456789abcdef0123456789abcdef01234567", "--salt", "s", "--bootstrap", "127.0.0.1:6881"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
}
