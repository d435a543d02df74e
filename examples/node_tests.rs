//! Runs the ONNX backend node tests through the importer and the reference
//! interpreter and compares with the expected outputs.
//!
//! ```text
//! cargo run --release --example node_tests -- NODE_TEST_DIR [--manifest OUT] [--filter SUBSTRING] [--profile]
//! ```
//!
//! NODE_TEST_DIR holds `<test>/model.onnx` and `<test>/test_data_set_0/{input,output}_*.pb`
//! (written by `tests/oracles/gen_node_tests.py`). A test passes by the
//! criterion of `tests/conformance.rs` (`ir::compare`: within 1e-4 of the
//! output magnitude, dtype-aware), so `--manifest` writes a manifest that test
//! accepts. The summary groups failures by reason. `--manifest` writes the passing names, sorted;
//! `--profile` prints where each test's run time went, per op kind (an
//! observed node's time runs from the previous node output to its own; a
//! single-output approximation).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use edgeconv::formats::onnx::{import, read_tensor_proto};
use edgeconv::ir::Tensor;
use edgeconv::ir::compare::{compare, tolerance_for};
use edgeconv::ir::eval::run_observed;
use edgeconv::progress::Silent;

/// Output tolerance relative to the output magnitude for float32/64 results.
const FLOAT_TOLERANCE: f64 = 1e-4;

/// How one test ended.
enum Outcome {
    /// Passed (the conformance test's criterion).
    Pass {
        seconds: f64,
    },
    Fail {
        reason: String,
        detail: String,
    },
}

fn fail(reason: impl Into<String>, detail: impl Into<String>) -> Outcome {
    Outcome::Fail {
        reason: reason.into(),
        detail: detail.into(),
    }
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.exists())
        .collect()
}

/// The first line of an error, with numbers blanked so that similar errors group.
fn reason_of(kind: &str, msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    let short: String = out.chars().take(90).collect();
    format!("{kind}: {short}")
}

/// Node errors read "node 'name' (Op): msg"; the op and msg group well, the name does not.
fn without_node_name(msg: &str) -> String {
    match (msg.strip_prefix("node '"), msg.find("' (")) {
        (Some(_), Some(i)) => msg[i + 2..].to_string(),
        _ => msg.to_string(),
    }
}

fn run_test(dir: &Path, profile: bool) -> Outcome {
    let g = match import(&dir.join("model.onnx"), &Silent) {
        Ok(g) => g,
        Err(e) => {
            return fail(
                reason_of("import", &without_node_name(&e.to_string())),
                e.to_string(),
            );
        }
    };
    let data = dir.join("test_data_set_0");
    let read = |paths: Vec<PathBuf>| -> Result<Vec<Tensor>, String> {
        paths
            .iter()
            .map(|p| {
                read_tensor_proto(p)
                    .map(|(_, t)| t)
                    .map_err(|e| e.to_string())
            })
            .collect()
    };
    let (inputs, expected) = match (
        read(numbered(&data, "input")),
        read(numbered(&data, "output")),
    ) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => return fail(reason_of("test data", &e), e),
    };
    let start = Instant::now();
    let mut last = start;
    let mut per_op: BTreeMap<&str, f64> = BTreeMap::new();
    let result = run_observed(&g, inputs, &mut |v, _| {
        let now = Instant::now();
        if let Some(node) = g.producer(v) {
            *per_op.entry(g.node(node).op.name()).or_default() += (now - last).as_secs_f64();
        }
        last = now;
    });
    let seconds = start.elapsed().as_secs_f64();
    if profile {
        let mut ops: Vec<_> = per_op.into_iter().collect();
        ops.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = ops
            .iter()
            .take(6)
            .map(|(op, t)| format!("{op} {:.1} ms", t * 1e3))
            .collect();
        println!("  profile: {}", top.join(", "));
    }
    let outputs = match result {
        Ok(o) => o,
        Err(e) => {
            let msg = e.to_string();
            return match &e {
                edgeconv::Error::Unsupported(u) => fail(format!("unsupported op {}", u[0].op), msg),
                _ => fail(reason_of("eval", &without_node_name(&msg)), msg),
            };
        }
    };
    if outputs.len() != expected.len() {
        return fail(
            "output count",
            format!("{} outputs, expected {}", outputs.len(), expected.len()),
        );
    }
    for (i, (got, want)) in outputs.iter().zip(&expected).enumerate() {
        if got.dtype() != want.dtype() {
            return fail(
                format!("dtype: {} instead of {}", got.dtype(), want.dtype()),
                format!("output {i}"),
            );
        }
        if got.shape() != want.shape() {
            return fail(
                "shape",
                format!(
                    "output {i}: {:?} instead of {:?}",
                    got.shape(),
                    want.shape()
                ),
            );
        }
        let agreement = match compare(got, want) {
            Ok(a) => a,
            Err(m) => return fail("shape or dtype", format!("output {i}: {m}")),
        };
        let tolerance = tolerance_for(want.dtype(), FLOAT_TOLERANCE);
        if !agreement.within(tolerance) {
            let ms = seconds * 1e3;
            return fail(
                "values",
                format!(
                    "output {i}: relative error {:.2e} > {tolerance:.0e} ({} special-value mismatches), ran in {ms:.1} ms",
                    agreement.relative_error(),
                    agreement.special_mismatches
                ),
            );
        }
    }
    Outcome::Pass { seconds }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let mut manifest = None;
    let mut filter = String::new();
    let mut profile = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--manifest" => manifest = it.next(),
            "--filter" => filter = it.next().unwrap_or_default(),
            "--profile" => profile = true,
            _ => dir = Some(a),
        }
    }
    let Some(dir) = dir else {
        eprintln!(
            "usage: node_tests NODE_TEST_DIR [--manifest OUT] [--filter SUBSTRING] [--profile]"
        );
        std::process::exit(2);
    };
    let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("readable test folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&filter))
        })
        .collect();
    tests.sort();

    let mut passed = Vec::new();
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &tests {
        let name = path
            .file_name()
            .expect("named")
            .to_string_lossy()
            .to_string();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_test(path, profile)))
            .unwrap_or_else(|_| fail("PANIC", "the interpreter or importer panicked"));
        match outcome {
            Outcome::Pass { seconds } => {
                println!("pass {name} ({:.1} ms)", seconds * 1e3);
                passed.push(name);
            }
            Outcome::Fail { reason, detail } => {
                println!(
                    "FAIL {name}: {reason} -- {}",
                    detail.lines().next().unwrap_or("")
                );
                reasons.entry(reason).or_default().push(name);
            }
        }
    }

    let mut by_count: Vec<_> = reasons.iter().collect();
    by_count.sort_by_key(|(r, names)| (std::cmp::Reverse(names.len()), r.to_string()));
    println!("\nfailures by reason:");
    for (reason, names) in by_count {
        let examples: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        println!(
            "{:5}  {reason}  (e.g. {})",
            names.len(),
            examples.join(", ")
        );
    }
    println!(
        "\n{} of {} passed (within 1e-4 of the output magnitude, as tests/conformance.rs checks)",
        passed.len(),
        tests.len()
    );
    if let Some(out) = manifest {
        passed.sort();
        let text: String = passed.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&out, text).expect("writable manifest");
    }
}
