//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through each target's own check
//! (`krpc_core::fuzzing`), so every `cargo test` runs the seeds and everything the fuzzers
//! kept, without cargo-fuzz. The inputs behind past findings (`fuzz/regressions/<target>/`,
//! each named after the bug it found; see `docs/security.md`, "Findings") are replayed too and
//! must pass.

mod common;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use common::*;
use krpc_core::fuzzing::{check_decode, check_for};

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(sub)
}

/// Every file of one folder, with its name, sorted by name.
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return files };
    for file in entries {
        let path = file.unwrap().path();
        if path.is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((name, fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

/// The targets that have a corpus folder.
fn targets() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fuzz_dir("corpus"))
        .expect("fuzz/corpus exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Files kept by libFuzzer are named by the SHA-1 of their contents.
fn found_by_the_fuzzer(name: &str) -> bool {
    name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let files = files_in(&fuzz_dir("corpus").join(target));
    assert!(!files.is_empty(), "the {target} corpus is empty");
    files
}

fn replay(target: &str) {
    let check = check_for(target).unwrap_or_else(|| panic!("no check for the {target} corpus"));
    for (name, data) in corpus(target) {
        assert!(data.len() <= 4096, "{target}/{name} is larger than 4 KiB");
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            std::panic::resume_unwind(Box::new(format!("{target}/{name} fails its check: {:?}", message(&*e))));
        }
    }
}

fn message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

#[test]
fn every_corpus_folder_belongs_to_a_target_with_a_check_and_a_fuzz_target() {
    let names = targets();
    for t in ["decode", "endpoint", "routing", "sim"] {
        assert!(names.iter().any(|n| n == t), "fuzz/corpus/{t} is missing");
    }
    for t in &names {
        assert!(check_for(t).is_some(), "fuzz/corpus/{t} has no check in krpc_core::fuzzing");
        assert!(fuzz_dir("fuzz_targets").join(format!("{t}.rs")).is_file(), "fuzz/fuzz_targets/{t}.rs is missing");
    }
}

#[test]
fn every_decode_corpus_file_passes_the_fuzz_check() {
    for (name, data) in corpus("decode") {
        let decoded = check_decode(&data);
        // Hand-written seeds named malformed_* are meant to fail, the others to decode;
        // what the fuzzer kept only has to pass the check.
        if !found_by_the_fuzzer(&name) {
            assert_eq!(decoded, !name.starts_with("malformed_"), "{name}");
        }
    }
}

#[test]
fn every_endpoint_corpus_file_passes_the_fuzz_check() {
    replay("endpoint");
}

#[test]
fn every_routing_corpus_file_passes_the_fuzz_check() {
    replay("routing");
}

#[test]
fn every_sim_corpus_file_passes_the_fuzz_check() {
    replay("sim");
}

#[test]
fn the_corpus_seeds_hold_the_golden_vectors_and_the_benchmark_messages() {
    let files = corpus("decode");
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

#[test]
fn the_empty_input_is_a_valid_scenario_for_every_target() {
    for t in targets() {
        check_for(&t).unwrap()(&[]);
    }
}

fn regressions() -> Vec<(String, String, Vec<u8>)> {
    let mut all = Vec::new();
    let Ok(dirs) = fs::read_dir(fuzz_dir("regressions")) else { return all };
    for dir in dirs {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            let target = dir.file_name().unwrap().to_string_lossy().into_owned();
            for (name, data) in files_in(&dir) {
                all.push((target.clone(), name, data));
            }
        }
    }
    all.sort();
    all
}

#[test]
fn every_regression_input_passes_its_targets_check() {
    let all = regressions();
    assert!(all.len() >= 5, "the inputs of the past findings are missing: {}", all.len());
    for (target, name, data) in all {
        let check = check_for(&target).unwrap_or_else(|| panic!("fuzz/regressions/{target} has no check"));
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            panic!("regression {target}/{name} fails its check again: {:?}", message(&*e));
        }
    }
}
