//! Replays the fuzz corpus (`fuzz/corpus/*/`) through the fuzz target's own check, so every
//! `cargo test` exercises the seeds (and any crash reproducer saved there) without cargo-fuzz.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use krpc_core::wire::fuzzing::check_decode;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// Every file of every target's corpus, with its name.
fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for target in fs::read_dir(corpus_root()).expect("fuzz/corpus exists") {
        let target = target.unwrap().path();
        if !target.is_dir() {
            continue;
        }
        for file in fs::read_dir(&target).unwrap() {
            let path = file.unwrap().path();
            if path.is_file() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.push((name, fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_the_fuzz_check() {
    let files = corpus_files();
    assert!(!files.is_empty(), "the fuzz corpus is empty");
    for (name, data) in &files {
        let decoded = check_decode(data);
        // Seeds named malformed_* are meant to fail; the others to decode.
        assert_eq!(decoded, !name.starts_with("malformed_"), "{name}");
    }
}

#[test]
fn the_corpus_seeds_hold_the_golden_vectors_and_the_benchmark_messages() {
    let files = corpus_files();
    let find = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, d)| d.as_slice());
    for (name, bytes) in GOLDEN {
        assert_eq!(find(name), Some(bytes), "{name}");
    }
    for (name, bytes) in BenchInputs::new().messages() {
        assert_eq!(find(&format!("bench_{name}")), Some(&bytes[..]), "bench_{name}");
    }
    assert!(files.iter().filter(|(n, _)| n.starts_with("malformed_")).count() >= 5);
}

#[test]
fn the_check_rejects_nothing_that_decodes_and_accepts_nothing_that_does_not() {
    assert!(check_decode(PING_Q));
    assert!(check_decode(b"d1:e5:oops!1:t2:aa1:y1:ee"));
    assert!(!check_decode(b""));
    assert!(!check_decode(b"d1:t-3:"));
}
