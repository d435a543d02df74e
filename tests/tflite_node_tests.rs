//! ONNX backend node tests through the TFLite target: every test of the
//! interpreter's manifest is converted (default pipeline, TFLite
//! legalization, inputs pinned to the test data's shapes). A model the target
//! refuses must be refused with exit-3 reasons (`Error::Unsupported`); a model
//! it converts must run in LiteRT with the reference kernels and with the
//! default XNNPACK resolver and match the test's expected outputs (1e-4 of
//! the output magnitude for floats, exact for integers and booleans).
//!
//! `tests/conformance/tflite_node_tests.manifest` lists the tests that convert
//! and pass; the README states its count. A listed test that no longer
//! converts or passes fails, and so does an unlisted one that converts but
//! does not pass (the target claimed support it does not have). Unlisted
//! passing tests are printed so the manifest can grow; with
//! `UPDATE_TFLITE_MANIFEST=1` the manifest is rewritten.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::litert::{Job, Resolver, run_batch};
use edgeconv::formats::onnx;
use edgeconv::formats::target::Target;
use edgeconv::formats::tflite::target::TfliteTarget;
use edgeconv::ir::Tensor;
use edgeconv::ir::compare::{compare, tolerance_for};
use edgeconv::ir::error::Error;
use edgeconv::passes::pin_shapes::{Pin, PinShapes};
use edgeconv::passes::{Repeat, RunOptions, Stage, presets, run_stages};
use edgeconv::progress::Silent;
use rayon::prelude::*;

const FLOAT_TOLERANCE: f64 = 1e-4;

