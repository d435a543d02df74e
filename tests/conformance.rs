//! ONNX backend node tests through import + reference interpreter.
//!
//! `tests/conformance/node_tests.manifest` lists the tests expected to pass; any
//! listed test that fails (import error, run error, or outputs outside tolerance)
//! fails this test. The README states the manifest's count, and a test keeps the
//! two in step. Tests that pass but are not listed are printed, so the manifest
//! can grow.

mod common;

use std::fs;
use std::path::Path;

use edgeconv::formats::onnx;
use edgeconv::ir::compare::{compare, tolerance_for};
use edgeconv::ir::{Tensor, eval};
use edgeconv::passes::presets::default_pipeline;
use edgeconv::passes::{RunOptions, run_stages};
use edgeconv::progress::Silent;
use rayon::prelude::*;

/// Output tolerance relative to the output magnitude for float32/64 results.
const FLOAT_TOLERANCE: f64 = 1e-4;

fn manifest() -> Vec<String> {
    let path = common::repo_root().join("tests/conformance/node_tests.manifest");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn read_numbered(dir: &Path, prefix: &str) -> Result<Vec<Tensor>, String> {
    let mut out = Vec::new();
    for i in 0.. {
        let path = dir.join(format!("{prefix}_{i}.pb"));
        if !path.exists() {
            break;
        }
        let (_, t) = onnx::read_tensor_proto(&path).map_err(|e| e.to_string())?;
        out.push(t);
    }
    Ok(out)
}

/// Runs one node test; `Err` says why it does not pass.
fn run_node_test(dir: &Path) -> Result<(), String> {
    let g = onnx::import(&dir.join("model.onnx"), &Silent).map_err(|e| format!("import: {e}"))?;
    check_outputs(dir, &g)
}

/// Runs one node test after the default pass pipeline.
fn run_node_test_optimized(dir: &Path) -> Result<(), String> {
    let mut g =
        onnx::import(&dir.join("model.onnx"), &Silent).map_err(|e| format!("import: {e}"))?;
    run_stages(&mut g, &default_pipeline(), &RunOptions::default())
        .map_err(|e| format!("passes: {e}"))?;
    check_outputs(dir, &g)
}

/// Runs `g` on the test's inputs and compares with its expected outputs.
fn check_outputs(dir: &Path, g: &edgeconv::ir::Graph) -> Result<(), String> {
    let data = dir.join("test_data_set_0");
    let inputs = read_numbered(&data, "input")?;
    let expected = read_numbered(&data, "output")?;
    let actual = eval::run(g, inputs).map_err(|e| format!("run: {e}"))?;
    if actual.len() != expected.len() {
        return Err(format!(
            "{} outputs, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        let agreement = compare(a, e).map_err(|m| format!("output {i}: {m}"))?;
        let tolerance = tolerance_for(e.dtype(), FLOAT_TOLERANCE);
        if !agreement.within(tolerance) {
            return Err(format!(
                "output {i}: relative error {:.3e} > {tolerance:.0e} ({} special-value mismatches)",
                agreement.relative_error(),
                agreement.special_mismatches
            ));
        }
    }
    Ok(())
}

#[test]
fn listed_node_tests_pass() {
    let root = common::node_tests_dir();
    let listed = manifest();
    let failures: Vec<String> = listed
        .par_iter()
        .filter_map(|name| {
            run_node_test(&root.join(name))
                .err()
                .map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} listed node tests fail:\n{}",
        failures.len(),
        listed.len(),
        failures.join("\n")
    );

    let mut unlisted: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !listed.contains(n))
        .collect();
    unlisted.sort();
    let newly_passing: Vec<&String> = unlisted
        .par_iter()
        .filter(|n| run_node_test(&root.join(n)).is_ok())
        .collect();
    println!(
        "{} listed node tests pass; {} unlisted tests also pass: {newly_passing:?}",
        listed.len(),
        newly_passing.len()
    );
}

/// The default pass pipeline keeps every listed node test passing: a pass
/// that changes numbers, shapes or dtypes on any of these graphs fails here.
#[test]
fn listed_node_tests_pass_after_the_default_pipeline() {
    let root = common::node_tests_dir();
    let listed = manifest();
    let failures: Vec<String> = listed
        .par_iter()
        .filter_map(|name| {
            run_node_test_optimized(&root.join(name))
                .err()
                .map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} listed node tests fail after the default pipeline:\n{}",
        failures.len(),
        listed.len(),
        failures.join("\n")
    );
}

#[test]
fn manifest_is_large_sorted_and_matches_the_readme() {
    let listed = manifest();
    assert!(
        listed.len() >= 1000,
        "only {} node tests listed",
        listed.len()
    );
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted, listed,
        "the manifest must be sorted and free of duplicates"
    );
    let readme = fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let claim = format!("{} ONNX backend node tests", listed.len());
    assert!(readme.contains(&claim), "README.md must say \"{claim}\"");
}
