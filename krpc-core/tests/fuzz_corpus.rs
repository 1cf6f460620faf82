//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through each target's own check
//! (`krpc_core::fuzzing`), so every `cargo test` runs the seeds and everything the fuzzers
//! kept, without cargo-fuzz. The reproducers of known, unfixed engine bugs
//! (`fuzz/regressions/<target>/`) are replayed too: with the known issues steered around they
//! must pass; the ignored test checks that they still fail without (see `docs/security.md`).

mod common;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use common::*;
use krpc_core::fuzzing::{Avoid, check_decode, check_endpoint_with, check_for, check_sim_with};

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

/// Runs a regression reproducer with the given known issues avoided.
fn run_regression(target: &str, data: &[u8], avoid: Avoid) -> Result<(), String> {
    let run = || match target {
        "endpoint" => check_endpoint_with(data, avoid),
        "sim" => check_sim_with(data, avoid),
        other => check_for(other).unwrap_or_else(|| panic!("no check for {other}"))(data),
    };
    catch_unwind(AssertUnwindSafe(run)).map_err(|e| message(&*e))
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
fn the_known_issue_reproducers_pass_with_their_issues_avoided() {
    for (target, name, data) in regressions() {
        if let Err(e) = run_regression(&target, &data, Avoid::KNOWN) {
            panic!("{target}/{name} fails even with the known issues avoided: {e}");
        }
    }
}

/// Fails once an engine bug behind a reproducer is fixed: then drop its `Avoid` flag, move
/// the file to `fuzz/corpus/<target>/` and update `docs/security.md`.
#[test]
#[ignore = "documents unfixed engine bugs (docs/security.md, Findings)"]
fn the_known_issue_reproducers_still_fail_without_the_workarounds() {
    let all = regressions();
    assert!(!all.is_empty());
    for (target, name, data) in all {
        let result = run_regression(&target, &data, Avoid::NOTHING);
        assert!(result.is_err(), "{target}/{name} passes: its bug seems fixed");
    }
}