fn read_manifest(name: &str) -> Vec<String> {
    let path = common::repo_root().join("tests/conformance").join(name);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn read_numbered(dir: &Path, prefix: &str) -> Vec<Tensor> {
    let mut out = Vec::new();
    for i in 0.. {
        let path = dir.join(format!("{prefix}_{i}.pb"));
        if !path.exists() {
            break;
        }
        out.push(onnx::read_tensor_proto(&path).unwrap().1);
    }
    out
}

/// What converting one node test gave.
enum Converted {
    /// The target refused it with these reasons (exit 3).
    Refused(String),
    /// Any other error: a bug when support said yes.
    Failed(String),
    Written {
        tflite: PathBuf,
        inputs: Vec<(String, Tensor)>,
        outputs: Vec<(String, Tensor)>,
    },
}

fn convert(test_dir: &Path, out_dir: &Path, name: &str) -> Converted {
    let data = test_dir.join("test_data_set_0");
    let mut g = match onnx::import(&test_dir.join("model.onnx"), &Silent) {
        Ok(g) => g,
        Err(e) => return Converted::Failed(format!("import: {e}")),
    };
    let inputs: Vec<(String, Tensor)> = g
        .inputs
        .iter()
        .map(|&v| g.value(v).name.clone())
        .zip(read_numbered(&data, "input"))
        .collect();
    let outputs: Vec<(String, Tensor)> = g
        .outputs
        .iter()
        .map(|&v| g.value(v).name.clone())
        .zip(read_numbered(&data, "output"))
        .collect();
    let target = TfliteTarget::default();
    let pins = inputs
        .iter()
        .map(|(n, t)| Pin::Named {
            name: n.clone(),
            dims: t.shape().iter().map(|&d| d as u64).collect(),
        })
        .collect();
    let mut stages = vec![Stage {
        name: "pin",
        passes: vec![Box::new(PinShapes::new(pins))],
        repeat: Repeat::Once,
    }];
    stages.extend(presets::for_target(target.name()));
    stages.extend(target.legalize());
    let classify = |e: Error| match e {
        Error::Unsupported(list) => Converted::Refused(
            list.iter()
                .map(|u| format!("{} ({}): {}", u.node, u.op, u.reason))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => Converted::Failed(other.to_string()),
    };
    if let Err(e) = run_stages(&mut g, &stages, &RunOptions::default()) {
        return classify(e);
    }
    let tflite = out_dir.join(format!("{name}.tflite"));
    match target.emit(&g, &tflite, &Silent) {
        Ok(_) => Converted::Written {
            tflite,
            inputs,
            outputs,
        },
        Err(e) => classify(e),
    }
}

#[test]
fn node_tests_convert_or_are_refused_and_listed_ones_match_in_litert() {
    let root = common::node_tests_dir();
    let interpreter = read_manifest("node_tests.manifest");
    let listed = read_manifest("tflite_node_tests.manifest");
    for name in &listed {
        assert!(
            interpreter.contains(name),
            "{name} is listed for TFLite but not in the interpreter manifest"
        );
    }
    let out_dir = tempfile::tempdir().unwrap();
    let converted: Vec<(String, Converted)> = interpreter
        .par_iter()
        .map(|name| {
            (
                name.clone(),
                convert(&root.join(name), out_dir.path(), name),
            )
        })
        .collect();

    let mut failures = Vec::new();
    let mut refused = 0;
    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    for (name, result) in &converted {
        match result {
            Converted::Refused(why) => {
                refused += 1;
                if listed.contains(name) {
                    failures.push(format!("{name}: listed but refused: {why}"));
                }
            }
            Converted::Failed(why) => failures.push(format!("{name}: conversion failed: {why}")),
            Converted::Written {
                tflite,
                inputs,
                outputs,
            } => {
                let mut job = Job::new(tflite);
                for (n, t) in inputs {
                    job = job.input(n, t.clone());
                }
                jobs.push(job);
                expected.push((name.clone(), outputs.clone()));
            }
        }
    }
    let results = run_batch(&jobs);
    let mut passing = Vec::new();
    for ((name, outputs), result) in expected.iter().zip(&results) {
        let mut problems = Vec::new();
        for resolver in Resolver::BOTH {
            match &result.run(resolver).outcome {
                Err(e) => problems.push(format!("[{resolver}] LiteRT: {e}")),
                Ok(out) => {
                    for (output, want) in outputs {
                        let Some((_, got)) = out.outputs.iter().find(|(n, _)| n == output) else {
                            problems.push(format!("[{resolver}] no output {output}"));
                            continue;
                        };
                        let tolerance = tolerance_for(want.dtype(), FLOAT_TOLERANCE);
                        match compare(got, want) {
                            Ok(a) if a.within(tolerance) => {}
                            Ok(a) => problems.push(format!(
                                "[{resolver}] {output}: relative error {:.2e} > {tolerance:.0e} ({} special-value mismatches)",
                                a.relative_error(),
                                a.special_mismatches
                            )),
                            Err(e) => problems.push(format!("[{resolver}] {output}: {e}")),
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            passing.push(name.clone());
        } else {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    passing.sort();
    let unlisted: Vec<&String> = passing.iter().filter(|n| !listed.contains(n)).collect();
    println!(
        "{} of {} interpreter node tests convert and match in LiteRT (both resolvers); {refused} refused as unsupported; {} listed; unlisted passing: {unlisted:?}",
        passing.len(),
        interpreter.len(),
        listed.len()
    );
    if std::env::var_os("UPDATE_TFLITE_MANIFEST").is_some() {
        let path = common::repo_root().join("tests/conformance/tflite_node_tests.manifest");
        let mut text = String::from(
            "# ONNX backend node tests that convert to TFLite and match in LiteRT\n# (reference kernels and XNNPACK). Regenerate: UPDATE_TFLITE_MANIFEST=1 cargo test --test tflite_node_tests\n",
        );
        for name in &passing {
            text.push_str(name);
            text.push('\n');
        }
        fs::write(&path, text).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} node tests fail through TFLite:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for name in &listed {
        assert!(passing.contains(name), "{name} is listed but did not pass");
    }
}

#[test]
fn manifest_is_sorted_and_matches_the_readme() {
    let listed = read_manifest("tflite_node_tests.manifest");
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted, listed,
        "the manifest must be sorted and free of duplicates"
    );
    let readme = fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let claim = format!("{} ONNX backend node tests convert to TFLite", listed.len());
    assert!(readme.contains(&claim), "README.md must say \"{claim}\"");
}
